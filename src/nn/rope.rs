//! Rotary position embedding, GPT-NeoX / rotate-half style over the full head dim
//! (specs/models.md §2.3): for j < hd/2 the pair `(x_j, x_{j+hd/2})` is rotated by
//! `φ(p, j) = p · θ^(−2j/hd)`.

use crate::backend::HostTensor;
use crate::error::{Error, Result};

/// `cos` and `sin` tables `[T, hd]` for positions `offset..offset+T` (each half repeated, so the
/// tables line up with `x` and `rotate_half(x)`).
pub fn tables(t: usize, hd: usize, theta: f64, offset: usize) -> Result<(HostTensor, HostTensor)> {
    if hd % 2 != 0 {
        return Err(Error::Invalid(format!("RoPE needs an even head dim, got {hd}")));
    }
    let half = hd / 2;
    let (mut cos, mut sin) = (vec![0f32; t * hd], vec![0f32; t * hd]);
    for p in 0..t {
        for j in 0..half {
            // inv_freq in f32 as the reference computes it, the angle from it.
            let inv = (1.0 / theta.powf(2.0 * j as f64 / hd as f64)) as f32;
            let phi = ((p + offset) as f32 * inv) as f64;
            let (s, c) = phi.sin_cos();
            for k in [j, j + half] {
                cos[p * hd + k] = c as f32;
                sin[p * hd + k] = s as f32;
            }
        }
    }
    Ok((HostTensor::f32(&[t, hd], cos)?, HostTensor::f32(&[t, hd], sin)?))
}
