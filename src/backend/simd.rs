//! The wasm CPU path's f32 matmul: register-tiled SIMD128 micro-kernels with a portable scalar
//! twin, and weights packed once.
//!
//! Why hand-written: candle-core's matmul (the `gemm` crate) runs far below what SIMD128 allows in
//! wasm (see README, "Measured numbers"). The layout:
//!
//! - b is read in `NR` = 8-column panels, `[K, NR]` row-major. A weight (the right operand of
//!   `x · Wᵀ`, W `[N, K]`) is packed into such panels once and kept with its tensor
//!   ([`PackedB`], cached by [`super::cpu::CpuTensor`]); an activation b in `[K, N]` layout is read
//!   in place (its panels are just 8-column strips with row stride N), and only a transposed
//!   activation (attention's `q · kᵀ`) or the last, partial strip is packed per call.
//! - a is packed per row block into `[K, R]` groups of R rows (cheap: each is reused by every b
//!   panel), read with one `v128.load32_splat` per row and step at constant offsets.
//! - The output is cut into `R x 4V` tiles held in `R·V` f32x4 accumulators: 4 x 8 (8
//!   accumulators, 11 of the 16 xmm registers V8 has on x86-64, one of which it keeps as scratch)
//!   for blocks of 4 rows; fewer rows only where M runs out, then wider (2 x 16, 1 x 32) so a
//!   matrix-vector product still has 8 independent sums in flight.
//!
//! Every output is `((0 + a_i0·b_0j) + a_i1·b_1j) + …` in order of p, each product rounded, then
//! added (wasm SIMD128 has no fused multiply-add and Rust does not contract `x += a * b`). So
//! every tile shape, the SIMD128 kernels and the scalar twin give the same bits, a row's result
//! does not depend on M or on its position (batch-invariant), and the same inputs always give the
//! same bits. candle (native) sums in another order; both are within `backend::tolerance`.
//!
//! Shapes use the crate's alphabet: batch `B`, rows `M`, inner `K`, columns `N`.

/// Columns of one b panel (two f32x4).
pub const NR: usize = 8;
/// Rows of the main tile.
pub const MR: usize = 4;
/// Bytes of a per row block: a block's `[MC, K]` slice of a (MC = this / 4K rows, a multiple of
/// `MR`, at least `MR`) stays in L1 beside one b panel while every panel passes.
pub const A_BLOCK_BYTES: usize = 16 << 10;

/// The problem size: a `[B, M, K]` (or `[M, K]` with `batch = 1`), output `[B, M, N]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    pub batch: usize,
    pub m: usize,
    pub k: usize,
    pub n: usize,
}

impl Dims {
    /// Multiply-adds counted as two flops.
    pub fn flops(&self) -> f64 {
        2.0 * (self.batch * self.m * self.k * self.n) as f64
    }
}

/// Whether [`matmul`] and [`matmul_packed`] run the SIMD128 kernels in this build (wasm32);
/// elsewhere they run the scalar twin.
pub const SIMD128: bool = cfg!(target_arch = "wasm32");

/// b `[K, N]` (or the transpose of a `[N, K]` b) in `NR`-column panels: panel q holds columns
/// `q·NR .. q·NR + NR` as `[K, NR]` row-major at `data[q·K·NR ..]`, zero past column N.
pub struct PackedB {
    data: Vec<f32>,
    k: usize,
    n: usize,
}

impl std::fmt::Debug for PackedB {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedB {{ k: {}, n: {} }}", self.k, self.n)
    }
}

impl PackedB {
    /// Pack all of b: `[K, N]`, or `[N, K]` with `trans_b` (a `Linear` weight).
    pub fn pack(b: &[f32], k: usize, n: usize, trans_b: bool) -> Self {
        assert_eq!(b.len(), k * n, "b holds {} floats, k = {k}, n = {n}", b.len());
        Self::pack_cols(b, k, n, trans_b, 0, n)
    }

    /// Pack columns `j0..j1` of b's `[K, N]` view.
    fn pack_cols(b: &[f32], k: usize, n: usize, trans_b: bool, j0: usize, j1: usize) -> Self {
        let mut p = PackedB { data: Vec::new(), k, n: 0 };
        p.repack(b, k, n, trans_b, j0, j1);
        p
    }

