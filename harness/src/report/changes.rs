//! A run against a baseline run of the same matrix: regressions (a pass that is now anything
//! else; accuracy or speed worse beyond noise) and fixes (anything else that now passes).
//!
//! Noise, as measured on these machines: accuracy figures are deterministic for one browser and
//! backend (CI's runs agree to the last digit), so 1% relative on a kernel cell's rel L2,
//! 0.001 on a text model's minimum cosine and 0.02 on an llm's top-1 agreement are far outside
//! it; timings swing by tens of percent between runs of one matrix, and by 2-3x for cells that
//! take well under a millisecond, so only a cell at least twice as slow and a millisecond slower
//! (GPU time where both have it, else wall time) counts.

use std::collections::BTreeMap;

use webq_reports::{Change, Changes};

use super::num;
use crate::results::{CellRecord, Status};

/// Slower by at least this factor, and by at least `SLOWER_US`: a speed regression.
pub const SLOWER: f64 = 2.0;
pub const SLOWER_US: f64 = 1000.0;

fn time(r: &CellRecord) -> Option<f64> {
    r.timings.as_ref().map(|t| t.gpu_us.unwrap_or(t.wall_us)).filter(|t| t.is_finite() && *t > 0.0)
}

fn accuracy_worse(before: &CellRecord, after: &CellRecord) -> Option<String> {
    if let (Some(b), Some(a)) = (&before.model, &after.model) {
        if let (Some(x), Some(y)) = (b.measures.cosine_min, a.measures.cosine_min) {
            if y < x - 1e-3 {
                return Some(format!("cosine min to fp16 {x:.5} -> {y:.5}"));
            }
        }
        if let (Some(x), Some(y)) = (b.measures.top1_agreement, a.measures.top1_agreement) {
            if y < x - 0.02 {
                return Some(format!("top-1 agreement {x:.3} -> {y:.3}"));
            }
        }
        return None;
    }
    let (b, a) = (before.accuracy.as_ref()?, after.accuracy.as_ref()?);
    let (x, y) = (b.metrics.rel_l2, a.metrics.rel_l2);
    (y > x * 1.01 + 1e-12).then(|| format!("rel L2 vs fp16 {} -> {}", num(Some(x), 5), num(Some(y), 5)))
}

fn status_words(r: &CellRecord) -> String {
    match &r.reason {
        Some(why) if r.status != Status::Pass => format!("{}: {why}", r.status.name()),
        _ => r.status.name().into(),
    }
}

pub fn between(baseline_name: &str, before: &[CellRecord], after: &[CellRecord]) -> Changes {
    let old: BTreeMap<&str, &CellRecord> = before.iter().map(|r| (r.id.as_str(), r)).collect();
    let mut changes = Changes { baseline: baseline_name.to_string(), ..Default::default() };
    for a in after {
        let Some(b) = old.get(a.id.as_str()) else { continue };
        let change = |why: String| Change { id: a.id.clone(), before: status_words(b), after: status_words(a), why };
        match (b.status == Status::Pass, a.status == Status::Pass) {
            (true, false) => changes.regressions.push(change(format!("was a pass, now {}", a.status.name()))),
            (false, true) => changes.fixes.push(change(format!("was {}, now a pass", b.status.name()))),
            (true, true) => {
                if let Some(why) = accuracy_worse(b, a) {
                    changes.regressions.push(change(why));
                } else if let (Some(x), Some(y)) = (time(b), time(a)) {
                    if y >= x * SLOWER && y - x >= SLOWER_US {
                        changes.regressions.push(change(format!("{:.1}x slower: {x:.1} us -> {y:.1} us", y / x)));
                    }
                }
            }
            (false, false) => {}
        }
    }
    changes
}
