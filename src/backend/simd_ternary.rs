//! The CPU path's ternary product (HGRN-bit's BitLinear, `x [M, K] · Tᵀ`, T `[N, K]` packed 2 bits
//! a weight) on [`G`] activation rows at once: SIMD128 on wasm32, arrays of `G` lanes elsewhere
//! (which LLVM vectorises in the native build).
//!
//! Why: [`super::cpu::ternary_matmul_host`] runs one output at a time, a chain of dependent adds
//! over gathered activations; a V8 profile of the page's benchmark put it at ~80% of HGRN-bit's
//! time. Here the activations are regrouped as `[K, G]` (G rows' values of column j side by side),
//! so one weight entry (an index and a sign) feeds G outputs with one load, one sign flip (xor)
//! and one add per 4 lanes, and the G chains run in parallel.
//!
//! Same bits as the host product (and `ternary_matmul.wgsl`): every output still starts at +0 and
//! adds `±x_j` over its row's non-zero weights in increasing j, one f32 add each; lanes never mix.

use super::cpu::{ternary_check, TernaryRows};
use crate::error::Result;

/// Activation rows per pass (two f32x4).
pub const G: usize = 8;

/// `x [m, k] · Tᵀ` for packed ternary `T [n, k]`: the same checks, errors and bits as
/// [`super::cpu::ternary_matmul_host`]. `simd` picks SIMD128 (wasm32 only) or the lane arrays.
pub fn ternary_matmul(x: &[f32], packed: &[u32], m: usize, k: usize, n: usize, simd: bool) -> Result<Vec<f32>> {
    let wpr = ternary_check(x, packed, m, k, n)?;
    let mut out = vec![0f32; m * n];
    if m == 0 || n == 0 {
        return Ok(out);
    }
    // xt[g][j·G + i] = x[(g·G + i)·k + j]; rows past m are zeros (their outputs are dropped).
    let groups = m.div_ceil(G);
    let mut xt = vec![0f32; groups * k * G];
    for (r, row) in x.chunks_exact(k).enumerate() {
        let (g, i) = (r / G, r % G);
        let dst = &mut xt[g * k * G..(g + 1) * k * G];
        for (j, &v) in row.iter().enumerate() {
            dst[j * G + i] = v;
        }
    }
    let mut rows = TernaryRows::default();
    let mut acc = [0f32; G];
    for r0 in (0..n).step_by(TernaryRows::ROWS) {
        let r1 = (r0 + TernaryRows::ROWS).min(n);
        rows.decode(packed, wpr, r0, r1);
        for g in 0..groups {
            let xg = &xt[g * k * G..(g + 1) * k * G];
            let live = G.min(m - g * G);
            for r in 0..r1 - r0 {
                sums(rows.row(r), xg, &mut acc, simd);
                for (i, &a) in acc[..live].iter().enumerate() {
                    out[(g * G + i) * n + r0 + r] = a;
                }
            }
        }
    }
    Ok(out)
}

/// `acc[i] = Σ_e ±xg[j_e·G + i]` over `entries` in order (see [`TernaryRows`]).
fn sums(entries: &[u32], xg: &[f32], acc: &mut [f32; G], simd: bool) {
    // Decoded from validated words: every index is below k, so within xg.
    debug_assert!(entries.iter().all(|&e| ((e & !TernaryRows::NEG) as usize + 1) * G <= xg.len()));
    #[cfg(target_arch = "wasm32")]
    if simd {
        // SAFETY: indices are in range (above); SIMD128 as for the matmul kernels (simd.rs).
        unsafe { wasm::sums(entries, xg, acc) };
        return;
    }
    let _ = simd;
    *acc = [0f32; G];
    for &e in entries {
        let (j, sign) = ((e & !TernaryRows::NEG) as usize, e & TernaryRows::NEG);
        let xj = &xg[j * G..(j + 1) * G];
        for (a, &v) in acc.iter_mut().zip(xj) {
            *a += f32::from_bits(v.to_bits() ^ sign);
        }
    }
}

#[cfg(target_arch = "wasm32")]
mod wasm {
    use super::{TernaryRows, G};
    use core::arch::wasm32::*;

    #[target_feature(enable = "simd128")]
    pub(super) unsafe fn sums(entries: &[u32], xg: &[f32], acc: &mut [f32; G]) {
        let (mut a0, mut a1) = (f32x4_splat(0.0), f32x4_splat(0.0));
        let base = xg.as_ptr();
        for &e in entries {
            let p = base.add((e & !TernaryRows::NEG) as usize * G);
            let s = u32x4_splat(e & TernaryRows::NEG);
            a0 = f32x4_add(a0, v128_xor(v128_load(p as *const v128), s));
            a1 = f32x4_add(a1, v128_xor(v128_load(p.add(4) as *const v128), s));
        }
        v128_store(acc.as_mut_ptr() as *mut v128, a0);
        v128_store(acc.as_mut_ptr().add(4) as *mut v128, a1);
    }
}

/// The kernel against the host product, bit for bit, at awkward sizes (rows around G, K around
/// the 16 weights of a word, N past the 64-row decode band), and the same refusals. Run by the
/// native unit tests (lane arrays) and the wasm tests (SIMD128).
pub mod suite {
    use super::{ternary_matmul, G};
    use crate::backend::cpu::ternary_matmul_host;
    use crate::backend::ternary::pack;
    use crate::rng::SplitMix64;

    pub fn run(simd: bool, seed: u64) -> Result<usize, String> {
        let mut rng = SplitMix64::new(seed);
        let mut n_cases = 0;
        for &m in &[1, 2, G - 1, G, G + 1, 3 * G + 5] {
            for &k in &[1, 15, 16, 17, 33, 130] {
                for &n in &[1, 7, 64, 65, 131] {
                    let w: Vec<i8> = (0..n * k).map(|_| rng.below(3) as i8 - 1).collect();
                    let words = pack(&w, n, k).map_err(|e| e.to_string())?;
                    let mut x = rng.vec_f32(m * k, -3.0, 3.0);
                    // Signed zeros and a value that cancels: the sums' bits must still agree.
                    x[0] = -0.0;
                    let want = ternary_matmul_host(&x, &words, m, k, n).map_err(|e| e.to_string())?;
                    let got = ternary_matmul(&x, &words, m, k, n, simd).map_err(|e| e.to_string())?;
                    if got.len() != want.len() || got.iter().zip(&want).any(|(a, b)| a.to_bits() != b.to_bits()) {
                        return Err(format!("m {m} k {k} n {n}: the kernel and the host product differ"));
                    }
                    n_cases += 1;
                }
            }
        }
        // The same refusals: code 3, non-zero padding, wrong lengths.
        let good = pack(&[1, 0, -1], 1, 3).map_err(|e| e.to_string())?;
        for (x, words, k) in [(vec![1.0; 3], vec![good[0] | 3 << 2], 3), (vec![1.0; 3], vec![good[0] | 1 << 10], 3), (vec![1.0; 2], good.clone(), 3)] {
            let host = ternary_matmul_host(&x, &words, 1, k, 1).map_err(|e| e.to_string());
            let fast = ternary_matmul(&x, &words, 1, k, 1, simd).map_err(|e| e.to_string());
            if host.is_ok() || host != fast {
                return Err(format!("refusal: host {host:?}, kernel {fast:?}"));
            }
        }
        Ok(n_cases)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lanes_match_the_host_product_bit_for_bit() {
        assert!(super::suite::run(false, 5).unwrap() > 150);
    }
}
