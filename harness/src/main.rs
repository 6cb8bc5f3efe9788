//! `webq`: the webq driver.

mod formats;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "webq", version, about = "Conformance and benchmarks of quantized inference on WebGPU and WebNN")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every weight format with its bits per weight and its error on seeded weights.
    Formats(formats::FormatsArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Formats(args) => formats::run(&args),
    };
    if let Err(e) = result {
        eprintln!("webq: {e}");
        std::process::exit(1);
    }
}
