//! `weir-dp`: the dataplane process.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use weir_dp::config::Config;
use weir_dp::replay::{replay, ReplayOptions};

/// weir's dataplane: classify packets by Structured Service Addressing and queue them by
/// trust.
#[derive(Debug, Parser)]
#[command(name = "weir-dp", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replay pcap / pcapng captures through the classifier, rings and workers.
    Replay(ReplayArgs),
}

#[derive(Debug, clap::Args)]
struct ReplayArgs {
    /// Capture files (pcap or pcapng, Ethernet), replayed in order.
    #[arg(required = true, value_name = "PCAP")]
    files: Vec<PathBuf>,
    /// Configuration file (TOML); without it, the built-in default.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Write one pcap per class and per reject reason into this directory.
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
}

impl ReplayArgs {
    fn run(self) -> Result<()> {
        let cfg = match &self.config {
            Some(p) => Config::load(p)?,
            None => Config::default(),
        };
        let report = replay(
            &cfg,
            &self.files,
            &ReplayOptions {
                out_dir: self.out_dir,
                progress: true,
            },
        )?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", report.table());
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let r = match cli.command {
        Command::Replay(a) => a.run(),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the chain of causes joined.
            let msg = e
                .chain()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(": ");
            eprintln!("weir-dp: {msg}");
            ExitCode::FAILURE
        }
    }
}
