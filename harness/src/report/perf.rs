//! `perf.html`: what each cell measured, with speed-up and size against fp16 in the same runtime
//! and backend, and charts: model throughput and weight bandwidth per precision per runtime, and
//! error against bits per weight with the Pareto front.

use std::collections::BTreeMap;

use webq_reports::svg::{bar_chart, pareto_chart, Point};
use webq_reports::{Chart, PerfPage, Table};

use super::{index_of, num, RunFacts};
use crate::results::{CellRecord, Status};
use webq_engine::models::bench::{ModelBench, Spread};

/// The cell's id with its precision replaced: where its fp16 twin is.
fn twin_id(r: &CellRecord, precision: &str) -> String {
    let mut parts: Vec<&str> = r.id.split('/').collect();
    if parts.len() > 2 {
        parts[2] = precision;
    }
    parts.join("/")
}

fn series_name(r: &CellRecord) -> String {
    let id: Vec<&str> = r.id.split('/').collect();
    format!("{} {}", id[0], id.get(1).unwrap_or(&""))
}

/// Items per second of a model cell (sentences or tokens over the whole run).
fn throughput(r: &CellRecord) -> Option<(f64, &'static str)> {
    let m = r.cell.model.as_ref()?;
    let t = r.timings.as_ref()?;
    let (n, unit) = crate::model_cells::items(m);
    (n > 0 && t.wall_us > 0.0).then(|| (n as f64 / (t.wall_us / 1e6), unit))
}

/// Groups (precisions, in first-seen order), series (runtime and backend) and values for a bar
/// chart of `value` over `records`.
fn grouped(
    records: &[&CellRecord],
    value: impl Fn(&CellRecord) -> Option<f64>,
) -> (Vec<String>, Vec<String>, Vec<Vec<Option<f64>>>) {
    let mut groups: Vec<String> = Vec::new();
    let mut series: Vec<String> = Vec::new();
    let mut at: BTreeMap<(usize, usize), f64> = BTreeMap::new();
    for r in records {
        let Some(v) = value(r) else { continue };
        let gi = index_of(&mut groups, &r.cell.precision.to_string());
        let si = index_of(&mut series, &series_name(r));
        at.insert((si, gi), v);
    }
    let values = (0..series.len()).map(|s| (0..groups.len()).map(|g| at.get(&(s, g)).copied()).collect()).collect();
    (groups, series, values)
}

/// The warm median of a benchmark (the first inference's time without warm runs).
fn warm_ms(b: &ModelBench) -> f64 {
    b.warm.map_or(b.first_ms, |s| s.median_ms)
}

/// The benchmark protocol of every model cell that has one; speed-up (warm medians) and size
/// (stored weight bytes) against the fp16 cell of the same runtime and backend.
fn bench_table<'r>(models: &[&'r CellRecord], fp16: impl Fn(&CellRecord) -> Option<&'r CellRecord>) -> Table {
    let mb = |b: Option<u64>| num(b.map(|b| b as f64 / 1e6), 2);
    let rows = models
        .iter()
        .filter_map(|r| Some((r, r.bench.as_ref()?)))
        .map(|(r, b)| {
            let twin = fp16(r).and_then(|f| f.bench.as_ref());
            let speed = twin.map(|f| warm_ms(f) / warm_ms(b)).filter(|v| v.is_finite());
            let size = twin.map(|f| b.weight_bytes as f64 / f.weight_bytes as f64).filter(|v| v.is_finite());
            let spread = |s: Option<Spread>, f: fn(&Spread) -> f64| num(s.as_ref().map(f), 1);
            let mut rate = format!("{:.2} {}", b.rate, b.unit);
            if let Some(d) = b.decode_rate {
                rate += &format!("; decode {d:.2} tokens/s");
            }
            vec![
                r.id.clone(),
                num(b.fetch_ms, 1),
                num(Some(b.parse_ms), 1),
                num(Some(b.quantize_ms), 1),
                num(Some(b.upload_ms), 1),
                num(b.first_layer_ms, 1),
                num(Some(b.first_ms), 1),
                b.compiled.map_or(String::new(), |(n, ms)| format!("{n} in {ms:.1} ms")),
                b.warm.map_or("0".into(), |s| s.runs.to_string()),
                spread(b.warm, |s| s.median_ms),
                spread(b.warm, |s| s.p90_ms),
                rate,
                if b.warm.is_none() { String::new() } else { (if b.repeatable { "yes" } else { "no" }).into() },
                mb(Some(b.weight_bytes)),
                mb(b.device_weight_bytes),
                mb(b.activation_peak_bytes),
                mb(b.kv_cache_bytes),
                mb(b.wasm_memory_bytes),
                b.browser_memory_bytes
                    .map_or_else(|| b.browser_memory_note.clone().unwrap_or_default(), |v| mb(Some(v))),
                num(speed, 2),
                num(size, 2),
            ]
        })
        .collect();
    Table {
        title: "Model benchmarks".into(),
        caption: "The benchmark protocol per model cell: the cold load (fetch, only when the page did not hold the \
                  file already; parse; quantize; upload, which a progressive load interleaves stage by stage; \
                  first layer: from the start of the load until the first layer was on the backend), the first \
                  inference (with the pipelines or graphs it compiled), warm inferences after it (median and \
                  p90), throughput at the warm median, and memory in MB: stored weights, weights on the device, \
                  the largest activations one op moved, the KV cache, the wasm heap's high-water mark, the \
                  browser's own measure. Repeatable: every warm output bit-identical to the first."
            .into(),
        header: [
            "cell",
            "fetch ms",
            "parse ms",
            "quantize ms",
            "upload ms",
            "first layer ms",
            "first ms",
            "compiled",
            "warm runs",
            "warm median ms",
            "warm p90 ms",
            "throughput",
            "repeatable",
            "weights MB",
            "on device MB",
            "activation peak MB",
            "KV cache MB",
            "wasm heap MB",
            "browser MB",
            "speed-up vs fp16",
            "size vs fp16",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    }
}

