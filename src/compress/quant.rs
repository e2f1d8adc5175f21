//! Post-training weight quantisation and dynamic activation scales.
//!
//! All integer formats are symmetric absmax: a block of values `x` gets the scale
//! `s = max|x| / q_max` and the codes `c = clamp(round(x / s), −q_max, q_max)`, so `ŵ = c·s` and
//! `|x − ŵ| ≤ s/2` for every element (up to one f32 rounding of the product `c·s`). A block of
//! zeros gets `s = 0` and codes 0. Rounding is half to even (PyTorch's `torch.round`, as in
//! [`TernaryWeights::from_latent`]). Codes are computed in f64 from the stored f32 scale, so the
//! bound holds for the dequantisation a kernel does from the stored codes and scale alone.
//!
//! | format | codes | scales | storage |
//! |---|---|---|---|
//! | [`Int8Matrix`] (weights per channel or per input group; activations per token) | i8 in [−127, 127] | f32 per row or per (row, group) | 1 byte per code |
//! | [`Int4Weights`] (per input group of 32/64/128) | i4 in [−7, 7] | one f32 per (row, group) | 8 codes per u32 ([`int4`]) |
//! | [`TernaryCodes`] (BitNet b1.58 absmean, per tensor) | {−1, 0, 1} | one f32 | 16 codes per u32 ([`crate::backend::ternary`]) |

use super::{check_matrix, Footprint};
use crate::backend::ternary;
use crate::error::{Error, Result};
use crate::nn::linear::{TernaryWeights, WEIGHT_SCALE_FLOOR};

/// Largest int8 code: symmetric, so −128 is never used.
pub const INT8_MAX: i8 = 127;
/// Largest int4 code: symmetric, so −8 (nibble `0x8`) is never used and is refused when unpacked.
pub const INT4_MAX: i8 = 7;
/// The group sizes (along the input dimension) the group-wise formats accept.
pub const GROUP_SIZES: [usize; 3] = [32, 64, 128];

/// The symmetric absmax scale of a block whose largest magnitude is `amax`: `amax / q_max`, 0 for
/// a zero block, and never a subnormal underflow to 0 when `amax > 0` (which would divide by 0).
fn absmax_scale(amax: f32, qmax: i8) -> f32 {
    if amax == 0.0 {
        0.0
    } else {
        (amax / qmax as f32).max(f32::from_bits(1))
    }
}

/// `clamp(round_half_even(x / s), −q_max, q_max)` in f64; 0 when `s = 0`.
fn code(x: f32, s: f32, qmax: i8) -> i8 {
    if s == 0.0 {
        return 0;
    }
    (x as f64 / s as f64).round_ties_even().clamp(-(qmax as f64), qmax as f64) as i8
}

/// Codes and `[rows, cols / group]` scales of a row-major matrix, one scale per (row, group).
fn grouped_codes(w: &[f32], rows: usize, cols: usize, group: usize, qmax: i8) -> (Vec<i8>, Vec<f32>) {
    let groups = cols / group;
    let mut codes = Vec::with_capacity(w.len());
    let mut scales = Vec::with_capacity(rows * groups);
    for block in w.chunks_exact(group) {
        let s = absmax_scale(block.iter().fold(0.0f32, |m, x| m.max(x.abs())), qmax);
        scales.push(s);
        codes.extend(block.iter().map(|&x| code(x, s, qmax)));
    }
    (codes, scales)
}

fn check_group(op: &str, cols: usize, group: usize) -> Result<()> {
    if !GROUP_SIZES.contains(&group) {
        return Err(Error::Invalid(format!("{op}: group size {group} is not one of {GROUP_SIZES:?}")));
    }
    if !cols.is_multiple_of(group) {
        return Err(Error::Invalid(format!("{op}: input dimension {cols} is not a multiple of the group size {group}")));
    }
    Ok(())
}

/// Int8 codes with one scale per (row, group of `group` consecutive columns); `group == cols` is
/// one scale per row. Serves three uses: weights per output channel ([`quantize_int8`]), weights
/// per input group ([`quantize_int8_grouped`]) and activations per token
/// ([`quantize_activations_int8`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Int8Matrix {
    /// `[rows, cols]` codes in [−127, 127].
    pub codes: Vec<i8>,
    /// `[rows, cols / group]` scales, `max|block| / 127` (0 for an all-zero block).
    pub scales: Vec<f32>,
    pub rows: usize,
    pub cols: usize,
    pub group: usize,
}

