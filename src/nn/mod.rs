//! Layers shared by the three architectures, written on the [`Backend`](crate::backend::Backend)
//! op set: [`linear`] (dense and BitLinear), [`rope`] tables and small helpers.

pub mod linear;
pub mod rope;

use crate::backend::{Backend, HostTensor, TensorMeta};
use crate::error::Result;

/// Repeat each of `kvh` heads `g` times: `[kvh, T, X] -> [kvh·g, T, X]`, head `h` reading kv head
/// `h / g` (grouped-query attention, and GLA's `num_kv_heads`).
pub fn repeat_heads<B: Backend>(be: &B, x: &B::Tensor, g: usize) -> Result<B::Tensor> {
    if g == 1 {
        return Ok(x.clone());
    }
    let s = x.shape().to_vec(); // [kvh, T, X]
    let x4 = be.reshape(x, &[s[0], 1, s[1], s[2]])?;
    let copies: Vec<&B::Tensor> = std::iter::repeat_n(&x4, g).collect();
    let y = be.concat(&copies, 1)?; // [kvh, g, T, X]
    be.reshape(&y, &[s[0] * g, s[1], s[2]])
}

/// `[B·T, nh·X] -> [B·nh, T, X]`: split the last dim into heads and bring heads before tokens
/// (sequence b's head h is row block `b·nh + h`).
pub fn split_heads<B: Backend>(be: &B, x: &B::Tensor, b: usize, nh: usize) -> Result<B::Tensor> {
    let s = x.shape().to_vec();
    let (t, per) = (s[0] / b, s[1] / nh);
    let y = be.reshape(x, &[b, t, nh, per])?;
    let y = be.permute(&y, &[0, 2, 1, 3])?;
    be.reshape(&y, &[b * nh, t, per])
}

/// `[B·nh, T, X] -> [B·T, nh·X]`: the inverse of [`split_heads`].
pub fn merge_heads<B: Backend>(be: &B, x: &B::Tensor, b: usize) -> Result<B::Tensor> {
    let s = x.shape().to_vec();
    let nh = s[0] / b;
    let y = be.reshape(x, &[b, nh, s[1], s[2]])?;
    let y = be.permute(&y, &[0, 2, 1, 3])?;
    be.reshape(&y, &[b * s[1], nh * s[2]])
}

/// Upload a scalar as a `[1]` tensor (broadcasts against anything).
pub fn scalar<B: Backend>(be: &B, v: f32) -> Result<B::Tensor> {
    be.upload(&HostTensor::f32(&[1], vec![v])?)
}
