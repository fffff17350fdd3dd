//! `weir-cp --config FILE`: the control-plane daemon (see `weir_cp::daemon`).
//!
//! Logs go to stderr through `tracing` (`RUST_LOG` filters; default `info`). SIGTERM and
//! SIGINT set a flag the daemon polls, so it stops its threads and removes its socket
//! before exiting 0. A config, state file or socket problem at start exits 2 with one line
//! on stderr saying what and where (`FILE:LINE:COL: reason` for the config).
//!
//! Signals go through `signal-hook`'s flag registration: the handler only stores to an
//! atomic, which is async-signal-safe, and the crate hides the `sigaction` unsafety.
//! Rejected: a self-pipe or `signalfd` by hand (unsafe code for nothing more).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// weir's control-plane daemon: keeps the desired policy, pushes it to the dataplanes,
/// runs the policy loop and serves metrics.
#[derive(Debug, Parser)]
#[command(name = "weir-cp", version)]
struct Args {
    /// The TOML config file.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let shutdown = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(sig, shutdown.clone()) {
            eprintln!("weir-cp: cannot install a handler for signal {sig}: {e}");
            return ExitCode::from(1);
        }
    }
    match weir_cp::daemon::run(&args.config, shutdown) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weir-cp: {e}");
            ExitCode::from(2)
        }
    }
}
