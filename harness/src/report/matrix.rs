//! `index.html` (rows family x what x precision, columns runtime x backend) and `cells.html`.

use webq_reports::machine::OutcomeStatus;
use webq_reports::{CellDetail, Changes, Column, DetailPage, MatrixCell, MatrixPage, MatrixRow, StatusCount};

use super::census::browser_of;
use super::{anchor, class, index_of, key_numbers, notes, num, ran, shown, words, RunFacts, SEVERITY};
use crate::matrix::Expect;
use crate::results::CellRecord;

fn column_key(r: &CellRecord) -> (String, String) {
    let backend = match &r.cell.device {
        Some(d) => format!("{}@{d}", r.cell.backend),
        None => r.cell.backend.to_string(),
    };
    (r.cell.runtime.name().to_string(), backend)
}

/// (family, what, precision): a model row names its model and depth, a kernel row its shape.
fn row_key(r: &CellRecord) -> (String, String, String) {
    let family = r.cell.model.as_ref().map_or("kernel", |m| m.family.name()).to_string();
    (family, r.cell.shape.clone(), r.cell.precision.to_string())
}

/// The variant a record is within its matrix cell (the id's part after runtime/backend/precision).
fn variant(r: &CellRecord) -> String {
    r.id.splitn(4, '/').nth(3).unwrap_or(&r.id).to_string()
}