/// Kernel cells that differ only in the GEMV that ran, side by side: which was fastest and by how
/// much (GPU time where there are timestamps, else wall time). `None` when no cell has a rival.
fn workgroups_table(kernels: &[&CellRecord]) -> Option<Table> {
    let mut groups: BTreeMap<String, Vec<(String, f64)>> = BTreeMap::new();
    for r in kernels.iter().filter(|r| r.status == Status::Pass) {
        let (Some(t), Some(wg)) = (r.timings.as_ref(), r.workgroup.as_ref()) else { continue };
        let c = &r.cell;
        let key = format!(
            "{}/{}/{}/{}-{}/{}",
            c.runtime,
            c.device.map_or(c.backend.to_string(), |d| format!("{}@{d}", c.backend)),
            c.precision,
            if c.kernel == webq_engine::webgpu::KernelKind::Gemm { "gemm" } else { "gemv" },
            c.arith.name(),
            c.shape
        );
        let entry = groups.entry(key).or_default();
        if !entry.iter().any(|(w, _)| w == wg) {
            entry.push((wg.clone(), t.gpu_us.unwrap_or(t.wall_us)));
        }
    }
    let rows: Vec<Vec<String>> = groups
        .into_iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(key, mut v)| {
            v.sort_by(|a, b| a.1.total_cmp(&b.1));
            let (fastest, slowest) = (&v[0], &v[v.len() - 1]);
            vec![
                key,
                v.iter().map(|(w, us)| format!("{w}: {us:.1} us")).collect::<Vec<_>>().join(", "),
                fastest.0.clone(),
                num(Some(slowest.1 / fastest.1), 2),
            ]
        })
        .collect();
    (!rows.is_empty()).then(|| Table {
        title: "Workgroups compared".into(),
        caption: "Kernel cells that differ only in the GEMV that ran (the tuning table's pick and the matrix's fixed \
                  ones), fastest first: GPU time where the adapter has timestamps, else wall time per dispatch."
            .into(),
        header: ["cells", "time per GEMV", "fastest", "slowest / fastest"].map(String::from).to_vec(),
        rows,
    })
}

