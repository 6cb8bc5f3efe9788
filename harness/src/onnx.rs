//! A one-node ONNX model written by hand: `com.microsoft.MatMulNBits` over webq's own packed 4-bit
//! weights, for the onnxruntime-web peer (`webq peer`). Protobuf is a small wire format; the few
//! messages this needs (ModelProto, GraphProto, NodeProto, AttributeProto, TensorProto,
//! ValueInfoProto) are written field by field, and the tests read them back with a reader of the
//! same size.

use webq_engine::quant::{Group, IntBits, QuantFormat, QuantizedMatrix, Scheme};

/// ONNX data types used here (onnx.proto `TensorProto.DataType`).
const FLOAT: i64 = 1;
const UINT8: i64 = 2;

/// Protobuf wire types.
const VARINT: u32 = 0;
const LEN: u32 = 2;

#[derive(Default)]
struct Message(Vec<u8>);

impl Message {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, field: u32, wire: u32) {
        self.varint(u64::from(field << 3 | wire));
    }

    fn int(mut self, field: u32, v: i64) -> Self {
        self.key(field, VARINT);
        self.varint(v as u64);
        self
    }

    fn bytes(mut self, field: u32, b: &[u8]) -> Self {
        self.key(field, LEN);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }

    fn str(self, field: u32, s: &str) -> Self {
        self.bytes(field, s.as_bytes())
    }

    fn msg(self, field: u32, m: Message) -> Self {
        self.bytes(field, &m.0)
    }
}

fn tensor(name: &str, dims: &[i64], data_type: i64, raw: &[u8]) -> Message {
    let mut t = Message::default();
    for &d in dims {
        t = t.int(1, d);
    }
    t.int(2, data_type).str(8, name).bytes(9, raw)
}

fn value_info(name: &str, elem_type: i64, dims: &[i64]) -> Message {
    let shape = dims.iter().fold(Message::default(), |s, &d| s.msg(1, Message::default().int(1, d)));
    let tensor_type = Message::default().int(1, elem_type).msg(2, shape);
    Message::default().str(1, name).msg(2, Message::default().msg(1, tensor_type))
}

fn int_attribute(name: &str, v: i64) -> Message {
    // AttributeProto: name = 1, i = 3, type = 20 (INT = 2).
    Message::default().str(1, name).int(3, v).int(20, 2)
}

/// Why a weight cannot become a MatMulNBits initializer.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum OnnxError {
    #[error("MatMulNBits takes 4-bit grouped weights here; {0} is not one")]
    Format(String),
    #[error("K ({k}) must be a whole number of blocks of {block}")]
    Shape { k: usize, block: usize },
}

