// matmul_f16_arith: c = a · wᵀ with the weight matrix stored in half precision (the same packed
// pairs as matmul_f16.wgsl) and the multiplies done in f16; needs the `shader-f16` feature.
//
// Bindings, in argument order (identical to matmul_f16.wgsl, so one packed weight serves both):
//   @binding(0) a:      array<f32>                 [M, K]
//   @binding(1) w:      array<u32>                 [N, KW]  KW = ceil(K / 2): element (n, k) is
//                                                  half k % 2 (low first) of word n * KW + k / 2
//   @binding(2) c:      array<f32>                 [M, N]
//   @binding(3) params: uniform MatmulF16Params    { m, k, n, kw, tiles_m, tiles_n }
//
// Arithmetic: each a element is rounded to f16 once, as it is copied into workgroup memory; each
// product a_h * w_h is an f16 multiply (rounded to f16); products are summed in f32. An f16
// running sum would lose the sum's low bits after 2^11 units of its magnitude (2048 + 1 is 2048
// in f16), so only the products are half; every term then carries a relative error of about two
// f16 roundings (2^-10) and the sum that of an f32 dot product (backend::tolerance::f16_arith_matmul).
// Both the a value and each product must lie within f16's range (|v| <= 65504): beyond it the
// value is infinite or undefined, so this kernel is for weights and activations of ordinary size.
//
// Tiling as in matmul_f16.wgsl: a 16 x 16 workgroup computes a 64 x 64 tile of c, each thread a
// 4 x 4 register block, K walked 16 at a time through workgroup copies of both tiles (here in f16,
// half the workgroup memory); loads outside the matrices read 0 and writes outside c are dropped.
// One workgroup per (tile row, tile column), folded into (x, y).

enable f16;

struct MatmulF16Params {
    m: u32,
    k: u32,
    n: u32,
    kw: u32,
    tiles_m: u32,
    tiles_n: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<uniform> params: MatmulF16Params;

const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;
const TS: u32 = 16u;
const TM: u32 = 4u;
const THREADS: u32 = 256u;

var<workgroup> a_tile: array<f16, 1024>; // [BM, BK]
var<workgroup> b_tile: array<f16, 1024>; // [BK, BN]

@compute @workgroup_size(16, 16, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid3: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let m = params.m;
    let k = params.k;
    let n = params.n;
    let tile = wid.x + wid.y * nwg.x;
    if (tile >= params.tiles_m * params.tiles_n) {
        return;
    }
    let row0 = (tile / params.tiles_n) * BM;
    let col0 = (tile % params.tiles_n) * BN;
    let tx = lid3.x;
    let ty = lid3.y;

    var acc: array<array<f32, 4>, 4>;
    let k_tiles = (k + BK - 1u) / BK;
    for (var kt = 0u; kt < k_tiles; kt++) {
        let k0 = kt * BK;
        for (var l = 0u; l < 4u; l++) {
            let f = lid + l * THREADS;
            let ar = row0 + f / BK;
            let ak = k0 + f % BK;
            var av = 0.0h;
            if (ar < m && ak < k) {
                av = f16(a[ar * k + ak]);
            }
            a_tile[f] = av;
            // w [N, K] in halves: f = nn * BK + kk, stored transposed into [BK, BN]. Decoded
            // through f32 and back, which is exact (naga 30 rejects `bitcast<vec2<f16>>(word)[i]`).
            let nn = f / BK;
            let kk = f % BK;
            let bn = col0 + nn;
            let bk = k0 + kk;
            var bv = 0.0h;
            if (bk < k && bn < n) {
                bv = f16(unpack2x16float(w[bn * params.kw + bk / 2u])[bk % 2u]);
            }
            b_tile[kk * BN + nn] = bv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            var ar: array<f16, 4>;
            var br: array<f16, 4>;
            for (var i = 0u; i < TM; i++) {
                ar[i] = a_tile[(ty + TS * i) * BK + kk];
                br[i] = b_tile[kk * BN + tx + TS * i];
            }
            for (var i = 0u; i < TM; i++) {
                for (var j = 0u; j < TM; j++) {
                    // The product rounded to f16, then widened exactly and added in f32.
                    acc[i][j] += f32(ar[i] * br[j]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < TM; i++) {
        let r = row0 + ty + TS * i;
        for (var j = 0u; j < TM; j++) {
            let col = col0 + tx + TS * j;
            if (r < m && col < n) {
                c[r * n + col] = acc[i][j];
            }
        }
    }
}