/// A weight `[out, in]` in int8 (rows = output channels).
pub type Int8Weights = Int8Matrix;
/// An activation matrix `[tokens, d]` in int8 (rows = tokens).
pub type Int8Activations = Int8Matrix;

/// Int8 symmetric per output channel: `s_o = max_i |W_oi| / 127`.
pub fn quantize_int8(w: &[f32], out: usize, inp: usize) -> Result<Int8Weights> {
    check_matrix("quantize_int8", w, out, inp)?;
    let (codes, scales) = grouped_codes(w, out, inp, inp, INT8_MAX);
    Ok(Int8Matrix { codes, scales, rows: out, cols: inp, group: inp })
}

/// Int8 symmetric per (output channel, group of `group` inputs), group ∈ {32, 64, 128}: the
/// 8-bit variant of specs/methods.md §4.5's per-group weight scales.
pub fn quantize_int8_grouped(w: &[f32], out: usize, inp: usize, group: usize) -> Result<Int8Weights> {
    check_matrix("quantize_int8_grouped", w, out, inp)?;
    check_group("quantize_int8_grouped", inp, group)?;
    let (codes, scales) = grouped_codes(w, out, inp, group, INT8_MAX);
    Ok(Int8Matrix { codes, scales, rows: out, cols: inp, group })
}

/// Dynamic per-token activation scaling (specs/methods.md §4.5): x `[tokens, d]` -> int8 codes
/// with `s_t = max_i |x_ti| / 127` computed from the row itself at run time, not calibrated.
pub fn quantize_activations_int8(x: &[f32], tokens: usize, d: usize) -> Result<Int8Activations> {
    check_matrix("quantize_activations_int8", x, tokens, d)?;
    let (codes, scales) = grouped_codes(x, tokens, d, d, INT8_MAX);
    Ok(Int8Matrix { codes, scales, rows: tokens, cols: d, group: d })
}

impl Int8Matrix {
    /// Check the field lengths agree with the shape (the fields are public).
    pub fn validate(&self) -> Result<()> {
        let groups = if self.group > 0 && self.cols.is_multiple_of(self.group) { self.cols / self.group } else { 0 };
        if groups == 0 || Some(self.codes.len()) != self.rows.checked_mul(self.cols) || Some(self.scales.len()) != self.rows.checked_mul(groups) {
            return Err(Error::Invalid(format!(
                "int8: {} codes and {} scales do not fit [{}, {}] with group {}",
                self.codes.len(),
                self.scales.len(),
                self.rows,
                self.cols,
                self.group
            )));
        }
        if let Some(i) = self.codes.iter().position(|&c| c < -INT8_MAX) {
            return Err(Error::Invalid(format!("int8: code -128 at [{}, {}] is outside the symmetric range", i / self.cols, i % self.cols)));
        }
        Ok(())
    }

    /// `[rows, cols]` f32: `ŵ = c · s`.
    pub fn dequantize(&self) -> Result<Vec<f32>> {
        self.validate()?;
        Ok(self.codes.chunks_exact(self.group).zip(&self.scales).flat_map(|(c, &s)| c.iter().map(move |&c| c as f32 * s)).collect())
    }

    /// The scale that applies to element `[r, c]` (`None` outside the matrix).
    pub fn scale_at(&self, r: usize, c: usize) -> Option<f32> {
        if r >= self.rows || c >= self.cols || self.group == 0 {
            return None;
        }
        self.scales.get(r * (self.cols / self.group) + c / self.group).copied()
    }
}

impl Footprint for Int8Matrix {
    fn bytes(&self) -> usize {
        self.codes.len() + 4 * self.scales.len()
    }
    fn weights(&self) -> usize {
        self.rows * self.cols
    }
}

/// Int4 codes packed 8 per u32, little end first: code `j` of a row is nibble `j % 8` (bits
/// `4·(j % 8)..`) of word `j / 8`, as 4-bit two's complement (so WGSL's signed `extractBits`
/// decodes it). Rows are padded with zero nibbles to a multiple of 8. Nibble `0x8` (−8) is outside
/// the symmetric range and refused.
pub mod int4 {
    use crate::error::{Error, Result};

