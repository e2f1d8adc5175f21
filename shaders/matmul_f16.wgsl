// matmul_f16: c = a · wᵀ with the weight matrix stored in half precision, two f16 per u32
// (a `Linear` whose weights take half the memory and bandwidth); products and sums in f32.
//
// Bindings, in argument order:
//   @binding(0) a:      array<f32>                 [M, K]
//   @binding(1) w:      array<u32>                 [N, KW]  KW = ceil(K / 2): element (n, k) is
//                                                  half k % 2 (low first) of word n * KW + k / 2
//   @binding(2) c:      array<f32>                 [M, N]
//   @binding(3) params: uniform MatmulF16Params    { m, k, n, kw, tiles_m, tiles_n }
//
// Halves are decoded with `unpack2x16float`, core WGSL, so this runs on every adapter (the
// `shader-f16` feature, arithmetic in f16, is not needed for half-precision storage).
//
// Tiling as in matmul.wgsl: a 16 x 16 workgroup computes a 64 x 64 tile of c, each thread a
// 4 x 4 register block, K walked 16 at a time through workgroup copies of both tiles; loads
// outside the matrices read 0 and writes outside c are dropped. One workgroup per (tile row,
// tile column), folded into (x, y).

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

var<workgroup> a_tile: array<f32, 1024>; // [BM, BK]
var<workgroup> b_tile: array<f32, 1024>; // [BK, BN]

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
            var av = 0.0;
            if (ar < m && ak < k) {
                av = a[ar * k + ak];
            }
            a_tile[f] = av;
            // w [N, K] in halves: f = nn * BK + kk, stored transposed into [BK, BN].
            let nn = f / BK;
            let kk = f % BK;
            let bn = col0 + nn;
            let bk = k0 + kk;
            var bv = 0.0;
            if (bk < k && bn < n) {
                bv = unpack2x16float(w[bn * params.kw + bk / 2u])[bk % 2u];
            }
            b_tile[kk * BN + nn] = bv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            var ar: array<f32, 4>;
            var br: array<f32, 4>;
            for (var i = 0u; i < TM; i++) {
                ar[i] = a_tile[(ty + TS * i) * BK + kk];
                br[i] = b_tile[kk * BN + tx + TS * i];
            }
            for (var i = 0u; i < TM; i++) {
                for (var j = 0u; j < TM; j++) {
                    acc[i][j] = fma(ar[i], br[j], acc[i][j]);
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
