// ternary_matmul_i8: the output half of a BitLinear: 8-bit activations times packed ternary
// weights with integer additions and subtractions only, then one dequantising scale per output:
//   y[r, c] = (Σ_j q[r, j] · T[c, j]) / s[r] · β
//
// Bindings, in argument order:
//   @binding(0) q:      array<u32>                [M, ceil(K / 4)]  signed bytes (quantize_i8.wgsl)
//   @binding(1) scales: array<f32>                [M]
//   @binding(2) w:      array<u32>                [N, W]  W = ceil(K / 16), 2-bit codes
//   @binding(3) y:      array<f32>                [M, N]
//   @binding(4) params: uniform TernaryI8Params   { m, k, n, wpr = W, qwords, tiles_m, tiles_n, beta }
//
// Weight packing as in ternary_matmul.wgsl (code 0 → 0, 1 → +1, 2 → −1; 3 never reaches here:
// weights are validated on the host at load time). The sums are i32 and exact (|Σ| ≤ 128 · K),
// so the result equals the CPU composition's exact f32 sums up to the final division.
//
// Tiling: a workgroup of 256 threads computes a BM x BN = 16 x 64 tile of y, walking K 128
// weights (8 weight words, 32 activation words) at a time through workgroup copies; thread
// (rg, col) = (lid / 64, lid % 64) owns column col and rows rg + 4i, i < 4. Dispatch: one
// workgroup per (tile row, tile column), folded into (x, y).

struct TernaryI8Params {
    m: u32,
    k: u32,
    n: u32,
    wpr: u32,
    qwords: u32,
    tiles_m: u32,
    tiles_n: u32,
    beta: f32,
}

@group(0) @binding(0) var<storage, read> q: array<u32>;
@group(0) @binding(1) var<storage, read> scales: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> params: TernaryI8Params;

const BM: u32 = 16u;
const BN: u32 = 64u;
const BKW: u32 = 8u;   // weight words per step
const BK: u32 = 128u;  // weights per step (BKW * 16)
const BQW: u32 = 32u;  // activation words per row per step (BK / 4)
const WG: u32 = 256u;
const RG: u32 = 4u;
const TM: u32 = 4u;
const WSTRIDE: u32 = 9u;

var<workgroup> x_tile: array<i32, 2048>; // [BM, BK] unpacked activations
var<workgroup> w_tile: array<u32, 576>;  // [BN, WSTRIDE]

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let m = params.m;
    let n = params.n;
    let wpr = params.wpr;
    let tile = wid.x + wid.y * nwg.x;
    if (tile >= params.tiles_m * params.tiles_n) {
        return;
    }
    let row0 = (tile / params.tiles_n) * BM;
    let col0 = (tile % params.tiles_n) * BN;
    let col = lid % BN;
    let rg = lid / BN;

    var acc: array<i32, 4>;
    let steps = (wpr + BKW - 1u) / BKW;
    for (var s = 0u; s < steps; s++) {
        let kw0 = s * BKW;
        let qw0 = s * BQW;
        // Activation tile: BM rows x 32 words = 512 words, 2 per thread, unpacked to 4 values each.
        for (var l = 0u; l < 2u; l++) {
            let f = lid + l * WG;
            let r = row0 + f / BQW;
            let qw = f % BQW;
            var word = 0u;
            if (r < m && qw0 + qw < params.qwords) {
                word = q[r * params.qwords + qw0 + qw];
            }
            let dst = (f / BQW) * BK + qw * 4u;
            for (var b = 0u; b < 4u; b++) {
                // Sign-extend byte b: shift it to the top, then arithmetic-shift back down.
                x_tile[dst + b] = bitcast<i32>(word << (24u - 8u * b)) >> 24u;
            }
        }
        for (var l = 0u; l < 2u; l++) {
            let f = lid + l * WG;
            let c = f / BKW;
            let kw = f % BKW;
            var word = 0u;
            if (col0 + c < n && kw0 + kw < wpr) {
                word = w[(col0 + c) * wpr + kw0 + kw];
            }
            w_tile[c * WSTRIDE + kw] = word;
        }
        workgroupBarrier();

        for (var kw = 0u; kw < BKW; kw++) {
            let word = w_tile[col * WSTRIDE + kw];
            if (word == 0u) {
                continue;
            }
            for (var j = 0u; j < 16u; j++) {
                let code = (word >> (2u * j)) & 3u;
                let kk = kw * 16u + j;
                for (var i = 0u; i < TM; i++) {
                    let v = x_tile[(rg + RG * i) * BK + kk];
                    acc[i] += select(select(0, -v, code == 2u), v, code == 1u);
                }
            }
        }
        workgroupBarrier();
    }

    let c = col0 + col;
    for (var i = 0u; i < TM; i++) {
        let r = row0 + rg + RG * i;
        if (r < m && c < n) {
            y[r * n + c] = f32(acc[i]) / scales[r] * params.beta;
        }
    }
}
