//! GGUF (llama.cpp's model file): little-endian header `GGUF`, version, tensor and metadata
//! counts; metadata as typed key/value pairs; tensor infos (name, dimensions innermost first, type,
//! offset); then the tensor data, aligned to `general.alignment` (32 unless it says otherwise).
//!
//! Block formats dequantized here (32 weights a block):
//! - Q8_0: `d: f16`, `qs: [i8; 32]`; `w = d * q`.
//! - Q4_0: `d: f16`, `qs: [u8; 16]`; weight `j` is the low nibble of `qs[j]`, weight `j + 16` its
//!   high nibble; `w = d * (q - 8)`.
//! - Q4_1: `d: f16`, `m: f16`, `qs: [u8; 16]` (nibbles as Q4_0); `w = d * q + m`.

use std::collections::BTreeMap;

use half::f16;

use super::ModelError;

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
}

impl Value {
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// The tensor types this reader dequantizes (GGML type ids).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q8_0,
}

impl TensorType {
    fn from_id(id: u32) -> Option<TensorType> {
        Some(match id {
            0 => TensorType::F32,
            1 => TensorType::F16,
            2 => TensorType::Q4_0,
            3 => TensorType::Q4_1,
            8 => TensorType::Q8_0,
            _ => return None,
        })
    }

    /// Weights per block and bytes per block.
    pub fn block(self) -> (u64, u64) {
        match self {
            TensorType::F32 => (1, 4),
            TensorType::F16 => (1, 2),
            TensorType::Q4_0 => (32, 18),
            TensorType::Q4_1 => (32, 20),
            TensorType::Q8_0 => (32, 34),
        }
    }

    /// Bits per weight, everything stored counted.
    pub fn bits_per_weight(self) -> f64 {
        let (n, bytes) = self.block();
        bytes as f64 * 8.0 / n as f64
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// Dimensions as GGUF lists them: innermost (contiguous) first, so a linear layer's weight of
    /// `out x in` rows is `[in, out]`.
    pub dims: Vec<u64>,
    pub ty: TensorType,
    /// Offset in the data section.
    pub offset: u64,
}

impl TensorInfo {
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }

    pub fn byte_len(&self) -> u64 {
        let (n, bytes) = self.ty.block();
        self.elements() / n * bytes
    }
}

/// A parsed GGUF file (borrowing its bytes).
#[derive(Debug)]
pub struct Gguf<'a> {
    file: String,
    pub version: u32,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
    data: &'a [u8],
}

/// A cursor over the file that turns every short read into [`ModelError::Truncated`].
struct Reader<'a> {
    file: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8], ModelError> {
        let end = (self.at as u64).checked_add(n).filter(|&e| e <= self.bytes.len() as u64);
        let Some(end) = end else {
            return Err(ModelError::Truncated {
                file: self.file.into(),
                what: what.into(),
                offset: self.at as u64,
                need: n,
                len: self.bytes.len() as u64,
            });
        };
        let out = &self.bytes[self.at..end as usize];
        self.at = end as usize;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], ModelError> {
        Ok(self.take(N as u64, what)?.try_into().expect("took N bytes"))
    }

    fn u32(&mut self, what: &str) -> Result<u32, ModelError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, ModelError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &str) -> Result<String, ModelError> {
        let len = self.u64(what)?;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|e| ModelError::Format {
            file: self.file.into(),
            format: "GGUF",
            why: format!("{what} is not UTF-8: {e}"),
        })
    }

    fn value(&mut self, ty: u32, key: &str) -> Result<Value, ModelError> {
        let what = format!("metadata `{key}`");
        Ok(match ty {
            0 => Value::U8(self.array::<1>(&what)?[0]),
            1 => Value::I8(self.array::<1>(&what)?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.array(&what)?)),
            3 => Value::I16(i16::from_le_bytes(self.array(&what)?)),
            4 => Value::U32(u32::from_le_bytes(self.array(&what)?)),
            5 => Value::I32(i32::from_le_bytes(self.array(&what)?)),
            6 => Value::F32(f32::from_le_bytes(self.array(&what)?)),
            7 => Value::Bool(self.array::<1>(&what)?[0] != 0),
            8 => Value::String(self.string(&what)?),
            9 => {
                let inner = self.u32(&what)?;
                let n = self.u64(&what)?;
                // Every element takes at least a byte: a count past the file's end is corrupt.
                if n > (self.bytes.len() - self.at) as u64 {
                    return Err(self.metadata_error(key, format!("an array of {n} elements cannot fit")));
                }
                (0..n).map(|_| self.value(inner, key)).collect::<Result<_, _>>().map(Value::Array)?
            }
            10 => Value::U64(self.u64(&what)?),
            11 => Value::I64(i64::from_le_bytes(self.array(&what)?)),
            12 => Value::F64(f64::from_le_bytes(self.array(&what)?)),
            other => return Err(self.metadata_error(key, format!("unknown value type {other}"))),
        })
    }

    fn metadata_error(&self, key: &str, why: String) -> ModelError {
        ModelError::Metadata { file: self.file.into(), key: key.into(), why }
    }
}

