//! weirctl's client side: the command line (clap derive), the request each command sends to
//! weir-cp, and how each reply is shown — tables for people, JSON (`--json`) for scripts.
//!
//! The binary (`src/bin/weirctl.rs`) only parses arguments, calls [`Cli::run`] and turns a
//! [`CtlError`] into `weirctl: <reason>` on stderr with exit code 1. Everything else lives
//! here so it can be tested without a daemon: [`Command::request`] builds the
//! [`CtlRequest`] from the arguments (all argument checking happens there, before any
//! connection), and [`render`] turns replies into text.
//!
//! Each command is one request on one connection (`stats --watch` keeps its connection for
//! every sample). `ssa pick` is the exception: it is the client side of SSA, computed here
//! with `weir_ssa` and no daemon at all, so scripts and people can ask "which address must
//! this source use" exactly the way a real client would.
//!
//! Exit codes: 0 success; 1 any error (refused by weir-cp, weir-cp unreachable or silent, a
//! bad argument value, a failed pick); 2 a usage error (unknown command or flag, missing
//! argument). Values are parsed by clap's typed parsers, but a value clap rejects (a bad key,
//! address, duration, number) is reported like every other error — one line, exit 1 — see
//! [`value_error_line`]; only the shape of the command line is a usage error. Rejected: finer exit codes per error kind — scripts need "did it work", and the
//! one-line reason says the rest; a stable mapping of a dozen codes is a promise nobody checks.

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use weir_control::proto::{CtlReply, CtlRequest, Hello, Role};
use weir_control::transport::{Conn, TransportError};
use weir_model::Class;
use weir_ssa::{Apl, PickContext, PickError, ServicePrefixes};

pub mod parse;
pub mod render;

use parse::{
    format_addr, parse_positive_duration_s, parse_seconds, parse_slice_range, parse_source,
    RuleArgs,
};
use render::{DoneView, SlicesView, StatsView};

/// Where weir-cp listens unless `--socket` or `WEIR_CP_SOCKET` says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/weir/cp.sock";

/// The environment variable that overrides [`DEFAULT_SOCKET`].
pub const SOCKET_ENV: &str = "WEIR_CP_SOCKET";

const AFTER_HELP: &str = "\
Environment:
  WEIR_CP_SOCKET  weir-cp's socket when --socket is not given (default /run/weir/cp.sock)

Exit codes:
  0  success
  1  error: refused by weir-cp, weir-cp unreachable or not answering, a bad value (key,
     address, prefix, duration, number), a failed pick; the reason is one line on stderr,
     starting with \"weirctl: \"
  2  usage error (unknown command or flag, missing argument); clap prints the usage";

/// For a command line whose *values* clap refused (a bad key, address, duration, number, rule
/// name), the one-line reason weirctl reports with exit code 1; `None` for the other clap
/// outcomes (usage errors, `--help`, `--version`), which clap reports itself.
pub fn value_error_line(e: &clap::Error) -> Option<String> {
    use clap::error::ErrorKind;
    if !matches!(
        e.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    ) {
        return None;
    }
    // clap's rendering: "error: invalid value 'x' for '--flag <V>': reason", possibly a
    // "[possible values: …]" line, a blank line, then a hint. Keep what precedes the blank.
    let rendered = e.render().to_string();
    let line = rendered
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ");
    Some(line.strip_prefix("error: ").unwrap_or(&line).to_string())
}

/// Why a command failed; the `Display` form is the one line weirctl prints.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// weir-cp's socket could not be connected to (or the hello failed).
    #[error("cannot reach weir-cp at {socket}: {reason}")]
    Unreachable {
        /// The socket path tried.
        socket: String,
        /// The transport's reason.
        reason: String,
    },
    /// The connection was made but the request got no reply.
    #[error("no reply from weir-cp at {socket}: {reason}")]
    NoReply {
        /// The socket path.
        socket: String,
        /// The transport's reason.
        reason: String,
    },
    /// weir-cp answered [`CtlReply::Error`]: nothing changed.
    #[error("refused by weir-cp: {0}")]
    Refused(String),
    /// weir-cp answered with a reply that does not belong to the request.
    #[error("weir-cp answered {got} to {sent}; is weir-cp a different version?")]
    UnexpectedReply {
        /// The request's name.
        sent: &'static str,
        /// The reply's name.
        got: &'static str,
    },
    /// An argument value that weirctl cannot use.
    #[error("{0}")]
    Argument(String),
    /// `ssa pick` found no conforming address.
    #[error("ssa pick: {0}")]
    Pick(#[from] PickError),
    /// Writing the output failed.
    #[error("cannot write output: {0}")]
    Output(#[from] io::Error),
}

impl CtlError {
    /// Whether this is a closed stdout (`weirctl stats | head`): not worth a message.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, CtlError::Output(e) if e.kind() == io::ErrorKind::BrokenPipe)
    }
}