/// The model `Y[M, N] = MatMulNBits(X[M, K], B, scales[, zero_points])` holding `q`'s codes: B is
/// uint8 [N, K/block, block/2], low nibble first, codes unsigned (signed codes + 8, the default zero
/// point); scales f32 [N * K/block]; zero points (asymmetric formats) uint8 [N, ceil(K/block/2)].
pub fn matmul_nbits(q: &QuantizedMatrix, m: usize) -> Result<Vec<u8>, OnnxError> {
    let f = match q.format {
        QuantFormat::Int(f) if f.bits == IntBits::B4 => f,
        other => return Err(OnnxError::Format(other.to_string())),
    };
    let Group::Size(block) = f.group else { return Err(OnnxError::Format(q.format.to_string())) };
    let block = block as usize;
    let (n, k) = (q.n, q.k);
    if k % block != 0 || block % 2 != 0 {
        return Err(OnnxError::Shape { k, block });
    }
    let blocks = k / block;
    let asym = f.scheme == Scheme::Asymmetric;
    let unsigned = |r: usize, c: usize| -> u8 { (if asym { q.code(r, c) } else { q.code(r, c) + 8 }) as u8 & 0xF };
    let mut b = vec![0u8; n * k / 2];
    let mut scales = Vec::with_capacity(n * blocks * 4);
    let zp_row = blocks.div_ceil(2);
    let mut zeros = vec![0u8; n * zp_row];
    for r in 0..n {
        for c in 0..k {
            b[(r * k + c) / 2] |= unsigned(r, c) << (4 * (c % 2));
        }
        for g in 0..blocks {
            scales.extend_from_slice(&q.scale(r, g).to_le_bytes());
            zeros[r * zp_row + g / 2] |= ((q.zero(r, g) as u8) & 0xF) << (4 * (g % 2));
        }
    }
    let (m, n, k, blocks, block) = (m as i64, n as i64, k as i64, blocks as i64, block as i64);
    let mut node = Message::default().str(1, "X").str(1, "B").str(1, "scales");
    if asym {
        node = node.str(1, "zero_points");
    }
    node = node.str(2, "Y").str(3, "matmul_nbits").str(4, "MatMulNBits").str(7, "com.microsoft");
    for (name, v) in [("K", k), ("N", n), ("bits", 4), ("block_size", block)] {
        node = node.msg(5, int_attribute(name, v));
    }
    let mut graph = Message::default()
        .msg(1, node)
        .str(2, "webq_matmul_nbits")
        .msg(5, tensor("B", &[n, blocks, block / 2], UINT8, &b))
        .msg(5, tensor("scales", &[n * blocks], FLOAT, &scales));
    if asym {
        graph = graph.msg(5, tensor("zero_points", &[n * zp_row as i64], UINT8, &zeros));
    }
    graph = graph.msg(11, value_info("X", FLOAT, &[m, k])).msg(12, value_info("Y", FLOAT, &[m, n]));
    let opset = |domain: &str, version| Message::default().str(1, domain).int(2, version);
    let model = Message::default()
        .int(1, 8) // IR version 8 (ONNX 1.10+)
        .str(2, "webq")
        .msg(7, graph)
        .msg(8, opset("", 17))
        .msg(8, opset("com.microsoft", 1));
    Ok(model.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use webq_engine::quant::{quantize, Quantizer};
    use webq_engine::seeded;

    /// One protobuf field as read back: number, and its varint or bytes.
    #[derive(Debug)]
    enum Field<'a> {
        Int(u32, u64),
        Bytes(u32, &'a [u8]),
    }

    fn varint(b: &[u8], at: &mut usize) -> u64 {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = b[*at];
            *at += 1;
            v |= u64::from(byte & 0x7F) << shift;
            if byte < 0x80 {
                break;
            }
        }
        v
    }

    fn fields(b: &[u8]) -> Vec<Field<'_>> {
        let (mut at, mut out) = (0, Vec::new());
        while at < b.len() {
            let key = varint(b, &mut at);
            let (field, wire) = ((key >> 3) as u32, (key & 7) as u32);
            match wire {
                VARINT => out.push(Field::Int(field, varint(b, &mut at))),
                LEN => {
                    let len = varint(b, &mut at) as usize;
                    out.push(Field::Bytes(field, &b[at..at + len]));
                    at += len;
                }
                w => panic!("unexpected wire type {w}"),
            }
        }
        out
    }

    fn get<'a>(f: &[Field<'a>], n: u32) -> Vec<&'a [u8]> {
        f.iter()
            .filter_map(|x| match x {
                Field::Bytes(k, b) if *k == n => Some(*b),
                _ => None,
            })
            .collect()
    }

    fn int(f: &[Field], n: u32) -> Vec<u64> {
        f.iter().filter_map(|x| if let Field::Int(k, v) = x { (*k == n).then_some(*v) } else { None }).collect()
    }

    #[test]
    fn the_model_reads_back_with_the_weights_it_was_given() {
        let (n, k) = (6, 64);
        let w = seeded::weights(3, n, k);
        for name in ["int4-g32-sym", "int4-g32-asym"] {
            let format: QuantFormat = name.parse().unwrap();
            let q = quantize(&w, n, k, format, Quantizer::RoundToNearest).unwrap();
            let bytes = matmul_nbits(&q, 1).unwrap();
            let model = fields(&bytes);
            assert_eq!(int(&model, 1), vec![8], "IR version");
            let opsets: Vec<String> = get(&model, 8)
                .iter()
                .map(|o| String::from_utf8(get(&fields(o), 1).first().map_or(vec![], |d| d.to_vec())).unwrap())
                .collect();
            assert_eq!(opsets, vec!["", "com.microsoft"]);
            let graph = fields(get(&model, 7)[0]);
            let node = fields(get(&graph, 1)[0]);
            assert_eq!(get(&node, 4), vec![b"MatMulNBits".as_slice()]);
            assert_eq!(get(&node, 7), vec![b"com.microsoft".as_slice()]);
            let attrs: Vec<(String, u64)> = get(&node, 5)
                .iter()
                .map(|a| {
                    let a = fields(a);
                    (String::from_utf8(get(&a, 1)[0].to_vec()).unwrap(), int(&a, 3)[0])
                })
                .collect();
            assert_eq!(attrs, vec![("K".into(), 64), ("N".into(), 6), ("bits".into(), 4), ("block_size".into(), 32)]);
            let inits: Vec<Vec<Field>> = get(&graph, 5).into_iter().map(fields).collect();
            let b = inits.iter().find(|t| get(t, 8)[0] == b"B").expect("B");
            assert_eq!(int(b, 1), vec![6, 2, 16], "B is [N, K/block, block/2]");
            let raw = get(b, 9)[0];
            // Every code reads back: low nibble first, signed codes shifted by the default zero point 8.
            for r in 0..n {
                for c in 0..k {
                    let u = (raw[(r * k + c) / 2] >> (4 * (c % 2))) & 0xF;
                    let want = if name.ends_with("asym") { q.code(r, c) } else { q.code(r, c) + 8 };
                    assert_eq!(i32::from(u), want, "{name} code ({r}, {c})");
                }
            }
            let scales = inits.iter().find(|t| get(t, 8)[0] == b"scales").expect("scales");
            let s: Vec<f32> = get(scales, 9)[0].chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
            assert_eq!(s.len(), n * 2);
            assert_eq!(s[3], q.scale(1, 1));
            let zp = inits.iter().find(|t| get(t, 8)[0] == b"zero_points");
            assert_eq!(zp.is_some(), name.ends_with("asym"), "zero points only for asymmetric weights");
            if let Some(zp) = zp {
                let raw = get(zp, 9)[0];
                assert_eq!(i32::from(raw[2] >> 4), q.zero(2, 1), "row 2, block 1: the high nibble of its row's byte");
            }
        }
        let int8 = quantize(&w, n, k, "int8".parse().unwrap(), Quantizer::RoundToNearest).unwrap();
        assert!(matches!(matmul_nbits(&int8, 1), Err(OnnxError::Format(_))));
    }
}
