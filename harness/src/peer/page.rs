//! `peer.html`: webq against onnxruntime-web, from the records of `peer.jsonl`. Per browser,
//! ORT-web build and execution provider, shape and format: webq's time over ORT-web's, median and
//! range over the rounds the file holds, against the goal (webq at most 0.7x ORT-web's time), with
//! both sides' kernel verdicts. A ratio is formed only where both outputs passed the verdict: a peer
//! that computes wrong numbers is shown as such, never as slow or fast.

use webq_engine::models::bench::Spread;
use webq_reports::svg::bar_chart;
use webq_reports::{Chart, PerfPage, Table};

use super::record::PeerRecord;
use super::ORT_VERSION;
use crate::report::{index_of, num};
use crate::results::Unreadable;

/// The goal of issue 14: webq's time at most this fraction of ORT-web's, wherever both run right.
pub const GOAL: f64 = 0.7;

/// One ORT-web measurement beside webq's on the same backend, case and round.
#[derive(Clone, Debug, PartialEq)]
struct Pairing {
    /// Label, browser, ORT runner, shape and format: what the summary groups rounds by.
    key: [String; 5],
    backend: String,
    /// webq over ORT-web, where both ran and passed the verdict.
    ratio: Option<f64>,
    webq_pass: Option<bool>,
    ort_pass: Option<bool>,
}

/// The records in the order `webq peer` writes them, cut into rounds of one case: a round ends
/// where the run, label, browser, shape or format changes, or a runner comes back.
fn rounds(records: &[PeerRecord]) -> Vec<&[PeerRecord]> {
    let case = |r: &PeerRecord| (r.run_id.clone(), r.label.clone(), r.browser.clone(), r.format.clone(), r.shape());
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=records.len() {
        let ends = i == records.len()
            || case(&records[i]) != case(&records[start])
            || records[start..i].iter().any(|r| r.runner == records[i].runner);
        if ends {
            out.push(&records[start..i]);
            start = i;
        }
    }
    out
}

fn pairings(records: &[PeerRecord]) -> Vec<Pairing> {
    let mut out = Vec::new();
    for round in rounds(records) {
        for ort in round.iter().filter(|r| !r.is_webq()) {
            let webq = round.iter().find(|r| r.is_webq() && r.backend == ort.backend);
            let ratio = match (webq.and_then(PeerRecord::judged_ms), ort.judged_ms()) {
                (Some(w), Some(o)) if o > 0.0 => Some(w / o),
                _ => None,
            };
            out.push(Pairing {
                key: [
                    ort.label.clone().unwrap_or_default(),
                    ort.browser.clone(),
                    ort.runner.clone(),
                    ort.shape(),
                    ort.format.clone(),
                ],
                backend: ort.backend.clone(),
                ratio,
                webq_pass: webq.and_then(|w| w.verdict_pass),
                ort_pass: ort.verdict_pass,
            });
        }
    }
    out
}

/// `n of m pass`, with what the others were.
fn verdicts(v: &[Option<bool>]) -> String {
    let pass = v.iter().filter(|p| **p == Some(true)).count();
    let fail = v.iter().filter(|p| **p == Some(false)).count();
    let mut s = format!("{pass} of {} pass", v.len());
    if fail > 0 {
        s.push_str(&format!(", {fail} FAIL"));
    }
    if pass + fail < v.len() {
        s.push_str(&format!(", {} did not run", v.len() - pass - fail));
    }
    s
}

/// Whether the goal holds in every round, in none, or in some.
fn goal(ratios: &[f64], rounds: usize) -> String {
    if ratios.is_empty() {
        return "no ratio (see verdicts)".into();
    }
    let met = ratios.iter().filter(|r| **r <= GOAL).count();
    let unpaired = if ratios.len() < rounds {
        format!(" ({} of {rounds} rounds without a ratio)", rounds - ratios.len())
    } else {
        String::new()
    };
    match met {
        0 => format!("not met{unpaired}"),
        m if m == ratios.len() => format!("met{unpaired}"),
        m => format!("met in {m} of {} rounds{unpaired}", ratios.len()),
    }
}

