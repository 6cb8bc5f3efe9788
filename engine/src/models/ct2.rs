//! CTranslate2 model files (`model.bin`, binary version 6): a small header (version, spec name,
//! spec revision), named arrays (name, rank, dims, data type, byte count, data), then aliases
//! (a name that stands for another array: Whisper's output projection is its embedding). All
//! integers little-endian; strings are a u16 length (counting a closing NUL) and the bytes.

use half::{bf16, f16};

use super::ModelError;

/// CTranslate2's data types (`ctranslate2::DataType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ct2Type {
    F32,
    I8,
    I16,
    I32,
    F16,
    Bf16,
}

impl Ct2Type {
    fn of(id: u8) -> Option<Ct2Type> {
        Some(match id {
            0 => Ct2Type::F32,
            1 => Ct2Type::I8,
            2 => Ct2Type::I16,
            3 => Ct2Type::I32,
            4 => Ct2Type::F16,
            5 => Ct2Type::Bf16,
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            Ct2Type::I8 => 1,
            Ct2Type::I16 | Ct2Type::F16 | Ct2Type::Bf16 => 2,
            Ct2Type::F32 | Ct2Type::I32 => 4,
        }
    }
}

/// One stored array: where its bytes are.
#[derive(Clone, Debug, PartialEq)]
pub struct Ct2Var {
    pub name: String,
    pub dims: Vec<usize>,
    pub ty: Ct2Type,
    offset: usize,
    len: usize,
}

/// A parsed `model.bin` (borrowing its bytes).
pub struct Ct2<'a> {
    file: String,
    bytes: &'a [u8],
    pub version: u32,
    pub spec: String,
    pub revision: u32,
    pub vars: Vec<Ct2Var>,
    pub aliases: Vec<(String, String)>,
}

struct Cursor<'a, 'b> {
    file: &'b str,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a, '_> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], ModelError> {
        if self.bytes.len() - self.at < n {
            return Err(ModelError::Truncated {
                file: self.file.into(),
                what: what.into(),
                offset: self.at as u64,
                need: n as u64,
                len: self.bytes.len() as u64,
            });
        }
        let s = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    fn u8(&mut self, what: &str) -> Result<u8, ModelError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, ModelError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &str) -> Result<u32, ModelError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self, what: &str) -> Result<String, ModelError> {
        let n = self.u16(what)? as usize;
        let b = self.take(n, what)?;
        let b = b.strip_suffix(&[0]).unwrap_or(b);
        String::from_utf8(b.to_vec()).map_err(|_| ModelError::Format {
            file: self.file.into(),
            format: "CTranslate2",
            why: format!("{what} at offset {} is not UTF-8", self.at - n),
        })
    }
}

