// binary: y = f(a, b), element-wise; f is chosen by `params.op` (the codes of `Binary::code()`).
//
// Bindings, in argument order (any shape, flattened):
//   @binding(0) a:      array<f32>             [..]        numel = params.n
//   @binding(1) b:      array<f32>             [b_len]     a's shape, a suffix of it, or [1]
//   @binding(2) y:      array<f32>             [..]        a's shape
//   @binding(3) params: uniform BinaryParams   { n, b_len, op }
//
// Broadcasting: b is read at `i % b_len`. Row-major layout makes that one rule cover all three
// cases: the same shape (i < b_len), a suffix shape repeated over the leading dims, and a scalar.
// Dispatch: ceil(n / WG) workgroups, folded into (x, y) when too many for x.

struct BinaryParams {
    n: u32,
    b_len: u32,
    op: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> params: BinaryParams;

override WG: u32 = 256u;

fn apply(op: u32, u: f32, v: f32) -> f32 {
    switch op {
        case 0u: { return u + v; }
        case 1u: { return u - v; }
        case 2u: { return u * v; }
        case 3u: { return u / v; }
        case 4u: { return max(u, v); }
        case 5u: { return min(u, v); }
        // A runtime NaN: Chromium's WGSL compiler (Tint) rejects a constant NaN.
        default: { return bitcast<f32>(0x7fc00000u | (op & 0u)); }
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
    y[i] = apply(params.op, a[i], b[i % params.b_len]);
}