/// The summary: one row per label, browser, ORT runner, shape and format over every round.
fn summary(pairings: &[Pairing]) -> (Table, Chart) {
    let mut keys: Vec<[String; 5]> = Vec::new();
    for p in pairings {
        index_of(&mut keys, &p.key);
    }
    let labelled = keys.iter().any(|k| !k[0].is_empty());
    // The chart names a case by what differs between cases, so its labels stay short.
    let varies: Vec<bool> = (0..5).map(|i| keys.iter().any(|k| k[i] != keys[0][i])).collect();
    let mut rows = Vec::new();
    let (mut groups, mut series) = (Vec::new(), Vec::new());
    let mut bars = Vec::new(); // (series, group, median ratio)
    for key in &keys {
        let of: Vec<&Pairing> = pairings.iter().filter(|p| &p.key == key).collect();
        let ratios: Vec<f64> = of.iter().filter_map(|p| p.ratio).collect();
        let spread = Spread::of(&ratios);
        let max = ratios.iter().copied().fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))));
        let [label, browser, runner, shape, format] = key;
        let mut row = Vec::new();
        if labelled {
            row.push(label.clone());
        }
        row.extend([
            browser.clone(),
            of[0].backend.clone(),
            runner.clone(),
            shape.clone(),
            format.clone(),
            of.len().to_string(),
            spread.map_or("-".into(), |s| format!("{}x", num(Some(s.median_ms), 2))),
            match (spread, max) {
                (Some(s), Some(max)) if of.len() > 1 => format!("{}-{}x", num(Some(s.min_ms), 2), num(Some(max), 2)),
                _ => String::new(),
            },
            goal(&ratios, of.len()),
            verdicts(&of.iter().map(|p| p.webq_pass).collect::<Vec<_>>()),
            verdicts(&of.iter().map(|p| p.ort_pass).collect::<Vec<_>>()),
        ]);
        rows.push(row);
        let group =
            [0, 1, 3, 4].into_iter().filter(|&i| varies[i]).map(|i| key[i].as_str()).collect::<Vec<_>>().join(" ");
        bars.push((index_of(&mut series, runner), index_of(&mut groups, &group), spread.map(|s| s.median_ms)));
    }
    let mut values = vec![vec![None; groups.len()]; series.len()];
    for (s, g, v) in bars {
        values[s][g] = v;
    }
    let mut header: Vec<String> = Vec::new();
    if labelled {
        header.push("label".into());
    }
    header.extend(
        [
            "browser",
            "backend",
            "ORT-web runner",
            "MxNxK",
            "format",
            "rounds",
            "webq / ORT-web (median)",
            "range",
            "goal <= 0.7x",
            "webq verdict",
            "ORT-web verdict",
        ]
        .map(String::from),
    );
    let table = Table {
        title: "webq's time over ORT-web's".into(),
        caption: format!(
            "Medians over the rounds the records hold. A ratio needs both outputs to pass the kernel verdict \
             against the CPU emulation; the goal is webq at most {GOAL}x ORT-web's time."
        ),
        header,
        rows,
    };
    let chart = Chart {
        title: "webq / ORT-web".into(),
        caption: format!(
            "Median of webq's time over ORT-web's per case; under {GOAL} meets the goal, under 1 is faster."
        ),
        svg: bar_chart("webq's time over ORT-web's (median)", "ratio", &groups, &series, &values),
    };
    (table, chart)
}

/// Every record as measured.
fn measurements(records: &[PeerRecord]) -> Table {
    let rows = records
        .iter()
        .map(|r| {
            vec![
                r.label.clone().unwrap_or_default(),
                r.browser.clone(),
                r.shape(),
                r.format.clone(),
                r.runner.clone(),
                num(r.ms_per_run, 2),
                num(r.gpu_ms, 2),
                match r.verdict_pass {
                    Some(true) => format!("pass {}", num(r.worst_ratio, 2)),
                    Some(false) => format!("FAIL {}", num(r.worst_ratio, 2)),
                    None => "did not run".into(),
                },
                r.reps.to_string(),
                [r.webq_kernel.clone().map(|k| format!("kernel {k}")), Some(r.note.clone())]
                    .into_iter()
                    .flatten()
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join("; "),
            ]
        })
        .collect();
    Table {
        title: "Every measurement".into(),
        caption: "In the order measured. ms a run is wall time; gpu ms is webq's GPU-timestamp median per dispatch \
                  where the browser offers timestamps. The verdict's number is the worst output's error over what the \
                  tolerance allows."
            .into(),
        header: ["label", "browser", "MxNxK", "format", "runner", "ms a run", "gpu ms", "verdict", "reps", "note"]
            .map(String::from)
            .to_vec(),
        rows,
    }
}

/// The page for a `peer.jsonl`'s records.
pub fn page(records: &[PeerRecord], unreadable: &[Unreadable]) -> PerfPage {
    let mut runs: Vec<String> = Vec::new();
    let mut revisions: Vec<String> = Vec::new();
    let mut agents: Vec<String> = Vec::new();
    for r in records {
        index_of(&mut runs, &r.run_id.clone().unwrap_or_else(|| "unversioned records".into()));
        if let Some(rev) = &r.revision {
            index_of(&mut revisions, rev);
        }
        if let Some(ua) = &r.user_agent {
            index_of(
                &mut agents,
                &format!("{}: {ua} ({})", r.browser, if r.adapter.is_empty() { "adapter unnamed" } else { &r.adapter }),
            );
        }
    }
    let mut info = vec![
        ("onnxruntime-web".to_string(), ORT_VERSION.to_string()),
        ("runs".into(), runs.join(", ")),
        ("records".into(), records.len().to_string()),
    ];
    if !revisions.is_empty() {
        info.push(("webq revision".into(), revisions.join(", ")));
    }
    for ua in agents {
        info.push(("browser".into(), ua));
    }
    let mut notes = vec![
        "Clocks: webq's figure is the page's wall time per dispatch over the run's repetitions in one submission \
         with one readback (its GPU-timestamp median beside it where the browser has timestamps); ORT-web's is wall \
         time per session.run with the output left on the device and one readback at the end."
            .to_string(),
        "ORT-web runs MatMulNBits from both of its WebGPU builds (ort.webgpu.min.mjs: the C++ EP; ort.all.min.mjs: \
         JSEP) and its wasm EP; the note says which execution providers ORT's verbose log named."
            .to_string(),
    ];
    notes.extend(unreadable.iter().map(|u| format!("{u}: skipped")));
    let pairs = pairings(records);
    let (table, chart) = summary(&pairs);
    PerfPage {
        title: "webq against onnxruntime-web".into(),
        info,
        notes,
        charts: if pairs.iter().any(|p| p.ratio.is_some()) { vec![chart] } else { vec![] },
        tables: vec![table, measurements(records)],
    }
}

