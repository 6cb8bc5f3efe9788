//! The `auto` backend: detect what this browser really offers, select a backend and precision with
//! the policy table (`platform::selection`), run it, and on failure try the fallbacks in order. The
//! cell records the capabilities, the choice with its reasons, and every attempt.

use js_sys::Reflect;

use super::webnn_api::navigator_ml;
use super::{model_cell, webgpu_cell, webnn_cell, Attempt, CellOutput, CellSpec, Failure};
use crate::platform::selection::{precision_for, select, select_model, Backend, Browser, Capabilities, Family};
use crate::protocol::{CellBackend, Precision, WebnnDevice};
use crate::quant::{LayerKind, QuantFormat};
use crate::webgpu::GemvKernel;

async fn detect(device: WebnnDevice) -> Capabilities {
    let ua = Reflect::get(&js_sys::global(), &"navigator".into())
        .and_then(|n| Reflect::get(&n, &"userAgent".into()))
        .ok()
        .and_then(|v| v.as_string())
        .unwrap_or_default();
    let gpu = webgpu_cell::shared_executor().await.ok();
    let (mut webnn, mut webnn_int4) = (false, false);
    if let Ok(ml) = navigator_ml() {
        if let Ok(ctx) = ml.create_context(device.name()).await {
            webnn = true;
            let types = ctx
                .op_support_limits()
                .and_then(|l| Reflect::get(&l, &"dequantizeLinear".into()))
                .and_then(|d| Reflect::get(&d, &"input".into()))
                .and_then(|i| Reflect::get(&i, &"dataTypes".into()))
                .ok()
                .map(|t| js_sys::Array::from(&t).iter().filter_map(|v| v.as_string()).collect::<Vec<_>>())
                .unwrap_or_default();
            webnn_int4 = types.iter().any(|t| t == "int4");
            ctx.destroy();
        }
    }
    Capabilities {
        browser: Browser::from_user_agent(&ua),
        webgpu: gpu.is_some(),
        webgpu_fallback: gpu.as_ref().is_some_and(|g| g.adapter().is_fallback()),
        shader_f16: gpu.is_some_and(|g| g.adapter().shader_f16),
        webnn,
        webnn_int4,
        webnn_cpu: webnn && device == WebnnDevice::Cpu,
        wasm_simd: cfg!(target_feature = "simd128"),
    }
}

/// A whole model of the cell's family: the family's rule picks the backend and the model's
/// precision (`mixed` for llm), and on failure the next backend runs it (WebNN in standard mode,
/// so 8-bit). What ran is recorded: the harness judges against that model's references.
pub async fn run_model(spec: &CellSpec, out: &mut CellOutput) -> Result<(), Failure> {
    let family = spec.model.as_ref().map(|m| m.family).ok_or_else(|| Failure::bad_spec("not a model cell"))?;
    let device = spec.device.unwrap_or(WebnnDevice::Cpu);
    let caps = detect(device).await;
    let (choice, precision) = select_model(&caps, family);
    out.capabilities = Some(caps);
    let gemv = match &choice.workgroup {
        None => spec.gemv,
        Some(w) => GemvKernel::parse(w).ok_or_else(|| Failure::bad_spec(format!("the policy's workgroup `{w}`")))?,
    };
    let plan: Vec<Backend> = std::iter::once(choice.backend).chain(choice.fallbacks.iter().copied()).collect();
    out.choice = Some(choice);
    let mut last = Failure::unsupported("no backend to try");
    for backend in plan {
        let sub =
            CellSpec { backend: CellBackend::from(backend), precision, gemv, device: Some(device), ..spec.clone() };
        out.backend = Some(backend.name().into());
        let result = model_cell::run(&sub, out).await;
        let ran = out.precision.clone().unwrap_or_else(|| precision.to_string());
        let error = result.as_ref().err().map(|f| format!("{}: {}", f.class, f.message));
        out.attempts.push(Attempt { backend: backend.name().into(), precision: ran, ok: error.is_none(), error });
        match result {
            Ok(()) => return Ok(()),
            Err(f) => last = f,
        }
    }
    Err(last)
}

pub async fn run(spec: &CellSpec, out: &mut CellOutput) -> Result<(), Failure> {
    let family = spec.family.unwrap_or(Family::Text);
    let layer = spec.layer.unwrap_or(LayerKind::Mlp);
    let device = spec.device.unwrap_or(WebnnDevice::Cpu);
    let caps = detect(device).await;
    let choice = select(&caps, family, layer);
    out.capabilities = Some(caps);
    let first: QuantFormat = choice.precision.parse().expect("select names known formats");
    let mut plan = vec![(choice.backend, first)];
    let wanted: QuantFormat = choice.wanted.parse().expect("select names known formats");
    plan.extend(choice.fallbacks.iter().map(|b| (*b, precision_for(*b, wanted).0)));
    let gemv = match &choice.workgroup {
        None => spec.gemv,
        Some(w) => GemvKernel::parse(w).ok_or_else(|| Failure::bad_spec(format!("the policy's workgroup `{w}`")))?,
    };
    out.choice = Some(choice);
    let mut last = Failure::unsupported("no backend to try");
    for (backend, precision) in plan {
        let sub = CellSpec {
            backend: CellBackend::from(backend),
            precision: Precision::Format(precision),
            gemv,
            device: Some(device),
            ..spec.clone()
        };
        let precision = precision.to_string();
        out.backend = Some(backend.name().into());
        out.precision = Some(precision.clone());
        let result = match backend {
            Backend::Webgpu => webgpu_cell::run(&sub, out).await,
            // Standard mode: the choice already says 8-bit where it upgraded.
            Backend::Webnn => webnn_cell::run(&sub, webnn_cell::Mode::Standard, out).await,
            Backend::Wasm => super::wasm_cell::run(&sub, out).await,
        };
        match result {
            Ok(()) => {
                out.attempts.push(Attempt { backend: backend.name().into(), precision, ok: true, error: None });
                return Ok(());
            }
            Err(f) => {
                out.attempts.push(Attempt {
                    backend: backend.name().into(),
                    precision,
                    ok: false,
                    error: Some(format!("{}: {}", f.class, f.message)),
                });
                last = f;
            }
        }
    }
    Err(last)
}