impl<'a> Gguf<'a> {
    /// Parses `bytes` (the whole file, named `file` in errors).
    pub fn parse(file: &str, bytes: &'a [u8]) -> Result<Gguf<'a>, ModelError> {
        let mut r = Reader { file, bytes, at: 0 };
        let magic = r.array::<4>("the magic")?;
        if &magic != MAGIC {
            return Err(ModelError::Format {
                file: file.into(),
                format: "GGUF",
                why: format!("magic {magic:?}, not {MAGIC:?}"),
            });
        }
        let version = r.u32("the version")?;
        if !(2..=3).contains(&version) {
            return Err(ModelError::Format {
                file: file.into(),
                format: "GGUF",
                why: format!("version {version} (reads 2 and 3)"),
            });
        }
        let tensor_count = r.u64("the tensor count")?;
        let kv_count = r.u64("the metadata count")?;
        let mut metadata = BTreeMap::new();
        for _ in 0..kv_count {
            let key = r.string("a metadata key")?;
            let ty = r.u32(&format!("the type of `{key}`"))?;
            let value = r.value(ty, &key)?;
            metadata.insert(key, value);
        }
        let mut tensors = Vec::new();
        for _ in 0..tensor_count {
            let name = r.string("a tensor name")?;
            let what = format!("tensor `{name}`");
            let n_dims = r.u32(&what)?;
            if n_dims > 8 {
                return Err(ModelError::Tensor {
                    file: file.into(),
                    tensor: name,
                    why: format!("{n_dims} dimensions"),
                });
            }
            let dims = (0..n_dims).map(|_| r.u64(&what)).collect::<Result<Vec<_>, _>>()?;
            let id = r.u32(&what)?;
            let ty = TensorType::from_id(id).ok_or_else(|| ModelError::Tensor {
                file: file.into(),
                tensor: name.clone(),
                why: format!("unknown tensor type {id} (this reader knows F32 0, F16 1, Q4_0 2, Q4_1 3, Q8_0 8)"),
            })?;
            let offset = r.u64(&what)?;
            tensors.push(TensorInfo { name, dims, ty, offset });
        }
        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => v.as_u64().filter(|a| a.is_power_of_two()).ok_or_else(|| ModelError::Metadata {
                file: file.into(),
                key: "general.alignment".into(),
                why: format!("{v:?} is not a power of two"),
            })?,
        };
        let start = (r.at as u64).div_ceil(alignment) * alignment;
        let data = bytes.get(start as usize..).unwrap_or(&[]);
        let gguf = Gguf { file: file.into(), version, metadata, tensors, data };
        for t in &gguf.tensors {
            gguf.check(t)?;
        }
        Ok(gguf)
    }

    /// A tensor's blocks must be whole and its bytes inside the file.
    fn check(&self, t: &TensorInfo) -> Result<(), ModelError> {
        let (n, _) = t.ty.block();
        if t.elements() % n != 0 {
            return Err(self.tensor_error(t, format!("{} elements are not whole blocks of {n}", t.elements())));
        }
        let end = t.offset.checked_add(t.byte_len());
        if end.is_none_or(|e| e > self.data.len() as u64) {
            return Err(ModelError::Truncated {
                file: self.file.clone(),
                what: format!("tensor `{}`", t.name),
                offset: t.offset,
                need: t.byte_len(),
                len: self.data.len() as u64,
            });
        }
        Ok(())
    }

    fn tensor_error(&self, t: &TensorInfo, why: String) -> ModelError {
        ModelError::Tensor { file: self.file.clone(), tensor: t.name.clone(), why }
    }

