//! The per-op cells in the page (`runOpCases`): every op of [`crate::models::op_cases`] on one
//! backend (`wasm`, `webgpu` in f32 or f16 arithmetic, `webnn` on a device type), outputs only; the harness builds the same
//! seeded cases natively and judges them (`webq ops`).

use wasm_bindgen::prelude::*;

use super::webgpu_cell::shared_executor;
use super::webnn_cell::create_context;
use super::webnn_model::WebnnBackend;
use crate::models::exec::{Backend, CpuExec};
use crate::models::gpu::GpuBackend;
use crate::models::op_cases::op_cases;
use crate::protocol::{CellBackend, OpCaseOutput, OpCasesAnswer, OpCasesSpec};
use crate::webgpu::GemvKernel;

async fn outputs<B: Backend>(b: &mut B) -> Vec<OpCaseOutput> {
    let mut out = Vec::new();
    for case in op_cases() {
        let y = case.call.run(b).await.map_err(|e| e.to_string());
        out.push(OpCaseOutput::new(case.name, y));
    }
    out
}

async fn answer(spec: &OpCasesSpec) -> Result<OpCasesAnswer, String> {
    let mut a = OpCasesAnswer::default();
    match spec.backend {
        CellBackend::Wasm => a.cases = outputs(&mut CpuExec::default()).await,
        CellBackend::Webgpu => {
            let exec = shared_executor().await.map_err(|e| e.to_string())?;
            if !exec.supports(spec.arith) {
                return Err(format!("{} arithmetic needs shader-f16, which this adapter lacks", spec.arith.name()));
            }
            a.cases = outputs(&mut GpuBackend::with_arith(&exec, GemvKernel::PORTABLE, spec.arith)).await;
        }
        CellBackend::Webnn | CellBackend::WebnnExperimental => {
            let ctx = create_context(spec.device).await?;
            let mut b = WebnnBackend::new(&ctx);
            a.cases = outputs(&mut b).await;
            a.notes.extend(b.finish());
            ctx.destroy();
        }
        CellBackend::Auto => return Err("per-op cells run on a named backend, not `auto`".into()),
    }
    Ok(a)
}

/// Runs every per-op cell on the backend `spec` names; errors come back inside the JSON.
#[wasm_bindgen(js_name = runOpCases)]
pub async fn run_op_cases(spec: String) -> String {
    let a = match serde_json::from_str::<OpCasesSpec>(&spec) {
        Ok(spec) => answer(&spec).await.unwrap_or_else(|e| OpCasesAnswer { error: Some(e), ..Default::default() }),
        Err(e) => OpCasesAnswer { error: Some(format!("bad spec: {e}")), ..Default::default() },
    };
    serde_json::to_string(&a).unwrap_or_default()
}