/// weirctl: operate a running weir (weir-cp and its dataplanes).
#[derive(Debug, Parser)]
#[command(name = "weirctl", version, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// weir-cp's socket [default: $WEIR_CP_SOCKET, else /run/weir/cp.sock].
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Print JSON for scripts instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Seconds to wait for weir-cp to accept and to answer.
    #[arg(long, global = true, value_name = "SECS", default_value = "5", value_parser = parse_seconds)]
    pub timeout: f64,
}

impl Global {
    /// The socket to use: `--socket`, else `$WEIR_CP_SOCKET`, else [`DEFAULT_SOCKET`].
    pub fn socket(&self) -> PathBuf {
        self.socket
            .clone()
            .or_else(|| {
                std::env::var_os(SOCKET_ENV)
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            })
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout)
    }

    /// Connect to weir-cp.
    pub fn connect(&self) -> Result<Client, CtlError> {
        Client::connect(self.socket(), self.timeout())
    }

    /// Send one request on a new connection and return the reply.
    pub fn ask(&self, request: CtlRequest) -> Result<CtlReply, CtlError> {
        self.connect()?.call(request)
    }
}

/// A connection to weir-cp.
#[derive(Debug)]
pub struct Client {
    conn: Conn,
    socket: PathBuf,
    timeout: Duration,
    next_id: u64,
}

impl Client {
    /// Connect and exchange hellos.
    pub fn connect(socket: PathBuf, timeout: Duration) -> Result<Client, CtlError> {
        let me = Hello::new(Role::Cli, "weirctl");
        match Conn::connect(&socket, &me, timeout) {
            Ok((conn, _)) => Ok(Client {
                conn,
                socket,
                timeout,
                next_id: 1,
            }),
            Err(e) => Err(CtlError::Unreachable {
                socket: socket.display().to_string(),
                reason: transport_reason(&e, timeout),
            }),
        }
    }

    /// Send `request` and wait for its reply. [`CtlReply::Error`] becomes
    /// [`CtlError::Refused`].
    pub fn call(&mut self, request: CtlRequest) -> Result<CtlReply, CtlError> {
        let id = self.next_id;
        self.next_id += 1;
        match self
            .conn
            .request::<CtlRequest, CtlReply>(id, request, self.timeout)
        {
            Ok(CtlReply::Error { message }) => Err(CtlError::Refused(message)),
            Ok(reply) => Ok(reply),
            Err(e) => Err(CtlError::NoReply {
                socket: self.socket.display().to_string(),
                reason: transport_reason(&e, self.timeout),
            }),
        }
    }
}

fn transport_reason(e: &TransportError, timeout: Duration) -> String {
    match e {
        TransportError::Timeout => format!("timed out after {}s", timeout.as_secs_f64()),
        e => e.to_string(),
    }
    .replace('\n', " ")
}

/// The name of a request, for messages.
pub fn request_name(r: &CtlRequest) -> &'static str {
    match r {
        CtlRequest::Status => "Status",
        CtlRequest::Stats => "Stats",
        CtlRequest::RingsShow => "RingsShow",
        CtlRequest::RingsSet { .. } => "RingsSet",
        CtlRequest::RulesShow => "RulesShow",
        CtlRequest::RulesSet(_) => "RulesSet",
        CtlRequest::SlicesShow => "SlicesShow",
        CtlRequest::SlicesMove { .. } => "SlicesMove",
        CtlRequest::BlockAdd { .. } => "BlockAdd",
        CtlRequest::BlockDel { .. } => "BlockDel",
        CtlRequest::BlockList => "BlockList",
        CtlRequest::ConfigReload => "ConfigReload",
        CtlRequest::ClusterStatus => "ClusterStatus",
        CtlRequest::ClusterMove { .. } => "ClusterMove",
        CtlRequest::ClusterDrain { .. } => "ClusterDrain",
        CtlRequest::TeeStart { .. } => "TeeStart",
        CtlRequest::TeeStop => "TeeStop",
        CtlRequest::TeeStatus => "TeeStatus",
    }
}

/// The name of a reply, for messages.
pub fn reply_name(r: &CtlReply) -> &'static str {
    match r {
        CtlReply::Status(_) => "Status",
        CtlReply::Stats(_) => "Stats",
        CtlReply::Rings(_) => "Rings",
        CtlReply::Rules { .. } => "Rules",
        CtlReply::Slices { .. } => "Slices",
        CtlReply::Blocks(_) => "Blocks",
        CtlReply::Done { .. } => "Done",
        CtlReply::Error { .. } => "Error",
        CtlReply::Cluster(_) => "Cluster",
        CtlReply::ClusterDone { .. } => "ClusterDone",
        CtlReply::Tee { .. } => "Tee",
    }
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// weir-cp's policy version, config, uptime, dataplane links and policy decisions.
    Status,
    /// Dataplane counters, rings, flows, top sources and latency.
    Stats(StatsCmd),
    /// Ring sizes and drain weights per class.
    #[command(subcommand)]
    Rings(RingsCmd),
    /// The SSA rule (and the new-flow limits).
    #[command(subcommand)]
    Rules(RulesCmd),
    /// The slice → worker table.
    #[command(subcommand)]
    Slices(SlicesCmd),
    /// The source-prefix blocklist.
    #[command(subcommand)]
    Block(BlockCmd),
    /// Structured Service Addressing, client side (no daemon needed).
    #[command(subcommand)]
    Ssa(SsaCmd),
    /// weir-cp's configuration file.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// The cluster of weir hosts (weir-cp with [cluster]): members, slices, handovers.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// The dataplanes' live tee: sampled copies of classified traffic to rotating pcapng.
    #[command(subcommand)]
    Tee(TeeCmd),
}

