//! weirctl: the operator's client for weir-cp (and, with `ssa pick`, for SSA itself).
//!
//! Everything but exit-code policy lives in `weir_cp::ctl`: this file parses the command
//! line, runs it, and maps the outcome to the exit codes documented in `--help` — 0 success,
//! 1 error, including a value clap refused (one line on stderr: `weirctl: <reason>`),
//! 2 usage error (clap's own message and usage).

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;
use weir_cp::ctl::{value_error_line, Cli};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => match value_error_line(&e) {
            // A value clap refused is an error like any other: one line, exit 1.
            Some(line) => {
                let _ = writeln!(io::stderr(), "weirctl: {line}");
                return ExitCode::FAILURE;
            }
            // Usage errors (exit 2), --help and --version (exit 0): clap's own output.
            None => e.exit(),
        },
    };
    let stdout = io::stdout();
    let mut out = stdout.lock();
    match cli.run(&mut out) {
        Ok(()) => ExitCode::SUCCESS,
        // `weirctl stats | head`: the reader left; nothing to report.
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            let _ = out.flush();
            let line = e.to_string().replace('\n', " ");
            let _ = writeln!(io::stderr(), "weirctl: {line}");
            ExitCode::FAILURE
        }
    }
}
