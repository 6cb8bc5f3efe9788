//! `webq faults`: plants every catalogued kernel fault and checks that the kernel verdict catches it,
//! while the same cells with the correct kernels all pass.

use clap::Args;
use webq_conformance::KernelTolerance;
use webq_engine::quant::{quantize, Group, IntBits, IntFormat, QuantFormat, Quantizer, ScaleType, Scheme};
use webq_engine::reference::{emulate, Arith};
use webq_engine::seeded;
use webq_engine::webgpu::faults::{Fault, Needs, FAULTS};
use webq_engine::webgpu::{
    gemm_vec_fits, gemm_vec_rows, Executor, ExecutorOptions, GpuError, KernelKind, KernelVariant, Workgroup,
};

#[derive(Args)]
pub struct FaultsArgs {
    /// A representative subset of formats (one per width, scheme and grouping) instead of all.
    #[arg(long)]
    quick: bool,
    /// Only this fault.
    #[arg(long)]
    only: Option<String>,
    /// The model ops' faults on the per-op cells only, not on the model cells (no trained models needed).
    #[arg(long)]
    no_models: bool,
}

/// One case a fault is tried on.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    pub format: QuantFormat,
    pub kind: KernelKind,
    pub arith: Arith,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// Same-signed inputs whose sums leave the f16 range (products stay inside it).
    pub large: bool,
}

/// The outcome of one fault.
#[derive(Debug)]
pub struct FaultOutcome {
    pub fault: &'static Fault,
    pub cases: usize,
    pub failed: usize,
    pub worst_ratio: f64,
    pub errors: Vec<String>,
    /// Why the fault has no case on this adapter (its kernel needs a feature the adapter lacks):
    /// reported, and counted neither caught nor missed.
    pub not_here: Option<&'static str>,
}

impl FaultOutcome {
    pub fn caught(&self) -> bool {
        self.failed > 0
    }
}

/// The formats a quick run tries: every width and scheme, grouped (g32) and per-channel, fp16, and
/// the f32-scale variant.
pub fn quick_formats() -> Vec<QuantFormat> {
    let mut out = vec![QuantFormat::F16];
    for bits in IntBits::ALL {
        for scheme in [Scheme::Symmetric, Scheme::Asymmetric] {
            for group in [Group::Size(32), Group::PerChannel] {
                out.push(QuantFormat::Int(IntFormat::new(bits, group, scheme)));
            }
        }
    }
    out.push(QuantFormat::Int(IntFormat {
        scale: ScaleType::F32,
        ..IntFormat::new(IntBits::B4, Group::Size(128), Scheme::Symmetric)
    }));
    out
}

/// The cases on which `fault` can show.
pub fn cases_for(fault: &Fault, formats: &[QuantFormat], f16: bool, subgroups: bool) -> Vec<Case> {
    let shapes: &[(usize, usize, usize)] = match fault.scope.needs {
        Needs::Nothing => &[(1, 40, 256), (5, 24, 256)],
        Needs::ManyRows => &[(5, 24, 256)],
        Needs::OddK => &[(5, 24, 200)],
        Needs::LargeSums => &[(1, 8, 4096), (3, 8, 4096)],
    };
    let ariths: Vec<Arith> = match fault.scope.arith {
        Some(a) => vec![a],
        None => vec![Arith::F32],
    };
    let mut out = Vec::new();
    for format in formats {
        for &(m, n, k) in shapes {
            // One row: the portable GEMV and the vector-load one with either reduction (every
            // format's tile divides 256); several: the tiled GEMM, and the CPU adapters' where it
            // takes the format and K.
            let kinds: &[KernelKind] = if m == 1 {
                &[KernelKind::Gemv, KernelKind::GemvVec, KernelKind::GemvVecSg]
            } else {
                &[KernelKind::Gemm, KernelKind::GemmVec]
            };
            for (&kind, &arith) in kinds.iter().flat_map(|k| ariths.iter().map(move |a| (k, a))) {
                if (arith == Arith::F16 && !f16)
                    || (kind == KernelKind::GemvVecSg && !subgroups)
                    || !fault.applies(format, kind, arith)
                    || format.check_shape(n, k).is_err()
                    || (kind == KernelKind::GemmVec && !gemm_vec_fits(format, k))
                {
                    continue;
                }
                out.push(Case { format: *format, kind, arith, m, n, k, large: fault.scope.needs == Needs::LargeSums });
            }
        }
    }
    out
}

