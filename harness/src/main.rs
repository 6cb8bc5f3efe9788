//! `webq`: the webq driver.

mod browser_run;
mod browsers;
mod cell;
mod compare;
mod doctor;
mod endpoints;
mod eval;
mod expect;
mod faults;
mod formats;
#[cfg(test)]
mod grid_tests;
mod matrix;
mod memory_budget;
mod messages;
mod model_cells;
mod model_verdict;
mod models;
mod native;
mod onnx;
mod op_faults;
mod ops;
mod pair;
mod peer;
mod photos;
mod report;
mod results;
mod run;
mod runner;
mod server;
mod speech;
mod tokenize;
mod transcripts;
mod verdict;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "webq", version, about = "Conformance and benchmarks of quantized inference on WebGPU and WebNN")]
struct Cli {
    /// More logging: -v debug (and one line per cell in `run`), -vv trace. RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

/// Logs go to stderr through `tracing`; the level comes from `-v` unless RUST_LOG says otherwise.
fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "webq=debug,warn",
        _ => "webq=trace,info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
}

#[derive(Subcommand)]
enum Command {
    /// Run a matrix; write results.jsonl, run.json, census.json and the pages and files into --out.
    Run(run::RunArgs),
    /// Render the pages and files again from stored results; --baseline marks regressions and fixes.
    Report(run::ReportArgs),
    /// Add a run to a static site that keeps every run and draws trends across them.
    Publish(report::publish::PublishArgs),
    /// Check that runs of the same matrix agree on every status and verdict.
    Compare(compare::CompareArgs),
    /// Judge whole trained models (MiniLM, SmolLM2) at each precision against fp16, natively.
    Eval(eval::EvalArgs),
    /// Fetch the trained models into the cache (WEBQ_CACHE, default ~/.cache/webq), checked by sha256.
    Models(models::ModelsArgs),
    /// Every weight format with its bits per weight and its error on seeded weights.
    Formats(formats::FormatsArgs),
    /// What is installed and what each browser supports (WebGPU, WebNN), found by starting each one.
    Doctor(doctor::DoctorArgs),
    /// Plant every catalogued kernel fault and check that the kernel verdict catches each one.
    Faults(faults::FaultsArgs),
    /// Provoke every classified error in every browser and check the browsers' words against the table.
    Messages(messages::MessagesArgs),
    /// webq's GEMV against onnxruntime-web's MatMulNBits in the same browser, same weights, same verdict.
    Peer(peer::PeerArgs),
    /// The per-op cells (norms, GELU, SwiGLU, rotary, attention, KV cache) on each backend of each browser.
    Ops(ops::OpsArgs),
    /// A WebGPU model on the page and a wasm model in a Web Worker at once, against one after the other.
    Pair(pair::PairArgs),
}

fn main() {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Run(mut args) => {
            args.verbose |= cli.verbose > 0;
            run::run(&args)
        }
        Command::Report(args) => run::report(&args),
        Command::Publish(args) => report::publish::run(&args),
        Command::Compare(args) => compare::run(&args),
        Command::Models(args) => models::run(&args),
        Command::Eval(args) => eval::run(&args),
        Command::Formats(args) => formats::run(&args),
        Command::Faults(args) => faults::run(&args),
        Command::Doctor(args) => doctor::run(&args),
        Command::Messages(args) => messages::run(&args),
        Command::Peer(args) => peer::run(&args),
        Command::Ops(args) => ops::run(&args),
        Command::Pair(args) => pair::run(&args),
    };
    if let Err(e) = result {
        eprintln!("webq: {e}");
        std::process::exit(1);
    }
}
