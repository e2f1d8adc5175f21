//! Property tests of the packed ternary format (`backend::ternary`) and of the CPU reference's
//! product on it (`ternary_matmul_host`), the oracle of `ternary_matmul.wgsl`:
//!
//! - pack → unpack is the identity for any shape, and `validate` accepts what `pack` makes;
//! - for integer x (8-bit activations) the add/sub-only product equals a dense f32 matmul of the
//!   unpacked weights exactly, through the public `Backend` API as well;
//! - values outside {-1, 0, 1}, code 3, non-zero padding and wrong lengths are refused with
//!   `Error::Invalid`, never a panic.

// Native only: like the other native test files (the browser tests live in tests/web.rs).
#![cfg(not(target_arch = "wasm32"))]

use proptest::collection::vec;
use proptest::prelude::*;
use trilemma::backend::cpu::{ternary_matmul_host, CpuBackend};
use trilemma::backend::{ternary, Backend, HostTensor};
use trilemma::error::Error;

/// `(n, k, values)`: an `[n, k]` ternary matrix, with k often not a multiple of 16 (padding).
fn ternary_matrix() -> impl Strategy<Value = (usize, usize, Vec<i8>)> {
    (1usize..=9, 1usize..=70).prop_flat_map(|(n, k)| (Just(n), Just(k), vec(-1i8..=1, n * k)))
}

/// A ternary matrix plus integer activations `x [m, k]` in [-127, 127].
fn product_case() -> impl Strategy<Value = (usize, usize, usize, Vec<i8>, Vec<i32>)> {
    (1usize..=5, ternary_matrix())
        .prop_flat_map(|(m, (n, k, w))| (Just(m), Just(n), Just(k), Just(w), vec(-127i32..=127, m * k)))
}

fn is_invalid<T: std::fmt::Debug>(r: Result<T, Error>) -> bool {
    matches!(r, Err(Error::Invalid(_)))
}

proptest! {
    #[test]
    fn pack_then_unpack_is_the_identity((n, k, values) in ternary_matrix()) {
        let words = ternary::pack(&values, n, k)?;
        prop_assert_eq!(words.len(), n * ternary::words_per_row(k));
        ternary::validate(&words, n, k)?;
        prop_assert_eq!(ternary::unpack(&words, n, k)?, values.clone());
        // The layout itself: weight j of row r in word j / 16, bits 2 (j % 16).., codes 0/1/2.
        let wpr = ternary::words_per_row(k);
        for r in 0..n {
            for j in 0..k {
                let code = (words[r * wpr + j / 16] >> (2 * (j % 16))) & 3;
                let want = match values[r * k + j] { 0 => 0, 1 => 1, _ => 2 };
                prop_assert_eq!(code, want, "row {} weight {}", r, j);
            }
        }
    }

    #[test]
    fn host_product_equals_dense_matmul_for_integer_x((m, n, k, w, x) in product_case()) {
        let words = ternary::pack(&w, n, k)?;
        let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let got = ternary_matmul_host(&xf, &words, m, k, n)?;

        // Dense f32 matmul with multiplications, x · Wᵀ: integer products and partial sums stay
        // far below 2^24, so f32 is exact here and any difference is a bug.
        let dense: Vec<f32> = (0..m * n)
            .map(|o| (0..k).map(|j| xf[(o / n) * k + j] * w[(o % n) * k + j] as f32).sum())
            .collect();
        prop_assert_eq!(&got, &dense);

        // The same through the Backend API, against candle's own matmul of the unpacked weights.
        let cpu = CpuBackend::new();
        let xt = cpu.upload(&HostTensor::f32(&[m, k], xf.clone())?)?;
        let packed = cpu.upload(&HostTensor::u32(&[n, ternary::words_per_row(k)], words)?)?;
        let unpacked: Vec<f32> = ternary::unpack(&ternary::pack(&w, n, k)?, n, k)?.iter().map(|&v| v as f32).collect();
        let wt = cpu.upload(&HostTensor::f32(&[n, k], unpacked)?)?;
        let via_op = cpu.read_sync(&cpu.ternary_matmul(&xt, &packed)?)?;
        let via_matmul = cpu.read_sync(&cpu.matmul(&xt, &wt, true)?)?;
        prop_assert_eq!(via_op.as_f32("t")?, got.as_slice());
        prop_assert_eq!(via_matmul.as_f32("t")?, got.as_slice());
    }

    #[test]
    fn values_outside_minus_one_to_one_are_refused(
        (n, k, mut values) in ternary_matrix(),
        at in any::<prop::sample::Index>(),
        bad in prop_oneof![2i8..=i8::MAX, i8::MIN..=-2],
    ) {
        values[at.index(n * k)] = bad;
        prop_assert!(is_invalid(ternary::pack(&values, n, k)));
    }

    #[test]
    fn code_3_is_refused((n, k, values) in ternary_matrix(), at in any::<prop::sample::Index>()) {
        let mut words = ternary::pack(&values, n, k)?;
        let (r, j) = { let i = at.index(n * k); (i / k, i % k) };
        words[r * ternary::words_per_row(k) + j / 16] |= 3 << (2 * (j % 16));
        prop_assert!(is_invalid(ternary::validate(&words, n, k)));
        prop_assert!(is_invalid(ternary::unpack(&words, n, k)));
        prop_assert!(is_invalid(ternary_matmul_host(&vec![1.0; k], &words, 1, k, n)));
    }

    #[test]
    fn non_zero_padding_is_refused(
        (n, k, values) in ternary_matrix().prop_filter("k leaves padding", |(_, k, _)| k % 16 != 0),
        row in any::<prop::sample::Index>(),
        slot in any::<prop::sample::Index>(),
        code in 1u32..=3,
    ) {
        let mut words = ternary::pack(&values, n, k)?;
        let wpr = ternary::words_per_row(k);
        // A weight slot past k in the row's last word.
        let j = k % 16 + slot.index(16 - k % 16);
        words[row.index(n) * wpr + wpr - 1] |= code << (2 * j);
        prop_assert!(is_invalid(ternary::validate(&words, n, k)));
        prop_assert!(is_invalid(ternary::unpack(&words, n, k)));
        prop_assert!(is_invalid(ternary_matmul_host(&vec![1.0; k], &words, 1, k, n)));
    }

    #[test]
    fn wrong_lengths_are_refused_not_panics((n, k, values) in ternary_matrix(), extra in 1usize..=3) {
        let words = ternary::pack(&values, n, k)?;
        prop_assert!(is_invalid(ternary::pack(&values[1..], n, k)));
        prop_assert!(is_invalid(ternary::unpack(&words[1..], n, k)));
        prop_assert!(is_invalid(ternary::validate(&[words.clone(), vec![0; extra]].concat(), n, k)));
        prop_assert!(is_invalid(ternary_matmul_host(&vec![1.0; k + extra], &words, 1, k, n)));
        prop_assert!(is_invalid(ternary_matmul_host(&vec![1.0; k], &words[1..], 1, k, n)));
        // Sizes whose product overflows are refused, not multiplied.
        prop_assert!(is_invalid(ternary::pack(&values, usize::MAX, k + 1)));
        prop_assert!(is_invalid(ternary_matmul_host(&[], &words, usize::MAX, 2, n)));
    }
}