    /// [`Self::pack_cols`] into this pack's buffer (batched products reuse one buffer).
    fn repack(&mut self, b: &[f32], k: usize, n: usize, trans_b: bool, j0: usize, j1: usize) {
        let w = j1 - j0;
        let data = &mut self.data;
        data.clear();
        data.resize(w.div_ceil(NR) * k * NR, 0.0);
        for j in 0..w {
            let panel = &mut data[(j / NR) * k * NR..];
            let col = j % NR;
            if trans_b {
                // Column j of the view is row j of the [N, K] b.
                for (p, &v) in b[(j0 + j) * k..(j0 + j + 1) * k].iter().enumerate() {
                    panel[p * NR + col] = v;
                }
            } else {
                for p in 0..k {
                    panel[p * NR + col] = b[p * n + j0 + j];
                }
            }
        }
        (self.k, self.n) = (k, w);
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn n(&self) -> usize {
        self.n
    }

    /// The packed floats (tests compare addresses to see that a pack was reused).
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    fn view(&self) -> BView {
        BView { ptr: self.data.as_ptr(), ldb: NR, pstride: self.k * NR, panels: self.n.div_ceil(NR), cols: self.n }
    }
}

/// Where a kernel reads b: element (p, j) of the view is at
/// `ptr + p·ldb + (j / NR)·pstride + j % NR`; `panels` whole panels may be read, of which the first
/// `cols` columns are written to c.
#[derive(Clone, Copy)]
struct BView {
    ptr: *const f32,
    ldb: usize,
    pstride: usize,
    panels: usize,
    cols: usize,
}

/// A micro-kernel: the `R x 4V` tile `c[r·ldc + j] = Σ_p a[p·R + r] · b(p, j)` (overwritten),
/// `p` in `0..k`: a is the tile's R rows packed as `[K, R]`, b as in [`BView`] starting at the
/// tile's first panel.
type Kernel = unsafe fn(k: usize, a: *const f32, b: *const f32, ldb: usize, pstride: usize, c: *mut f32, ldc: usize);

/// The scalar twin of every SIMD128 kernel: the same products, summed in the same order.
unsafe fn scalar_kernel<const R: usize, const V: usize>(k: usize, a: *const f32, b: *const f32, ldb: usize, pstride: usize, c: *mut f32, ldc: usize) {
    for r in 0..R {
        for j in 0..4 * V {
            let bj = b.add((j / NR) * pstride + j % NR);
            let mut s = 0f32;
            for p in 0..k {
                s += *a.add(p * R + r) * *bj.add(p * ldb);
            }
            *c.add(r * ldc + j) = s;
        }
    }
}

/// The kernel for an `R x 4V` tile; `simd` picks SIMD128 (wasm32 only) or the scalar twin.
fn kernel(simd: bool, r: usize, v: usize) -> Kernel {
    #[cfg(target_arch = "wasm32")]
    if simd {
        return match (r, v) {
            (4, 2) => wasm::k4x8,
            (3, 2) => wasm::k3x8,
            (2, 4) => wasm::k2x16,
            (2, 2) => wasm::k2x8,
            (1, 8) => wasm::k1x32,
            (1, 4) => wasm::k1x16,
            (1, 2) => wasm::k1x8,
            _ => unreachable!("no {r} x {v} kernel"),
        };
    }
    let _ = simd;
    match (r, v) {
        (4, 2) => scalar_kernel::<4, 2>,
        (3, 2) => scalar_kernel::<3, 2>,
        (2, 4) => scalar_kernel::<2, 4>,
        (2, 2) => scalar_kernel::<2, 2>,
        (1, 8) => scalar_kernel::<1, 8>,
        (1, 4) => scalar_kernel::<1, 4>,
        (1, 2) => scalar_kernel::<1, 2>,
        _ => unreachable!("no {r} x {v} kernel"),
    }
}

/// One tile: `r` rows packed as `[K, r]` at `a`, panels from `q`; a tile reaching past `b.cols`
/// goes through a scratch tile and only its valid columns are copied.
#[allow(clippy::too_many_arguments)]
unsafe fn tile(simd: bool, r: usize, v: usize, k: usize, a: *const f32, b: BView, q: usize, c: *mut f32, ldc: usize) {
    let f = kernel(simd, r, v);
    let (col, width) = (q * NR, 4 * v);
    let bq = b.ptr.add(q * b.pstride);
    if col + width <= b.cols {
        f(k, a, bq, b.ldb, b.pstride, c.add(col), ldc);
    } else {
        let mut scratch = [0f32; 32];
        assert!(r * width <= scratch.len());
        f(k, a, bq, b.ldb, b.pstride, scratch.as_mut_ptr(), width);
        let valid = b.cols - col;
        for i in 0..r {
            std::ptr::copy_nonoverlapping(scratch.as_ptr().add(i * width), c.add(i * ldc + col), valid);
        }
    }
}

/// Pack `r` rows of a (row stride `lda`) as `[K, r]`: `out[p·r + i] = a[i·lda + p]`, so a kernel
/// reads one step's values at constant offsets from one pointer.
unsafe fn pack_rows(a: *const f32, lda: usize, r: usize, k: usize, out: &mut [f32]) {
    for i in 0..r {
        let row = std::slice::from_raw_parts(a.add(i * lda), k);
        for (p, &x) in row.iter().enumerate() {
            out[p * r + i] = x;
        }
    }
}

/// `c[i, j] = Σ_p a[i, p] · b(p, j)` for `i < m`, `j < b.cols`: a rows at stride `lda`, c rows at
/// stride `ldc`. Callers guarantee every pointer range (see [`gemm_2d`]).
unsafe fn gemm_view(simd: bool, a: *const f32, lda: usize, m: usize, k: usize, b: BView, c: *mut f32, ldc: usize, bufs: &mut Buffers) {
    let block = (A_BLOCK_BYTES / (4 * k.max(1)) / MR * MR).max(MR);
    let pa = &mut bufs.a;
    pa.resize(block.min(m) * k, 0.0);
    for i0 in (0..m).step_by(block) {
        let mc = block.min(m - i0);
        let full = mc - mc % MR;
        // The block's rows, packed 4 at a time (the last 1-3 rows as one narrower group).
        for g in (0..mc).step_by(MR) {
            pack_rows(a.add((i0 + g) * lda), lda, MR.min(mc - g), k, &mut pa[g * k..]);
        }
        // Panels outer: one [K, NR] panel stays in L1 while the block's rows pass over it.
        for q in 0..b.panels {
            for g in (0..full).step_by(MR) {
                tile(simd, MR, 2, k, pa.as_ptr().add(g * k), b, q, c.add((i0 + g) * ldc), ldc);
            }
        }
        let rest = mc - full;
        if rest > 0 {
            // The last 1-3 rows (all of a matrix-vector product): wider tiles keep 8 sums in flight.
            let widest = match rest {
                1 => 8,
                2 => 4,
                _ => 2,
            };
            let mut q = 0;
            while q < b.panels {
                let v = [widest, 4, 2].into_iter().find(|&v| v <= widest && v / 2 <= b.panels - q).unwrap_or(2);
                tile(simd, rest, v, k, pa.as_ptr().add(full * k), b, q, c.add((i0 + full) * ldc), ldc);
                q += v / 2;
            }
        }
    }
}

/// Packing buffers, reused by the entries of a batched product.
struct Buffers {
    /// a's row groups for one block.
    a: Vec<f32>,
    /// A b packed per call (transposed, or the partial last strip).
    b: PackedB,
}

impl Buffers {
    fn new() -> Self {
        Buffers { a: Vec::new(), b: PackedB { data: Vec::new(), k: 0, n: 0 } }
    }
}

/// One 2-D product `c = a · b`: a `[M, K]`, b `[K, N]` (`[N, K]` with `trans_b`), c `[M, N]`.
fn gemm_2d(simd: bool, a: &[f32], b: &[f32], c: &mut [f32], (m, k, n): (usize, usize, usize), trans_b: bool, bufs: &mut Buffers) {
    assert!(a.len() == m * k && b.len() == k * n && c.len() == m * n);
    if trans_b {
        let mut packed = std::mem::replace(&mut bufs.b, PackedB { data: Vec::new(), k: 0, n: 0 });
        packed.repack(b, k, n, true, 0, n);
        gemm_packed_2d(simd, a, &packed, c, m, bufs);
        bufs.b = packed;
        return;
    }
    // In place: whole 8-column strips of the row-major b, row stride N; the partial last strip
    // is packed (zero-padded) so no kernel reads past b.
    let whole = n / NR;
    // SAFETY: the view reads rows 0..k, columns 0..whole·NR of b; a and c ranges are checked above.
    unsafe {
        if whole > 0 {
            let view = BView { ptr: b.as_ptr(), ldb: n, pstride: NR, panels: whole, cols: whole * NR };
            gemm_view(simd, a.as_ptr(), k, m, k, view, c.as_mut_ptr(), n, bufs);
        }
        if n % NR != 0 {
            let mut tail = std::mem::replace(&mut bufs.b, PackedB { data: Vec::new(), k: 0, n: 0 });
            tail.repack(b, k, n, false, whole * NR, n);
            gemm_view(simd, a.as_ptr(), k, m, k, tail.view(), c.as_mut_ptr().add(whole * NR), n, bufs);
            bufs.b = tail;
        }
    }
}

fn gemm_packed_2d(simd: bool, a: &[f32], b: &PackedB, c: &mut [f32], m: usize, bufs: &mut Buffers) {
    assert!(a.len() == m * b.k && c.len() == m * b.n);
    // SAFETY: the packed view covers k rows of every panel; a and c ranges are checked above.
    unsafe { gemm_view(simd, a.as_ptr(), b.k, m, b.k, b.view(), c.as_mut_ptr(), b.n, bufs) }
}

/// `a · b` (`a · bᵀ` with `trans_b`), contiguous row-major slices in and out.
///
/// - a: `[B, M, K]` (`B = 1` for a `[M, K]` a).
/// - b: `[K, N]`, or `[N, K]` with `trans_b`; with `b_batched` one such matrix per batch entry
///   (`[B, K, N]` / `[B, N, K]`), otherwise the one matrix is shared by every batch entry.
/// - returns `[B, M, N]` (zeros when K = 0).
///
/// SIMD128 on wasm32, the scalar twin ([`matmul_portable`]) elsewhere; both give the same bits.
pub fn matmul(a: &[f32], b: &[f32], d: Dims, trans_b: bool, b_batched: bool) -> Vec<f32> {
    matmul_with(SIMD128, a, b, d, trans_b, b_batched)
}

/// The scalar twin of [`matmul`]: same products, same order, no SIMD.
pub fn matmul_portable(a: &[f32], b: &[f32], d: Dims, trans_b: bool, b_batched: bool) -> Vec<f32> {
    matmul_with(false, a, b, d, trans_b, b_batched)
}

fn matmul_with(simd: bool, a: &[f32], b: &[f32], d: Dims, trans_b: bool, b_batched: bool) -> Vec<f32> {
    let Dims { batch, m, k, n } = d;
    assert_eq!(a.len(), batch * m * k, "a holds {} floats, dims {d:?}", a.len());
    let b_len = if b_batched { batch * k * n } else { k * n };
    assert_eq!(b.len(), b_len, "b holds {} floats, dims {d:?}, batched {b_batched}", b.len());
    let mut c = vec![0f32; batch * m * n];
    if m == 0 || n == 0 || k == 0 {
        return c;
    }
    let mut bufs = Buffers::new();
    if b_batched {
        for ((ai, bi), ci) in a.chunks_exact(m * k).zip(b.chunks_exact(k * n)).zip(c.chunks_exact_mut(m * n)) {
            gemm_2d(simd, ai, bi, ci, (m, k, n), trans_b, &mut bufs);
        }
    } else {
        // One b for every batch entry: the batch is just more rows, [B·M, K] · b.
        gemm_2d(simd, a, b, &mut c, (batch * m, k, n), trans_b, &mut bufs);
    }
    c
}

/// `a · b` with b packed beforehand: a `[M, K]` (any leading dims flattened into M) -> `[M, N]`.
pub fn matmul_packed(a: &[f32], b: &PackedB) -> Vec<f32> {
    matmul_packed_with(SIMD128, a, b)
}

/// The scalar twin of [`matmul_packed`].
pub fn matmul_packed_portable(a: &[f32], b: &PackedB) -> Vec<f32> {
    matmul_packed_with(false, a, b)
}

fn matmul_packed_with(simd: bool, a: &[f32], b: &PackedB) -> Vec<f32> {
    if b.k == 0 {
        return Vec::new();
    }
    assert_eq!(a.len() % b.k, 0, "a holds {} floats, not rows of K = {}", a.len(), b.k);
    let m = a.len() / b.k;
    let mut c = vec![0f32; m * b.n];
    if m > 0 && b.n > 0 {
        gemm_packed_2d(simd, a, b, &mut c, m, &mut Buffers::new());
    }
    c
}

#[cfg(target_arch = "wasm32")]
mod wasm {
    use core::arch::wasm32::*;

