// rms_norm over the last dimension: y[r, j] = x[r, j] / sqrt(mean_j(x[r, :]^2) + eps) * w[j].
//
// Bindings, in argument order (the input's leading dims flattened into R rows of length D):
//   @binding(0) x:      array<f32>              [R, D]
//   @binding(1) w:      array<f32>              [D]
//   @binding(2) y:      array<f32>              [R, D]
//   @binding(3) params: uniform RmsNormParams   { rows = R, d = D, eps }
//
// One workgroup per row with a workgroup-shared tree reduction of the sum of squares; rows are
// folded into a 2D dispatch (x, y) when R exceeds the per-dimension workgroup limit.

struct RmsNormParams {
    rows: u32,
    d: u32,
    eps: f32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> params: RmsNormParams;

// Threads per workgroup (a power of two for the tree reduction); the host uses the same value.
const WG: u32 = 256u;

var<workgroup> scratch: array<f32, WG>;

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

    var acc = 0.0;
    for (var i = lid; i < d; i += WG) {
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
    // Same operation order as the CPU reference: 1 / sqrt(mean + eps), then x * inv * w.
    let inv = 1.0 / sqrt(scratch[0] / f32(d) + params.eps);

    for (var i = lid; i < d; i += WG) {
        y[base + i] = x[base + i] * inv * w[i];
    }
}