impl Cli {
    /// Run the command, writing its output to `out`.
    pub fn run(&self, out: &mut dyn Write) -> Result<(), CtlError> {
        self.command.run(&self.global, out)
    }
}

impl Command {
    /// The request this command sends, with every argument checked; `None` for commands
    /// that do not talk to weir-cp (`ssa pick`) or send several (`stats --watch` repeats
    /// this one).
    pub fn request(&self) -> Result<Option<CtlRequest>, CtlError> {
        Ok(Some(match self {
            Command::Status => CtlRequest::Status,
            Command::Stats(_) => CtlRequest::Stats,
            Command::Rings(c) => c.request()?,
            Command::Rules(c) => c.request()?,
            Command::Slices(c) => c.request()?,
            Command::Block(c) => c.request()?,
            Command::Ssa(_) => return Ok(None),
            Command::Config(ConfigCmd::Reload) => CtlRequest::ConfigReload,
            Command::Cluster(c) => c.request()?,
            Command::Tee(c) => c.request()?,
        }))
    }

    /// Run the command.
    pub fn run(&self, g: &Global, out: &mut dyn Write) -> Result<(), CtlError> {
        match self {
            Command::Status => {
                let s = expect(
                    CtlRequest::Status,
                    g.ask(CtlRequest::Status)?,
                    |r| match r {
                        CtlReply::Status(s) => Ok(s),
                        r => Err(r),
                    },
                )?;
                if g.json {
                    json(out, &s)
                } else {
                    text(out, &render::status_table(&s))
                }
            }
            Command::Stats(c) => c.run(g, out),
            Command::Rings(c) => c.run(g, out),
            Command::Rules(c) => c.run(g, out),
            Command::Slices(c) => c.run(g, out),
            Command::Block(c) => c.run(g, out),
            Command::Ssa(c) => c.run(g, out),
            Command::Config(c) => c.run(g, out),
            Command::Cluster(c) => c.run(g, out),
            Command::Tee(c) => c.run(g, out),
        }
    }
}

/// Take the expected variant out of a reply, or report what came instead.
fn expect<T>(
    sent: CtlRequest,
    reply: CtlReply,
    pick: impl FnOnce(CtlReply) -> Result<T, CtlReply>,
) -> Result<T, CtlError> {
    pick(reply).map_err(|other| CtlError::UnexpectedReply {
        sent: request_name(&sent),
        got: reply_name(&other),
    })
}

/// Send a change request and print its [`CtlReply::Done`].
fn change(g: &Global, out: &mut dyn Write, request: CtlRequest) -> Result<(), CtlError> {
    let (message, version) = expect(request.clone(), g.ask(request)?, |r| match r {
        CtlReply::Done { message, version } => Ok((message, version)),
        r => Err(r),
    })?;
    if g.json {
        json(
            out,
            &DoneView {
                message: &message,
                version,
            },
        )
    } else {
        text(out, &render::done_line(&message, version))
    }
}

fn json<T: Serialize + ?Sized>(out: &mut dyn Write, value: &T) -> Result<(), CtlError> {
    let s = serde_json::to_string_pretty(value).map_err(io::Error::other)?;
    writeln!(out, "{s}")?;
    out.flush()?;
    Ok(())
}

fn text(out: &mut dyn Write, s: &str) -> Result<(), CtlError> {
    out.write_all(s.as_bytes())?;
    out.flush()?;
    Ok(())
}

fn now_unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

// ---------------------------------------------------------------------------------------
// stats

/// `weirctl stats`
#[derive(Debug, Args)]
pub struct StatsCmd {
    /// Repeat every SECS seconds (default 1) until Ctrl-C, with rates after the first
    /// sample. On a terminal the screen is redrawn; otherwise samples follow each other
    /// (with --json: one JSON object per line).
    #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "1", value_parser = parse_seconds)]
    pub watch: Option<f64>,
    /// With --watch: stop after N samples.
    #[arg(long, value_name = "N", requires = "watch", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
}