    // `acc[r][v] += a_r · b_v` for one row (the vector list passed as one token tree).
    macro_rules! row_step {
        ($acc:ident, $r:literal, $ar:expr, $bv:ident, [$($v:literal)*]) => {{
            let ar = $ar;
            $( $acc[$r][$v] = f32x4_add($acc[$r][$v], f32x4_mul(ar, $bv[$v])); )*
        }};
    }
    macro_rules! row_store {
        ($acc:ident, $r:literal, $c:ident, $ldc:ident, [$($v:literal)*]) => {
            $( v128_store($c.add($r * $ldc + $v * 4) as *mut v128, $acc[$r][$v]); )*
        };
    }
    macro_rules! b_loads {
        ($bp:ident, $pstride:ident, [$($v:literal)*]) => {
            [$( v128_load($bp.add(($v / 2) * $pstride + ($v % 2) * 4) as *const v128) ),*]
        };
    }

    // One step for every row: `acc[r][v] += a[r] · b[v]`, a packed `[K, R]` (row r at offset r).
    macro_rules! step {
        ($acc:ident, $ap:ident, $bp:ident, $pstride:ident, [$($r:literal)*], $vs:tt) => {{
            let bv = b_loads!($bp, $pstride, $vs);
            $( row_step!($acc, $r, v128_load32_splat($ap.add($r) as *const u32), bv, $vs); )*
        }};
    }

