//! A cell on WebNN: `matmul(x, dequantizeLinear(codes, scales, zeros))` with the weight stored
//! transposed (`k x n`), so no transpose op is needed; fp16 weights are a float16 constant (cast to
//! float32 for f32 cells). The context is destroyed when the cell ends, whatever happened.
//!
//! Standard mode runs 8-bit: a 4-, 3- or 2-bit request is upgraded to 8-bit with the same grouping
//! and scheme, and the cell says so. Experimental mode runs what was asked: 4-bit as WebNN `int4`;
//! 3- and 2-bit codes widened to `int4` on the host (WebNN has no narrower type), also said.
//! Asymmetric codes (unsigned) are shifted into the signed container together with their zero
//! points, which leaves `code - zero` unchanged.

use js_sys::{Float32Array, Int8Array, Uint16Array, Uint8Array};
use wasm_bindgen::JsValue;
use web_time::Instant;

use super::webnn_api::{descriptor, navigator_ml, object, MLContext, MLGraphBuilder, MLOperand};
use super::{CellOutput, CellSpec, ErrorClass, Failure, SpecInputs};
use crate::platform::selection::{precision_for, Backend};
use crate::protocol::WebnnDevice;
use crate::quant::{QuantFormat, QuantizedMatrix, Scheme};
use crate::reference::Arith;

#[derive(Clone, Copy, PartialEq)]
pub enum Mode {
    Standard,
    Experimental,
}

/// The parts of `opSupportLimits()` a quantized matmul and the model ops depend on.
const LIMIT_KEYS: &[&str] = &[
    "dequantizeLinear",
    "matmul",
    "layerNormalization",
    "gelu",
    "softmax",
    "sigmoid",
    "reduceMean",
    "expand",
    "transpose",
    "cast",
    "input",
    "constant",
    "output",
    "maxTensorByteLength",
    "preferredInputLayout",
];

/// A context of the cell's device type, its `opSupportLimits()` recorded; `unsupported` with the
/// browser's words when there is none.
pub(super) async fn context(spec: &CellSpec, out: &mut CellOutput) -> Result<MLContext, Failure> {
    let ctx = create_context(spec.device).await.map_err(Failure::unsupported)?;
    out.op_support_limits = Some(limits_json(&ctx));
    Ok(ctx)
}

/// A context of `device` (cpu when none is named), or the browser's words on why there is none.
pub(super) async fn create_context(device: Option<WebnnDevice>) -> Result<MLContext, String> {
    let device = device.map_or("cpu", |d| d.name());
    let ml = navigator_ml()?;
    ml.create_context(device).await.map_err(|e| format!("createContext({{deviceType: '{device}'}}): {e}"))
}

pub async fn run(spec: &CellSpec, mode: Mode, out: &mut CellOutput) -> Result<(), Failure> {
    let ctx = context(spec, out).await?;
    let result = run_on(&ctx, spec, mode, out).await;
    ctx.destroy();
    result
}

async fn run_on(ctx: &MLContext, spec: &CellSpec, mode: Mode, out: &mut CellOutput) -> Result<(), Failure> {
    let requested = spec.format()?;
    let format = match mode {
        Mode::Standard => {
            let (format, note) = precision_for(Backend::Webnn, requested);
            out.notes.extend(note);
            format
        }
        Mode::Experimental => requested,
    };
    out.precision = Some(format.to_string());
    let (q, x) = spec.quantized(format)?;
    let float = match spec.arith {
        Arith::F32 => "float32",
        Arith::F16 => "float16",
    };

    let t0 = Instant::now();
    let builder = MLGraphBuilder::new(ctx).map_err(Failure::js(ErrorClass::GraphBuilding))?;
    let xin =
        builder.input("x", &descriptor(float, &[spec.m, spec.k])).map_err(Failure::js(ErrorClass::GraphBuilding))?;
    let wt = weight_operand(&builder, &q, float, &mut out.notes)?;
    let y = builder.matmul(&xin, &wt).map_err(Failure::js(ErrorClass::GraphBuilding))?;
    let graph = builder
        .build_graph(&object(&[("y", y.into())]))
        .await
        .map_err(|e| Failure::classified(ErrorClass::GraphBuilding, e))?;
    out.compile_ms = Some(t0.elapsed().as_secs_f64() * 1e3);

    let t1 = Instant::now();
    let x_tensor = ctx
        .create_tensor(float, &[spec.m, spec.k], false)
        .await
        .map_err(|e| Failure::classified(ErrorClass::Tensor, e))?;
    let y_tensor = ctx
        .create_tensor(float, &[spec.m, spec.n], true)
        .await
        .map_err(|e| Failure::classified(ErrorClass::Tensor, e))?;
    ctx.write_tensor(&x_tensor, &floats(&x, spec.arith)).map_err(Failure::js(ErrorClass::Tensor))?;
    out.upload_ms = Some(t1.elapsed().as_secs_f64() * 1e3);

    let inputs = object(&[("x", (*x_tensor).clone())]);
    let outputs = object(&[("y", (*y_tensor).clone())]);
    let run_once = || async {
        ctx.dispatch(&graph, &inputs, &outputs).map_err(Failure::js(ErrorClass::Dispatch))?;
        ctx.read(&y_tensor).await.map_err(|e| Failure::classified(ErrorClass::Dispatch, e))
    };
    let bytes = run_once().await?;
    // Each timed run is a dispatch and a read back: WebNN has no way to wait on a dispatch alone.
    let (us, runs) = super::timing::time_runs(spec.reps, || async { run_once().await.map(|_| ()) }).await?;
    out.wall_us = Some(us);
    out.dispatches = Some(runs);
    let y = match spec.arith {
        Arith::F32 => bytemuck::pod_collect_to_vec::<u8, f32>(&bytes),
        Arith::F16 => bytes.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
    };
    out.set_output(&y);
    x_tensor.destroy();
    y_tensor.destroy();
    Ok(())
}

