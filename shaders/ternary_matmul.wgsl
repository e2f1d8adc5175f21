// ternary_matmul: y = x · Tᵀ for ternary T ∈ {-1, 0, +1}^{N×K} read straight from its packed
// words, with additions and subtractions only (no multiplies, no unpacked copy of the weights).
//
// Bindings, in argument order:
//   @binding(0) x:      array<f32>              [M, K]
//   @binding(1) w:      array<u32>              [N, W]  W = ceil(K / 16) words per row
//   @binding(2) y:      array<f32>              [M, N]
//   @binding(3) params: uniform TernaryParams   { m, k, n, wpr = W, tiles_m, tiles_n }
//
// Packing (`backend::ternary`): weight j of a row is bits 2(j % 16).. of word j / 16; code 0 → 0,
// 1 → +1, 2 → −1. Code 3 is invalid: the host validates weights once when they are loaded (a
// kernel cannot report errors), and this kernel adds nothing for it. Padding past K meets x = 0.
//
// Tiling: a workgroup of 256 threads computes a BM x BN = 16 x 64 tile of y. K is walked BKW = 8
// words (BK = 128 weights) at a time through workgroup copies of the x tile [BM, BK] and of the
// packed tile [BN, BKW]. Thread (rg, col) = (lid / 64, lid % 64) owns column col and rows
// rg + 4i, i < 4: each packed word it decodes serves 4 rows, and the 64 threads sharing a row
// read the same x word (a broadcast). Every output is summed over j = 0..K in order, exactly like
// the CPU reference (`ternary_matmul_host`), so the two agree bit for bit on valid weights;
// integer-valued x (8-bit activations) gives exact sums.
// Dispatch: one workgroup per (tile row, tile column), linearised as tile_row * tiles_n +
// tile_col and folded into (x, y) when too many for x.

struct TernaryParams {
    m: u32,
    k: u32,
    n: u32,
    wpr: u32,
    tiles_m: u32,
    tiles_n: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> params: TernaryParams;

const BM: u32 = 16u;
const BN: u32 = 64u;
const BKW: u32 = 8u;
const BK: u32 = 128u; // BKW * 16
const WG: u32 = 256u;
// Row groups (WG / BN) and rows per thread (BM / RG).
const RG: u32 = 4u;
const TM: u32 = 4u;
// Packed tile rows are padded to BKW + 1 words so the 64 columns' reads spread over the banks.
const WSTRIDE: u32 = 9u;

var<workgroup> x_tile: array<f32, 2048>; // [BM, BK]
var<workgroup> w_tile: array<u32, 576>;  // [BN, WSTRIDE]

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let m = params.m;
    let k = params.k;
    let n = params.n;
    let wpr = params.wpr;
    // Depends only on uniform values: the early return keeps barriers in uniform control flow.
    let tile = wid.x + wid.y * nwg.x;
    if (tile >= params.tiles_m * params.tiles_n) {
        return;
    }
    let row0 = (tile / params.tiles_n) * BM;
    let col0 = (tile % params.tiles_n) * BN;
    let col = lid % BN;
    let rg = lid / BN;

    var acc: array<f32, 4>; // [TM], zero-initialised
    let steps = (wpr + BKW - 1u) / BKW;
    for (var s = 0u; s < steps; s++) {
        let kw0 = s * BKW;
        let k0 = kw0 * 16u;
        // x tile: 2048 values, 8 per thread; consecutive threads read consecutive k.
        for (var l = 0u; l < 8u; l++) {
            let f = lid + l * WG;
            let r = row0 + f / BK;
            let kk = k0 + f % BK;
            var v = 0.0;
            if (r < m && kk < k) {
                v = x[r * k + kk];
            }
            x_tile[f] = v;
        }
        // Packed tile: 512 words, 2 per thread; runs of BKW consecutive words per weight row.
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
            // 16 zero weights (sparse rows, the padding, past W): nothing to add.
            if (word == 0u) {
                continue;
            }
            for (var j = 0u; j < 16u; j++) {
                let code = (word >> (2u * j)) & 3u;
                let kk = kw * 16u + j;
                for (var i = 0u; i < TM; i++) {
                    let v = x_tile[(rg + RG * i) * BK + kk];
                    // +v for code 1, -v for code 2, +0 (no change) for 0 and the invalid 3.
                    acc[i] += select(select(0.0, -v, code == 2u), v, code == 1u);
                }
            }
        }
        // The next step overwrites the tiles: wait until everyone is done reading them.
        workgroupBarrier();
    }

    let c = col0 + col;
    for (var i = 0u; i < TM; i++) {
        let r = row0 + rg + RG * i;
        if (r < m && c < n) {
            y[r * n + c] = acc[i];
        }
    }
}