impl StatsCmd {
    /// Run `stats`.
    pub fn run(&self, g: &Global, out: &mut dyn Write) -> Result<(), CtlError> {
        let mut client = g.connect()?;
        let mut sample = || {
            expect(
                CtlRequest::Stats,
                client.call(CtlRequest::Stats)?,
                |r| match r {
                    CtlReply::Stats(s) => Ok(s),
                    r => Err(r),
                },
            )
        };
        let Some(every) = self.watch else {
            let s = sample()?;
            return if g.json {
                json(out, &StatsView::new(&s))
            } else {
                text(out, &render::stats_table(&s, None, 1.0))
            };
        };
        let every = Duration::from_secs_f64(every);
        let redraw = !g.json && io::stdout().is_terminal();
        let mut prev: Option<(Instant, Vec<(String, weir_control::proto::DpStats)>)> = None;
        let mut n: u64 = 0;
        loop {
            let started = Instant::now();
            let s = sample()?;
            n += 1;
            if g.json {
                let line = serde_json::to_string(&StatsView::new(&s)).map_err(io::Error::other)?;
                writeln!(out, "{line}")?;
            } else {
                let wall = prev
                    .as_ref()
                    .map_or(0.0, |(t, _)| started.duration_since(*t).as_secs_f64());
                let body = render::stats_table(&s, prev.as_ref().map(|(_, p)| p.as_slice()), wall);
                if redraw {
                    // Clear the screen and home the cursor, then draw.
                    write!(out, "\x1b[2J\x1b[H")?;
                } else if n > 1 {
                    writeln!(out)?;
                }
                writeln!(
                    out,
                    "sample {n}, every {}s (Ctrl-C to stop)\n",
                    every.as_secs_f64()
                )?;
                out.write_all(body.as_bytes())?;
            }
            out.flush()?;
            if self.count.is_some_and(|c| n >= c) {
                return Ok(());
            }
            prev = Some((started, s));
            std::thread::sleep(every.saturating_sub(started.elapsed()));
        }
    }
}

// ---------------------------------------------------------------------------------------
// rings

/// `weirctl rings …`
#[derive(Debug, Subcommand)]
pub enum RingsCmd {
    /// Ring size and drain weight per class.
    Show,
    /// Change one class's ring size and/or weight (applied without losing queued packets).
    Set {
        /// known_good, assumed_good or suspect (also known-good, assumed-good).
        class: String,
        /// Slots per ring: a power of two from 2 to 1048576.
        #[arg(long, value_name = "N")]
        size: Option<u32>,
        /// Packets drained per round, 1 to 65536.
        #[arg(long, value_name = "W")]
        weight: Option<u32>,
    },
}

/// A ring's class from either spelling (`known_good`, `known-good`).
pub fn ring_class(text: &str) -> Result<Class, CtlError> {
    match text.parse::<Class>() {
        Ok(c) if c != Class::Reject => Ok(c),
        _ => Err(CtlError::Argument(format!(
            "unknown ring class {text:?}: expected known_good, assumed_good or suspect"
        ))),
    }
}

impl RingsCmd {
    fn request(&self) -> Result<CtlRequest, CtlError> {
        Ok(match self {
            RingsCmd::Show => CtlRequest::RingsShow,
            RingsCmd::Set {
                class,
                size,
                weight,
            } => {
                if size.is_none() && weight.is_none() {
                    return Err(CtlError::Argument(
                        "rings set: give --size and/or --weight".into(),
                    ));
                }
                if let Some(s) = size {
                    weir_model::config::check_ring_size(*s)
                        .map_err(|e| CtlError::Argument(format!("--size: {e}")))?;
                }
                if let Some(w) = weight {
                    weir_model::config::check_ring_weight(*w)
                        .map_err(|e| CtlError::Argument(format!("--weight: {e}")))?;
                }
                CtlRequest::RingsSet {
                    class: ring_class(class)?,
                    size: *size,
                    weight: *weight,
                }
            }
        })
    }

    /// Run `rings show|set`.
    pub fn run(&self, g: &Global, out: &mut dyn Write) -> Result<(), CtlError> {
        let request = self.request()?;
        match self {
            RingsCmd::Show => {
                let r = expect(request, g.ask(CtlRequest::RingsShow)?, |r| match r {
                    CtlReply::Rings(r) => Ok(r),
                    r => Err(r),
                })?;
                if g.json {
                    json(out, &r)
                } else {
                    text(out, &render::rings_table(&r))
                }
            }
            RingsCmd::Set { .. } => change(g, out, request),
        }
    }
}

// ---------------------------------------------------------------------------------------
// rules

/// `weirctl rules …`
#[derive(Debug, Subcommand)]
pub enum RulesCmd {
    /// The SSA rule and the new-flow limits (keys are shown as <redacted>).
    Show {
        /// Print the rule's key too.
        #[arg(long)]
        show_key: bool,
    },
    /// Replace the SSA rule.
    Set(RuleArgs),
}

impl RulesCmd {
    fn request(&self) -> Result<CtlRequest, CtlError> {
        Ok(match self {
            RulesCmd::Show { .. } => CtlRequest::RulesShow,
            RulesCmd::Set(a) => CtlRequest::RulesSet(a.rule()?),
        })
    }