    /// An `R x 4V` SIMD128 kernel (see [`super::Kernel`]): per step V loads of b, R splats of a,
    /// R·V multiplies and R·V adds into R·V accumulators. Written out with literal indices (no
    /// loops to unroll): the release build is optimised for size, and LLVM keeps the
    /// accumulators in locals (registers) only when every index is a constant. The loop runs on
    /// a's pointer against an end pointer: then LLVM (loop strength reduction) leaves the a
    /// offsets as constants that fold into the loads' offset immediates, which V8 folds into the
    /// x86 addressing mode (no address arithmetic per row: V8's loop is bound by instruction
    /// count, not by the arithmetic).
    macro_rules! kernel {
        ($name:ident, [$($r:literal)*], $vs:tt, $nv:literal, $nr:literal) => {
            #[target_feature(enable = "simd128")]
            pub(super) unsafe fn $name(k: usize, a: *const f32, b: *const f32, ldb: usize, pstride: usize, c: *mut f32, ldc: usize) {
                let z = f32x4_splat(0.0);
                let mut acc = [[z; $nv]; $nr];
                let mut bp = b;
                let mut ap = a;
                let end = a.add(k * $nr);
                while ap != end {
                    step!(acc, ap, bp, pstride, [$($r)*], $vs);
                    bp = bp.add(ldb);
                    ap = ap.add($nr);
                }
                $( row_store!(acc, $r, c, ldc, $vs); )*
            }
        };
    }

    kernel!(k4x8, [0 1 2 3], [0 1], 2, 4);
    kernel!(k3x8, [0 1 2], [0 1], 2, 3);
    kernel!(k2x16, [0 1], [0 1 2 3], 4, 2);
    kernel!(k2x8, [0 1], [0 1], 2, 2);
    kernel!(k1x32, [0], [0 1 2 3 4 5 6 7], 8, 1);
    kernel!(k1x16, [0], [0 1 2 3], 4, 1);
    kernel!(k1x8, [0], [0 1], 2, 1);

    /// The SIMD128 peak: 12 independent chains of `x = x · m + c`, a multiply and an add per lane
    /// and step (the kernels' arithmetic, without their loads), all in registers. 12 chains of
    /// mul+add latency keep x86's two multiply and two add pipes busy. (An `acc_i += x · y_i`
    /// form needs 25 registers for 12 accumulators and spills; with fewer, LLVM hoists the
    /// loop-invariant products.)
    #[target_feature(enable = "simd128")]
    #[inline(never)]
    pub(super) fn peak(iters: usize, seed: f32) -> f32 {
        let m = f32x4_splat(seed);
        let c = f32x4_splat(1.0 - seed);
        let mut acc = [f32x4_splat(1.0); 12];
        macro_rules! steps {
            ($($i:literal)*) => { $( acc[$i] = f32x4_add(f32x4_mul(acc[$i], m), c); )* };
        }
        for _ in 0..iters {
            steps!(0 1 2 3 4 5 6 7 8 9 10 11);
        }
        let mut s = acc[0];
        macro_rules! fold {
            ($($i:literal)*) => { $( s = f32x4_add(s, acc[$i]); )* };
        }
        fold!(1 2 3 4 5 6 7 8 9 10 11);
        f32x4_extract_lane::<0>(s)
    }
}

/// Run `f` on a contiguous f32 CPU tensor's elements without copying them (copies only a
/// non-contiguous view).
pub fn with_f32<R>(t: &candle_core::Tensor, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    let t = if t.is_contiguous() { t.clone() } else { t.contiguous()? };
    let (storage, layout) = t.storage_and_layout();
    match (&*storage, layout.contiguous_offsets()) {
        (candle_core::Storage::Cpu(candle_core::CpuStorage::F32(v)), Some((start, end))) => Ok(f(&v[start..end])),
        _ => Err(candle_core::Error::Msg("simd matmul: expected a contiguous f32 CPU tensor".into())),
    }
}

/// The kernel benchmark (a measurement, not a test): GFLOP/s of the kernels and of candle's stock
/// matmul at the bundled models' shapes, and on wasm the SIMD128 peak of the same build. Used by
/// `bench_matmul` in the page build and by `trilemma bench --kernels` natively.
pub mod bench {
    use super::{matmul, matmul_packed, Dims, PackedB, SIMD128};
    use crate::rng::SplitMix64;
    use serde::Serialize;

