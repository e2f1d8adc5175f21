// gather: rows of an embedding table picked by ids: y[t, :] = table[ids[t], :].
//
// Bindings, in argument order:
//   @binding(0) table:  array<f32>             [N, D]
//   @binding(1) ids:    array<u32>             [T]     (bounds-checked on the host)
//   @binding(2) y:      array<f32>             [T, D]
//   @binding(3) params: uniform GatherParams   { n_out = T * D, d = D, rows = N }
//
// One thread per output element; ceil(T * D / WG) workgroups, folded into (x, y) when too many
// for x.

struct GatherParams {
    n_out: u32,
    d: u32,
    rows: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> table: array<f32>;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> params: GatherParams;

override WG: u32 = 256u;

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if (i >= params.n_out) {
        return;
    }
    let t = i / params.d;
    let j = i % params.d;
    let id = ids[t];
    // The host already rejected out-of-range ids; this guard only keeps a bad upload from reading
    // another row's memory.
    if (id >= params.rows) {
        y[i] = 0.0;
        return;
    }
    y[i] = table[id * params.d + j];
}
