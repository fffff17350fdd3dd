//! `weir-fixtures [--out DIR]`: write every fixture (`.pcap`, `.verdicts`, `.toml`).
//!
//! The default output directory is this crate's own directory, where the checked-in
//! fixtures live; `tests/regenerate.rs` fails if they differ from a fresh run.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;

/// Generate weir's pcap fixtures and their expected verdicts.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Output directory (default: the pcap-fixtures crate directory).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let dir = args
        .out
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let written = weir_fixtures::write_all(&dir)
        .with_context(|| format!("writing fixtures into {}", dir.display()))?;
    for fixture in weir_fixtures::all() {
        println!("{:<16} {:>5} frames", fixture.name, fixture.frames.len());
    }
    println!("{} files written to {}", written.len(), dir.display());
    Ok(())
}
