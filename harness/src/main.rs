//! `webq`: the webq driver.

mod browser_run;
mod browsers;
mod cell;
mod doctor;
mod expect;
mod faults;
mod formats;
mod matrix;
mod messages;
mod native;
mod report;
mod results;
mod run;
mod server;
mod verdict;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "webq", version, about = "Conformance and benchmarks of quantized inference on WebGPU and WebNN")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a matrix and write results.jsonl, run.json and index.html into --out.
    Run(run::RunArgs),
    /// Render the report again from stored results.
    Report(run::ReportArgs),
    /// Every weight format with its bits per weight and its error on seeded weights.
    Formats(formats::FormatsArgs),
    /// What is installed and what each browser supports (WebGPU, WebNN), found by starting each one.
    Doctor(doctor::DoctorArgs),
    /// Plant every catalogued kernel fault and check that the kernel verdict catches each one.
    Faults(faults::FaultsArgs),
    /// Provoke every classified error in every browser and check the browsers' words against the table.
    Messages(messages::MessagesArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(&args),
        Command::Report(args) => run::report(&args),
        Command::Formats(args) => formats::run(&args),
        Command::Faults(args) => faults::run(&args),
        Command::Doctor(args) => doctor::run(&args),
        Command::Messages(args) => messages::run(&args),
    };
    if let Err(e) = result {
        eprintln!("webq: {e}");
        std::process::exit(1);
    }
}
