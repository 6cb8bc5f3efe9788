//! ONNX model files (through `prost`): the few messages of `onnx.proto` a reader of weights needs
//! (model, graph, node, attribute, tensor), declared with prost's derive so that no `protoc` is
//! needed. Unknown fields (value infos, metadata, the decoder's ops) are skipped by the decoder.
//!
//! Exporters name many weights after nothing (`onnx::MatMul_1966`): a weight is found through the
//! node that uses it, by the node's name (`/backbone/encoder/layer.0/mlp/fc1/MatMul`), which is
//! the weight's place in the graph.

use prost::Message;

use super::ModelError;

#[derive(Clone, PartialEq, Message)]
struct ModelProto {
    #[prost(int64, tag = "1")]
    ir_version: i64,
    #[prost(message, optional, tag = "7")]
    graph: Option<GraphProto>,
    #[prost(message, repeated, tag = "8")]
    opset_import: Vec<OperatorSetId>,
}

#[derive(Clone, PartialEq, Message)]
struct OperatorSetId {
    #[prost(string, tag = "1")]
    domain: String,
    #[prost(int64, tag = "2")]
    version: i64,
}

#[derive(Clone, PartialEq, Message)]
struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    node: Vec<NodeProto>,
    #[prost(message, repeated, tag = "5")]
    initializer: Vec<TensorProto>,
}

/// A node of the graph.
#[derive(Clone, PartialEq, Message)]
pub struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(string, tag = "4")]
    pub op_type: String,
    #[prost(message, repeated, tag = "5")]
    attribute: Vec<AttributeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct AttributeProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(float, tag = "2")]
    f: f32,
    #[prost(message, optional, tag = "5")]
    t: Option<TensorProto>,
}

#[derive(Clone, PartialEq, Message)]
struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    data_type: i32,
    #[prost(float, repeated, tag = "4")]
    float_data: Vec<f32>,
    #[prost(string, tag = "8")]
    name: String,
    #[prost(bytes = "vec", tag = "9")]
    raw_data: Vec<u8>,
    #[prost(int32, tag = "14")]
    data_location: i32,
}

/// `TensorProto.DataType.FLOAT`.
const FLOAT: i32 = 1;

/// A parsed ONNX file.
pub struct Onnx {
    file: String,
    pub opset: i64,
    nodes: Vec<NodeProto>,
    initializers: std::collections::HashMap<String, TensorProto>,
}

/// An f32 tensor read from the file.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub dims: Vec<usize>,
    pub data: Vec<f32>,
}

impl Onnx {
    pub fn parse(file: &str, bytes: &[u8]) -> Result<Onnx, ModelError> {
        let bad = |why: String| ModelError::Format { file: file.into(), format: "ONNX", why };
        let m = ModelProto::decode(bytes).map_err(|e| bad(format!("protobuf: {e}")))?;
        let g = m.graph.ok_or_else(|| bad("the model has no graph".into()))?;
        if g.node.is_empty() {
            return Err(bad("the graph has no nodes".into()));
        }
        let opset = m.opset_import.iter().find(|o| o.domain.is_empty()).map_or(0, |o| o.version);
        let mut initializers = std::collections::HashMap::new();
        for t in g.initializer {
            initializers.insert(t.name.clone(), t);
        }
        Ok(Onnx { file: file.into(), opset, nodes: g.node, initializers })
    }