pub fn page(records: &[CellRecord], facts: &RunFacts) -> PerfPage {
    let by_id: BTreeMap<&str, &CellRecord> = records.iter().map(|r| (r.id.as_str(), r)).collect();
    let measured: Vec<&CellRecord> =
        records.iter().filter(|r| r.status != Status::Unsupported && r.timings.is_some()).collect();
    let fp16 = |r: &CellRecord| by_id.get(twin_id(r, "fp16").as_str()).copied().filter(|t| t.timings.is_some());
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if a > 0.0 && b > 0.0 => num(Some(a / b), 2),
        _ => String::new(),
    };

    let models: Vec<&CellRecord> = measured.iter().copied().filter(|r| r.cell.model.is_some()).collect();
    let kernels: Vec<&CellRecord> = measured.iter().copied().filter(|r| r.cell.model.is_none()).collect();
    let mut tables = Vec::new();
    tables.push(Table {
        title: "Models".into(),
        caption: "One run of each cell: load is fetching, parsing and quantizing the weights; the run is every \
                  input end to end. Speed-up and size are against the fp16 cell of the same runtime and backend."
            .into(),
        header: [
            "cell",
            "status",
            "load ms",
            "run ms",
            "throughput",
            "weights MB",
            "bits/weight",
            "speed-up vs fp16",
            "size vs fp16",
            "as the page measured",
        ]
        .map(String::from)
        .to_vec(),
        rows: models
            .iter()
            .map(|r| {
                let t = r.timings.as_ref().expect("measured");
                let twin = fp16(r);
                let speed = ratio(twin.map(|f| f.timings.as_ref().expect("measured").wall_us), Some(t.wall_us));
                let size = ratio(
                    Some(t.weight_bytes as f64),
                    twin.map(|f| f.timings.as_ref().expect("measured").weight_bytes as f64),
                );
                vec![
                    r.id.clone(),
                    r.status.name().into(),
                    num(Some(t.upload_ms), 1),
                    num(Some(t.wall_us / 1e3), 1),
                    throughput(r).map_or(String::new(), |(v, u)| format!("{v:.1} {u}/s")),
                    num(Some(t.weight_bytes as f64 / 1e6), 2),
                    r.model.as_ref().map_or(String::new(), |m| num(Some(m.storage.bits_per_weight), 2)),
                    speed,
                    size,
                    r.detail
                        .as_ref()
                        .map(|d| d.notes.iter().filter(|n| n.contains("/s")).cloned().collect::<Vec<_>>().join("; "))
                        .unwrap_or_default(),
                ]
            })
            .collect(),
    });
    tables.push(bench_table(&models, |r| by_id.get(twin_id(r, "fp16").as_str()).copied()));
    tables.push(Table {
        title: "Kernels".into(),
        caption: "Wall time is the mean per dispatch over the matrix's repetitions; GPU time the median of \
                  timestamp queries where the adapter has them. GB/s is weight bytes (codes, scales, zero points) \
                  over GPU time, or wall time without timestamps."
            .into(),
        header: [
            "cell",
            "status",
            "dispatches",
            "wall us",
            "GPU us",
            "weight GB/s",
            "compile ms",
            "upload ms",
            "speed-up vs fp16",
            "size vs fp16",
        ]
        .map(String::from)
        .to_vec(),
        rows: kernels
            .iter()
            .map(|r| {
                let t = r.timings.as_ref().expect("measured");
                let twin = fp16(r).and_then(|f| f.timings.as_ref());
                let time = |t: &crate::results::CellTimings| t.gpu_us.unwrap_or(t.wall_us);
                vec![
                    r.id.clone(),
                    r.status.name().into(),
                    t.dispatches.to_string(),
                    num(Some(t.wall_us), 1),
                    num(t.gpu_us, 1),
                    num(Some(t.weight_gbps), 3),
                    num(t.compile_ms, 1),
                    num(Some(t.upload_ms), 2),
                    ratio(twin.map(time), Some(time(t))),
                    ratio(Some(t.weight_bytes as f64), twin.map(|f| f.weight_bytes as f64)),
                ]
            })
            .collect(),
    });

    if let Some(t) = workgroups_table(&kernels) {
        tables.push(t);
    }

    let mut charts = Vec::new();
    let mut families: Vec<String> = Vec::new();
    for r in &models {
        index_of(&mut families, &r.cell.shape);
    }
    for shape in &families {
        let mine: Vec<&CellRecord> = models.iter().copied().filter(|r| &r.cell.shape == shape).collect();
        let unit = mine.iter().find_map(|r| throughput(r)).map_or("items", |(_, u)| u);
        let (g, s, v) = grouped(&mine, |r| throughput(r).map(|(v, _)| v));
        if !g.is_empty() {
            charts.push(Chart {
                title: format!("{shape}: throughput"),
                caption: format!("{unit} per second over the whole run, per precision, per runtime and backend"),
                svg: bar_chart(&format!("{shape}: {unit}/s"), &format!("{unit}/s"), &g, &s, &v),
            });
        }
    }
    let decode: Vec<&CellRecord> = kernels
        .iter()
        .copied()
        .filter(|r| r.cell.shape == "decode" && r.id.contains("-f32-tuned") && r.cell.plant.is_none())
        .collect();
    let (g, s, v) = grouped(&decode, |r| r.timings.as_ref().map(|t| t.weight_gbps));
    if !g.is_empty() {
        charts.push(Chart {
            title: "decode GEMV: weight bandwidth".into(),
            caption: "GB/s of weights, f32 arithmetic, the tuning table's workgroup, per precision".into(),
            svg: bar_chart("decode GEMV (f32, tuned): weight GB/s", "GB/s", &g, &s, &v),
        });
    }

    // Error against bits per weight: the native full-depth model cells, one point per precision.
    let mut series: Vec<String> = Vec::new();
    let mut points = Vec::new();
    for r in records.iter().filter(|r| r.cell.runtime.name() == "native") {
        let Some(m) = &r.model else { continue };
        let err = match (m.measures.cosine_min, m.measures.top1_agreement) {
            (Some(c), _) => (1.0 - c, "1 - cosine min"),
            (None, Some(t)) => (1.0 - t, "1 - top-1 agreement"),
            _ => continue,
        };
        let s = index_of(&mut series, &format!("{} ({})", r.cell.shape, err.1));
        points.push(Point {
            label: r.cell.precision.to_string(),
            series: s,
            x: m.storage.bits_per_weight,
            y: err.0.max(1e-7),
        });
    }
    if !points.is_empty() {
        charts.push(Chart {
            title: "accuracy against bits per weight".into(),
            caption: "Native cells, one point per precision; the line joins each model's Pareto front (no other \
                      precision has fewer bits and less error). Errors below 1e-7 are drawn at 1e-7."
                .into(),
            svg: pareto_chart(
                "error against fp16 vs bits per weight",
                "bits per weight",
                "error (log)",
                &series,
                &points,
            ),
        });
    }
    let gpu = records.iter().filter_map(|r| r.environment.adapter.as_deref()).any(|a| {
        let a = a.to_ascii_lowercase();
        !(a.is_empty() || a.contains("llvmpipe") || a.contains("swiftshader") || a.contains("lavapipe"))
    });
    let mut notes = vec![
        "Every figure is a single run on this run's machine: compare ratios within one run, not across machines."
            .to_string(),
        "Model benchmarks repeat warm inferences only where the matrix asks (warm_ms, min_warm); without them the \
         warm columns are empty and throughput is the first inference's."
            .to_string(),
    ];
    if !gpu {
        notes.push(
            "No hardware GPU in this run (software adapters only): no GPU figures to set against the anchors in bench/."
                .into(),
        );
    }
    PerfPage { title: "webq: performance".into(), info: facts.info(), notes, charts, tables }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::CellTimings;
    use webq_engine::protocol::{CellBackend, Runtime};

    fn ran(workgroup: &str, gpu_us: f64, shape: &str) -> CellRecord {
        let mut c = crate::cell::test_cell(Runtime::Firefox, CellBackend::Webgpu, "int8-pc-sym", 384, 384);
        c.shape = shape.into();
        let mut r = crate::verdict::blank_record(&c, "r", "m", Default::default());
        r.status = Status::Pass;
        r.workgroup = Some(workgroup.into());
        r.timings = Some(CellTimings { gpu_us: Some(gpu_us), wall_us: 3300.0, ..Default::default() });
        r
    }

    /// Cells that differ only in their GEMV are set side by side, fastest first; a cell without a
    /// rival is left out.
    #[test]
    fn workgroups_are_compared_within_a_cell_and_the_fastest_named() {
        let records = [ran("256x1", 2889.0, "proj"), ran("128x2", 1456.0, "proj"), ran("vec-16x8", 220.0, "head")];
        let refs: Vec<&CellRecord> = records.iter().collect();
        let t = workgroups_table(&refs).expect("one group has two kernels");
        assert_eq!(t.rows.len(), 1, "{:?}", t.rows);
        let row = &t.rows[0];
        assert!(row[0].ends_with("/proj") && row[0].starts_with("firefox/webgpu/int8-pc-sym/"), "{row:?}");
        assert_eq!((row[2].as_str(), row[3].as_str()), ("128x2", "1.98"));
        assert!(row[1].starts_with("128x2: 1456.0 us, 256x1"), "{row:?}");
        assert!(workgroups_table(&refs[2..]).is_none());
    }
}
