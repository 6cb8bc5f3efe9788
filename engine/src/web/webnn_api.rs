//! wasm-bindgen bindings for the parts of WebNN webq uses (web-sys has none): `navigator.ml`,
//! `MLContext`, `MLGraphBuilder`, `MLOperand`, `MLGraph`, `MLTensor`. Methods that can throw are
//! `catch`: their errors come back as the browser's own exception.

use js_sys::{Object, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

#[wasm_bindgen]
extern "C" {
    pub type ML;
    #[wasm_bindgen(method, catch, js_name = createContext)]
    fn create_context_promise(this: &ML, options: &JsValue) -> Result<Promise, JsValue>;

    pub type MLContext;
    #[wasm_bindgen(method, catch, js_name = opSupportLimits)]
    pub fn op_support_limits(this: &MLContext) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(method, catch, js_name = createTensor)]
    fn create_tensor_promise(this: &MLContext, descriptor: &JsValue) -> Result<Promise, JsValue>;
    #[wasm_bindgen(method, catch, js_name = writeTensor)]
    pub fn write_tensor(this: &MLContext, tensor: &MLTensor, data: &JsValue) -> Result<(), JsValue>;
    #[wasm_bindgen(method, catch, js_name = readTensor)]
    fn read_tensor_promise(this: &MLContext, tensor: &MLTensor) -> Result<Promise, JsValue>;
    #[wasm_bindgen(method, catch)]
    pub fn dispatch(this: &MLContext, graph: &MLGraph, inputs: &Object, outputs: &Object) -> Result<(), JsValue>;
    #[wasm_bindgen(method)]
    pub fn destroy(this: &MLContext);

    pub type MLGraphBuilder;
    #[wasm_bindgen(constructor, catch)]
    pub fn new(context: &MLContext) -> Result<MLGraphBuilder, JsValue>;
    #[wasm_bindgen(method, catch)]
    pub fn input(this: &MLGraphBuilder, name: &str, descriptor: &JsValue) -> Result<MLOperand, JsValue>;
    #[wasm_bindgen(method, catch)]
    pub fn constant(this: &MLGraphBuilder, descriptor: &JsValue, data: &JsValue) -> Result<MLOperand, JsValue>;
    #[wasm_bindgen(method, catch, js_name = dequantizeLinear)]
    pub fn dequantize_linear(
        this: &MLGraphBuilder,
        input: &MLOperand,
        scale: &MLOperand,
        zero_point: &MLOperand,
    ) -> Result<MLOperand, JsValue>;
    #[wasm_bindgen(method, catch)]
    pub fn matmul(this: &MLGraphBuilder, a: &MLOperand, b: &MLOperand) -> Result<MLOperand, JsValue>;
    #[wasm_bindgen(method, catch)]
    pub fn cast(this: &MLGraphBuilder, input: &MLOperand, data_type: &str) -> Result<MLOperand, JsValue>;
    #[wasm_bindgen(method, catch)]
    fn build(this: &MLGraphBuilder, outputs: &Object) -> Result<Promise, JsValue>;

    pub type MLOperand;
    pub type MLGraph;
    pub type MLTensor;
    #[wasm_bindgen(method)]
    pub fn destroy(this: &MLTensor);
}

/// The browser's words for an exception: `Name: message`.
pub fn describe(e: &JsValue) -> String {
    let get = |k: &str| Reflect::get(e, &k.into()).ok().and_then(|v| v.as_string());
    match (get("name"), get("message")) {
        (Some(n), Some(m)) => format!("{n}: {m}"),
        (None, Some(m)) => m,
        _ => e.as_string().unwrap_or_else(|| format!("{e:?}")),
    }
}

/// `navigator.ml`, or why there is none.
pub fn navigator_ml() -> Result<ML, String> {
    let global = js_sys::global();
    let navigator = Reflect::get(&global, &"navigator".into()).map_err(|e| describe(&e))?;
    let ml = Reflect::get(&navigator, &"ml".into()).map_err(|e| describe(&e))?;
    if ml.is_undefined() || ml.is_null() {
        return Err(format!("navigator.ml is {}", if ml.is_null() { "null" } else { "undefined" }));
    }
    Ok(ml.unchecked_into())
}

async fn settle<T: JsCast>(p: Result<Promise, JsValue>) -> Result<T, String> {
    let p = p.map_err(|e| describe(&e))?;
    JsFuture::from(p).await.map(JsCast::unchecked_into).map_err(|e| describe(&e))
}

impl ML {
    /// A context for `device_type` (`cpu`, `gpu`, `npu`).
    pub async fn create_context(&self, device_type: &str) -> Result<MLContext, String> {
        let opts = object(&[("deviceType", device_type.into())]);
        settle(self.create_context_promise(&opts)).await
    }
}

impl MLContext {
    pub async fn create_tensor(&self, data_type: &str, shape: &[usize], readable: bool) -> Result<MLTensor, String> {
        let desc = object(&[
            ("dataType", data_type.into()),
            ("shape", shape_array(shape)),
            ("readable", readable.into()),
            ("writable", (!readable).into()),
        ]);
        settle(self.create_tensor_promise(&desc)).await
    }

    pub async fn read(&self, tensor: &MLTensor) -> Result<Vec<u8>, String> {
        let buf: js_sys::ArrayBuffer = settle(self.read_tensor_promise(tensor)).await?;
        Ok(js_sys::Uint8Array::new(&buf).to_vec())
    }
}

impl MLGraphBuilder {
    /// `builder[op](...args)`: the element-wise, reduction and shape ops a model composes
    /// (`add`, `softmax`, `reshape`, ...). A browser without `op` says so in the error.
    pub fn call(&self, op: &str, args: &[JsValue]) -> Result<MLOperand, JsValue> {
        let f = Reflect::get(self, &op.into())?;
        let f: js_sys::Function =
            f.dyn_into().map_err(|_| JsValue::from_str(&format!("MLGraphBuilder has no operation `{op}`")))?;
        let args: js_sys::Array = args.iter().collect();
        f.apply(self, &args).map(JsCast::unchecked_into)
    }

    pub async fn build_graph(&self, outputs: &Object) -> Result<MLGraph, String> {
        settle(self.build(outputs)).await
    }
}

/// An operand descriptor `{dataType, shape}`.
pub fn descriptor(data_type: &str, shape: &[usize]) -> JsValue {
    object(&[("dataType", data_type.into()), ("shape", shape_array(shape))]).into()
}

pub fn shape_array(shape: &[usize]) -> JsValue {
    shape.iter().map(|&d| JsValue::from(d as u32)).collect::<js_sys::Array>().into()
}

/// A plain object from key/value pairs.
pub fn object(pairs: &[(&str, JsValue)]) -> Object {
    let o = Object::new();
    for (k, v) in pairs {
        Reflect::set(&o, &(*k).into(), v).expect("setting a property of a fresh object");
    }
    o
}