    pub fn info(&self, name: &str) -> Result<&TensorInfo, ModelError> {
        self.tensors
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| ModelError::NoTensor { file: self.file.clone(), tensor: name.into() })
    }

    pub fn meta(&self, key: &str) -> Result<&Value, ModelError> {
        self.metadata.get(key).ok_or_else(|| ModelError::Metadata {
            file: self.file.clone(),
            key: key.into(),
            why: "absent".into(),
        })
    }

    /// A metadata number (any integer or float type).
    pub fn meta_f64(&self, key: &str) -> Result<f64, ModelError> {
        let v = self.meta(key)?;
        v.as_f64().ok_or_else(|| ModelError::Metadata {
            file: self.file.clone(),
            key: key.into(),
            why: format!("{v:?} is not a number"),
        })
    }

    /// The raw bytes of a tensor (inside the file: `parse` checked every tensor's range).
    pub fn raw(&self, name: &str) -> Result<&'a [u8], ModelError> {
        Ok(self.bytes_of(self.info(name)?))
    }

    fn bytes_of(&self, t: &TensorInfo) -> &'a [u8] {
        &self.data[t.offset as usize..(t.offset + t.byte_len()) as usize]
    }

    /// A tensor dequantized to f32, in storage order (innermost dimension contiguous).
    pub fn dequantize(&self, name: &str) -> Result<Vec<f32>, ModelError> {
        let t = self.info(name)?;
        Ok(dequantize(t.ty, self.bytes_of(t)))
    }
}

fn half(b: &[u8]) -> f32 {
    f16::from_le_bytes([b[0], b[1]]).to_f32()
}

