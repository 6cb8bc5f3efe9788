//! safetensors files (through the `safetensors` crate): a JSON header of tensor names, dtypes,
//! shapes and byte ranges, then the data. F32, F16 and BF16 tensors read as f32.

use half::{bf16, f16};
use safetensors::{Dtype, SafeTensors};

use super::ModelError;

/// A parsed safetensors file (borrowing its bytes).
pub struct Safetensors<'a> {
    file: String,
    inner: SafeTensors<'a>,
}

impl<'a> Safetensors<'a> {
    pub fn parse(file: &str, bytes: &'a [u8]) -> Result<Safetensors<'a>, ModelError> {
        let inner = SafeTensors::deserialize(bytes).map_err(|e| ModelError::Format {
            file: file.into(),
            format: "safetensors",
            why: e.to_string(),
        })?;
        Ok(Safetensors { file: file.into(), inner })
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.inner.names().into_iter().map(str::to_string).collect();
        names.sort();
        names
    }

    pub fn shape(&self, name: &str) -> Result<Vec<usize>, ModelError> {
        Ok(self.view(name)?.shape().to_vec())
    }

    fn view(&self, name: &str) -> Result<safetensors::tensor::TensorView<'a>, ModelError> {
        self.inner.tensor(name).map_err(|_| ModelError::NoTensor { file: self.file.clone(), tensor: name.into() })
    }

    /// A tensor as f32 values, row-major.
    pub fn f32s(&self, name: &str) -> Result<Vec<f32>, ModelError> {
        let v = self.view(name)?;
        let data = v.data();
        Ok(match v.dtype() {
            Dtype::F32 => data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect(),
            Dtype::F16 => data.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            Dtype::BF16 => data.chunks_exact(2).map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            other => {
                return Err(ModelError::Tensor {
                    file: self.file.clone(),
                    tensor: name.into(),
                    why: format!("dtype {other:?} (this reader takes F32, F16, BF16)"),
                })
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file with one tensor, written by hand: the header, then the data.
    fn file(dtype: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
        let header = format!(r#"{{"t":{{"dtype":"{dtype}","shape":{shape:?},"data_offsets":[0,{}]}}}}"#, data.len());
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend(header.as_bytes());
        out.extend(data);
        out
    }

    #[test]
    fn tensors_read_as_f32_in_every_float_dtype() {
        let f32s: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let bytes = file("F32", &[1, 2], &f32s);
        let s = Safetensors::parse("m.safetensors", &bytes).unwrap();
        assert_eq!(s.names(), ["t"]);
        assert_eq!(s.shape("t").unwrap(), [1, 2]);
        assert_eq!(s.f32s("t").unwrap(), [1.5, -2.0]);
        let halfs: Vec<u8> = [f16::from_f32(0.5), f16::from_f32(-4.0)].iter().flat_map(|v| v.to_le_bytes()).collect();
        let bytes = file("F16", &[2], &halfs);
        assert_eq!(Safetensors::parse("m", &bytes).unwrap().f32s("t").unwrap(), [0.5, -4.0]);
    }

    #[test]
    fn corrupt_files_and_unknown_dtypes_are_errors_naming_the_file() {
        let f32s = [0u8; 8];
        let bytes = file("F32", &[2], &f32s);
        let e = Safetensors::parse("m.safetensors", &bytes[..bytes.len() - 3]).err().unwrap().to_string();
        assert!(e.starts_with("m.safetensors: not a safetensors file:"), "{e}");
        let e = Safetensors::parse("m.safetensors", b"\x01").err().unwrap().to_string();
        assert!(e.starts_with("m.safetensors: not a safetensors file:"), "{e}");
        let ints = file("I32", &[2], &f32s);
        let e = Safetensors::parse("m.safetensors", &ints).unwrap().f32s("t").unwrap_err().to_string();
        assert!(e.contains("tensor `t`: dtype I32"), "{e}");
        let e = Safetensors::parse("m.safetensors", &ints).unwrap().f32s("u").unwrap_err().to_string();
        assert_eq!(e, "m.safetensors: no tensor `u`");
    }
}
