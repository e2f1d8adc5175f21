// reduce over the last dimension: y[r] = op(x[r, :]), op = `params.op` (the codes of
// `Reduce::code()`: 0 sum, 1 mean, 2 max, 3 min, 4 argmax).
//
// Bindings, in argument order (the input's leading dims flattened into R rows of length D):
//   @binding(0) x:      array<f32>             [R, D]
//   @binding(1) y:      array<u32>             [R]     (logically [.., 1])
//   @binding(2) params: uniform ReduceParams   { rows = R, d = D, op }
//
// y holds raw 32-bit words so one kernel serves both output dtypes: f32 results are stored as
// their bit pattern (bitcast), argmax as a u32 index. The host labels the tensor's dtype.
//
// One workgroup per row; every op is folded as a (value, index) pair so that the same strided
// loop and workgroup-shared tree reduction serve all five. Rows are folded into a 2D dispatch
// (x, y) when R exceeds the per-dimension workgroup limit.

struct ReduceParams {
    rows: u32,
    d: u32,
    op: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<u32>;
@group(0) @binding(2) var<uniform> params: ReduceParams;

const WG: u32 = 256u;

const OP_SUM: u32 = 0u;
const OP_MEAN: u32 = 1u;
const OP_MAX: u32 = 2u;
const OP_MIN: u32 = 3u;
const OP_ARGMAX: u32 = 4u;

var<workgroup> scratch_v: array<f32, WG>;
var<workgroup> scratch_i: array<u32, WG>;

struct Acc {
    v: f32,
    i: u32,
}

// Combine two partial results. For argmax, ties go to the lower index: the first maximum, as
// candle returns it, whatever order the partials arrive in.
fn combine(op: u32, a: Acc, b: Acc) -> Acc {
    switch op {
        case 0u, 1u: { return Acc(a.v + b.v, 0u); }
        case 2u: { return Acc(max(a.v, b.v), 0u); }
        case 3u: { return Acc(min(a.v, b.v), 0u); }
        default: {
            if (b.v > a.v || (b.v == a.v && b.i < a.i)) {
                return b;
            }
            return a;
        }
    }
}

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= params.rows) {
        return;
    }
    let d = params.d;
    let base = row * d;
    let op = params.op;

    // Start value: 0 for sums; for max/min/argmax element 0 of the row (a neutral start for
    // each of them, and no infinity literal needed). Threads past the row's end keep it.
    var acc = Acc(x[base], 0u);
    if (op == OP_SUM || op == OP_MEAN) {
        acc = Acc(0.0, 0u);
    }
    for (var i = lid; i < d; i += WG) {
        acc = combine(op, acc, Acc(x[base + i], i));
    }
    scratch_v[lid] = acc.v;
    scratch_i[lid] = acc.i;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            let r = combine(op, Acc(scratch_v[lid], scratch_i[lid]), Acc(scratch_v[lid + s], scratch_i[lid + s]));
            scratch_v[lid] = r.v;
            scratch_i[lid] = r.i;
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        switch op {
            case 1u: { y[row] = bitcast<u32>(scratch_v[0] / f32(d)); }
            case 4u: { y[row] = scratch_i[0]; }
            default: { y[row] = bitcast<u32>(scratch_v[0]); }
        }
    }
}