    /// Run `rules show|set`.
    pub fn run(&self, g: &Global, out: &mut dyn Write) -> Result<(), CtlError> {
        let request = self.request()?;
        match self {
            RulesCmd::Show { show_key } => {
                let (rule, nfps, spl, warning) =
                    expect(request, g.ask(CtlRequest::RulesShow)?, |r| match r {
                        CtlReply::Rules {
                            rule,
                            new_flows_per_sec,
                            source_prefix_len,
                            warning,
                        } => Ok((rule, new_flows_per_sec, source_prefix_len, warning)),
                        r => Err(r),
                    })?;
                let warning = warning.as_deref();
                if g.json {
                    json(
                        out,
                        &render::rules_json(&rule, nfps, spl, *show_key, warning),
                    )
                } else {
                    text(
                        out,
                        &render::rules_table(&rule, nfps, spl, *show_key, warning),
                    )
                }
            }
            RulesCmd::Set(_) => change(g, out, request),
        }
    }
}

// ---------------------------------------------------------------------------------------
// slices

/// `weirctl slices …`
#[derive(Debug, Subcommand)]
pub enum SlicesCmd {
    /// The slice → worker table, as runs.
    Show,
    /// Give slices to a worker (new flows only; established flows stay where they are).
    Move {
        /// `FIRST..LAST` (inclusive) or one slice number.
        #[arg(value_name = "FIRST..LAST")]
        range: String,
        /// The worker that gets them.
        worker: u16,
    },
}

impl SlicesCmd {
    fn request(&self) -> Result<CtlRequest, CtlError> {
        Ok(match self {
            SlicesCmd::Show => CtlRequest::SlicesShow,
            SlicesCmd::Move { range, worker } => {
                let (first, last) = parse_slice_range(range).map_err(CtlError::Argument)?;
                CtlRequest::SlicesMove {
                    first,
                    last,
                    worker: *worker,
                }
            }
        })
    }

    /// Run `slices show|move`.
    pub fn run(&self, g: &Global, out: &mut dyn Write) -> Result<(), CtlError> {
        let request = self.request()?;
        match self {
            SlicesCmd::Show => {
                let (apl, slice_bits, workers, runs, new_flows) =
                    expect(request, g.ask(CtlRequest::SlicesShow)?, |r| match r {
                        CtlReply::Slices {
                            apl,
                            slice_bits,
                            workers,
                            runs,
                            new_flows,
                        } => Ok((apl, slice_bits, workers, runs, new_flows)),
                        r => Err(r),
                    })?;
                if g.json {
                    json(
                        out,
                        &SlicesView {
                            apl: &apl,
                            slice_bits,
                            workers,
                            runs: &runs,
                            new_flows: &new_flows,
                            new_flow_share: render::shares(&new_flows),
                        },
                    )
                } else {
                    text(
                        out,
                        &render::slices_table(&apl, slice_bits, workers, &runs, &new_flows),
                    )
                }
            }
            SlicesCmd::Move { .. } => change(g, out, request),
        }
    }
}

// ---------------------------------------------------------------------------------------
// block

/// `weirctl block …`
#[derive(Debug, Subcommand)]
pub enum BlockCmd {
    /// Block a source prefix.
    Add {
        /// The prefix, e.g. 2001:db8:bad::/48 or 192.0.2.0/24.
        prefix: String,
        /// Lift the block after this long: 300, 300s, 5m, 1h, 1h30m [default: until removed].
        #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration_s)]
        ttl: Option<u64>,
    },
    /// Remove a block.
    Del {
        /// The prefix, as listed.
        prefix: String,
    },
    /// The blocked prefixes.
    List,
}

/// A prefix as weir-cp stores it (host bits cleared), checked here so a typo fails before
/// anything is sent.
pub fn canonical_prefix(text: &str) -> Result<String, CtlError> {
    text.trim()
        .parse::<weir_ssa::Prefix>()
        .map(|p| p.to_string())
        .map_err(|e| CtlError::Argument(e.to_string()))
}

impl BlockCmd {
    fn request(&self) -> Result<CtlRequest, CtlError> {
        Ok(match self {
            BlockCmd::Add { prefix, ttl } => CtlRequest::BlockAdd {
                prefix: canonical_prefix(prefix)?,
                ttl_s: *ttl,
            },
            BlockCmd::Del { prefix } => CtlRequest::BlockDel {
                prefix: canonical_prefix(prefix)?,
            },
            BlockCmd::List => CtlRequest::BlockList,
        })
    }

    /// Run `block add|del|list`.
    pub fn run(&self, g: &Global, out: &mut dyn Write) -> Result<(), CtlError> {
        let request = self.request()?;
        match self {
            BlockCmd::List => {
                let blocks = expect(request, g.ask(CtlRequest::BlockList)?, |r| match r {
                    CtlReply::Blocks(b) => Ok(b),
                    r => Err(r),
                })?;
                if g.json {
                    json(out, &blocks)
                } else {
                    text(out, &render::blocks_table(&blocks, now_unix_ns()))
                }
            }
            _ => change(g, out, request),
        }
    }
}

// ---------------------------------------------------------------------------------------
// config

/// `weirctl config …`
#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Re-read weir-cp's config file; it is applied only if it is valid, otherwise the
    /// reason is printed and nothing changes.
    Reload,
}

