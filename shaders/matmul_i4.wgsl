// matmul_i4: y = x · Wᵀ for W int4 per (output channel, group of g inputs), read straight from its
// packed codes: y[m, n] = Σ_gr s[n, gr] · Σ_{k ∈ gr} x[m, k] · c[n, k], products and sums in f32,
// each group's sum scaled once.
//
// Bindings, in argument order:
//   @binding(0) x:      array<f32>           [M, K]
//   @binding(1) w:      array<u32>           [N, W]  W = K / 8 words per row
//   @binding(2) s:      array<f32>           [N, G]  G = K / g groups per row
//   @binding(3) y:      array<f32>           [M, N]
//   @binding(4) params: uniform I4Params     { m, k, n, wpr = W, tiles_m, tiles_n, groups = G, gw = g / 8 }
//
// Packing (`compress::quant::int4`): code j of a row is nibble j % 8 of word j / 8, 4-bit two's
// complement, decoded with the signed `extractBits`. Nibble 0x8 (−8) is invalid: the host validates
// weights once when they are loaded. g is a multiple of 8, so a word never straddles two groups.
//
// Tiling: as `ternary_matmul.wgsl`. A workgroup of 256 threads computes a BM x BN = 16 x 64 tile
// of y, walking K BKW = 8 words (BK = 64 codes) at a time through workgroup copies of the x tile
// [BM, BK] and of the packed tile [BN, BKW]. Thread (rg, col) = (lid / 64, lid % 64) owns column
// col and rows rg + 4i, i < 4, and keeps a running sum of the current group per row, scaled and
// added to the output's sum when the group's last word is done.
// Dispatch: one workgroup per (tile row, tile column), linearised as tile_row * tiles_n +
// tile_col and folded into (x, y) when too many for x.

struct I4Params {
    m: u32,
    k: u32,
    n: u32,
    wpr: u32,
    tiles_m: u32,
    tiles_n: u32,
    groups: u32,
    gw: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> s: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> params: I4Params;

const BM: u32 = 16u;
const BN: u32 = 64u;
const BKW: u32 = 8u;
const BK: u32 = 64u; // BKW * 8
const WG: u32 = 256u;
const RG: u32 = 4u;
const TM: u32 = 4u;
const WSTRIDE: u32 = 9u;

var<workgroup> x_tile: array<f32, 1024>; // [BM, BK]
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
    let tile = wid.x + wid.y * nwg.x;
    if (tile >= params.tiles_m * params.tiles_n) {
        return;
    }
    let row0 = (tile / params.tiles_n) * BM;
    let col0 = (tile % params.tiles_n) * BN;
    let col = lid % BN;
    let rg = lid / BN;
    let c = col0 + col;

    var acc: array<f32, 4>;  // [TM] output sums
    var gacc: array<f32, 4>; // [TM] sums of the current group
    let steps = (wpr + BKW - 1u) / BKW;
    for (var st = 0u; st < steps; st++) {
        let kw0 = st * BKW;
        let k0 = kw0 * 8u;
        // x tile: 1024 values, 4 per thread.
        for (var l = 0u; l < 4u; l++) {
            let f = lid + l * WG;
            let r = row0 + f / BK;
            let kk = k0 + f % BK;
            var v = 0.0;
            if (r < m && kk < k) {
                v = x[r * k + kk];
            }
            x_tile[f] = v;
        }
        for (var l = 0u; l < 2u; l++) {
            let f = lid + l * WG;
            let cc = f / BKW;
            let kw = f % BKW;
            var word = 0u;
            if (col0 + cc < n && kw0 + kw < wpr) {
                word = w[(col0 + cc) * wpr + kw0 + kw];
            }
            w_tile[cc * WSTRIDE + kw] = word;
        }
        workgroupBarrier();

        for (var kw = 0u; kw < BKW; kw++) {
            let word = w_tile[col * WSTRIDE + kw];
            if (word != 0u) {
                let sw = bitcast<i32>(word);
                for (var j = 0u; j < 8u; j++) {
                    let code = f32(extractBits(sw, 4u * j, 4u));
                    let kk = kw * 8u + j;
                    for (var i = 0u; i < TM; i++) {
                        gacc[i] += x_tile[(rg + RG * i) * BK + kk] * code;
                    }
                }
            }
            // The last word of a group: scale its sum into the output's.
            let gwi = kw0 + kw;
            if (gwi < wpr && (gwi + 1u) % params.gw == 0u) {
                var sc = 0.0;
                if (c < n) {
                    sc = s[c * params.groups + gwi / params.gw];
                }
                for (var i = 0u; i < TM; i++) {
                    acc[i] += sc * gacc[i];
                    gacc[i] = 0.0;
                }
            }
        }
        workgroupBarrier();
    }

    if (c < n) {
        for (var i = 0u; i < TM; i++) {
            let r = row0 + rg + RG * i;
            if (r < m) {
                y[r * n + c] = acc[i];
            }
        }
    }
}