    pub const PER_WORD: usize = 8;

    pub fn words_per_row(k: usize) -> usize {
        k.div_ceil(PER_WORD)
    }

    /// Pack a row-major `[n, k]` matrix of codes in [−7, 7].
    pub fn pack(values: &[i8], n: usize, k: usize) -> Result<Vec<u32>> {
        if Some(values.len()) != n.checked_mul(k) {
            return Err(Error::Invalid(format!("int4 pack: {} values for [{n}, {k}]", values.len())));
        }
        let wpr = words_per_row(k);
        let mut out = vec![0u32; n * wpr];
        for (i, &v) in values.iter().enumerate() {
            let (r, j) = (i / k, i % k);
            if !(-super::INT4_MAX..=super::INT4_MAX).contains(&v) {
                return Err(Error::Invalid(format!("int4 pack: value {v} at [{r}, {j}] is not in [-7, 7]")));
            }
            out[r * wpr + j / PER_WORD] |= ((v as u8 & 0xF) as u32) << (4 * (j % PER_WORD));
        }
        Ok(out)
    }

    /// Unpack `[n, ceil(k/8)]` words to `[n, k]` codes, refusing nibble `0x8` and non-zero padding.
    pub fn unpack(words: &[u32], n: usize, k: usize) -> Result<Vec<i8>> {
        let wpr = words_per_row(k);
        if Some(words.len()) != n.checked_mul(wpr) {
            return Err(Error::Invalid(format!("int4 unpack: {} words for [{n}, {k}] (need {n} x {wpr})", words.len())));
        }
        let mut out = Vec::with_capacity(n * k);
        for r in 0..n {
            for c in 0..wpr {
                let w = words[r * wpr + c];
                for nib in 0..PER_WORD {
                    let bits = (w >> (4 * nib)) & 0xF;
                    let j = c * PER_WORD + nib;
                    if j >= k {
                        if bits != 0 {
                            return Err(Error::Invalid(format!("int4: non-zero padding after weight {k} in row {r}")));
                        }
                        continue;
                    }
                    if bits == 0x8 {
                        return Err(Error::Invalid(format!("int4: code -8 at [{r}, {j}] is outside the symmetric range")));
                    }
                    // Sign-extend the nibble: shift it to the top of an i8, then arithmetic shift back.
                    out.push(((bits as u8) << 4) as i8 >> 4);
                }
            }
        }
        Ok(out)
    }
}

/// Int4 symmetric group-wise weights: `[out, in]` codes packed by [`int4`], one scale per
/// (output channel, group of `group` consecutive inputs).
#[derive(Clone, Debug, PartialEq)]
pub struct Int4Weights {
    /// `[out, in / 8]` packed codes.
    pub packed: Vec<u32>,
    /// `[out, in / group]` scales, `max|group| / 7` (0 for an all-zero group).
    pub scales: Vec<f32>,
    pub out: usize,
    pub inp: usize,
    pub group: usize,
}

/// Int4 symmetric per (output channel, group of `group` inputs), group ∈ {32, 64, 128} dividing
/// `inp` (specs/methods.md §4.5 uses group 64).
pub fn quantize_int4(w: &[f32], out: usize, inp: usize, group: usize) -> Result<Int4Weights> {
    check_matrix("quantize_int4", w, out, inp)?;
    check_group("quantize_int4", inp, group)?;
    let (codes, scales) = grouped_codes(w, out, inp, group, INT4_MAX);
    Ok(Int4Weights { packed: int4::pack(&codes, out, inp)?, scales, out, inp, group })
}

impl Int4Weights {
    /// `[out, in]` codes in [−7, 7] (checking the packed words and the scale count).
    pub fn codes(&self) -> Result<Vec<i8>> {
        check_group("int4", self.inp, self.group)?;
        if Some(self.scales.len()) != self.out.checked_mul(self.inp / self.group) {
            return Err(Error::Invalid(format!("int4: {} scales for [{}, {}] with group {}", self.scales.len(), self.out, self.inp, self.group)));
        }
        int4::unpack(&self.packed, self.out, self.inp)
    }

