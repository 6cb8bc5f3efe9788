//! The `auto` backend: detect what this browser really offers, select a backend and precision with
//! the policy table (`platform::selection`), run it, and on failure try the fallbacks in order. The
//! cell records the capabilities, the choice with its reasons, and every attempt.

use js_sys::Reflect;

use super::webnn_api::navigator_ml;
use super::{webgpu_cell, webnn_cell, Attempt, CellOutput, CellSpec, Failure};
use crate::platform::selection::{precision_for, select, Backend, Browser, Capabilities, Family};
use crate::quant::{LayerKind, QuantFormat};

async fn detect(device: &str) -> Capabilities {
    let ua = Reflect::get(&js_sys::global(), &"navigator".into())
        .and_then(|n| Reflect::get(&n, &"userAgent".into()))
        .ok()
        .and_then(|v| v.as_string())
        .unwrap_or_default();
    let gpu = webgpu_cell::shared_executor().await.ok();
    let (mut webnn, mut webnn_int4) = (false, false);
    if let Ok(ml) = navigator_ml() {
        if let Ok(ctx) = ml.create_context(device).await {
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
        shader_f16: gpu.is_some_and(|g| g.adapter().shader_f16),
        webnn,
        webnn_int4,
        wasm_simd: cfg!(target_feature = "simd128"),
    }
}

pub async fn run(spec: &CellSpec, out: &mut CellOutput) -> Result<(), Failure> {
    let family: Family = spec.family.as_deref().unwrap_or("text").parse().map_err(Failure::bad_spec)?;
    let layer = match spec.layer.as_deref() {
        None => LayerKind::Mlp,
        Some(l) => LayerKind::ALL
            .into_iter()
            .find(|k| k.name() == l)
            .ok_or_else(|| Failure::bad_spec(format!("unknown layer kind `{l}`")))?,
    };
    let device = spec.device.clone().unwrap_or_else(|| "cpu".into());
    let caps = detect(&device).await;
    let choice = select(&caps, family, layer);
    out.capabilities = Some(caps);
    let mut plan = vec![(choice.backend, choice.precision.clone())];
    let wanted: QuantFormat = choice.wanted.parse().expect("select names known formats");
    plan.extend(choice.fallbacks.iter().map(|b| (*b, precision_for(*b, wanted).0.to_string())));
    let workgroup = choice.workgroup.clone();
    out.choice = Some(choice);
    let mut last = Failure::unsupported("no backend to try");
    for (backend, precision) in plan {
        let sub = CellSpec {
            backend: backend.name().into(),
            precision: precision.clone(),
            workgroup: workgroup.clone().unwrap_or_else(|| spec.workgroup.clone()),
            device: Some(device.clone()),
            ..spec.clone()
        };
        out.backend = Some(sub.backend.clone());
        out.precision = Some(precision.clone());
        let result = match backend {
            Backend::Webgpu => webgpu_cell::run(&sub, out).await,
            // Standard mode: the choice already says 8-bit where it upgraded.
            Backend::Webnn => webnn_cell::run(&sub, webnn_cell::Mode::Standard, out).await,
            Backend::Wasm => super::wasm_cell::run(&sub, out).await,
        };
        match result {
            Ok(()) => {
                out.attempts.push(Attempt { backend: sub.backend, precision, ok: true, error: None });
                return Ok(());
            }
            Err(f) => {
                out.attempts.push(Attempt {
                    backend: sub.backend,
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