impl ConfigCmd {
    /// Run `config reload`.
    pub fn run(&self, g: &Global, out: &mut dyn Write) -> Result<(), CtlError> {
        match self {
            ConfigCmd::Reload => change(g, out, CtlRequest::ConfigReload),
        }
    }
}

// ---------------------------------------------------------------------------------------
// tee

/// `weirctl tee …`
#[derive(Debug, Subcommand)]
pub enum TeeCmd {
    /// Start (or replace) the tee on every dataplane; files go to each dataplane's `[tee]
    /// dir` as tee-00001.pcapng, … with a comment per packet (class, reason, rx core,
    /// worker, slice).
    Start {
        /// What to copy: `reject:ssa-violation`, `reject:*`, `suspect:*`, `known_good`,
        /// `ssa-violation`, `host`, `*` (repeat the flag or separate with commas).
        #[arg(long = "filter", value_name = "FILTER", required = true)]
        filters: Vec<String>,
        /// Copy 1 in N of the frames the filter selects.
        #[arg(long, value_name = "N", default_value_t = 1)]
        sample: u32,
        /// Most copies per second per rx core (0 = no cap) [default: the dataplane's [tee]].
        #[arg(long, value_name = "PPS")]
        rate: Option<u32>,
        /// Bytes copied per frame at most [default: the dataplane's [tee]].
        #[arg(long, value_name = "BYTES")]
        snaplen: Option<u32>,
        /// Stop by itself after this long (`30s`, `5m`).
        #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration_s)]
        duration: Option<u64>,
    },
    /// Stop the tee on every dataplane (files written so far stay).
    Stop,
    /// Each dataplane's tee: in force or not, files, counters.
    Status,
}

impl TeeCmd {
    fn request(&self) -> Result<CtlRequest, CtlError> {
        Ok(match self {
            TeeCmd::Start {
                filters,
                sample,
                rate,
                snaplen,
                duration,
            } => {
                weir_model::tee::check_settings(
                    filters,
                    *sample,
                    snaplen.unwrap_or(weir_model::tee::limits::MIN_SNAPLEN),
                )
                .map_err(CtlError::Argument)?;
                CtlRequest::TeeStart {
                    filters: filters.clone(),
                    sample: *sample,
                    rate_per_core: *rate,
                    snaplen: *snaplen,
                    duration_ms: duration.map(|s| s.saturating_mul(1000)),
                }
            }
            TeeCmd::Stop => CtlRequest::TeeStop,
            TeeCmd::Status => CtlRequest::TeeStatus,
        })
    }

    /// Run `tee start|stop|status`.
    pub fn run(&self, g: &Global, out: &mut dyn Write) -> Result<(), CtlError> {
        let request = self.request()?;
        match self {
            TeeCmd::Status => {
                let (order, dataplanes) = expect(request.clone(), g.ask(request)?, |r| match r {
                    CtlReply::Tee { order, dataplanes } => Ok((order, dataplanes)),
                    r => Err(r),
                })?;
                if g.json {
                    json(
                        out,
                        &render::TeeView {
                            order: &order,
                            dataplanes: &dataplanes,
                        },
                    )
                } else {
                    text(out, &render::tee_table(&order, &dataplanes, now_unix_ns()))
                }
            }
            _ => change(g, out, request),
        }
    }
}

// ---------------------------------------------------------------------------------------
// cluster

/// `weirctl cluster …`
#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Members, coordinator, the slice assignment, handovers and this host's routes.
    Status,
    /// Hand slices over to a host (run against the coordinator's weir-cp): it announces
    /// them, and for `drain_s` forwards what it does not know to the old owners.
    Move {
        /// `FIRST..LAST` (inclusive) or one slice number.
        #[arg(value_name = "FIRST..LAST")]
        range: String,
        /// The host that gets them.
        host: String,
    },
    /// Hand every slice of a host over to the other live hosts; it gets none until a
    /// move gives it some.
    Drain {
        /// The host to empty.
        host: String,
    },
}

impl ClusterCmd {
    fn request(&self) -> Result<CtlRequest, CtlError> {
        let host_ok = |h: &str| {
            if h.is_empty()
                || h.len() > 63
                || !h
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            {
                Err(CtlError::Argument(format!("{h:?} is not a host name")))
            } else {
                Ok(h.to_string())
            }
        };
        Ok(match self {
            ClusterCmd::Status => CtlRequest::ClusterStatus,
            ClusterCmd::Move { range, host } => {
                let (first, last) = parse_slice_range(range).map_err(CtlError::Argument)?;
                CtlRequest::ClusterMove {
                    first,
                    last,
                    host: host_ok(host)?,
                }
            }
            ClusterCmd::Drain { host } => CtlRequest::ClusterDrain {
                host: host_ok(host)?,
            },
        })
    }

