// unary: y = f(x), element-wise; f is chosen by `params.op` (the codes of `Unary::code()`).
//
// Bindings, in argument order (shapes in the crate's alphabet; any shape, flattened):
//   @binding(0) x:      array<f32>             [..]   numel = params.n
//   @binding(1) y:      array<f32>             [..]   same shape as x
//   @binding(2) params: uniform UnaryParams    { n, op, mul, add, lo, hi }
//                                              (mul/add: Affine only; lo/hi: Clamp only)
//
// Dispatch: ceil(n / WG) workgroups, folded into (x, y) when there are more than the device
// allows in x; the shader linearises the workgroup id and drops the tail.

struct UnaryParams {
    n: u32,
    op: u32,
    mul: f32,
    add: f32,
    lo: f32,
    hi: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> params: UnaryParams;

// Threads per workgroup; the host passes the same value it divides by.
override WG: u32 = 256u;

// A quiet NaN built at run time: Chromium's WGSL compiler (Tint) refuses a NaN constant
// expression such as bitcast<f32>(0x7fc00000u), which naga accepts.
fn nan() -> f32 {
    var bits = 0x7fc00000u;
    return bitcast<f32>(bits);
}

// 1 / (1 + exp(-v)) written so exp only ever sees a non-positive argument: no overflow, so no
// inf/inf = NaN for large |v|, and the small tail e / (1 + e) keeps its relative precision.
fn sigmoid(v: f32) -> f32 {
    let e = exp(-abs(v));
    let r = 1.0 / (1.0 + e);
    return select(e * r, r, v >= 0.0);
}

// Round half away from zero, like Rust's f32::round (WGSL's round() goes half to even). Not
// floor(v + 0.5): that rounds 0.49999997 up, since v + 0.5 is already 1.0 in f32. v - trunc(v) is
// exact, so the comparison with 0.5 is too; inf and NaN pass through unchanged.
fn round_away(v: f32) -> f32 {
    let t = trunc(v);
    return select(t, t + sign(v), abs(v - t) >= 0.5);
}

fn apply(op: u32, v: f32) -> f32 {
    switch op {
        case 0u: { return -v; }
        case 1u: { return exp(v); }
        case 2u: { return log(v); }
        case 3u: { return sqrt(v); }
        case 4u: { return abs(v); }
        case 5u: { return 1.0 / v; }
        case 6u: { return v * v; }
        // tanh(±15) is ±1 in f32; clamping keeps exp-based implementations away from inf/inf.
        case 7u: { return tanh(clamp(v, -15.0, 15.0)); }
        case 8u: { return max(v, 0.0); }
        case 9u: { return sigmoid(v); }
        case 10u: { return v * sigmoid(v); }
        // Stable log(sigmoid(v)) = min(v, 0) - log(1 + exp(-|v|)).
        case 11u: { return min(v, 0.0) - log(1.0 + exp(-abs(v))); }
        case 12u: { return v * params.mul + params.add; }
        case 13u: { return round_away(v); }
        // max then min, as the CPU does (not clamp(): its result for lo > hi is implementation-defined).
        case 14u: { return min(max(v, params.lo), params.hi); }
        // Unknown code: the host never sends one; NaN makes a bug visible instead of silent.
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
    y[i] = apply(params.op, x[i]);
}