fn cell_of(records: &[&CellRecord], expects: &[Expect]) -> MatrixCell {
    if records.is_empty() {
        return MatrixCell { class: "empty".into(), ..Default::default() };
    }
    let shown: Vec<OutcomeStatus> = records.iter().map(|r| shown(r, expects)).collect();
    let worst = SEVERITY.iter().find(|s| shown.contains(s)).copied().unwrap_or(OutcomeStatus::Pass);
    let words_of = if records.len() == 1 {
        words(class(worst)).to_string()
    } else {
        SEVERITY
            .iter()
            .rev()
            .filter_map(|s| {
                let n = shown.iter().filter(|x| *x == s).count();
                (n > 0).then(|| format!("{n} {}", words(class(*s))))
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let summary: Vec<String> = records
        .iter()
        .zip(&shown)
        .map(|(r, s)| {
            let why = match (r.reason.as_deref(), key_numbers(r)) {
                (Some(reason), _) if *s != OutcomeStatus::Pass => reason.to_string(),
                (_, k) => k,
            };
            format!("{}: {}: {why}", variant(r), words(class(*s)))
        })
        .collect();
    let first_bad = records.iter().zip(&shown).find(|(_, s)| **s != OutcomeStatus::Pass);
    MatrixCell {
        class: class(worst).into(),
        words: words_of,
        summary: summary.join("\n"),
        link: first_bad.map_or(String::new(), |(r, _)| format!("cells.html#{}", anchor(&r.id))),
    }
}

pub fn page(
    records: &[CellRecord],
    facts: &RunFacts,
    expects: &[Expect],
    warnings: Vec<String>,
    changes: Option<Changes>,
) -> MatrixPage {
    let mut columns: Vec<(String, String)> = Vec::new();
    let mut rows: Vec<(String, String, String)> = Vec::new();
    let mut at: std::collections::BTreeMap<(usize, usize), Vec<&CellRecord>> = Default::default();
    for r in records {
        let c = index_of(&mut columns, &column_key(r));
        let row = index_of(&mut rows, &row_key(r));
        at.entry((row, c)).or_default().push(r);
    }
    // Model rows first (what users ask about), then the kernel cases; first-seen order within.
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| (rows[i].0 == "kernel", i));
    let mut counts = std::collections::BTreeMap::<&'static str, usize>::new();
    for r in records {
        *counts.entry(class(shown(r, expects))).or_default() += 1;
    }
    let totals = webq_reports::LEGEND
        .iter()
        .filter_map(|l| counts.get(l.class).map(|&count| StatusCount { status: l.class.into(), count }))
        .collect();
    let cols = columns
        .iter()
        .enumerate()
        .map(|(ci, (runtime, backend))| {
            let mine: Vec<&CellRecord> =
                at.iter().filter(|((_, c), _)| *c == ci).flat_map(|(_, v)| v.clone()).collect();
            let adapter = mine.iter().find_map(|r| r.environment.adapter.clone().filter(|a| !a.is_empty()));
            Column {
                runtime: runtime.clone(),
                backend: backend.clone(),
                browser: browser_of(runtime, &mine),
                adapter: adapter.unwrap_or_default(),
                passes: mine.iter().filter(|r| r.status == crate::results::Status::Pass).count(),
                total: mine.len(),
            }
        })
        .collect();
    let matrix_rows = order
        .iter()
        .map(|&ri| {
            let (family, what, precision) = rows[ri].clone();
            let cells: Vec<MatrixCell> = (0..columns.len())
                .map(|ci| cell_of(at.get(&(ri, ci)).map(Vec::as_slice).unwrap_or(&[]), expects))
                .collect();
            let mut statuses: Vec<String> = Vec::new();
            for ci in 0..columns.len() {
                for r in at.get(&(ri, ci)).into_iter().flatten() {
                    index_of(&mut statuses, &class(shown(r, expects)).to_string());
                }
            }
            MatrixRow { family, what, precision, cells, statuses: statuses.join(" ") }
        })
        .collect();
    let (mut runtimes, mut backends, mut families) = (Vec::new(), Vec::new(), Vec::new());
    for (runtime, backend) in &columns {
        index_of(&mut runtimes, runtime);
        index_of(&mut backends, backend);
    }
    for (f, _, _) in &rows {
        index_of(&mut families, f);
    }
    let title = match records.first() {
        Some(r) => format!("webq: compatibility, matrix {}", r.matrix),
        None => "webq: no results".into(),
    };
    MatrixPage {
        title,
        info: facts.info(),
        totals,
        warnings,
        columns: cols,
        rows: matrix_rows,
        runtimes,
        backends,
        families,
        changes,
    }
}

/// A trace's device time beside the page's or the process's clock, where timestamps measured it.
fn on_gpu(ms: Option<f64>) -> String {
    ms.map_or(String::new(), |ms| format!("  (GPU {ms:.3} ms)"))
}

/// A trace in sections a reader opens one at a time: time per op kind, every op in order, the
/// errors, the memory log.
fn trace_sections(t: &webq_engine::models::trace::Trace) -> Vec<(String, Vec<String>)> {
    let total: f64 = t.ops.iter().map(|e| e.ms).sum();
    let kinds = t
        .by_op()
        .into_iter()
        .map(|(op, n, ms, gpu)| {
            format!(
                "{op:<12} {n:>6} ops {ms:>10.2} ms {:>5.1}%{}",
                100.0 * ms / total.max(f64::MIN_POSITIVE),
                on_gpu(gpu)
            )
        })
        .collect();
    let ops = t
        .ops
        .iter()
        .map(|e| format!("{:>10.2} ms {:>9.3} ms  {} {}{}", e.at_ms, e.ms, e.op, e.on, on_gpu(e.gpu_ms)))
        .collect();
    let errors = t.errors.iter().map(|e| format!("{:>10.2} ms  {} {}: {}", e.at_ms, e.op, e.on, e.message)).collect();
    let mb = |b: Option<u64>| b.map_or("-".to_string(), |b| format!("{:.2} MB", b as f64 / 1e6));
    let memory = t
        .memory
        .iter()
        .map(|m| {
            format!(
                "{:>10.2} ms  weights on device {}, activation peak {}",
                m.at_ms,
                mb(m.device_weight_bytes),
                mb(m.activation_peak_bytes)
            )
        })
        .collect();
    vec![
        (format!("trace: {} ops, {total:.1} ms{}, by kind", t.ops.len(), on_gpu(t.gpu_ms())), kinds),
        (format!("op trace ({} ops, in order)", t.ops.len()), ops),
        (format!("error log ({})", t.errors.len()), errors),
        (format!("memory log ({} changes)", t.memory.len()), memory),
    ]
}

pub fn details(records: &[CellRecord], expects: &[Expect]) -> DetailPage {
    let mut bad: Vec<(usize, &CellRecord, OutcomeStatus)> = records
        .iter()
        .map(|r| (r, shown(r, expects)))
        .filter(|(r, s)| *s != OutcomeStatus::Pass || r.trace.is_some())
        .map(|(r, s)| (SEVERITY.iter().position(|x| *x == s).unwrap_or(0), r, s))
        .collect();
    bad.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.id.cmp(&b.1.id)));
    let cells = bad
        .into_iter()
        .map(|(_, r, s)| {
            let mut worst = Vec::new();
            if let Some(k) = &r.kernel {
                let v = &k.verdict;
                worst.push(("index".to_string(), v.worst_index.to_string()));
                if let Some(w) = &v.worst {
                    worst.push(("expected".into(), format!("{:.7e}", w.expected)));
                    worst.push(("got".into(), format!("{:.7e}", w.got)));
                    worst.push(("allowed error".into(), format!("{:.3e}", w.allowed)));
                }
                worst.push(("error / allowed".into(), num(Some(v.worst_ratio), 3)));
                worst.push(("outputs over tolerance".into(), v.failures.to_string()));
                worst.push(("NaN or infinite outputs".into(), v.non_finite.to_string()));
            }
            let tolerance = r.kernel.as_ref().map_or(String::new(), |k| {
                let t = &k.tolerance;
                if t.rel_rms > 0.0 {
                    format!("{}: each output within {} of the outputs' RMS", t.op, t.rel_rms)
                } else {
                    format!(
                        "{}: {} ULP per K, {} f32 units per K, {} f16 product units",
                        t.op, t.ulp_per_k, t.acc_units_per_k, t.f16_product_units
                    )
                }
            });
            let mut n = notes(r);
            if let Some(a) = &r.accuracy {
                n.push(format!(
                    "accuracy against fp16: rel L2 {} (budget {}), cosine {}",
                    num(Some(a.metrics.rel_l2), 4),
                    num(Some(a.budget_rel_l2), 4),
                    num(Some(a.metrics.cosine), 5)
                ));
            }
            n.extend(super::model_summary(r));
            let d = r.detail.as_ref();
            CellDetail {
                anchor: anchor(&r.id),
                id: r.id.clone(),
                status: words(class(s)).into(),
                class: class(s).into(),
                reason: r.reason.clone().unwrap_or_default(),
                error_kind: d.and_then(|d| d.error_kind.clone()).unwrap_or_default(),
                recommendation: d.and_then(|d| d.recommendation.clone()).unwrap_or_default(),
                worst,
                tolerance,
                ran: ran(r),
                notes: n,
                trace: r.trace.as_ref().map(trace_sections).unwrap_or_default(),
                shaders: r.trace.as_ref().map_or(Vec::new(), |t| {
                    t.shaders
                        .iter()
                        .map(|sh| (format!("{} ({}, {:.1} ms)", sh.label, sh.entry_point, sh.ms), sh.source.clone()))
                        .collect()
                }),
            }
        })
        .collect();
    DetailPage { title: "webq: every cell that is not a pass, and every traced cell".into(), cells }
}
