// matmul: c = a · b, or a · bᵀ when `params.trans_b` is 1, batched over B.
//
// Bindings, in argument order:
//   @binding(0) a:      array<f32>             [B, M, K]   (B = 1 for a rank-2 a)
//   @binding(1) b:      array<f32>             [B, K, N] or [K, N]; with trans_b [B, N, K] or [N, K]
//   @binding(2) c:      array<f32>             [B, M, N]
//   @binding(3) params: uniform MatmulParams   { m, k, n, batch, b_batch_stride, trans_b,
//                                                tiles_m, tiles_n }
//
// A rank-2 b is shared by every batch entry: the host passes b_batch_stride = 0 (else K * N).
//
// Tiling: a workgroup of 16 x 16 threads computes a BM x BN = 64 x 64 tile of c, each thread a
// 4 x 4 register block (rows ty + 16 i, columns tx + 16 j: strided, so neighbouring threads read
// neighbouring shared-memory words). The K dimension is walked BK = 16 at a time through
// workgroup-shared copies of the a and b tiles. Loads outside [M, K] / [K, N] read as 0 and
// writes outside [M, N] are dropped, so no size has to be a multiple of a tile.
//
// Dispatch: one workgroup per (batch, tile row, tile column), linearised as
// ((batch * tiles_m) + tile_row) * tiles_n + tile_col and folded into (x, y) when too many for x.

struct MatmulParams {
    m: u32,
    k: u32,
    n: u32,
    batch: u32,
    b_batch_stride: u32,
    trans_b: u32,
    tiles_m: u32,
    tiles_n: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<uniform> params: MatmulParams;

const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;
// Threads per side of the 16 x 16 workgroup, and outputs per thread per side (BM = TS * TM).
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
    let tiles_per_batch = params.tiles_m * params.tiles_n;
    // Depends only on uniform values: the early return keeps barriers in uniform control flow.
    let tile = wid.x + wid.y * nwg.x;
    if (tile >= tiles_per_batch * params.batch) {
        return;
    }
    let bi = tile / tiles_per_batch;
    let t = tile % tiles_per_batch;
    let row0 = (t / params.tiles_n) * BM;
    let col0 = (t % params.tiles_n) * BN;
    let a_off = bi * m * k;
    let b_off = bi * params.b_batch_stride;
    let c_off = bi * m * n;
    let tx = lid3.x;
    let ty = lid3.y;

    var acc: array<array<f32, 4>, 4>; // [TM, TM] zero-initialised
    let k_tiles = (k + BK - 1u) / BK;
    for (var kt = 0u; kt < k_tiles; kt++) {
        let k0 = kt * BK;
        // Each thread loads 1024 / 256 = 4 elements of each tile; consecutive threads read
        // consecutive addresses of the source buffer in every layout.
        for (var l = 0u; l < 4u; l++) {
            let f = lid + l * THREADS;
            // a tile [BM, BK]: f = r * BK + kk.
            let ar = row0 + f / BK;
            let ak = k0 + f % BK;
            var av = 0.0;
            if (ar < m && ak < k) {
                av = a[a_off + ar * k + ak];
            }
            a_tile[f] = av;

            var bv = 0.0;
            if (params.trans_b == 0u) {
                // b [K, N]: f = kk * BN + nn, contiguous along N.
                let bk = k0 + f / BN;
                let bn = col0 + f % BN;
                if (bk < k && bn < n) {
                    bv = b[b_off + bk * n + bn];
                }
                b_tile[f] = bv;
            } else {
                // b [N, K]: f = nn * BK + kk, contiguous along K; stored transposed into [BK, BN].
                let nn = f / BK;
                let kk = f % BK;
                let bn = col0 + nn;
                let bk = k0 + kk;
                if (bk < k && bn < n) {
                    bv = b[b_off + bn * k + bk];
                }
                b_tile[kk * BN + nn] = bv;
            }
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
        // The next iteration overwrites the tiles: wait until everyone is done reading them.
        workgroupBarrier();
    }

    for (var i = 0u; i < TM; i++) {
        let r = row0 + ty + TS * i;
        for (var j = 0u; j < TM; j++) {
            let col = col0 + tx + TS * j;
            if (r < m && col < n) {
                c[c_off + r * n + col] = acc[i][j];
            }
        }
    }
}
