// binary: y = f(a, b), element-wise with NumPy broadcasting of both operands; f is chosen by
// `params.op` (the codes of `Binary::code()`).
//
// Bindings, in argument order:
//   @binding(0) a:      array<f32>             a's shape (any rank, broadcastable to y's)
//   @binding(1) b:      array<f32>             b's shape
//   @binding(2) y:      array<f32>             the broadcast shape, numel = params.n
//   @binding(3) params: uniform BinaryParams   { n, rank, op, shape, a_strides, b_strides }
//
// Broadcasting by strides: `shape` is y's shape and `a_strides` / `b_strides` are each operand's
// row-major strides over it, 0 on a broadcast dim (size 1 or missing), so one index walk serves
// every case. The host first drops size-1 dims and merges neighbours both operands walk
// contiguously: same shapes become rank 1, a bias [N] over [M, N] rank 2. Rank <= 8 (two vec4
// per array; `check::MAX_RANK`), innermost dim last.
// Dispatch: ceil(n / WG) workgroups, folded into (x, y) when too many for x.

struct BinaryParams {
    n: u32,
    rank: u32,
    op: u32,
    _pad: u32,
    shape: array<vec4<u32>, 2>,
    a_strides: array<vec4<u32>, 2>,
    b_strides: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> params: BinaryParams;

override WG: u32 = 256u;

// A quiet NaN built at run time: Chromium's WGSL compiler (Tint) refuses a NaN constant
// expression such as bitcast<f32>(0x7fc00000u), which naga accepts.
fn nan() -> f32 {
    var bits = 0x7fc00000u;
    return bitcast<f32>(bits);
}

fn apply(op: u32, u: f32, v: f32) -> f32 {
    switch op {
        case 0u: { return u + v; }
        case 1u: { return u - v; }
        case 2u: { return u * v; }
        case 3u: { return u / v; }
        case 4u: { return max(u, v); }
        case 5u: { return min(u, v); }
        default: { return nan(); }
    }
}

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if (i >= params.n) {
        return;
    }
    // Peel y's coordinates off the flat index, innermost dim first.
    var rem = i;
    var ia = 0u;
    var ib = 0u;
    for (var d = params.rank; d > 0u; d--) {
        let q = d - 1u;
        let size = params.shape[q >> 2u][q & 3u];
        let c = rem % size;
        rem = rem / size;
        ia += c * params.a_strides[q >> 2u][q & 3u];
        ib += c * params.b_strides[q >> 2u][q & 3u];
    }
    y[i] = apply(params.op, a[ia], b[ib]);
}
