// matmul_i8: y = x · Wᵀ for W int8 per output channel, read straight from its packed codes:
// y[m, n] = s[n] · Σ_k x[m, k] · c[n, k], products and sums in f32, the scale applied once per output.
//
// Bindings, in argument order:
//   @binding(0) x:      array<f32>           [M, K]
//   @binding(1) w:      array<u32>           [N, W]  W = ceil(K / 4) words per row
//   @binding(2) s:      array<f32>           [N]
//   @binding(3) y:      array<f32>           [M, N]
//   @binding(4) params: uniform I8Params     { m, k, n, wpr = W, tiles_m, tiles_n }
//
// Packing (`backend::int8`): code j of a row is byte j % 4 of word j / 4, two's complement, decoded
// with the signed `extractBits`. Byte 0x80 (−128) is invalid: the host validates weights once when
// they are loaded (a kernel cannot report errors). Padding past K is zero and meets x = 0.
//
// Tiling: as `ternary_matmul.wgsl`. A workgroup of 256 threads computes a BM x BN = 16 x 64 tile
// of y, walking K BKW = 8 words (BK = 32 codes) at a time through workgroup copies of the x tile
// [BM, BK] and of the packed tile [BN, BKW]. Thread (rg, col) = (lid / 64, lid % 64) owns column
// col and rows rg + 4i, i < 4: each word it decodes serves 4 rows. Sums run over k in order.
// Dispatch: one workgroup per (tile row, tile column), linearised as tile_row * tiles_n +
// tile_col and folded into (x, y) when too many for x.

struct I8Params {
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
@group(0) @binding(2) var<storage, read> s: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> params: I8Params;

const BM: u32 = 16u;
const BN: u32 = 64u;
const BKW: u32 = 8u;
const BK: u32 = 32u; // BKW * 4
const WG: u32 = 256u;
const RG: u32 = 4u;
const TM: u32 = 4u;
// Packed tile rows padded to BKW + 1 words so the 64 columns' reads spread over the banks.
const WSTRIDE: u32 = 9u;

var<workgroup> x_tile: array<f32, 512>; // [BM, BK]
var<workgroup> w_tile: array<u32, 576>; // [BN, WSTRIDE]

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
    for (var st = 0u; st < steps; st++) {
        let kw0 = st * BKW;
        let k0 = kw0 * 4u;
        // x tile: 512 values, 2 per thread; consecutive threads read consecutive k.
        for (var l = 0u; l < 2u; l++) {
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
            // Four zero codes (or past W): nothing to add.
            if (word == 0u) {
                continue;
            }
            let sw = bitcast<i32>(word);
            for (var j = 0u; j < 4u; j++) {
                let c = f32(extractBits(sw, 8u * j, 8u));
                let kk = kw * 4u + j;
                for (var i = 0u; i < TM; i++) {
                    acc[i] += x_tile[(rg + RG * i) * BK + kk] * c;
                }
            }
        }
        // The next step overwrites the tiles: wait until everyone is done reading them.
        workgroupBarrier();
    }

    let c = col0 + col;
    if (c < n) {
        let sc = s[c];
        for (var i = 0u; i < TM; i++) {
            let r = row0 + rg + RG * i;
            if (r < m) {
                y[r * n + c] = sc * acc[i];
            }
        }
    }
}
