//! One error type for the whole crate. Every bad input ends here with a message a user can act on;
//! nothing in the library panics on user data, and the wasm boundary turns these into JS errors.

use thiserror::Error;

/// Element type of a [`crate::backend::HostTensor`] or device tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    F32,
    U32,
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DType::F32 => "f32",
            DType::U32 => "u32",
        })
    }
}

#[derive(Debug, Error, Clone, PartialEq)]
pub enum Error {
    /// Operands whose shapes do not fit the op (e.g. matmul `[M,K]·[K',N]` with `K != K'`).
    #[error("{op}: shape mismatch: {detail}")]
    Shape { op: &'static str, detail: String },

    /// An operand with zero elements where the op needs at least one.
    #[error("{op}: empty tensor (shape {shape:?}); the op needs at least one element")]
    Empty { op: &'static str, shape: Vec<usize> },

    /// An operand of the wrong element type.
    #[error("{op}: wrong dtype: expected {expected}, got {got}")]
    DType { op: &'static str, expected: DType, got: DType },

    /// An index (token id, class, layer) outside its valid range.
    #[error("{op}: index {index} out of range (size {size})")]
    Index { op: &'static str, index: usize, size: usize },

    /// Host data whose length does not match the declared shape.
    #[error("tensor data has {len} elements but shape {shape:?} needs {expected}")]
    DataLen { len: usize, shape: Vec<usize>, expected: usize },

    /// No usable GPU: no adapter, WebGPU missing in this browser/runtime, or device creation failed.
    #[error("no GPU: {0}")]
    NoGpu(String),

    /// A GPU error after the device was acquired (validation, out of memory, device lost).
    #[error("GPU error: {0}")]
    Gpu(String),

    /// An error reported by candle-core on the CPU path.
    #[error("CPU backend: {0}")]
    Cpu(String),

    /// Tokenizer file or encoding problem.
    #[error("tokenizer: {0}")]
    Tokenizer(String),

    /// Bad user input that is not a tensor: an empty text, a malformed JSON, an unknown option.
    #[error("invalid input: {0}")]
    Invalid(String),

    #[error("I/O: {0}")]
    Io(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::Cpu(e.to_string())
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e.to_string())
    }
}
