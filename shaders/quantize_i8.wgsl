// quantize_i8: the input half of a BitLinear (specs/models.md §4.3), per row r:
//   ŷ = x / sqrt(mean(x²) + eps) ⊙ w                      (RMSNorm)
//   s = 127 / max(max|ŷ|, 1e-5),  q = clamp(round(ŷ · s), −128, 127)   (absmax 8-bit)
// q is written packed, four signed bytes per u32 (element i in byte i % 4 of word i / 4, two's
// complement), for `ternary_matmul_i8.wgsl`; s goes to `scales`.
//
// Bindings, in argument order:
//   @binding(0) x:      array<f32>               [R, K]
//   @binding(1) w:      array<f32>               [K]
//   @binding(2) q:      array<u32>               [R, ceil(K / 4)]
//   @binding(3) scales: array<f32>               [R]
//   @binding(4) params: uniform QuantizeParams   { rows = R, k = K, words, eps }
//
// One workgroup per row (folded into (x, y)), two tree reductions (sum of squares, absmax). The
// operation order is the CPU composition's (`backend::composite::bit_linear`): 1 / sqrt(mean +
// eps), then x · inv · w, then ŷ · s, rounded half away from zero like Rust's f32::round.

struct QuantizeParams {
    rows: u32,
    k: u32,
    words: u32,
    eps: f32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> q: array<u32>;
@group(0) @binding(3) var<storage, read_write> scales: array<f32>;
@group(0) @binding(4) var<uniform> params: QuantizeParams;

const WG: u32 = 256u;
const ACT_SCALE_FLOOR: f32 = 1e-5;

var<workgroup> scratch: array<f32, WG>;

// Half away from zero (WGSL's round() goes half to even); see unary.wgsl.
fn round_away(v: f32) -> f32 {
    let t = trunc(v);
    return select(t, t + sign(v), abs(v - t) >= 0.5);
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
    let k = params.k;
    let base = row * k;

    var acc = 0.0;
    for (var i = lid; i < k; i += WG) {
        let v = x[base + i];
        acc += v * v;
    }
    scratch[lid] = acc;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            scratch[lid] += scratch[lid + s];
        }
        workgroupBarrier();
    }
    let inv = 1.0 / sqrt(scratch[0] / f32(k) + params.eps);
    workgroupBarrier();

    var amax = 0.0;
    for (var i = lid; i < k; i += WG) {
        amax = max(amax, abs(x[base + i] * inv * w[i]));
    }
    scratch[lid] = amax;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            scratch[lid] = max(scratch[lid], scratch[lid + s]);
        }
        workgroupBarrier();
    }
    let scale = 127.0 / max(scratch[0], ACT_SCALE_FLOOR);
    if (lid == 0u) {
        scales[row] = scale;
    }

    for (var wi = lid; wi < params.words; wi += WG) {
        var word = 0u;
        for (var b = 0u; b < 4u; b++) {
            let i = wi * 4u + b;
            if (i < k) {
                let qv = i32(clamp(round_away(x[base + i] * inv * w[i] * scale), -128.0, 127.0));
                word |= (bitcast<u32>(qv) & 0xffu) << (8u * b);
            }
        }
        q[row * params.words + wi] = word;
    }
}
