//! `weir-dp`: the dataplane process.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use weir_dp::replay::{replay, ReplayOptions};
use weir_dp::verdicts::Format;
use weir_model::config::Config;

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
    /// Run as a daemon on the configured [port], directed over [dataplane] control_socket.
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Configuration file (TOML) with a [port] section.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Stop after this many seconds (default: run until SIGTERM / SIGINT).
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Print the final counters as JSON on exit.
    #[arg(long)]
    json: bool,
}

impl RunArgs {
    fn run(self) -> Result<ExitCode> {
        use std::sync::atomic::AtomicBool;
        use std::sync::Arc;
        use weir_control::transport::{current_uid, Listener};
        let cfg = Config::load(&self.config)?;
        let stop = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            signal_hook::flag::register(sig, Arc::clone(&stop))?;
        }
        let shared = weir_dp::state::DataplaneState::for_run(&cfg, Arc::clone(&stop))?;
        let control = match &cfg.dataplane.control_socket {
            Some(path) => {
                let uid = cfg.dataplane.allowed_uid.unwrap_or_else(current_uid);
                let listener = Listener::bind(path, uid)?;
                tracing::info!(socket = %path.display(), uid, "control socket ready");
                Some(weir_dp::control::spawn(listener, Arc::clone(&shared))?)
            }
            None => None,
        };
        let opts = weir_dp::run::RunOptions {
            duration: self
                .duration
                .filter(|d| d.is_finite() && *d >= 0.0)
                .map(std::time::Duration::from_secs_f64),
        };
        let result = weir_dp::run::run(&cfg, &shared, &opts);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(h) = control {
            let _ = h.join();
        }
        result?;
        let stats = weir_dp::control::stats(&shared);
        if self.json {
            weir_dp::output::emit(&format!("{}\n", serde_json::to_string_pretty(&stats)?))?;
        } else {
            eprintln!(
                "weir-dp: stopped after {} packets (policy version {})",
                stats.packets, stats.policy_version
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}

#[derive(Debug, clap::Args)]
struct ReplayArgs {
    /// Capture files, replayed in order: pcap or pcapng (told by content), gzip or zstd
    /// compressed or not, `-` for standard input; link types Ethernet, raw IP, Linux
    /// cooked (SLL, SLL2), BSD loopback (NULL, LOOP).
    #[arg(required = true, value_name = "PCAP")]
    files: Vec<PathBuf>,
    /// Configuration file (TOML); without it, the built-in default.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Write one pcap per class and per reject reason into this directory (frames of
    /// another link type than Ethernet into NAME.LINK.pcap, in their own link type).
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
    /// Write one line per frame (index, capture time, class, reason, worker, slice) to
    /// this file.
    #[arg(long, value_name = "FILE")]
    verdicts: Option<PathBuf>,
    /// The format of --verdicts: csv, jsonl, or labels (the expected-verdict format that
    /// --expect reads).
    #[arg(long, value_enum, default_value_t = VerdictFormat::Csv, requires = "verdicts")]
    format: VerdictFormat,
    /// Check every frame against this expected-verdict file (`INDEX LABEL` lines, as in
    /// pcap-fixtures/*.verdicts); exit 1 and list the first mismatches when one differs.
    #[arg(long, value_name = "FILE")]
    expect: Option<PathBuf>,
    /// Receive the frames through DPDK's net_pcap vdev (weir-dp built with `--features
    /// dpdk`); the report is the same as without.
    #[arg(long)]
    dpdk: bool,
    /// EAL arguments for --dpdk, as one space-separated string (default: hugepages if
    /// free, else `--no-huge -m <enough>`; `--no-pci -l 0`; a per-process file prefix;
    /// `--in-memory` or `--no-shconf`, so that nothing is left behind).
    #[arg(
        long,
        value_name = "ARGS",
        requires = "dpdk",
        allow_hyphen_values = true
    )]
    eal: Option<String>,
}

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum VerdictFormat {
    /// Comma-separated values with a header line.
    Csv,
    /// JSON Lines.
    Jsonl,
    /// `INDEX LABEL # …`, the format --expect reads.
    Labels,
}

impl ReplayArgs {
    /// Exit status 1 when a verdict differs from `--expect`'s, 2 when a capture was cut
    /// short (the report covers what could be read).
    fn run(self) -> Result<ExitCode> {
        let cfg = match &self.config {
            Some(p) => Config::load(p)?,
            None => Config::default(),
        };
        let format = match self.format {
            VerdictFormat::Csv => Format::Csv,
            VerdictFormat::Jsonl => Format::Jsonl,
            VerdictFormat::Labels => Format::Labels,
        };
        let opts = ReplayOptions {
            out_dir: self.out_dir,
            progress: true,
            verdicts: self.verdicts.map(|p| (p, format)),
            expect: self.expect,
        };
        let report = if self.dpdk {
            replay_dpdk(&cfg, &self.files, &opts, self.eal.as_deref())?
        } else {
            replay(&cfg, &self.files, &opts)?
        };
        if self.json {
            weir_dp::output::emit(&format!("{}\n", serde_json::to_string_pretty(&report)?))?;
        } else {
            weir_dp::output::emit(&report.table())?;
        }
        if let Some(e) = report.expect.as_ref().filter(|e| !e.passed()) {
            eprintln!(
                "weir-dp: {} of the expected verdicts differ ({} frames checked){}",
                e.mismatches,
                e.checked,
                if e.mismatches as usize > e.first.len() {
                    format!("; the first {}:", e.first.len())
                } else {
                    ":".to_string()
                }
            );
            for m in &e.first {
                eprintln!("  {m}");
            }
            return Ok(ExitCode::from(1));
        }
        if report.cut_short() {
            for w in report.warnings.iter().filter(|w| w.contains("cut short")) {
                eprintln!("weir-dp: warning: {w}");
            }
            return Ok(ExitCode::from(2));
        }
        Ok(ExitCode::SUCCESS)
    }
}

#[cfg(feature = "dpdk")]
fn replay_dpdk(
    cfg: &Config,
    files: &[PathBuf],
    opts: &ReplayOptions,
    eal: Option<&str>,
) -> Result<weir_dp::replay::Report> {
    use weir_dp::port::dpdk as dpdk_port;
    let eal: Vec<String> = match eal {
        Some(a) => a.split_whitespace().map(str::to_string).collect(),
        None => dpdk_port::default_replay_eal(dpdk_port::replay_mbufs(cfg)),
    };
    dpdk_port::replay(cfg, files, opts, &eal)
}

#[cfg(not(feature = "dpdk"))]
fn replay_dpdk(
    _: &Config,
    _: &[PathBuf],
    _: &ReplayOptions,
    _: Option<&str>,
) -> Result<weir_dp::replay::Report> {
    anyhow::bail!(
        "--dpdk needs a weir-dp built with DPDK: cargo build --release --features dpdk (DPDK 22.11: scripts/setup-dpdk.sh)"
    )
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let r = match cli.command {
        Command::Replay(a) => a.run(),
        Command::Run(a) => a.run(),
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            // One line: the chain of causes joined, skipping a cause whose text the
            // message before it already carries.
            let mut msg = String::new();
            for c in e.chain().map(|c| c.to_string()) {
                if !msg.contains(&c) {
                    if !msg.is_empty() {
                        msg.push_str(": ");
                    }
                    msg.push_str(&c);
                }
            }
            eprintln!("weir-dp: {msg}");
            ExitCode::FAILURE
        }
    }
}