fn limits_json(ctx: &MLContext) -> serde_json::Value {
    let Ok(limits) = ctx.op_support_limits() else { return serde_json::Value::Null };
    let mut out = serde_json::Map::new();
    for key in LIMIT_KEYS {
        let Ok(v) = js_sys::Reflect::get(&limits, &(*key).into()) else { continue };
        if v.is_undefined() {
            continue;
        }
        let text = js_sys::JSON::stringify(&v).ok().and_then(|s| s.as_string()).unwrap_or_default();
        if let Ok(parsed) = serde_json::from_str(&text) {
            out.insert(key.to_string(), parsed);
        }
    }
    serde_json::Value::Object(out)
}

/// The weight operand, transposed to `k x n` (what `matmul(x, w)` takes), in float (`float_type`).
/// Quantized weights are stored transposed, so the groups run down the columns: scales and zero
/// points are `k/group x n` (per-channel: `1 x n`), blockwise over the `k x n` codes.
pub(super) fn weight_operand(
    b: &MLGraphBuilder,
    q: &QuantizedMatrix,
    float_type: &str,
    notes: &mut Vec<String>,
) -> Result<MLOperand, Failure> {
    let (n, k) = (q.n, q.k);
    let f = match q.format {
        QuantFormat::F16 => {
            let bits: Vec<u16> = q.codes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
            let bits = transpose(&bits, n, k);
            let w = b
                .constant(&descriptor("float16", &[k, n]), &Uint16Array::from(&bits[..]).into())
                .map_err(Failure::js(ErrorClass::GraphBuilding))?;
            return if float_type == "float16" {
                Ok(w)
            } else {
                b.cast(&w, float_type).map_err(Failure::js(ErrorClass::GraphBuilding))
            };
        }
        QuantFormat::Int(f) => f,
    };
    let bits = f.bits.bits();
    let (container, container_bits) = if bits == 8 { ("int8", 8) } else { ("int4", 4) };
    if bits < 4 {
        notes.push(format!("{bits}-bit codes widened to int4 on the host: WebNN has no {bits}-bit type"));
    }
    // Unsigned (asymmetric) codes move into the signed container with their zero points.
    let offset = if f.scheme == Scheme::Asymmetric { 1 << (container_bits - 1) } else { 0 };
    let groups = q.groups_per_row();
    // Transposed: code (r, c) of the n x k matrix at [c][r]; group g of row r at [g][r].
    let codes: Vec<i32> =
        (0..k).flat_map(|c| (0..n).map(move |r| (r, c))).map(|(r, c)| q.code(r, c) - offset).collect();
    let by_group = |g: usize| (0..n).map(move |r| (r, g));
    let zeros: Vec<i32> = (0..groups).flat_map(by_group).map(|(r, g)| q.zero(r, g) - offset).collect();
    let scales: Vec<f32> = (0..groups).flat_map(by_group).map(|(r, g)| q.scale(r, g)).collect();
    let int_constant = |values: &[i32], shape: &[usize]| -> Result<MLOperand, Failure> {
        let data: JsValue = if container_bits == 8 {
            Int8Array::from(&values.iter().map(|&v| v as i8).collect::<Vec<_>>()[..]).into()
        } else {
            Uint8Array::from(&pack_int4(values)[..]).into()
        };
        b.constant(&descriptor(container, shape), &data).map_err(Failure::js(ErrorClass::GraphBuilding))
    };
    let codes = int_constant(&codes, &[k, n])?;
    let zeros = int_constant(&zeros, &[groups, n])?;
    let scales = b
        .constant(&descriptor(float_type, &[groups, n]), &floats(&scales, arith_of(float_type)))
        .map_err(Failure::js(ErrorClass::GraphBuilding))?;
    b.dequantize_linear(&codes, &scales, &zeros).map_err(Failure::js(ErrorClass::GraphBuilding))
}

/// A row-major `rows x cols` matrix, transposed.
fn transpose<T: Copy>(v: &[T], rows: usize, cols: usize) -> Vec<T> {
    (0..cols).flat_map(|c| (0..rows).map(move |r| v[r * cols + c])).collect()
}

fn arith_of(float_type: &str) -> Arith {
    if float_type == "float16" {
        Arith::F16
    } else {
        Arith::F32
    }
}

/// Floats as a typed array of the cell's float type (float16 as raw bits).
fn floats(v: &[f32], arith: Arith) -> JsValue {
    match arith {
        Arith::F32 => Float32Array::from(v).into(),
        Arith::F16 => {
            Uint16Array::from(&v.iter().map(|&x| half::f16::from_f32(x).to_bits()).collect::<Vec<_>>()[..]).into()
        }
    }
}

/// Signed 4-bit values, two a byte, low nibble first (WebNN's int4); an odd count pads a zero.
fn pack_int4(values: &[i32]) -> Vec<u8> {
    values.chunks(2).map(|p| (p[0] as u8 & 0xF) | ((p.get(1).copied().unwrap_or(0) as u8 & 0xF) << 4)).collect()
}
