//! `webq formats`: the format catalogue, measured on seeded weights.

use std::thread;

use clap::Args;
use serde::Serialize;
use webq_conformance::Metrics;
use webq_engine::quant::{quantize, Layout, QuantFormat, Quantizer, Scheme};
use webq_engine::seeded;

#[derive(Args)]
pub struct FormatsArgs {
    /// Print one JSON object per format instead of a table.
    #[arg(long)]
    json: bool,
    /// Rows (output channels) of the seeded matrix.
    #[arg(long, default_value_t = 4096)]
    n: usize,
    /// Columns (K) of the seeded matrix.
    #[arg(long, default_value_t = 4096)]
    k: usize,
    /// Seed of the weights.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// One row of the catalogue.
#[derive(Serialize)]
pub struct FormatRow {
    pub name: String,
    pub bits: u32,
    pub group_size: Option<u32>,
    pub scheme: Option<Scheme>,
    pub scale_type: Option<String>,
    pub layout: Layout,
    pub bits_per_weight: f64,
    /// Relative L2 error of the dequantized weights against the weights rounded to fp16.
    pub rel_l2_rtn: f64,
    pub rel_l2_search: f64,
}

pub fn run(args: &FormatsArgs) -> Result<(), Box<dyn std::error::Error>> {
    let rows = measure(args.n, args.k, args.seed)?;
    if args.json {
        for r in &rows {
            println!("{}", serde_json::to_string(r)?);
        }
    } else {
        println!(
            "seeded weights {}x{} (seed {}): relative L2 error of dequantized weights vs fp16",
            args.n, args.k, args.seed
        );
        println!(
            "{:<20} {:>5} {:>6} {:>5} {:>6} {:>8} {:>8} {:>11} {:>11}",
            "format", "bits", "group", "sym", "scales", "layout", "bpw", "rtn", "search"
        );
        for r in &rows {
            let group = r.group_size.map_or("pc".to_string(), |g| g.to_string());
            let group = if r.bits == 16 { "-".into() } else { group };
            let sym = match r.scheme {
                Some(Scheme::Symmetric) => "sym",
                Some(Scheme::Asymmetric) => "asym",
                None => "-",
            };
            println!(
                "{:<20} {:>5} {:>6} {:>5} {:>6} {:>8} {:>8.4} {:>11.3e} {:>11.3e}",
                r.name,
                r.bits,
                group,
                sym,
                r.scale_type.as_deref().unwrap_or("-"),
                r.layout.name(),
                r.bits_per_weight,
                r.rel_l2_rtn,
                r.rel_l2_search
            );
        }
    }
    Ok(())
}

/// Measures every catalogue format, spread over the machine's cores.
pub fn measure(n: usize, k: usize, seed: u64) -> Result<Vec<FormatRow>, Box<dyn std::error::Error>> {
    let w = seeded::weights(seed, n, k);
    let w16: Vec<f32> = w.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
    let formats = QuantFormat::catalogue();
    let workers = thread::available_parallelism().map_or(1, |p| p.get()).min(formats.len());
    let results: Vec<Result<FormatRow, String>> = thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|t| {
                let (w, w16, formats) = (&w, &w16, &formats);
                s.spawn(move || {
                    formats
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| i % workers == t)
                        .map(|(i, f)| (i, measure_one(*f, w, w16, n, k)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<_> = handles.into_iter().flat_map(|h| h.join().expect("worker panicked")).collect();
        all.sort_by_key(|(i, _)| *i);
        all.into_iter().map(|(_, r)| r).collect()
    });
    results.into_iter().map(|r| r.map_err(Into::into)).collect()
}

fn measure_one(f: QuantFormat, w: &[f32], w16: &[f32], n: usize, k: usize) -> Result<FormatRow, String> {
    let err = |q: Quantizer| -> Result<f64, String> {
        let dq = quantize(w, n, k, f, q).map_err(|e| format!("{f}: {e}"))?.dequantize();
        Ok(Metrics::compare(&dq, w16, None).map_err(|e| format!("{f}: {e}"))?.rel_l2)
    };
    let int = f.as_int();
    let rtn = err(Quantizer::RoundToNearest)?;
    Ok(FormatRow {
        name: f.to_string(),
        bits: f.weight_bits(),
        group_size: int.and_then(|i| i.group.size()),
        scheme: int.map(|i| i.scheme),
        scale_type: int.map(|i| format!("{:?}", i.scale).to_lowercase()),
        layout: f.layout(),
        bits_per_weight: f.bits_per_weight(n, k).map_err(|e| e.to_string())?,
        rel_l2_rtn: rtn,
        // fp16 has no scales to search.
        rel_l2_search: if int.is_some() { err(Quantizer::ScaleSearch)? } else { rtn },
    })
}
