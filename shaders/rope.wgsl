// rope: rotary position embedding, rotate-half style over the full head dim:
//   y[n, t, i] = x[n, t, i] * cos[t, i] + r[n, t, i] * sin[t, i],
//   r = rotate_half(x) = [-x[.., half..], x[.., ..half]].
//
// Bindings, in argument order:
//   @binding(0) x:      array<f32>            [N, T, hd]
//   @binding(1) cos:    array<f32>            [T, hd]   (host tables, nn::rope::tables)
//   @binding(2) sin:    array<f32>            [T, hd]
//   @binding(3) y:      array<f32>            [N, T, hd]
//   @binding(4) params: uniform RopeParams    { total = N*T*hd, t, hd }
//
// One thread per output element (ceil(total / WG) workgroups, folded into (x, y) when too many); the same two products and one sum as the CPU composition
// (`backend::composite::rope`), so the two differ by at most a fused multiply-add's rounding.

struct RopeParams {
    total: u32,
    t: u32,
    hd: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> cos_t: array<f32>;
@group(0) @binding(2) var<storage, read> sin_t: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> params: RopeParams;

override WG: u32 = 256u;

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = (wid.x + wid.y * nwg.x) * WG + lid;
    if (idx >= params.total) {
        return;
    }
    let hd = params.hd;
    let half = hd / 2u;
    let i = idx % hd;
    let tab = ((idx / hd) % params.t) * hd + i;
    var r: f32;
    if (i < half) {
        r = -x[idx + half];
    } else {
        r = x[idx - half];
    }
    let a = x[idx] * cos_t[tab];
    let b = r * sin_t[tab];
    y[idx] = a + b;
}