    /// `[out, in]` f32: `ŵ = c · s`.
    pub fn dequantize(&self) -> Result<Vec<f32>> {
        let codes = self.codes()?;
        Ok(codes.chunks_exact(self.group).zip(&self.scales).flat_map(|(c, &s)| c.iter().map(move |&c| c as f32 * s)).collect())
    }

    /// The scale that applies to element `[r, c]` (`None` outside the matrix).
    pub fn scale_at(&self, r: usize, c: usize) -> Option<f32> {
        if r >= self.out || c >= self.inp || self.group == 0 {
            return None;
        }
        self.scales.get(r * (self.inp / self.group) + c / self.group).copied()
    }
}

impl Footprint for Int4Weights {
    fn bytes(&self) -> usize {
        4 * self.packed.len() + 4 * self.scales.len()
    }
    fn weights(&self) -> usize {
        self.out * self.inp
    }
}

/// Ternary absmean weights (BitNet b1.58, Ma et al. 2024, eq. 1–3): `W ≈ β·T` with one scale per
/// tensor `β = max(mean|W|, 1e-5)` and `T = clamp(round(W/β), −1, 1)`. The same arithmetic as
/// [`TernaryWeights::from_latent`] (the HGRN-bit loader), so [`pack_ternary`] gives the same words.
#[derive(Clone, Debug, PartialEq)]
pub struct TernaryCodes {
    /// `[out, in]` codes in {−1, 0, 1}.
    pub codes: Vec<i8>,
    pub scale: f32,
    pub out: usize,
    pub inp: usize,
}

/// Absmean ternarisation of a dense `[out, in]` weight (per tensor; half-to-even rounding).
pub fn quantize_ternary(w: &[f32], out: usize, inp: usize) -> Result<TernaryCodes> {
    check_matrix("quantize_ternary", w, out, inp)?;
    // Mean in f64, then f32 arithmetic exactly as `TernaryWeights::from_latent`.
    let mean = (w.iter().map(|x| x.abs() as f64).sum::<f64>() / w.len() as f64) as f32;
    let scale = mean.max(WEIGHT_SCALE_FLOOR);
    let inv = 1.0 / scale;
    let codes = w.iter().map(|&x| (x * inv).round_ties_even().clamp(-1.0, 1.0) as i8).collect();
    Ok(TernaryCodes { codes, scale, out, inp })
}

impl TernaryCodes {
    /// `[out, in]` f32: `ŵ = T · β`.
    pub fn dequantize(&self) -> Vec<f32> {
        self.codes.iter().map(|&c| c as f32 * self.scale).collect()
    }
}

impl Footprint for TernaryCodes {
    /// The packed size (2 bits per weight, rows padded to 16) plus the scale: what
    /// [`pack_ternary`] stores, not the one byte per code of this unpacked form.
    fn bytes(&self) -> usize {
        4 * self.out * ternary::words_per_row(self.inp) + 4
    }
    fn weights(&self) -> usize {
        self.out * self.inp
    }
}

/// Pack ternary codes in the BitLinear format ([`crate::backend::ternary`]: 16 codes per u32),
/// ready for [`crate::nn::linear::Linear::bit`] and the packed kernels.
pub fn pack_ternary(t: &TernaryCodes) -> Result<TernaryWeights> {
    if !(t.scale.is_finite() && t.scale > 0.0) {
        return Err(Error::Invalid(format!("pack_ternary: scale must be positive and finite, got {}", t.scale)));
    }
    Ok(TernaryWeights { packed: ternary::pack(&t.codes, t.out, t.inp)?, beta: t.scale, n: t.out, k: t.inp })
}

/// The codes and scale of packed ternary weights.
pub fn unpack_ternary(t: &TernaryWeights) -> Result<TernaryCodes> {
    Ok(TernaryCodes { codes: ternary::unpack(&t.packed, t.n, t.k)?, scale: t.beta, out: t.n, inp: t.k })
}

#[cfg(test)]
mod tests {
    use super::super::test_util::matrix;
    use super::*;
    use crate::backend::HostTensor;

    /// The symmetric-absmax bound `|w − ŵ| ≤ s/2`, allowing one f32 rounding of `c·s`.
    fn within_bound(w: &[f32], wq: &[f32], scale_at: impl Fn(usize) -> f32) {
        assert_eq!(w.len(), wq.len());
        for (i, (&a, &b)) in w.iter().zip(wq).enumerate() {
            let s = scale_at(i);
            let tol = s * 0.5 + f32::EPSILON * a.abs();
            assert!((a - b).abs() <= tol, "element {i}: w {a}, dequantised {b}, scale {s}");
        }
    }

