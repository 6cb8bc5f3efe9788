//! `webq compare`: runs of the same matrix must agree cell by cell (status, both verdicts, what
//! ran). Flakiness is a defect to find, not to average away: CI runs the ci matrix twice and
//! compares the runs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;

use crate::report::RunFacts;
use crate::results::{self, latest_run, CellRecord};

#[derive(Args)]
pub struct CompareArgs {
    /// Directories written by `webq run` (at least two); the latest run in each is compared.
    #[arg(required = true, num_args = 2..)]
    results: Vec<PathBuf>,
}

/// What must be identical between runs of one cell.
fn outcome(r: &CellRecord) -> String {
    let verdict = |p: Option<bool>| p.map_or("-", |p| if p { "pass" } else { "fail" });
    let ran = r.detail.as_ref().and_then(|d| d.precision.clone()).unwrap_or_else(|| r.cell.precision.to_string());
    format!(
        "{} (kernel {}, accuracy {}, ran {ran})",
        r.status.name(),
        verdict(r.kernel.as_ref().map(|k| k.verdict.pass)),
        verdict(r.accuracy.as_ref().map(|a| a.pass))
    )
}

/// Every difference between the runs, one line each.
pub fn differences(runs: &[(String, Vec<CellRecord>)]) -> Vec<String> {
    let mut by_id: BTreeMap<&str, Vec<Option<String>>> = BTreeMap::new();
    for (i, (_, records)) in runs.iter().enumerate() {
        for r in records {
            by_id.entry(&r.id).or_insert_with(|| vec![None; runs.len()])[i] = Some(outcome(r));
        }
    }
    let mut out = Vec::new();
    for (id, outcomes) in by_id {
        if outcomes.windows(2).any(|w| w[0] != w[1]) {
            let each: Vec<String> = runs
                .iter()
                .zip(&outcomes)
                .map(|((name, _), o)| format!("{name}: {}", o.as_deref().unwrap_or("absent")))
                .collect();
            out.push(format!("{id}: {}", each.join("; ")));
        }
    }
    out
}

/// Each run's wall time against the first's, with how it was scheduled (`run.json`): what a pool
/// or a Grid bought, measured on the same matrix.
fn print_wall_times(dirs: &[PathBuf]) {
    let facts: Vec<RunFacts> = dirs.iter().map(|d| RunFacts::load(d)).collect();
    let Some(first) = facts[0].wall_s().filter(|s| *s > 0.0) else { return };
    for (dir, f) in dirs.iter().zip(&facts) {
        let Some(wall) = f.wall_s() else { continue };
        let how = f.scheduling().unwrap_or_else(|| "scheduling not recorded".into());
        eprintln!(
            "webq compare: {}: {wall:.0} s, {:.2}x the first run's wall time ({how})",
            dir.display(),
            wall / first
        );
    }
}

pub fn run(args: &CompareArgs) -> Result<(), Box<dyn std::error::Error>> {
    let mut runs = Vec::new();
    for dir in &args.results {
        let (records, unreadable) = results::load(dir)?;
        if let Some(u) = unreadable.first() {
            return Err(format!("{u}: an unreadable record ({} in all)", unreadable.len()).into());
        }
        runs.push((dir.display().to_string(), latest_run(records)));
    }
    print_wall_times(&args.results);
    let diffs = differences(&runs);
    for d in &diffs {
        eprintln!("webq compare: {d}");
    }
    let cells = runs.iter().map(|(_, r)| r.len()).max().unwrap_or(0);
    if diffs.is_empty() {
        eprintln!("webq compare: {} runs of {cells} cells agree on every status and verdict", runs.len());
        Ok(())
    } else {
        Err(format!("{} of {cells} cells differ between runs", diffs.len()).into())
    }
}