    /// Run `cluster status|move|drain`.
    pub fn run(&self, g: &Global, out: &mut dyn Write) -> Result<(), CtlError> {
        let request = self.request()?;
        let reply = g.ask(request.clone())?;
        match self {
            ClusterCmd::Status => {
                let v = expect(request, reply, |r| match r {
                    CtlReply::Cluster(v) => Ok(v),
                    r => Err(r),
                })?;
                if g.json {
                    json(out, &v)
                } else {
                    text(out, &render::cluster_table(&v))
                }
            }
            _ => {
                let (message, epoch) = expect(request, reply, |r| match r {
                    CtlReply::ClusterDone { message, epoch } => Ok((message, epoch)),
                    r => Err(r),
                })?;
                if g.json {
                    #[derive(Serialize)]
                    struct Done<'a> {
                        message: &'a str,
                        epoch: u64,
                    }
                    json(
                        out,
                        &Done {
                            message: &message,
                            epoch,
                        },
                    )
                } else {
                    text(out, &render::cluster_done_line(&message, epoch))
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// ssa

/// `weirctl ssa …`
#[derive(Debug, Subcommand)]
pub enum SsaCmd {
    /// Pick the destination a client must use: reads the APL, applies the rule to the
    /// source, prints the address. Computed locally, like a real client would.
    Pick(PickCmd),
}

impl SsaCmd {
    /// Run `ssa pick`.
    pub fn run(&self, g: &Global, out: &mut dyn Write) -> Result<(), CtlError> {
        match self {
            SsaCmd::Pick(p) => {
                let picked = p.pick()?;
                if g.json {
                    json(out, &picked)
                } else {
                    text(out, &format!("{}\n", picked.destination))
                }
            }
        }
    }
}

/// Picks tried with successive entropy values when an address lands in a negated APL item.
const PICK_TRIES: u64 = 64;

/// `weirctl ssa pick`
#[derive(Debug, Args)]
pub struct PickCmd {
    /// The service's APL record text, e.g. "2:2001:db8:5::/64 !2:2001:db8:5::/80".
    #[arg(long, value_name = "TEXT")]
    pub apl: String,
    /// The rule.
    #[command(flatten)]
    pub rule: RuleArgs,
    /// The client's source address (IPv6, or IPv4).
    #[arg(long, value_name = "ADDR", value_parser = parse_source)]
    pub src: u128,
    /// time-hop: the time to pick for, Unix seconds [default: now].
    #[arg(long, value_name = "UNIX_S")]
    pub now: Option<u64>,
    /// content: the object's key (its bytes as given).
    #[arg(long, value_name = "KEY")]
    pub object: Option<String>,
    /// Fills the host bits the rule leaves free. Default: taken from the clock, so repeated
    /// picks vary like real clients do; give a number for a reproducible pick.
    #[arg(long, value_name = "N")]
    pub entropy: Option<u64>,
    /// Pick in this positive APL prefix (0 = the first).
    #[arg(long, value_name = "N", default_value = "0")]
    pub prefix_index: usize,
}

/// The result of `ssa pick` (its `--json` form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Picked {
    /// The destination address.
    pub destination: String,
    /// The service prefix it lies in.
    pub prefix: String,
    /// The rule (keys redacted).
    pub rule: String,
    /// The entropy that produced it (repeat with `--entropy` to get the same address).
    pub entropy: u64,
}

impl PickCmd {
    /// Pick the destination. Negated APL items carve holes: a pick that lands in one is
    /// retried with the next entropy values, up to [`PICK_TRIES`] times.
    pub fn pick(&self) -> Result<Picked, CtlError> {
        let rule = self.rule.rule()?;
        let apl = Apl::parse(&self.apl).map_err(|e| CtlError::Argument(format!("--apl: {e}")))?;
        let service =
            ServicePrefixes::new(&apl).map_err(|e| CtlError::Argument(format!("--apl: {e}")))?;
        let prefixes = service.prefixes();
        let prefix = prefixes.get(self.prefix_index).ok_or_else(|| {
            CtlError::Argument(format!(
                "--prefix-index {}: the APL has {} positive prefix{}",
                self.prefix_index,
                prefixes.len(),
                if prefixes.len() == 1 { "" } else { "es" }
            ))
        })?;
        if self.object.is_some() && rule != weir_ssa::Rule::Content {
            return Err(CtlError::Argument(format!(
                "--object applies to rule content only, not {}",
                rule.name()
            )));
        }
        let now_unix_s = self.now.unwrap_or_else(|| now_unix_ns() / 1_000_000_000);
        let entropy = self.entropy.unwrap_or_else(|| {
            // Not cryptographic: it only spreads picks, as a client's own randomness would.
            now_unix_ns() ^ u64::from(std::process::id()).rotate_left(32)
        });
        let mut ctx = PickContext {
            now_unix_s,
            object_key: self.object.as_deref().map(str::as_bytes),
            entropy,
        };
        for i in 0..PICK_TRIES {
            ctx.entropy = entropy.wrapping_add(i);
            let dst = rule.pick(prefix, self.src, &ctx)?;
            if service.lookup(dst) == Some(self.prefix_index) {
                return Ok(Picked {
                    destination: format_addr(dst),
                    prefix: prefix.to_string(),
                    rule: rule.to_string(),
                    entropy: ctx.entropy,
                });
            }
        }
        Err(CtlError::Argument(format!(
            "ssa pick: every address tried for this source in {prefix} lies in a negated APL item"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_ssa::Rule;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("weirctl").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    fn request(args: &[&str]) -> Result<Option<CtlRequest>, CtlError> {
        parse(args).command.request()
    }

    #[test]
    fn requests() {
        assert_eq!(
            request(&["block", "add", "2001:db8:bad::1/48", "--ttl", "5m"]).unwrap(),
            Some(CtlRequest::BlockAdd {
                prefix: "2001:db8:bad::/48".into(),
                ttl_s: Some(300)
            })
        );
        assert_eq!(
            request(&["slices", "move", "10..20", "3"]).unwrap(),
            Some(CtlRequest::SlicesMove {
                first: 10,
                last: 20,
                worker: 3
            })
        );
        assert_eq!(
            request(&["rings", "set", "assumed-good", "--weight", "16"]).unwrap(),
            Some(CtlRequest::RingsSet {
                class: Class::AssumedGood,
                size: None,
                weight: Some(16)
            })
        );
        assert_eq!(
            request(&["rules", "set", "--rule", "src-bits", "--len", "48"]).unwrap(),
            Some(CtlRequest::RulesSet(Rule::SrcBits {
                src_start: 0,
                dst_start: 64,
                len: 48
            }))
        );
        assert!(request(&["rings", "set", "reject", "--size", "8"]).is_err());
        assert!(request(&["rings", "set", "suspect", "--size", "1000"]).is_err());
        assert!(request(&["rings", "set", "suspect"]).is_err());
        assert!(request(&["block", "add", "nonsense"]).is_err());
        assert!(request(&["slices", "move", "5..1", "0"]).is_err());
        assert_eq!(
            request(&["cluster", "move", "0..4095", "h2"]).unwrap(),
            Some(CtlRequest::ClusterMove {
                first: 0,
                last: 4095,
                host: "h2".into()
            })
        );
        assert_eq!(
            request(&["cluster", "drain", "h3"]).unwrap(),
            Some(CtlRequest::ClusterDrain { host: "h3".into() })
        );
        assert_eq!(
            request(&["cluster", "status"]).unwrap(),
            Some(CtlRequest::ClusterStatus)
        );
        assert!(request(&["cluster", "move", "9..1", "h2"]).is_err());
        assert!(request(&["cluster", "drain", "h 3"]).is_err());
    }

    fn clap_error(args: &[&str]) -> clap::Error {
        Cli::try_parse_from(std::iter::once("weirctl").chain(args.iter().copied()))
            .expect_err("parsed")
    }

    #[test]
    fn value_errors_are_one_line_usage_errors_are_not() {
        for (args, want) in [
            (
                &["block", "add", "2001:db8::/32", "--ttl", "5x"][..],
                "unknown unit",
            ),
            (&["--timeout", "0", "status"], "--timeout"),
            (
                &["rules", "set", "--rule", "keyed-hash", "--key", "12"],
                "32 hex digits",
            ),
            (&["rules", "set", "--rule", "nope"], "possible values"),
            (
                &["rules", "set", "--rule", "src-bits", "--len", "300"],
                "--len",
            ),
        ] {
            let line = value_error_line(&clap_error(args)).unwrap_or_else(|| panic!("{args:?}"));
            assert!(
                line.contains(want) && !line.contains('\n'),
                "{args:?}: {line}"
            );
        }
        for args in [
            &["stats", "--count", "2"][..],
            &["rings", "bogus"],
            &["status", "--frobnicate"],
            &["ssa", "pick", "--rule", "any"],
            &["--help"],
        ] {
            assert_eq!(value_error_line(&clap_error(args)), None, "{args:?}");
        }
        let c = parse(&["stats", "--watch"]);
        assert!(matches!(c.command, Command::Stats(StatsCmd { watch: Some(w), .. }) if w == 1.0));
    }

    #[test]
    fn picks_conform() {
        let c = parse(&[
            "ssa",
            "pick",
            "--apl",
            "2:2001:db8:5::/64",
            "--rule",
            "src-bits",
            "--src",
            "2001:db8:aaaa:bbbb::1",
            "--entropy",
            "0",
        ]);
        let Command::Ssa(SsaCmd::Pick(p)) = c.command else {
            panic!()
        };
        let picked = p.pick().unwrap();
        assert_eq!(picked.destination, "2001:db8:5:0:2001:db8:aaaa:bbbb");
        assert_eq!(picked.prefix, "2001:db8:5::/64");

        // A hole where the first picks land: retried until outside it.
        let c = parse(&[
            "ssa",
            "pick",
            "--apl",
            "2:2001:db8:5::/64 !2:2001:db8:5::/65",
            "--rule",
            "any",
            "--src",
            "2001:db8::1",
            "--entropy",
            "1",
        ]);
        let Command::Ssa(SsaCmd::Pick(p)) = c.command else {
            panic!()
        };
        let picked = p.pick().unwrap();
        let dst: std::net::Ipv6Addr = picked.destination.parse().unwrap();
        assert!(u128::from(dst) & (1 << 63) != 0, "{picked:?}");
    }
}
