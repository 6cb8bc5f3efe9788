//! The model ops' planted faults (`webq faults`, second part): each fault planted in the CPU path
//! is run through every per-op cell and through a model cell of each family (MiniLM on 4 sentences,
//! SmolLM2's first 2 blocks on 12 tokens, the last 4 decoded), judged as `webq run` judges them;
//! the correct CPU path must pass all of them.

use webq_conformance::KernelTolerance;
use webq_engine::models::accuracy;
use webq_engine::models::exec::{Backend, CpuExec, EmulateExec};
use webq_engine::models::faults::{Faulty, OpFault, OP_FAULTS};
use webq_engine::models::op_cases::run_op_cases;
use webq_engine::models::run::run_model;
use webq_engine::platform::selection::Family;
use webq_engine::protocol::{CellBackend, Runtime};
use webq_engine::quant::Quantizer;

use crate::cell::{Cell, ModelCell};
use crate::model_cells::{self, FileAt};

/// One fault's outcome over the per-op cells and the model cells.
#[derive(Debug)]
pub struct OpFaultOutcome {
    pub fault: &'static OpFault,
    pub op_failed: Vec<&'static str>,
    pub op_cases: usize,
    /// (model, worst ratio of the model's kernel verdict); a ratio above 1 fails.
    pub models: Vec<(&'static str, f64)>,
    pub errors: Vec<String>,
}

impl OpFaultOutcome {
    pub fn caught(&self) -> bool {
        !self.op_failed.is_empty() || self.models.iter().any(|(_, r)| *r > 1.0)
    }
}

/// The small model cells faults are tried on.
pub fn fault_cells() -> Vec<(&'static str, Cell)> {
    let cell = |family, depth, sentences, tokens, decode| {
        let mut c = crate::cell::test_cell(Runtime::Native, CellBackend::Wasm, "int8-pc-sym", 0, 0);
        c.quantizer = Quantizer::RoundToNearest;
        c.model = Some(ModelCell::new(family, depth, sentences, tokens, decode));
        c
    };
    vec![
        ("minilm 4 sentences", cell(Family::Text, None, Some(4), 0, 0)),
        ("smollm2 2 blocks, 12 tokens", cell(Family::Llm, Some(2), None, 12, 4)),
    ]
}

/// Runs a model cell on `backend`: the worst ratio of its kernel verdict against the emulation.
fn model_ratio<B: Backend>(cell: &Cell, backend: &mut B) -> Result<f64, String> {
    let spec = model_cells::spec(cell, FileAt::Native)?;
    let bytes = model_cells::weights(cell)?;
    let (precision, _) = model_cells::precision(cell)?;
    let want = pollster::block_on(run_model(&spec, &bytes, &precision, &mut EmulateExec)).map_err(|e| e.to_string())?;
    let got = pollster::block_on(run_model(&spec, &bytes, &precision, backend)).map_err(|e| e.to_string())?;
    let rms = accuracy::rms(&want.y) as f32;
    let tol = KernelTolerance::model("model");
    Ok(tol.judge(&got.y, &want.y, &vec![rms; want.y.len()], 1).worst_ratio)
}

/// Plants each op fault in turn; also returns the per-op and model cells the correct CPU path failed.
pub fn hunt_ops(with_models: bool, only: Option<&str>) -> (Vec<OpFaultOutcome>, usize, Vec<String>) {
    let cells = if with_models { fault_cells() } else { Vec::new() };
    let mut outcomes = Vec::new();
    for fault in OP_FAULTS.iter().filter(|f| only.is_none_or(|o| o == f.id)) {
        let verdicts = pollster::block_on(run_op_cases(
            &mut Faulty::new(CpuExec::default(), fault),
            webq_engine::reference::Arith::F32,
        ));
        let mut out = OpFaultOutcome {
            fault,
            op_failed: verdicts.iter().filter(|v| !v.verdict.pass).map(|v| v.case).collect(),
            op_cases: verdicts.len(),
            models: Vec::new(),
            errors: Vec::new(),
        };
        for (name, cell) in &cells {
            match model_ratio(cell, &mut Faulty::new(CpuExec::default(), fault)) {
                Ok(r) => out.models.push((name, r)),
                Err(e) => out.errors.push(format!("{name}: {e}")),
            }
        }
        outcomes.push(out);
    }
    let clean_ops = pollster::block_on(run_op_cases(&mut CpuExec::default(), webq_engine::reference::Arith::F32));
    let mut false_failures: Vec<String> = clean_ops
        .iter()
        .filter(|v| !v.verdict.pass)
        .map(|v| format!("{}: {:.3e}x tolerance", v.case, v.verdict.worst_ratio))
        .collect();
    for (name, cell) in &cells {
        match model_ratio(cell, &mut CpuExec::default()) {
            Ok(r) if r <= 1.0 => {}
            Ok(r) => false_failures.push(format!("{name}: {r:.3e}x tolerance")),
            Err(e) => false_failures.push(format!("{name}: {e}")),
        }
    }
    (outcomes, clean_ops.len() + cells.len(), false_failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every op fault is caught by a per-op cell and, where it shows in the models (all but the
    /// softmax overflow, which needs logits in the hundreds), by a model cell with real weights.
    #[test]
    fn planted_op_faults_are_caught_in_real_models_too() {
        if crate::models::cached_file(&crate::models::PACKAGES[1], 0).is_none() {
            return;
        }
        let (outcomes, clean, false_failures) = hunt_ops(true, None);
        assert!(false_failures.is_empty() && clean > 10, "{false_failures:?}");
        for o in &outcomes {
            assert!(o.errors.is_empty(), "{}: {:?}", o.fault.id, o.errors);
            assert!(!o.op_failed.is_empty(), "{} passed every per-op cell", o.fault.id);
            let in_models = o.models.iter().any(|(_, r)| *r > 1.0);
            assert!(in_models || o.fault.id == "softmax-no-max", "{}: {:?}", o.fault.id, o.models);
        }
    }
}
