// softmax over the last dimension: y[r, :] = exp(x[r, :] - max_r) / sum(exp(x[r, :] - max_r)).
//
// Bindings, in argument order (the input's leading dims flattened into R rows of length D):
//   @binding(0) x:      array<f32>              [R, D]
//   @binding(1) y:      array<f32>              [R, D]
//   @binding(2) params: uniform SoftmaxParams   { rows = R, d = D }
//
// One workgroup per row: each thread folds a strided slice of the row (so any D works), then a
// workgroup-shared tree reduction combines the WG partial results. Rows are folded into a 2D
// dispatch (x, y) when R exceeds the per-dimension workgroup limit.

struct SoftmaxParams {
    rows: u32,
    d: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> params: SoftmaxParams;

// Threads per workgroup (a power of two for the tree reduction); the host uses the same value.
const WG: u32 = 256u;

var<workgroup> scratch: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    // `row` depends only on uniform values, so the early return keeps barriers in uniform flow.
    let row = wid.x + wid.y * nwg.x;
    if (row >= params.rows) {
        return;
    }
    let d = params.d;
    let base = row * d;

    // 1. Row max. Threads past the row's end start from x[base]: any element of the row is a
    //    neutral start for max, and it avoids needing an infinity literal.
    var m = x[base];
    for (var i = lid; i < d; i += WG) {
        m = max(m, x[base + i]);
    }
    scratch[lid] = m;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            scratch[lid] = max(scratch[lid], scratch[lid + s]);
        }
        workgroupBarrier();
    }
    let row_max = scratch[0];
    // Everyone must have read scratch[0] before it is overwritten below.
    workgroupBarrier();

    // 2. Sum of exp(x - max): every term is in (0, 1], so no overflow.
    var acc = 0.0;
    for (var i = lid; i < d; i += WG) {
        acc += exp(x[base + i] - row_max);
    }
    scratch[lid] = acc;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            scratch[lid] += scratch[lid + s];
        }
        workgroupBarrier();
    }
    let total = scratch[0];

    // 3. Normalise (exp recomputed: cheaper than a second buffer, and D may exceed WG).
    for (var i = lid; i < d; i += WG) {
        y[base + i] = exp(x[base + i] - row_max) / total;
    }
}