    /// `(name, batch, M, K, N, trans_b, b batched)`. The bundled models: hidden 128, intermediate
    /// 256, Transformer++ 4 heads of 32, GLA 2 heads (dk 32, dv 64, chunks of 16); one sentence of
    /// 64 tokens, and a batch of 32 sentences of 32 tokens (1,024 rows). A rank-2 b with `trans_b`
    /// is a weight: packed once outside the timed loop, as `CpuBackend` caches it.
    pub const SHAPES: [(&str, usize, usize, usize, usize, bool, bool); 17] = [
        ("q/k/v/o [64,128]·[128,128]ᵀ", 1, 64, 128, 128, true, false),
        ("MLP in [64,128]·[256,128]ᵀ", 1, 64, 128, 256, true, false),
        ("MLP out [64,256]·[128,256]ᵀ", 1, 64, 256, 128, true, false),
        ("q/k/v/o [1024,128]·[128,128]ᵀ", 1, 1024, 128, 128, true, false),
        ("MLP in [1024,128]·[256,128]ᵀ", 1, 1024, 128, 256, true, false),
        ("MLP out [1024,256]·[128,256]ᵀ", 1, 1024, 256, 128, true, false),
        ("head [32,128]·[2,128]ᵀ", 1, 32, 128, 2, true, false),
        ("matrix-vector [1,128]·[256,128]ᵀ", 1, 1, 128, 256, true, false),
        ("scores [4,64,32]·[4,64,32]ᵀ", 4, 64, 32, 64, true, true),
        ("probs·V [4,64,64]·[4,64,32]", 4, 64, 64, 32, false, true),
        ("scores [128,32,32]·[128,32,32]ᵀ", 128, 32, 32, 32, true, true),
        ("probs·V [128,32,32]·[128,32,32]", 128, 32, 32, 32, false, true),
        ("GLA inter [64,16,32]·[64,32,64]", 64, 16, 32, 64, false, true),
        ("GLA intra [64,16,16]·[64,16,64]", 64, 16, 16, 64, false, true),
        ("GLA state [64,32,16]·[64,16,64]", 64, 32, 16, 64, false, true),
        ("GLA step q·S [2,1,32]·[2,32,64]", 2, 1, 32, 64, false, true),
        ("512³ [512,512]·[512,512]ᵀ", 1, 512, 512, 512, true, false),
    ];

    #[derive(Serialize, Debug)]
    pub struct Row {
        pub shape: String,
        pub gflop: f64,
        /// The kernels (SIMD128 on wasm, the scalar twin elsewhere), as `CpuBackend` runs them.
        pub kernel_gflops: f64,
        /// candle-core's `matmul` / `broadcast_matmul`.
        pub candle_gflops: f64,
    }

    #[derive(Serialize, Debug)]
    pub struct Report {
        pub arch: &'static str,
        pub kernel: &'static str,
        /// f32x4 multiply and add on 12 independent chains, operands in registers (wasm only).
        pub peak_gflops: Option<f64>,
        pub method: String,
        pub rows: Vec<Row>,
    }

    /// Best GFLOP/s of each of `fs` (all doing `flops` of work per call) over `samples` samples of
    /// at least `sample_ms` each. Samples of the different functions alternate, so a noisy
    /// neighbour slows them alike; a warm-up of `sample_ms` each first (wasm engines compile a
    /// function with their optimising tier only after it has run a while).
    fn gflops(flops: f64, clock: &dyn Fn() -> f64, sample_ms: f64, samples: usize, fs: &mut [&mut dyn FnMut()]) -> Vec<f64> {
        let mut reps = Vec::with_capacity(fs.len());
        for f in fs.iter_mut() {
            let t0 = clock();
            let mut calls = 0usize;
            while clock() - t0 < sample_ms || calls < 2 {
                f();
                calls += 1;
            }
            let per_call = (clock() - t0) / calls as f64;
            reps.push(((sample_ms / per_call.max(1e-6)).ceil() as usize).clamp(1, 1 << 24));
        }
        let mut best = vec![0f64; fs.len()];
        for _ in 0..samples {
            for ((f, r), b) in fs.iter_mut().zip(&reps).zip(best.iter_mut()) {
                let t0 = clock();
                for _ in 0..*r {
                    f();
                }
                let dt = (clock() - t0).max(1e-6);
                *b = b.max(flops * *r as f64 / (dt * 1e6));
            }
        }
        best
    }

    /// The SIMD128 peak on wasm; `None` elsewhere.
    fn peak(clock: &dyn Fn() -> f64, sample_ms: f64, samples: usize) -> Option<f64> {
        #[cfg(target_arch = "wasm32")]
        {
            const ITERS: usize = 100_000;
            let flops = (ITERS * 12 * 4 * 2) as f64;
            let mut sink = 0f32;
            let g = gflops(flops, clock, sample_ms, samples, &mut [&mut || sink += super::wasm::peak(core::hint::black_box(ITERS), core::hint::black_box(0.999))]);
            core::hint::black_box(sink);
            Some(g[0])
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = (clock, sample_ms, samples);
            None
        }
    }