    fn invalid(r: Result<impl std::fmt::Debug>, needle: &str) {
        match r {
            Err(Error::Invalid(m)) => assert!(m.contains(needle), "message {m:?} lacks {needle:?}"),
            other => panic!("expected Error::Invalid containing {needle:?}, got {other:?}"),
        }
    }

    #[test]
    fn int8_per_channel_by_hand() {
        // Row 0: max 63.5 -> s = 0.5; 63.5/0.5 = 127, -1.25/0.5 = -2.5 -> -2, 0.75/0.5 = 1.5 -> 2 (half to even).
        // Row 1: zeros -> s = 0, codes 0. (Values chosen exact in binary so the ties are real ties.)
        let w = [63.5, -1.25, 0.75, 0.0, 0.0, 0.0];
        let q = quantize_int8(&w, 2, 3).unwrap();
        assert_eq!(q.scales, vec![0.5, 0.0]);
        assert_eq!(q.codes, vec![127, -2, 2, 0, 0, 0]);
        assert_eq!(q.bytes(), 6 + 8);
        let d = q.dequantize().unwrap();
        assert_eq!(d, vec![63.5, -1.0, 1.0, 0.0, 0.0, 0.0]);
        within_bound(&w, &d, |i| q.scale_at(i / 3, i % 3).unwrap());
    }

    #[test]
    fn int8_round_trip_awkward_sizes_outlier_and_zero_row() {
        let (out, inp) = (7, 13);
        let mut w = matrix(1, out, inp);
        w[2 * inp..3 * inp].fill(0.0); // a zero row
        w[4 * inp + 5] = 1.0e4; // one huge outlier: its row's scale is huge, the others' are not
        let q = quantize_int8(&w, out, inp).unwrap();
        assert_eq!(q.scales.len(), out);
        assert_eq!(q.scales[2], 0.0);
        assert_eq!((q.scale_at(7, 0), q.scale_at(0, 13)), (None, None));
        assert_eq!(q.codes[4 * inp + 5], 127);
        assert!(q.codes.iter().all(|&c| (-127..=127).contains(&c)));
        let d = q.dequantize().unwrap();
        assert!(d[2 * inp..3 * inp].iter().all(|&x| x == 0.0));
        within_bound(&w, &d, |i| q.scale_at(i / inp, i % inp).unwrap());
        assert!((q.bits_per_weight() - (8.0 + 32.0 / 13.0)).abs() < 1e-12);
    }

    #[test]
    fn int8_grouped_and_subnormal_rows() {
        for group in GROUP_SIZES {
            let w = matrix(group as u64, 3, 256);
            let q = quantize_int8_grouped(&w, 3, 256, group).unwrap();
            assert_eq!(q.scales.len(), 3 * 256 / group);
            within_bound(&w, &q.dequantize().unwrap(), |i| q.scale_at(i / 256, i % 256).unwrap());
        }
        // amax / 127 underflows to 0 in f32: the scale stays the smallest subnormal, the bound holds.
        let tiny = f32::from_bits(40);
        let w = [tiny, -tiny / 2.0, f32::from_bits(1)];
        let q = quantize_int8(&w, 1, 3).unwrap();
        assert!(q.scales[0] > 0.0);
        within_bound(&w, &q.dequantize().unwrap(), |_| q.scales[0]);
    }

    #[test]
    fn int4_by_hand() {
        // One group of 32: max 3.5 -> s = 0.5; 1.75/0.5 = 3.5 -> 4 (half to even), -0.75/0.5 = -1.5 -> -2,
        // 0.25/0.5 = 0.5 -> 0, -3.5 -> -7, 0.625/0.5 = 1.25 -> 1; the rest 0.
        let mut w = vec![0.0f32; 32];
        w[..5].copy_from_slice(&[1.75, -0.75, 0.25, -3.5, 0.625]);
        let q = quantize_int4(&w, 1, 32, 32).unwrap();
        assert_eq!(q.scales, vec![0.5]);
        let mut codes = vec![0i8; 32];
        codes[..5].copy_from_slice(&[4, -2, 0, -7, 1]);
        assert_eq!(q.codes().unwrap(), codes);
        // Nibbles little end first, two's complement: 4 -> 0x4, -2 -> 0xE, 0 -> 0x0, -7 -> 0x9, 1 -> 0x1.
        assert_eq!(q.packed, vec![0x0001_90E4, 0, 0, 0]);
        assert_eq!(q.bytes(), 4 * 4 + 4);
        assert!((q.bits_per_weight() - 5.0).abs() < 1e-12); // 4 + 32/32
        within_bound(&w, &q.dequantize().unwrap(), |_| q.scales[0]);
    }