impl<'a> Ct2<'a> {
    pub fn parse(file: &str, bytes: &'a [u8]) -> Result<Ct2<'a>, ModelError> {
        let mut c = Cursor { file, bytes, at: 0 };
        let version = c.u32("the binary version")?;
        if version != 6 {
            return Err(ModelError::Format {
                file: file.into(),
                format: "CTranslate2",
                why: format!("binary version {version} (webq reads version 6)"),
            });
        }
        let spec = c.string("the spec name")?;
        let revision = c.u32("the spec revision")?;
        let count = c.u32("the variable count")?;
        let mut vars = Vec::new();
        for i in 0..count {
            let name = c.string(&format!("the name of variable {i}"))?;
            let rank = c.u8(&format!("`{name}`'s rank"))?;
            let dims = (0..rank)
                .map(|_| c.u32(&format!("`{name}`'s dims")).map(|d| d as usize))
                .collect::<Result<Vec<_>, _>>()?;
            let id = c.u8(&format!("`{name}`'s data type"))?;
            let ty = Ct2Type::of(id).ok_or_else(|| ModelError::Tensor {
                file: file.into(),
                tensor: name.clone(),
                why: format!("unknown data type {id}"),
            })?;
            let len = c.u32(&format!("`{name}`'s byte count"))? as usize;
            let elements: usize = dims.iter().product();
            if len != elements * ty.size() {
                return Err(ModelError::Tensor {
                    file: file.into(),
                    tensor: name,
                    why: format!("{len} bytes for dims {dims:?} of {ty:?}"),
                });
            }
            let offset = c.at;
            c.take(len, &format!("tensor `{name}`"))?;
            vars.push(Ct2Var { name, dims, ty, offset, len });
        }
        let n = c.u32("the alias count")?;
        let aliases = (0..n)
            .map(|_| Ok((c.string("an alias")?, c.string("an alias's variable")?)))
            .collect::<Result<Vec<_>, ModelError>>()?;
        if c.at != bytes.len() {
            return Err(ModelError::Format {
                file: file.into(),
                format: "CTranslate2",
                why: format!("{} bytes after the aliases", bytes.len() - c.at),
            });
        }
        Ok(Ct2 { file: file.into(), bytes, version, spec, revision, vars, aliases })
    }

    pub fn var(&self, name: &str) -> Result<&Ct2Var, ModelError> {
        let name = self.aliases.iter().find(|(a, _)| a == name).map_or(name, |(_, v)| v.as_str());
        self.vars
            .iter()
            .find(|v| v.name == name)
            .ok_or_else(|| ModelError::NoTensor { file: self.file.clone(), tensor: name.into() })
    }

    /// A floating-point array as f32 values, checked to have dims `want`.
    pub fn f32s(&self, name: &str, want: &[usize]) -> Result<Vec<f32>, ModelError> {
        let v = self.var(name)?;
        if v.dims != want {
            return Err(ModelError::Tensor {
                file: self.file.clone(),
                tensor: name.into(),
                why: format!("dims {:?}, expected {want:?}", v.dims),
            });
        }
        let b = &self.bytes[v.offset..v.offset + v.len];
        Ok(match v.ty {
            Ct2Type::F32 => b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            Ct2Type::F16 => b.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            Ct2Type::Bf16 => b.chunks_exact(2).map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            other => {
                return Err(ModelError::Tensor {
                    file: self.file.clone(),
                    tensor: name.into(),
                    why: format!("{other:?}, not a floating-point type"),
                })
            }
        })
    }

    /// An integer scalar (Whisper's `num_heads`).
    pub fn int(&self, name: &str) -> Result<i64, ModelError> {
        let v = self.var(name)?;
        let b = &self.bytes[v.offset..v.offset + v.len];
        Ok(match (v.ty, b) {
            (Ct2Type::I8, [x]) => *x as i8 as i64,
            (Ct2Type::I16, [a, b]) => i16::from_le_bytes([*a, *b]) as i64,
            (Ct2Type::I32, [a, b, c, d]) => i32::from_le_bytes([*a, *b, *c, *d]) as i64,
            _ => {
                return Err(ModelError::Tensor {
                    file: self.file.clone(),
                    tensor: name.into(),
                    why: format!("{:?} of dims {:?}, not an integer scalar", v.ty, v.dims),
                })
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend(((s.len() + 1) as u16).to_le_bytes());
        out.extend(s.as_bytes());
        out.push(0);
    }

    fn file() -> Vec<u8> {
        let mut b = 6u32.to_le_bytes().to_vec();
        string(&mut b, "WhisperSpec");
        b.extend(3u32.to_le_bytes());
        b.extend(2u32.to_le_bytes());
        string(&mut b, "enc/w");
        b.push(2);
        b.extend(2u32.to_le_bytes());
        b.extend(1u32.to_le_bytes());
        b.push(4);
        b.extend(4u32.to_le_bytes());
        b.extend(f16::from_f32(1.5).to_le_bytes());
        b.extend(f16::from_f32(-2.0).to_le_bytes());
        string(&mut b, "enc/heads");
        b.push(0);
        b.push(2);
        b.extend(2u32.to_le_bytes());
        b.extend(6i16.to_le_bytes());
        b.extend(1u32.to_le_bytes());
        string(&mut b, "dec/proj");
        string(&mut b, "enc/w");
        b
    }

    #[test]
    fn reads_arrays_scalars_and_aliases() {
        let bytes = file();
        let m = Ct2::parse("model.bin", &bytes).unwrap();
        assert_eq!((m.spec.as_str(), m.revision, m.vars.len()), ("WhisperSpec", 3, 2));
        assert_eq!(m.f32s("enc/w", &[2, 1]).unwrap(), [1.5, -2.0]);
        assert_eq!(m.f32s("dec/proj", &[2, 1]).unwrap(), [1.5, -2.0], "an alias reads its variable");
        assert_eq!(m.int("enc/heads").unwrap(), 6);
        let e = m.f32s("enc/w", &[1, 2]).unwrap_err().to_string();
        assert_eq!(e, "model.bin: tensor `enc/w`: dims [2, 1], expected [1, 2]");
        let e = Ct2::parse("model.bin", &bytes[..50]).err().unwrap().to_string();
        assert!(e.starts_with("model.bin: truncated: tensor `enc/w` needs 4 bytes at offset"), "{e}");
        let mut v5 = bytes.clone();
        v5[0] = 5;
        assert!(Ct2::parse("model.bin", &v5).err().unwrap().to_string().contains("binary version 5"));
    }
}