#[cfg(test)]
mod tests {
    use super::super::record::{load, tests::record};
    use super::*;

    #[test]
    fn each_ort_runner_is_paired_with_webq_on_its_backend_and_only_where_both_passed() {
        let round = |webq_gpu: f64, ort_wasm_pass: bool| {
            vec![
                record("webq webgpu", Some(webq_gpu), Some(true)),
                record("ort webgpu (C++ EP build)", Some(20.0), Some(true)),
                record("ort webgpu (JSEP build)", Some(5.0), Some(false)),
                record("webq wasm", Some(30.0), Some(true)),
                record("ort wasm (JSEP build)", Some(20.0), Some(ort_wasm_pass)),
            ]
        };
        let mut records = round(10.0, true);
        records.extend(round(16.0, false));
        let pairs = pairings(&records);
        assert_eq!(pairs.len(), 6, "three ORT runners a round, two rounds");
        let ratios: Vec<Option<f64>> = pairs.iter().map(|p| p.ratio).collect();
        assert_eq!(ratios, vec![Some(0.5), None, Some(1.5), Some(0.8), None, None]);
        let (table, chart) = summary(&pairs);
        let row = |runner: &str| table.rows.iter().find(|r| r[2] == runner).unwrap().clone();
        let cpp = row("ort webgpu (C++ EP build)");
        assert_eq!((cpp[5].as_str(), cpp[6].as_str(), cpp[7].as_str()), ("2", "0.65x", "0.50-0.80x"));
        assert_eq!(cpp[8], "met in 1 of 2 rounds");
        let jsep = row("ort webgpu (JSEP build)");
        assert_eq!((jsep[8].as_str(), jsep[10].as_str()), ("no ratio (see verdicts)", "0 of 2 pass, 2 FAIL"));
        let wasm = row("ort wasm (JSEP build)");
        assert_eq!(wasm[8], "not met (1 of 2 rounds without a ratio)");
        assert!(chart.svg.contains("ort webgpu (C++ EP build)"));
    }

    #[test]
    fn a_webq_output_that_failed_gives_no_ratio_and_says_so() {
        let records = vec![
            record("webq wasm", Some(1.0), Some(false)),
            record("ort wasm (JSEP build)", Some(20.0), Some(true)),
            record("webq wasm", None, None),
            record("ort wasm (JSEP build)", Some(20.0), Some(true)),
        ];
        let (table, _) = summary(&pairings(&records));
        assert_eq!(table.rows.len(), 1);
        assert_eq!(table.rows[0][8], "no ratio (see verdicts)");
        assert_eq!(table.rows[0][9], "0 of 2 pass, 1 FAIL, 1 did not run");
        let html = webq_reports::render_peer(&page(&records, &[])).unwrap();
        assert!(html.contains("FAIL") && !html.contains("<svg"), "no chart without a ratio");
    }

    /// Every peer record kept in bench/ reads with this webq and gives ratios on the page.
    #[test]
    fn the_peer_records_in_bench_read_and_render() {
        let bench = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench");
        let mut files = 0;
        for entry in std::fs::read_dir(&bench).unwrap() {
            let path = entry.unwrap().path();
            // A peer record file: its first line has a runner and a time per run.
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap_or("")).unwrap_or_default();
            if path.extension().is_none_or(|e| e != "jsonl")
                || first.get("runner").is_none()
                || first.get("ms_per_run").is_none()
            {
                continue;
            }
            files += 1;
            let (records, unreadable) = load(&path).unwrap();
            assert!(unreadable.is_empty(), "{unreadable:?}");
            let pairs = pairings(&records);
            assert!(pairs.iter().any(|p| p.ratio.is_some()), "{}: no ratio", path.display());
            let html = webq_reports::render_peer(&page(&records, &unreadable)).unwrap();
            assert!(html.contains("ORT-web (median)") && html.contains("<svg"), "{}", path.display());
        }
        assert!(files >= 10, "found {files} peer record files in {}", bench.display());
    }
}