/// Runs a case with the correct kernel (`fault` None) or a faulty one: `Ok(worst ratio)`, where a
/// ratio above 1 fails the kernel verdict.
pub fn run_case(exec: &Executor, case: &Case, fault: Option<&'static Fault>) -> Result<f64, GpuError> {
    let (m, n, k) = (case.m, case.n, case.k);
    let mut w = seeded::weights(5, n, k);
    let mut x = seeded::activations(6, m, k);
    if case.large {
        let spread = (k as f32).sqrt() * 0.5;
        w.iter_mut().for_each(|v| *v = 2.0 + *v * spread);
        x.iter_mut().for_each(|v| *v += 16.0);
    }
    // The scale search: unlike round-to-nearest it uses the most negative symmetric code, so a fault
    // in its decode can show (engine/tests/verdict_strength.rs checks that the data reaches it).
    let q = quantize(&w, n, k, case.format, Quantizer::ScaleSearch).expect("fault cases have valid shapes");
    let wg = match case.kind {
        KernelKind::GemmVec => Workgroup { x: 16, y: gemm_vec_rows(m, 8) },
        _ => Workgroup { x: 128, y: 2 },
    };
    let variant = KernelVariant::new(case.kind, case.arith, wg);
    let y = pollster::block_on(async {
        let prepared = match fault {
            Some(f) => exec.prepare_faulty(&x, m, &q, variant, f).await?,
            None => exec.prepare(&x, m, &q, variant).await?,
        };
        prepared.output().await
    })?;
    let want = emulate(&x, m, &q, case.arith);
    let tol = match case.arith {
        Arith::F32 => KernelTolerance::matmul_f32(),
        Arith::F16 => KernelTolerance::matmul_f16(),
    };
    Ok(tol.judge(&y, &want.y, &want.abs_dot, k).worst_ratio)
}

/// Plants each fault in turn; also returns the false failures of the correct kernels on the same cases.
pub fn hunt(exec: &Executor, formats: &[QuantFormat], only: Option<&str>) -> (Vec<FaultOutcome>, usize, Vec<String>) {
    let mut outcomes = Vec::new();
    let mut clean_cases: Vec<Case> = Vec::new();
    let (f16, subgroups) = (exec.supports(Arith::F16), exec.adapter().subgroups);
    for fault in FAULTS.iter().filter(|f| only.is_none_or(|o| o == f.id)) {
        let cases = cases_for(fault, formats, f16, subgroups);
        // Every kernel the fault reaches needs subgroups this device lacks.
        let only_sg = fault.scope.kinds.iter().all(|k| *k == KernelKind::GemvVecSg);
        let mut out = FaultOutcome {
            fault,
            cases: cases.len(),
            failed: 0,
            worst_ratio: 0.0,
            errors: Vec::new(),
            not_here: (only_sg && !subgroups).then_some("the adapter has no subgroups: gemv-vec-sg cannot run"),
        };
        for case in &cases {
            match run_case(exec, case, Some(fault)) {
                Ok(r) => {
                    out.worst_ratio = out.worst_ratio.max(r);
                    if r > 1.0 {
                        out.failed += 1;
                    }
                }
                Err(e) => out.errors.push(format!("{} {}: {e}", case.format, case.kind.name())),
            }
            if !clean_cases.iter().any(|c| same_case(c, case)) {
                clean_cases.push(*case);
            }
        }
        outcomes.push(out);
    }
    let mut false_failures = Vec::new();
    for case in &clean_cases {
        match run_case(exec, case, None) {
            Ok(r) if r <= 1.0 => {}
            Ok(r) => false_failures.push(format!(
                "{} {} {}x{}x{}: {r:.3e}x tolerance",
                case.format,
                case.kind.name(),
                case.m,
                case.n,
                case.k
            )),
            Err(e) => false_failures.push(format!("{} {}: {e}", case.format, case.kind.name())),
        }
    }
    (outcomes, clean_cases.len(), false_failures)
}