    /// Run the whole table. `clock` returns milliseconds; `only` keeps the shapes whose name
    /// contains it (empty: all).
    pub fn run(clock: &dyn Fn() -> f64, sample_ms: f64, samples: usize, only: &str) -> crate::error::Result<Report> {
        use candle_core::{Device, Tensor};
        let first = peak(clock, sample_ms, samples);
        let mut rows = Vec::new();
        let mut rng = SplitMix64::new(20240808);
        for &(name, batch, m, k, n, trans_b, b_batched) in SHAPES.iter().filter(|s| s.0.contains(only)) {
            let d = Dims { batch, m, k, n };
            let a = rng.vec_f32(batch * m * k, -1.0, 1.0);
            let b = rng.vec_f32(if b_batched { batch } else { 1 } * k * n, -1.0, 1.0);
            let ta = if batch > 1 { Tensor::from_slice(&a, (batch, m, k), &Device::Cpu)? } else { Tensor::from_slice(&a, (m, k), &Device::Cpu)? };
            let (r, c) = if trans_b { (n, k) } else { (k, n) };
            let tb = if b_batched { Tensor::from_slice(&b, (batch, r, c), &Device::Cpu)? } else { Tensor::from_slice(&b, (r, c), &Device::Cpu)? };
            let weight = trans_b && !b_batched;
            let packed = weight.then(|| PackedB::pack(&b, k, n, true));
            let mut sink = 0f32;
            let mut failed = None;
            let g = gflops(
                d.flops(),
                clock,
                sample_ms,
                samples,
                &mut [
                    &mut || {
                        let out = match &packed {
                            Some(p) => matmul_packed(core::hint::black_box(&a), p),
                            None => matmul(core::hint::black_box(&a), &b, d, trans_b, b_batched),
                        };
                        sink += out[0];
                    },
                    &mut || {
                        let bt = if trans_b { tb.t() } else { Ok(tb.clone()) };
                        let out = bt.and_then(|bt| if batch > 1 && !b_batched { ta.broadcast_matmul(&bt) } else { ta.matmul(&bt) });
                        if let Err(e) = out.map(core::hint::black_box) {
                            failed = Some(e);
                        }
                    },
                ],
            );
            if let Some(e) = failed {
                return Err(e.into());
            }
            core::hint::black_box(sink);
            rows.push(Row { shape: name.into(), gflop: d.flops() / 1e9, kernel_gflops: g[0], candle_gflops: g[1] });
        }
        // The peaks again at the end; the better of the two (a neighbour's load only lowers them).
        let peak_gflops = match (first, peak(clock, sample_ms, samples)) {
            (Some(x), Some(y)) => Some(x.max(y)),
            (x, y) => x.or(y),
        };
        Ok(Report {
            arch: std::env::consts::ARCH,
            kernel: if SIMD128 { "simd128 4x8 (2x16, 1x32 for the last rows)" } else { "scalar twin" },
            peak_gflops,
            method: format!(
                "single thread; best of {samples} samples of >= {sample_ms} ms each, kernel and candle samples alternating, after {sample_ms} ms of warm-up each; weights packed once outside the timing"
            ),
            rows,
        })
    }
}

/// Parity of the kernels against a plain f64 triple loop, shared by the native unit tests (the
/// scalar twin) and the wasm tests (SIMD128, under Node and in Chromium).
pub mod suite {
    use super::{Dims, PackedB};
    use crate::backend::tolerance::{MATMUL_ABS, MATMUL_REL};
    use crate::rng::SplitMix64;

    /// A kernel with [`super::matmul`]'s signature.
    pub type Kernel = fn(&[f32], &[f32], Dims, bool, bool) -> Vec<f32>;

    /// Awkward sizes for every dimension: 1, primes below and just past the 4 x 8 tile, the
    /// 32-column wide tile and the 64-row block.
    pub const SIZES: [usize; 8] = [1, 2, 3, 7, 13, 31, 67, 129];

    /// `(a · b, sum_k |a_ik b_kj|)` in f64, the obvious way.
    pub fn reference(a: &[f32], b: &[f32], d: Dims, trans_b: bool, b_batched: bool) -> (Vec<f64>, Vec<f64>) {
        let Dims { batch, m, k, n } = d;
        let (mut out, mut mag) = (vec![0f64; batch * m * n], vec![0f64; batch * m * n]);
        for bi in 0..batch {
            let b0 = if b_batched { bi * k * n } else { 0 };
            for i in 0..m {
                for j in 0..n {
                    let (mut s, mut sa) = (0f64, 0f64);
                    for p in 0..k {
                        let bv = if trans_b { b[b0 + j * k + p] } else { b[b0 + p * n + j] };
                        let x = a[(bi * m + i) * k + p] as f64 * bv as f64;
                        s += x;
                        sa += x.abs();
                    }
                    out[(bi * m + i) * n + j] = s;
                    mag[(bi * m + i) * n + j] = sa;
                }
            }
        }
        (out, mag)
    }

    /// The summation order the kernels promise: `s = 0; s += a_ip · b_pj` for p in order, in f32.
    pub fn sequential_f32(a: &[f32], b: &[f32], d: Dims, trans_b: bool, b_batched: bool) -> Vec<f32> {
        let Dims { batch, m, k, n } = d;
        let mut out = vec![0f32; batch * m * n];
        for bi in 0..batch {
            let b0 = if b_batched { bi * k * n } else { 0 };
            for i in 0..m {
                for j in 0..n {
                    let mut s = 0f32;
                    for p in 0..k {
                        s += a[(bi * m + i) * k + p] * if trans_b { b[b0 + j * k + p] } else { b[b0 + p * n + j] };
                    }
                    out[(bi * m + i) * n + j] = s;
                }
            }
        }
        out
    }

