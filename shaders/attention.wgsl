// attention: causal softmax attention with grouped-query heads, fused (scores, mask, softmax and
// the weighted sum of values in one pass, never materialising the [T, T] score matrix):
//   o[h, t, :] = Σ_{j ∈ J(t)} softmax_j(scale · q[h, t, :] · k[h / g, j, :]) v[h / g, j, :]
// with J(t) = {t − window + 1 ..= t} ∩ {0 ..= t} (window = 0: no window) and g = nh / kvh.
//
// Bindings, in argument order:
//   @binding(0) q:      array<f32>                 [nh, T, hd]
//   @binding(1) k:      array<f32>                 [kvh, T, hd]
//   @binding(2) v:      array<f32>                 [kvh, T, dv]
//   @binding(3) o:      array<f32>                 [nh, T, dv]
//   @binding(4) params: uniform AttentionParams    { nh, kvh, t, hd, dv, window, scale }
//
// One workgroup of WG = 64 threads per (head, query row), rows folded into (x, y). The query row
// sits in workgroup memory; keys are visited WG at a time (thread i scores key kb + i), with an
// online softmax: a running maximum m and normaliser l, and each thread's output accumulators
// (dims lid, lid + WG, ... < dv) rescaled by exp(m_old − m_new) when the maximum grows. The host
// sends hd, dv <= MAXD = 256 here (larger heads take the composed path).

struct AttentionParams {
    nh: u32,
    kvh: u32,
    t: u32,
    hd: u32,
    dv: u32,
    window: u32,
    scale: f32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read_write> o: array<f32>;
@group(0) @binding(4) var<uniform> params: AttentionParams;

const WG: u32 = 64u;
const MAXD: u32 = 256u;
// Outputs per thread: MAXD / WG.
const PER: u32 = 4u;
// Below any real score (finite: WGSL may assume no infinities); exp(NEG − m) underflows to 0.
const NEG: f32 = -3.0e38;

var<workgroup> qrow: array<f32, MAXD>;
var<workgroup> p: array<f32, WG>;
var<workgroup> red: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let t = params.t;
    let hd = params.hd;
    let dv = params.dv;
    // Depends only on uniform values: the early return keeps barriers in uniform control flow.
    let row = wid.x + wid.y * nwg.x;
    if (row >= params.nh * t) {
        return;
    }
    let h = row / t;
    let tq = row % t;
    let kh = h / (params.nh / params.kvh);
    for (var d = lid; d < hd; d += WG) {
        qrow[d] = q[row * hd + d];
    }
    workgroupBarrier();

    var lo = 0u;
    if (params.window > 0u && tq + 1u > params.window) {
        lo = tq + 1u - params.window;
    }
    var m = NEG;
    var l = 0.0;
    var acc: array<f32, PER>;
    for (var kb = lo; kb <= tq; kb += WG) {
        let j = kb + lid;
        let valid = j <= tq;
        var s = NEG;
        if (valid) {
            var dot = 0.0;
            let kbase = (kh * t + j) * hd;
            for (var d = 0u; d < hd; d++) {
                dot += qrow[d] * k[kbase + d];
            }
            s = dot * params.scale;
        }
        red[lid] = s;
        workgroupBarrier();
        for (var w = WG / 2u; w > 0u; w >>= 1u) {
            if (lid < w) {
                red[lid] = max(red[lid], red[lid + w]);
            }
            workgroupBarrier();
        }
        let m_new = max(m, red[0]);
        workgroupBarrier();
        var pj = 0.0;
        if (valid) {
            pj = exp(s - m_new);
        }
        p[lid] = pj;
        red[lid] = pj;
        workgroupBarrier();
        for (var w = WG / 2u; w > 0u; w >>= 1u) {
            if (lid < w) {
                red[lid] += red[lid + w];
            }
            workgroupBarrier();
        }
        let corr = exp(m - m_new);
        l = l * corr + red[0];
        let nk = min(WG, tq + 1u - kb);
        for (var i = 0u; i < PER; i++) {
            let d = lid + i * WG;
            if (d < dv) {
                var a = acc[i] * corr;
                for (var jj = 0u; jj < nk; jj++) {
                    a += p[jj] * v[(kh * t + kb + jj) * dv + d];
                }
                acc[i] = a;
            }
        }
        m = m_new;
        // p and red are rewritten by the next block: wait until everyone has read them.
        workgroupBarrier();
    }
    for (var i = 0u; i < PER; i++) {
        let d = lid + i * WG;
        if (d < dv) {
            o[row * dv + d] = acc[i] / l;
        }
    }
}