fn same_case(a: &Case, b: &Case) -> bool {
    (a.format, a.kind, a.arith, a.m, a.n, a.k, a.large) == (b.format, b.kind, b.arith, b.m, b.n, b.k, b.large)
}

pub fn run(args: &FaultsArgs) -> Result<(), Box<dyn std::error::Error>> {
    let exec = Executor::new(&ExecutorOptions::default())?;
    let formats = if args.quick { quick_formats() } else { QuantFormat::catalogue() };
    eprintln!("webq faults: adapter {}, {} formats", exec.adapter().name, formats.len());
    let (outcomes, clean, false_failures) = hunt(&exec, &formats, args.only.as_deref());
    println!("{:<8} {:<26} {:>13} {:>12}  description", "verdict", "fault", "failed/cases", "worst x tol");
    for o in &outcomes {
        if let Some(why) = o.not_here {
            println!("{:<8} {:<26} {:>13} {:>12}  {}: {why}", "n/a", o.fault.id, "0/0", "-", o.fault.description);
            continue;
        }
        println!(
            "{:<8} {:<26} {:>13} {:>12.3e}  {}",
            if o.caught() { "caught" } else { "MISSED" },
            o.fault.id,
            format!("{}/{}", o.failed, o.cases),
            o.worst_ratio,
            o.fault.description
        );
        for e in &o.errors {
            println!("         error: {e}");
        }
    }
    let caught = outcomes.iter().filter(|o| o.caught()).count();
    let planted = outcomes.iter().filter(|o| o.not_here.is_none()).count();
    println!("correct kernels on the same {clean} cases: {} false failures", false_failures.len());
    for f in &false_failures {
        println!("  FALSE FAILURE {f}");
    }
    println!("caught {caught}/{planted} planted kernel faults");
    let (ops, op_clean, op_false) = crate::op_faults::hunt_ops(!args.no_models, args.only.as_deref());
    println!();
    println!("{:<8} {:<22} {:>10} {:>22}  description", "verdict", "model-op fault", "op cells", "model cells (x tol)");
    for o in &ops {
        let models: Vec<String> = o.models.iter().map(|(_, r)| format!("{r:.1e}")).collect();
        println!(
            "{:<8} {:<22} {:>10} {:>22}  {}",
            if o.caught() { "caught" } else { "MISSED" },
            o.fault.id,
            format!("{}/{}", o.op_failed.len(), o.op_cases),
            models.join(" "),
            o.fault.description
        );
        for e in &o.errors {
            println!("         error: {e}");
        }
    }
    let ops_caught = ops.iter().filter(|o| o.caught()).count();
    println!("the correct CPU path on the same {op_clean} op and model cells: {} false failures", op_false.len());
    for f in &op_false {
        println!("  FALSE FAILURE {f}");
    }
    println!("caught {ops_caught}/{} planted model-op faults", ops.len());
    if caught < planted || !false_failures.is_empty() || ops_caught < ops.len() || !op_false.is_empty() {
        return Err("the suite missed a planted fault or failed a correct kernel or op".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_planted_fault_is_caught_and_no_correct_kernel_fails() {
        let Some(exec) = webq_engine::webgpu::executor_for_tests() else { return };
        let (outcomes, clean, false_failures) = hunt(&exec, &quick_formats(), None);
        assert!(outcomes.len() >= 10);
        let missed: Vec<_> = outcomes
            .iter()
            .filter(|o| !o.caught() && o.not_here.is_none())
            .map(|o| (o.fault.id, o.cases, &o.errors))
            .collect();
        assert!(missed.is_empty(), "missed: {missed:?}");
        assert!(clean > 0 && false_failures.is_empty(), "false failures: {false_failures:?}");
    }
}