    fn compare(what: &str, got: &[f32], want: &[f64], mag: &[f64]) -> Result<(), String> {
        if got.len() != want.len() {
            return Err(format!("{what}: {} outputs, want {}", got.len(), want.len()));
        }
        for (i, ((g, w), s)) in got.iter().zip(want).zip(mag).enumerate() {
            let bound = MATMUL_REL as f64 * s + MATMUL_ABS as f64;
            if ((*g as f64) - w).abs() > bound || !g.is_finite() {
                return Err(format!("{what}: out[{i}] = {g}, f64 reference {w}, bound {bound:e}"));
            }
        }
        Ok(())
    }

    fn same_bits(x: &[f32], y: &[f32]) -> bool {
        x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits())
    }

    /// Run `kernel` on seeded inputs of size `d` and compare with [`reference`]:
    /// `|diff| <= MATMUL_REL * sum_k |a_ik b_kj| + MATMUL_ABS`; also the exact bits of
    /// [`sequential_f32`] (the promised order), a second call (determinism) and, for a shared b
    /// with `trans_b`, the packed-once path.
    pub fn check(kernel: Kernel, packed: fn(&[f32], &PackedB) -> Vec<f32>, d: Dims, trans_b: bool, b_batched: bool, seed: u64) -> Result<(), String> {
        let what = format!("{d:?} trans_b={trans_b} batched={b_batched}");
        let mut rng = SplitMix64::new(seed);
        let a = rng.vec_f32(d.batch * d.m * d.k, -1.0, 1.0);
        let b = rng.vec_f32(if b_batched { d.batch } else { 1 } * d.k * d.n, -1.0, 1.0);
        let got = kernel(&a, &b, d, trans_b, b_batched);
        let (want, mag) = reference(&a, &b, d, trans_b, b_batched);
        compare(&what, &got, &want, &mag)?;
        if !same_bits(&got, &sequential_f32(&a, &b, d, trans_b, b_batched)) {
            return Err(format!("{what}: not the bits of the in-order f32 sum"));
        }
        if !same_bits(&got, &kernel(&a, &b, d, trans_b, b_batched)) {
            return Err(format!("{what}: a second run gave different bits"));
        }
        if !b_batched && d.k > 0 {
            let p = PackedB::pack(&b, d.k, d.n, trans_b);
            if !same_bits(&got, &packed(&a, &p)) {
                return Err(format!("{what}: the packed-once path gave different bits"));
            }
        }
        Ok(())
    }

    /// Every `SIZES` triple (M, K, N) with b both ways, then batched and shared b, wide and
    /// blocked shapes, and K = 0. Returns the number of cases run.
    pub fn run(kernel: Kernel, packed: fn(&[f32], &PackedB) -> Vec<f32>) -> Result<usize, String> {
        let mut cases = 0;
        let mut seed = 1;
        let mut one = |d: Dims, trans_b: bool, batched: bool| {
            seed += 1;
            cases += 1;
            check(kernel, packed, d, trans_b, batched, seed)
        };
        for &m in &SIZES {
            for &k in &SIZES {
                for &n in &SIZES {
                    for trans_b in [false, true] {
                        one(Dims { batch: 1, m, k, n }, trans_b, false)?;
                    }
                }
            }
        }
        for &(batch, m, k, n) in &[(2, 3, 7, 17), (3, 17, 33, 9), (4, 65, 32, 65), (2, 1, 129, 3), (5, 7, 1, 33), (3, 2, 5, 40), (2, 1, 16, 64)] {
            for trans_b in [false, true] {
                for batched in [false, true] {
                    one(Dims { batch, m, k, n }, trans_b, batched)?;
                }
            }
        }
        // Several row blocks with every remainder, and wide N.
        for &(m, k, n) in &[(130, 300, 40), (129, 17, 97), (131, 5, 33), (2, 520, 1030), (1, 256, 1000)] {
            for trans_b in [false, true] {
                one(Dims { batch: 1, m, k, n }, trans_b, false)?;
            }
        }
        // K = 0: zeros, no reads.
        for &(batch, m, n) in &[(1, 3, 5), (2, 4, 9)] {
            let d = Dims { batch, m, k: 0, n };
            for batched in [false, true] {
                if kernel(&[], &[], d, true, batched).iter().any(|&x| x.to_bits() != 0) {
                    return Err(format!("{d:?}: K = 0 must give zeros"));
                }
            }
        }
        Ok(cases)
    }