    #[test]
    fn int4_round_trip_all_groups() {
        for (out, inp) in [(5, 64), (3, 256)] {
            for group in GROUP_SIZES {
                if inp % group != 0 {
                    invalid(quantize_int4(&matrix(0, out, inp), out, inp, group), "not a multiple");
                    continue;
                }
                let mut w = matrix((out * inp + group) as u64, out, inp);
                w[..inp].fill(0.0); // zero row
                w[inp + 3] = -500.0; // outlier: only its group's scale grows
                let q = quantize_int4(&w, out, inp, group).unwrap();
                assert_eq!(q.packed.len(), out * inp / 8);
                assert_eq!(q.scales.len(), out * inp / group);
                assert!(q.scales[..inp / group].iter().all(|&s| s == 0.0));
                assert_eq!(q.scale_at(1, 3).unwrap(), 500.0 / 7.0);
                if inp / group > 1 {
                    assert!(q.scale_at(1, group).unwrap() < 1.0 / 7.0 + 1e-6);
                }
                let codes = q.codes().unwrap();
                assert!(codes.iter().all(|&c| (-7..=7).contains(&c)));
                assert_eq!(int4::pack(&codes, out, inp).unwrap(), q.packed);
                within_bound(&w, &q.dequantize().unwrap(), |i| q.scale_at(i / inp, i % inp).unwrap());
            }
        }
    }

    #[test]
    fn int4_packing_refuses_bad_words() {
        assert_eq!(int4::unpack(&[0xF], 1, 1).unwrap(), vec![-1]);
        invalid(int4::unpack(&[0x8], 1, 1), "-8");
        invalid(int4::unpack(&[0x10], 1, 1), "padding");
        invalid(int4::unpack(&[0, 0], 1, 1), "words");
        invalid(int4::pack(&[8], 1, 1), "[-7, 7]");
        invalid(int4::pack(&[-8], 1, 1), "[-7, 7]");
        // Odd k: padding nibbles stay zero and round-trip.
        let v = [-7i8, 7, 0, 1, -1, 3, -3, 2, 5];
        let p = int4::pack(&v, 1, 9).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(int4::unpack(&p, 1, 9).unwrap(), v);
    }

    #[test]
    fn ternary_by_hand_and_packed_like_bitlinear() {
        // The hand case of nn::linear: mean|W| = 1/3; W/β = [1.5, -0.3, 2.7, -0.9, 0, 0.6] -> [1, 0, 1, -1, 0, 1].
        let w = [0.5, -0.1, 0.9, -0.3, 0.0, 0.2];
        let t = quantize_ternary(&w, 2, 3).unwrap();
        assert!((t.scale - 1.0 / 3.0).abs() < 1e-7);
        assert_eq!(t.codes, vec![1, 0, 1, -1, 0, 1]);
        assert_eq!(t.dequantize(), vec![t.scale, 0.0, t.scale, -t.scale, 0.0, t.scale]);
        let p = pack_ternary(&t).unwrap();
        // Codes 0 -> 0, 1 -> 1, −1 -> 2, two bits each, little end first; one word per row.
        assert_eq!(p.packed, vec![0b01_00_01, 0b01_00_10]);
        assert_eq!(unpack_ternary(&p).unwrap(), t);
        assert_eq!(t.bytes(), p.bytes());
        // A zero tensor gets the BitNet floor 1e-5 and all-zero codes.
        let z = quantize_ternary(&[0.0; 4], 2, 2).unwrap();
        assert_eq!((z.scale, z.codes.as_slice()), (1e-5, &[0i8; 4][..]));
    }