    pub fn nodes(&self) -> &[NodeProto] {
        &self.nodes
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Result<&NodeProto, ModelError> {
        self.nodes.iter().find(|n| n.name == name).ok_or_else(|| ModelError::Tensor {
            file: self.file.clone(),
            tensor: name.into(),
            why: "no node of this name in the graph".into(),
        })
    }

    pub fn is_initializer(&self, name: &str) -> bool {
        self.initializers.contains_key(name)
    }

    /// An initializer's f32 values and dims.
    pub fn initializer(&self, name: &str) -> Result<Tensor, ModelError> {
        let t = self
            .initializers
            .get(name)
            .ok_or_else(|| ModelError::NoTensor { file: self.file.clone(), tensor: name.into() })?;
        self.tensor(name, t)
    }

    /// The value a `Constant` node produces as `output`.
    pub fn constant(&self, output: &str) -> Result<Tensor, ModelError> {
        let n = self
            .nodes
            .iter()
            .find(|n| n.op_type == "Constant" && n.output.iter().any(|o| o == output))
            .ok_or_else(|| ModelError::NoTensor { file: self.file.clone(), tensor: output.into() })?;
        let t = n.attribute.iter().find(|a| a.name == "value").and_then(|a| a.t.as_ref()).ok_or_else(|| {
            ModelError::Tensor {
                file: self.file.clone(),
                tensor: output.into(),
                why: "a Constant without a tensor value".into(),
            }
        })?;
        self.tensor(output, t)
    }

    /// Input `index` of node `node` (by name), which must be an initializer of dims `want`.
    pub fn input(&self, node: &str, index: usize, want: &[usize]) -> Result<Tensor, ModelError> {
        let n = self.node(node)?;
        let bad = |tensor: String, why: String| ModelError::Tensor { file: self.file.clone(), tensor, why };
        let name = n
            .input
            .get(index)
            .filter(|i| self.initializers.contains_key(*i))
            .ok_or_else(|| bad(node.into(), format!("input {index} of {:?} is not an initializer", n.input)))?;
        let t = self.initializer(name)?;
        if t.dims != want {
            return Err(bad(
                format!("{name} (input {index} of {node})"),
                format!("dims {:?}, expected {want:?}", t.dims),
            ));
        }
        Ok(t)
    }

    /// The scalar a `Constant` input of node `node` holds (an epsilon, a scale).
    pub fn scalar_input(&self, node: &str) -> Result<f32, ModelError> {
        let n = self.node(node)?;
        for i in &n.input {
            if let Ok(t) = self.constant(i) {
                if let [v] = t.data[..] {
                    return Ok(v);
                }
            }
        }
        Err(ModelError::Tensor { file: self.file.clone(), tensor: node.into(), why: "no scalar Constant input".into() })
    }

    fn tensor(&self, name: &str, t: &TensorProto) -> Result<Tensor, ModelError> {
        let bad = |why: String| ModelError::Tensor { file: self.file.clone(), tensor: name.into(), why };
        if t.data_type != FLOAT {
            return Err(bad(format!("data type {} (webq reads FLOAT, 1)", t.data_type)));
        }
        if t.data_location != 0 {
            return Err(bad("stored outside the file (external data)".into()));
        }
        let dims = t
            .dims
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| bad(format!("dim {d}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let count: usize = dims.iter().product();
        let data = if !t.raw_data.is_empty() {
            if t.raw_data.len() != count * 4 {
                return Err(bad(format!("{} raw bytes for dims {dims:?} ({} expected)", t.raw_data.len(), count * 4)));
            }
            t.raw_data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
        } else {
            if t.float_data.len() != count {
                return Err(bad(format!("{} values for dims {dims:?}", t.float_data.len())));
            }
            t.float_data.clone()
        };
        Ok(Tensor { dims, data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(name: &str, dims: &[i64], v: &[f32]) -> TensorProto {
        TensorProto {
            dims: dims.to_vec(),
            data_type: FLOAT,
            name: name.into(),
            raw_data: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ..Default::default()
        }
    }

    fn model() -> Vec<u8> {
        let node = |name: &str, op: &str, input: &[&str], output: &str| NodeProto {
            input: input.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            name: name.into(),
            op_type: op.into(),
            attribute: vec![],
        };
        let mut eps = node("c", "Constant", &[], "eps");
        eps.attribute.push(AttributeProto {
            name: "value".into(),
            t: Some(tensor("", &[], &[1e-6])),
            ..Default::default()
        });
        ModelProto {
            ir_version: 7,
            opset_import: vec![OperatorSetId { domain: String::new(), version: 14 }],
            graph: Some(GraphProto {
                node: vec![
                    eps,
                    node("/fc/MatMul", "MatMul", &["x", "onnx::MatMul_7"], "y"),
                    node("/n/Add", "Add", &["y", "eps"], "z"),
                ],
                initializer: vec![tensor("onnx::MatMul_7", &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])],
            }),
        }
        .encode_to_vec()
    }

    #[test]
    fn weights_are_found_through_their_node_and_checked() {
        let m = Onnx::parse("m.onnx", &model()).unwrap();
        assert_eq!(m.opset, 14);
        assert_eq!(m.input("/fc/MatMul", 1, &[2, 3]).unwrap().data[5], 6.0);
        assert_eq!(m.scalar_input("/n/Add").unwrap(), 1e-6);
        let e = m.input("/fc/MatMul", 1, &[3, 2]).unwrap_err().to_string();
        assert_eq!(e, "m.onnx: tensor `onnx::MatMul_7 (input 1 of /fc/MatMul)`: dims [2, 3], expected [3, 2]");
        let e = m.input("/fc/MatMul", 0, &[2, 3]).unwrap_err().to_string();
        assert!(e.contains("input 0 of [\"x\", \"onnx::MatMul_7\"] is not an initializer"), "{e}");
        let e = m.input("/fc2/MatMul", 1, &[2, 3]).unwrap_err().to_string();
        assert!(e.contains("/fc2/MatMul") && e.contains("no node"), "{e}");
        let e = Onnx::parse("m.onnx", &model()[..40]).err().unwrap().to_string();
        assert!(e.starts_with("m.onnx: not a ONNX file: protobuf"), "{e}");
    }
}