    /// `CpuBackend` on the kernels: a `Linear`-style weight (`x · Wᵀ`, W rank 2) is packed on its
    /// first product and the pack is reused (same panels, same bits) by later products and by the
    /// weight's clones; another tensor (new values, or an op's result from W) gets its own pack;
    /// activations (`trans_b` off, or a batched b) are never cached; results match candle within
    /// the matmul tolerance.
    pub fn backend_cache() -> Result<(), String> {
        use crate::backend::cpu::{CpuBackend, CpuTensor};
        use crate::backend::{Backend, Binary, HostTensor, Unary};
        let e = |e: crate::error::Error| e.to_string();
        let be = CpuBackend::new().with_matmul_kernel(true);
        let candle = CpuBackend::new().with_matmul_kernel(false);
        let mut rng = SplitMix64::new(11);
        let (m, k, n) = (5, 13, 11);
        let up = |shape: &[usize], v: Vec<f32>| be.upload(&HostTensor::f32(shape, v).map_err(e)?).map_err(e);
        let x = up(&[m, k], rng.vec_f32(m * k, -1.0, 1.0))?;
        let w = up(&[n, k], rng.vec_f32(n * k, -1.0, 1.0))?;
        let read = |t: &CpuTensor| be.read_sync(t).map_err(e).and_then(|h| h.as_f32("out").map(|v| v.to_vec()).map_err(e));
        let addr = |t: &CpuTensor| t.packed_b().map(|p| p.as_slice().as_ptr() as usize);
        if addr(&w).is_some() {
            return Err("a fresh tensor has a pack".into());
        }
        let y1 = read(&be.matmul(&x, &w, true).map_err(e)?)?;
        let first = addr(&w).ok_or("the first x · wᵀ did not pack w")?;
        let w_clone = w.clone();
        let y2 = read(&be.matmul(&x, &w_clone, true).map_err(e)?)?;
        if addr(&w) != Some(first) || addr(&w_clone) != Some(first) {
            return Err("a later product (through a clone) packed w again".into());
        }
        if !same_bits(&y1, &y2) {
            return Err("the cached pack gave different bits".into());
        }
        let want = read(&candle.matmul(&x, &w, true).map_err(e)?)?;
        let (xv, wv) = (read(&x)?, read(&w)?);
        let d = Dims { batch: 1, m, k, n };
        let (exact, mag) = reference(&xv, &wv, d, true, false);
        compare("cached weight", &y1, &exact, &mag)?;
        compare("candle", &want, &exact, &mag)?;
        // The same shape with other values, and an op's result from w: their own packs.
        let w2 = up(&[n, k], rng.vec_f32(n * k, -1.0, 1.0))?;
        let w3 = be.binary(Binary::Add, &w, &be.unary(Unary::Affine { mul: 0.0, add: 0.5 }, &w).map_err(e)?).map_err(e)?;
        for (name, wn) in [("another weight", &w2), ("w + 0.5", &w3)] {
            if addr(wn).is_some() {
                return Err(format!("{name}: has a pack before its first product"));
            }
            let got = read(&be.matmul(&x, wn, true).map_err(e)?)?;
            if addr(wn) == Some(first) || addr(wn).is_none() {
                return Err(format!("{name}: did not get a pack of its own"));
            }
            if !same_bits(&got, &sequential_f32(&xv, &read(wn)?, d, true, false)) {
                return Err(format!("{name}: result is not its own product"));
            }
        }
        if addr(&w) != Some(first) {
            return Err("w's pack changed".into());
        }
        // Activations: b without transposition, and batched b, are not cached.
        let b = up(&[k, n], rng.vec_f32(k * n, -1.0, 1.0))?;
        let x3 = up(&[2, m, k], rng.vec_f32(2 * m * k, -1.0, 1.0))?;
        let b3 = up(&[2, n, k], rng.vec_f32(2 * n * k, -1.0, 1.0))?;
        be.matmul(&x, &b, false).map_err(e)?;
        let y3 = read(&be.matmul(&x3, &b3, true).map_err(e)?)?;
        if addr(&b).is_some() || addr(&b3).is_some() {
            return Err("an activation was cached".into());
        }
        let d3 = Dims { batch: 2, m, k, n };
        if !same_bits(&y3, &sequential_f32(&read(&x3)?, &read(&b3)?, d3, true, true)) {
            return Err("batched product".into());
        }
        // A 3-D a over a cached 2-D weight: the batch is more rows.
        let y4 = read(&be.matmul(&x3, &w, true).map_err(e)?)?;
        if addr(&w) != Some(first) || !same_bits(&y4, &sequential_f32(&read(&x3)?, &wv, d3, true, false)) {
            return Err("3-D a over the cached weight".into());
        }
        Ok(())
    }

    /// The SIMD128 kernels and the scalar twin give the same bits (same products, same order).
    pub fn twins_agree(seed: u64) -> Result<(), String> {
        let mut rng = SplitMix64::new(seed);
        for &(batch, m, k, n, trans_b, batched) in
            &[(1, 33, 129, 65, true, false), (2, 17, 300, 40, false, true), (3, 7, 65, 129, true, false), (1, 64, 512, 520, false, false), (4, 1, 40, 100, false, true)]
        {
            let d = Dims { batch, m, k, n };
            let a = rng.vec_f32(batch * m * k, -2.0, 2.0);
            let b = rng.vec_f32(if batched { batch } else { 1 } * k * n, -2.0, 2.0);
            if !same_bits(&super::matmul(&a, &b, d, trans_b, batched), &super::matmul_portable(&a, &b, d, trans_b, batched)) {
                return Err(format!("{d:?} trans_b={trans_b} batched={batched}: matmul and matmul_portable differ"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_twin_matches_f64_reference() {
        let cases = suite::run(matmul_portable, matmul_packed_portable).unwrap();
        assert!(cases > 1000, "{cases}");
    }

    #[test]
    fn backend_packs_each_weight_once() {
        suite::backend_cache().unwrap();
    }

    #[test]
    fn matmul_and_twin_are_bit_identical() {
        suite::twins_agree(7).unwrap();
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        #[test]
        fn twin_matches_reference_at_random_sizes(
            batch in 1usize..4, m in 1usize..40, k in 0usize..70, n in 1usize..70,
            trans_b: bool, batched: bool, seed: u64,
        ) {
            let r = suite::check(matmul_portable, matmul_packed_portable, Dims { batch, m, k, n }, trans_b, batched, seed);
            proptest::prop_assert!(r.is_ok(), "{:?}", r);
        }
    }

    #[test]
    fn refuses_wrong_lengths() {
        let d = Dims { batch: 1, m: 2, k: 3, n: 4 };
        assert!(std::panic::catch_unwind(|| matmul(&[0.0; 5], &[0.0; 12], d, false, false)).is_err());
        assert!(std::panic::catch_unwind(|| matmul_packed(&[0.0; 5], &PackedB::pack(&[0.0; 12], 3, 4, true))).is_err());
    }
}
