// last_token: pooling for sequence classification, the hidden state of each sequence's last real
// token (right padding): y[b, :] = x[b, lengths[b] - 1, :].
//
// Bindings, in argument order:
//   @binding(0) x:       array<f32>                [B, T, H]
//   @binding(1) lengths: array<u32>                [B]       (1 ..= T, checked on the host)
//   @binding(2) y:       array<f32>                [B, H]
//   @binding(3) params:  uniform LastTokenParams   { total = B*H, t, h }
//
// One thread per output element; ceil(total / WG) workgroups, folded into (x, y).

struct LastTokenParams {
    total: u32,
    t: u32,
    h: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> lengths: array<u32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> params: LastTokenParams;

override WG: u32 = 256u;

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if (i >= params.total) {
        return;
    }
    let b = i / params.h;
    let j = i % params.h;
    // Clamped like a bad upload would need; the host refuses lengths outside 1..=T.
    let last = clamp(lengths[b], 1u, params.t) - 1u;
    y[i] = x[(b * params.t + last) * params.h + j];
}
