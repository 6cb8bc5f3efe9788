//! Records as the outcomes JUnit XML and wptreport JSON are written from.

use std::collections::BTreeMap;

use webq_reports::machine::{wptreport, Outcome, OutcomeStatus, WptRunInfo};

use super::census::browser_of;
use super::{key_numbers, shown, RunFacts};
use crate::matrix::Expect;
use crate::results::CellRecord;

pub fn outcomes(records: &[CellRecord], expects: &[Expect]) -> Vec<Outcome> {
    records
        .iter()
        .map(|r| {
            let status = shown(r, expects);
            let runtime = r.cell.runtime.name().to_string();
            let rest = r.id.strip_prefix(&format!("{runtime}/")).unwrap_or(&r.id).to_string();
            let backend = rest.split('/').next().unwrap_or("").to_string();
            let mut verdicts = Vec::new();
            if let Some(k) = &r.kernel {
                let msg = format!("worst error {:.3} of its tolerance", k.verdict.worst_ratio);
                verdicts.push(("kernel conformance".to_string(), k.verdict.pass, msg));
            }
            let accuracy = match (&r.model, &r.accuracy) {
                (Some(m), _) => m.budget_pass.or(r.accuracy.as_ref().map(|a| a.pass)),
                (None, Some(a)) => Some(a.pass),
                _ => None,
            };
            if let Some(pass) = accuracy {
                verdicts.push(("accuracy against fp16".to_string(), pass, key_numbers(r)));
            }
            let message = match status {
                OutcomeStatus::Pass => key_numbers(r),
                _ => r.reason.clone().unwrap_or_default(),
            };
            Outcome {
                suite: format!("{runtime}/{backend}"),
                name: rest,
                runtime,
                status,
                message,
                seconds: r.timings.as_ref().map_or(0.0, |t| t.wall_us * t.dispatches.max(1) as f64 / 1e6),
                verdicts,
            }
        })
        .collect()
}

/// One wptreport per runtime, as wpt.fyi takes one product per report.
pub fn wptreports(records: &[CellRecord], outcomes: &[Outcome], facts: &RunFacts) -> Vec<(String, String)> {
    let mut by_runtime: BTreeMap<&str, Vec<&Outcome>> = BTreeMap::new();
    for o in outcomes {
        by_runtime.entry(&o.runtime).or_default().push(o);
    }
    let finished = facts.run["finished_at"].as_u64().unwrap_or_else(crate::results::unix_now);
    let wall = facts.run["wall_s"].as_f64().unwrap_or(0.0);
    let end_ms = finished * 1000;
    let start_ms = end_ms.saturating_sub((wall * 1000.0) as u64);
    by_runtime
        .into_iter()
        .map(|(runtime, outs)| {
            let mine: Vec<&CellRecord> = records.iter().filter(|r| r.cell.runtime.name() == runtime).collect();
            let browser = browser_of(runtime, &mine);
            let version = browser.rsplit(' ').next().unwrap_or("").trim_matches(|c| c == '(' || c == ')').to_string();
            let mut extra = BTreeMap::new();
            extra.insert("browser".to_string(), browser.clone());
            if let Some(a) = mine.iter().find_map(|r| r.environment.adapter.clone().filter(|a| !a.is_empty())) {
                extra.insert("adapter".into(), a);
            }
            if let Some(m) = facts.run["matrix"].as_str() {
                extra.insert("webq_matrix".into(), m.to_string());
            }
            let info = WptRunInfo {
                product: runtime.to_string(),
                browser_version: version,
                os: std::env::consts::OS.to_string(),
                revision: facts.run["revision"].as_str().unwrap_or("unknown").to_string(),
                extra,
            };
            (runtime.to_string(), wptreport(&info, &outs, start_ms, end_ms))
        })
        .collect()
}