    #[test]
    fn ternary_matches_the_loader() {
        for (seed, out, inp) in [(3u64, 7, 13), (4, 16, 33), (5, 1, 1)] {
            let w = matrix(seed, out, inp);
            let ours = pack_ternary(&quantize_ternary(&w, out, inp).unwrap()).unwrap();
            let loader = TernaryWeights::from_latent(&HostTensor::f32(&[out, inp], w).unwrap()).unwrap();
            assert_eq!(ours, loader);
            ours.validate().unwrap();
            let bits = quantize_ternary(&matrix(seed, out, inp), out, inp).unwrap().bits_per_weight();
            assert!((ours.bytes() as f64 * 8.0 / (out * inp) as f64 - bits).abs() < 1e-12);
        }
    }

    #[test]
    fn activations_per_token() {
        // Token 0: max 31.75 -> s = 0.25; token 1 all zero.
        let x = [31.75, -0.125, 15.875, 0.0, 0.0, 0.0];
        let q = quantize_activations_int8(&x, 2, 3).unwrap();
        assert_eq!(q.scales, vec![0.25, 0.0]);
        assert_eq!(q.codes, vec![127, 0, 64, 0, 0, 0]); // -0.5 -> -0 (half to even), 63.5 -> 64
        let (t, d) = (9, 37);
        let mut x = matrix(6, t, d);
        x[5 * d] = 300.0;
        let q = quantize_activations_int8(&x, t, d).unwrap();
        assert_eq!(q.scales.len(), t);
        within_bound(&x, &q.dequantize().unwrap(), |i| q.scales[i / d]);
        assert_eq!(q.bytes(), t * d + 4 * t);
    }

    #[test]
    fn bad_inputs_are_refused() {
        let w = matrix(0, 2, 64);
        invalid(quantize_int8(&w, 3, 64), "values");
        invalid(quantize_int8(&[], 0, 4), "zero dimension");
        invalid(quantize_int8(&[], 4, 0), "zero dimension");
        invalid(quantize_int8(&[1.0, f32::NAN], 1, 2), "non-finite");
        invalid(quantize_int4(&w, 2, 64, 16), "group size");
        invalid(quantize_int4(&w, 2, 64, 128), "not a multiple");
        invalid(quantize_int4(&matrix(0, 1, 48), 1, 48, 32), "not a multiple");
        invalid(quantize_int8_grouped(&w, 2, 64, 48), "group size");
        invalid(quantize_ternary(&[f32::INFINITY], 1, 1), "non-finite");
        invalid(quantize_activations_int8(&w, 2, 65), "values");
        invalid(quantize_activations_int8(&w, usize::MAX, 2), "values");
        // Tampered structures are refused, not indexed out of bounds.
        let mut q = quantize_int8(&w, 2, 64).unwrap();
        q.scales.pop();
        invalid(q.dequantize(), "scales");
        let mut q = quantize_int8(&w, 2, 64).unwrap();
        q.codes[0] = -128;
        invalid(q.dequantize(), "-128");
        let mut q4 = quantize_int4(&w, 2, 64, 32).unwrap();
        q4.group = 48;
        invalid(q4.dequantize(), "group size");
        let mut q4 = quantize_int4(&w, 2, 64, 32).unwrap();
        q4.packed.pop();
        invalid(q4.dequantize(), "words");
        let mut t = quantize_ternary(&w, 2, 64).unwrap();
        t.codes[0] = 2;
        invalid(pack_ternary(&t), "not in");
        t.scale = 0.0;
        invalid(pack_ternary(&t), "scale");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        #[test]
        fn int_formats_meet_their_bound(seed in 0u64..1000, out in 1usize..6, groups in 1usize..4, gi in 0usize..3, amp in -20i32..20) {
            let group = GROUP_SIZES[gi];
            let inp = group * groups;
            let a = 2f32.powi(amp);
            let w: Vec<f32> = matrix(seed, out, inp).iter().map(|x| x * a).collect();
            let q4 = quantize_int4(&w, out, inp, group).unwrap();
            within_bound(&w, &q4.dequantize().unwrap(), |i| q4.scale_at(i / inp, i % inp).unwrap());
            let q8 = quantize_int8(&w, out, inp).unwrap();
            within_bound(&w, &q8.dequantize().unwrap(), |i| q8.scale_at(i / inp, i % inp).unwrap());
        }
    }
}