/// Dequantizes whole blocks of `ty` (the caller checked that `bytes` holds whole blocks).
pub fn dequantize(ty: TensorType, bytes: &[u8]) -> Vec<f32> {
    let (_, block) = ty.block();
    let mut out = Vec::with_capacity(bytes.len() / block as usize * ty.block().0 as usize);
    for b in bytes.chunks_exact(block as usize) {
        match ty {
            TensorType::F32 => out.push(f32::from_le_bytes(b.try_into().expect("4 bytes"))),
            TensorType::F16 => out.push(half(b)),
            TensorType::Q8_0 => {
                let d = half(&b[..2]);
                out.extend(b[2..].iter().map(|&q| d * (q as i8) as f32));
            }
            TensorType::Q4_0 | TensorType::Q4_1 => {
                let d = half(&b[..2]);
                let (m, qs) = if ty == TensorType::Q4_1 { (half(&b[2..4]), &b[4..]) } else { (0.0, &b[2..]) };
                let offset = if ty == TensorType::Q4_0 { 8 } else { 0 };
                let weight = |q: u8| d * (q as i32 - offset) as f32 + m;
                out.extend(qs.iter().map(|&q| weight(q & 0x0F)));
                out.extend(qs.iter().map(|&q| weight(q >> 4)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a GGUF v3 file: metadata (string and u32 values, a string array) and tensors.
    pub(crate) fn write(meta: &[(&str, Value)], tensors: &[(&str, &[u64], u32, Vec<u8>)]) -> Vec<u8> {
        fn s(out: &mut Vec<u8>, v: &str) {
            out.extend((v.len() as u64).to_le_bytes());
            out.extend(v.as_bytes());
        }
        fn value(out: &mut Vec<u8>, v: &Value) {
            match v {
                Value::U32(x) => out.extend(x.to_le_bytes()),
                Value::F32(x) => out.extend(x.to_le_bytes()),
                Value::String(x) => s(out, x),
                Value::Array(items) => {
                    out.extend(8u32.to_le_bytes());
                    out.extend((items.len() as u64).to_le_bytes());
                    items.iter().for_each(|i| value(out, i));
                }
                other => unimplemented!("{other:?}"),
            }
        }
        let id = |v: &Value| match v {
            Value::U32(_) => 4u32,
            Value::F32(_) => 6,
            Value::String(_) => 8,
            Value::Array(_) => 9,
            _ => unimplemented!(),
        };
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend((tensors.len() as u64).to_le_bytes());
        out.extend((meta.len() as u64).to_le_bytes());
        for (k, v) in meta {
            s(&mut out, k);
            out.extend(id(v).to_le_bytes());
            value(&mut out, v);
        }
        let mut offset = 0u64;
        let mut data = Vec::new();
        for (name, dims, ty, bytes) in tensors {
            s(&mut out, name);
            out.extend((dims.len() as u32).to_le_bytes());
            dims.iter().for_each(|d| out.extend(d.to_le_bytes()));
            out.extend(ty.to_le_bytes());
            out.extend(offset.to_le_bytes());
            data.extend(bytes);
            while data.len() % 32 != 0 {
                data.push(0);
            }
            offset = data.len() as u64;
        }
        while out.len() % 32 != 0 {
            out.push(0);
        }
        out.extend(data);
        out
    }

    fn h(v: f32) -> [u8; 2] {
        f16::from_f32(v).to_le_bytes()
    }

    /// One Q4_1 block: d = 0.5, m = -1, nibbles q_j = j % 16 low and (15 - j % 16) high.
    fn q4_1_block() -> Vec<u8> {
        let mut b = [h(0.5), h(-1.0)].concat();
        b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        b
    }

    #[test]
    fn q4_1_and_q8_0_blocks_dequantize_to_hand_computed_weights() {
        let w = dequantize(TensorType::Q4_1, &q4_1_block());
        assert_eq!(w.len(), 32);
        // weight j (j < 16) = 0.5 * j - 1; weight j + 16 = 0.5 * (15 - j) - 1.
        assert_eq!(&w[..4], &[-1.0, -0.5, 0.0, 0.5]);
        assert_eq!(w[15], 6.5);
        assert_eq!(w[16], 6.5);
        assert_eq!(w[31], -1.0);
        let mut q8 = h(0.25).to_vec();
        q8.extend((0..32).map(|i: i32| ((i - 16) * 8) as i8 as u8));
        let w = dequantize(TensorType::Q8_0, &q8);
        assert_eq!((w[0], w[16], w[31]), (-32.0, 0.0, 30.0));
        let mut q4 = h(2.0).to_vec();
        q4.extend([0x80u8; 16]);
        let w = dequantize(TensorType::Q4_0, &q4);
        assert_eq!((w[0], w[16]), (-16.0, 0.0));
    }

    #[test]
    fn a_written_file_reads_back_with_metadata_and_tensors() {
        let f32s: Vec<u8> = [1.0f32, -2.0, 3.5, 0.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let file = write(
            &[
                ("general.architecture", Value::String("llama".into())),
                ("llama.block_count", Value::U32(2)),
                ("tokenizer.ggml.tokens", Value::Array(vec![Value::String("a".into()), Value::String("b".into())])),
            ],
            &[("norm", &[4], 0, f32s), ("w", &[32, 1], 3, q4_1_block())],
        );
        let g = Gguf::parse("t.gguf", &file).unwrap();
        assert_eq!(g.version, 3);
        assert_eq!(g.meta("general.architecture").unwrap().as_str(), Some("llama"));
        assert_eq!(g.meta_f64("llama.block_count").unwrap(), 2.0);
        assert_eq!(g.meta("tokenizer.ggml.tokens").unwrap().as_array().unwrap().len(), 2);
        assert_eq!(g.dequantize("norm").unwrap(), vec![1.0, -2.0, 3.5, 0.0]);
        assert_eq!(g.dequantize("w").unwrap()[1], -0.5);
        assert_eq!(g.info("w").unwrap().ty.bits_per_weight(), 5.0);
        let e = g.dequantize("nope").unwrap_err().to_string();
        assert_eq!(e, "t.gguf: no tensor `nope`");
    }

    #[test]
    fn corrupt_files_are_errors_that_say_where() {
        let file = write(&[("k", Value::U32(1))], &[("w", &[32], 3, q4_1_block())]);
        // The data section is 20 bytes of block and 12 of padding: cut into the block.
        let e = Gguf::parse("m.gguf", &file[..file.len() - 14]).unwrap_err().to_string();
        assert!(e.starts_with("m.gguf: truncated: tensor `w` needs 20 bytes"), "{e}");
        for cut in [3, 10, 30, 50] {
            let e = Gguf::parse("m.gguf", &file[..cut]).unwrap_err().to_string();
            assert!(e.starts_with("m.gguf: truncated:"), "cut at {cut}: {e}");
        }
        let mut bad = file.clone();
        bad[0] = b'X';
        assert!(Gguf::parse("m.gguf", &bad).unwrap_err().to_string().contains("not a GGUF file"));
        let odd = write(&[], &[("w", &[32], 14, vec![0; 32])]);
        let e = Gguf::parse("m.gguf", &odd).unwrap_err().to_string();
        assert!(e.contains("tensor `w`: unknown tensor type 14"), "{e}");
        let partial = write(&[], &[("w", &[31], 3, q4_1_block())]);
        assert!(Gguf::parse("m.gguf", &partial).unwrap_err().to_string().contains("not whole blocks"));
    }
}
