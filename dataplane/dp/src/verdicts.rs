//! Verdict files: what a replay decided for every frame, one line each (`weir-dp replay
//! --verdicts FILE --format csv|jsonl|labels`), and the check of a replay against the
//! verdicts someone expects (`--expect FILE`).
//!
//! An expected-verdict file has the format of `pcap-fixtures/*.verdicts`: one line per
//! frame, `INDEX LABEL [odd] [# note]`, where `LABEL` is a [`Disposition::label`]
//! (`known-good`, `assumed-good`, a reason such as `ssa-violation`, `outbound`, `host`,
//! `truncated`); `#` starts a comment, blank lines are skipped. Indexes count frames
//! from 0 in replay order across all the files and must increase; a frame without a line
//! is not checked, so a file may name only the frames that matter. `--format labels`
//! writes this format, so the replay under today's policy gives tomorrow's expectation.
//!
//! Both are [`Tee`]s of the replay's rx core: they see each frame once, in replay order,
//! with its decision. Writing is buffered; the first I/O error is kept and reported when
//! the replay ends.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use weir_model::{Disposition, Verdict};

use crate::rx::{Tee, TeeFrame};

/// The format of a `--verdicts` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated, with a header line: `index,time_ns,label,class,reason,worker,slice`.
    Csv,
    /// One JSON object per line, the same fields.
    Jsonl,
    /// The expected-verdict format (`INDEX LABEL # time …`), for `--expect`.
    Labels,
}

/// One frame's line. `class` is the class for a classified frame (`known_good`,
/// `assumed_good`, `suspect`, `reject`) and the label otherwise (`outbound`, `host`,
/// `truncated`); `reason` is set for suspect and reject; `worker` for the queued classes;
/// `slice` when the destination lies in a service prefix (and the headers were read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerdictLine {
    /// Frame index in replay order, from 0.
    pub index: u64,
    /// Capture time, unix nanoseconds.
    pub time_ns: u64,
    /// The label of expected-verdict files.
    pub label: &'static str,
    /// Class (or label when not classified).
    pub class: &'static str,
    /// Reason, for suspect and reject.
    pub reason: Option<&'static str>,
    /// The worker it was queued to.
    pub worker: Option<u16>,
    /// Its destination's slice.
    pub slice: Option<u32>,
}

impl VerdictLine {
    /// The line for frame `index`.
    pub fn of(index: u64, f: &TeeFrame<'_>) -> VerdictLine {
        let d = f.disposition;
        let (class, reason, worker) = match d {
            Disposition::Classified { verdict, worker } => {
                let class = verdict.class();
                let queued = class != weir_model::Class::Reject;
                (
                    class.name(),
                    verdict.reason().map(|r| r.name()),
                    queued.then_some(worker),
                )
            }
            other => (other.label(), None, None),
        };
        VerdictLine {
            index,
            time_ns: f.time_ns,
            label: d.label(),
            class,
            reason,
            worker,
            slice: slice_of(f),
        }
    }
}

/// The slice of the frame's destination under the policy it was classified under.
fn slice_of(f: &TeeFrame<'_>) -> Option<u32> {
    if f.disposition == Disposition::Truncated {
        return None;
    }
    let (_, _, dst) = match f.network {
        None => weir_wire::peek_addresses(f.bytes)?,
        Some((ty, at)) => weir_wire::peek_network(ty, f.bytes.get(at..)?)?,
    };
    let p = f.policy;
    let idx = p.prefixes.lookup(dst)?;
    Some(p.slices.slice_of(idx, dst))
}

/// Seconds since the epoch with nanoseconds, as tshark's `frame.time_epoch` shows it.
pub fn epoch(time_ns: u64) -> String {
    format!("{}.{:09}", time_ns / 1_000_000_000, time_ns % 1_000_000_000)
}

enum Out {
    Csv(Box<csv::Writer<BufWriter<File>>>),
    Jsonl(BufWriter<File>),
    Labels(BufWriter<File>),
}

/// `--verdicts FILE`: one line per frame.
pub struct VerdictWriter {
    path: PathBuf,
    out: Out,
    next: u64,
    error: Option<std::io::Error>,
}

impl std::fmt::Debug for VerdictWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerdictWriter")
            .field("path", &self.path)
            .field("next", &self.next)
            .finish()
    }
}

impl VerdictWriter {
    /// Create (truncate) `path`.
    pub fn create(path: &Path, format: Format) -> std::io::Result<VerdictWriter> {
        let file = BufWriter::with_capacity(1 << 16, File::create(path)?);
        let out = match format {
            Format::Csv => Out::Csv(Box::new(csv::Writer::from_writer(file))),
            Format::Jsonl => Out::Jsonl(file),
            Format::Labels => {
                let mut file = file;
                writeln!(
                    file,
                    "# weir-dp replay --format labels: INDEX LABEL # capture time, worker, slice"
                )?;
                Out::Labels(file)
            }
        };
        Ok(VerdictWriter {
            path: path.to_path_buf(),
            out,
            next: 0,
            error: None,
        })
    }

    fn write(&mut self, line: &VerdictLine) -> std::io::Result<()> {
        match &mut self.out {
            Out::Csv(w) => w.serialize(line).map_err(std::io::Error::other),
            Out::Jsonl(w) => {
                serde_json::to_writer(&mut *w, line)?;
                w.write_all(b"\n")
            }
            Out::Labels(w) => {
                write!(w, "{} {} # {}", line.index, line.label, epoch(line.time_ns))?;
                if let Some(worker) = line.worker {
                    write!(w, " worker {worker}")?;
                }
                if let Some(slice) = line.slice {
                    write!(w, " slice {slice}")?;
                }
                w.write_all(b"\n")
            }
        }
    }
}

impl Tee for VerdictWriter {
    fn frame(&mut self, f: &TeeFrame<'_>) {
        let line = VerdictLine::of(self.next, f);
        self.next += 1;
        if self.error.is_none() {
            if let Err(e) = self.write(&line) {
                self.error = Some(e);
            }
        }
    }

    fn finish(&mut self) -> std::io::Result<()> {
        let what = |e: std::io::Error| {
            std::io::Error::new(e.kind(), format!("writing {}: {e}", self.path.display()))
        };
        if let Some(e) = self.error.take() {
            return Err(what(e));
        }
        match &mut self.out {
            Out::Csv(w) => w.flush(),
            Out::Jsonl(w) | Out::Labels(w) => w.flush(),
        }
        .map_err(what)
    }
}

/// One line of an expected-verdict file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// Frame index.
    pub index: u64,
    /// Expected label.
    pub label: String,
    /// Line number in the file (from 1).
    pub line: usize,
}

/// What is wrong with an expected-verdict file.
#[derive(Debug, thiserror::Error)]
pub enum ExpectFileError {
    /// It could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A line that is not `INDEX LABEL [odd]`.
    #[error("{path}:{line}: {message}")]
    Line {
        /// The file.
        path: String,
        /// Line number, from 1.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// Whether `label` is one a replay can give.
fn known_label(label: &str) -> bool {
    matches!(label, "outbound" | "host" | "truncated" | "forwarded")
        || Verdict::from_label(label).is_some()
}

/// Parse an expected-verdict file's text (`path` names it in errors).
pub fn parse_expected(text: &str, path: &str) -> Result<Vec<Expected>, ExpectFileError> {
    let mut out: Vec<Expected> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = n + 1;
        let err = |message: String| ExpectFileError::Line {
            path: path.to_string(),
            line,
            message,
        };
        let body = raw.split('#').next().unwrap_or("").trim();
        if body.is_empty() {
            continue;
        }
        let mut words = body.split_whitespace();
        let (Some(index), Some(label)) = (words.next(), words.next()) else {
            return Err(err(format!("expected `INDEX LABEL`, found `{body}`")));
        };
        let index: u64 = index
            .parse()
            .map_err(|_| err(format!("`{index}` is not a frame index")))?;
        if !known_label(label) {
            return Err(err(format!(
                "`{label}` is not a verdict label (known-good, assumed-good, a reason such as ssa-violation, outbound, host, truncated)"
            )));
        }
        match words.next() {
            None | Some("odd") => {}
            Some(extra) => return Err(err(format!("unexpected `{extra}` after the label"))),
        }
        if let Some(prev) = out.last() {
            if index <= prev.index {
                return Err(err(format!(
                    "frame {index} after frame {}: indexes must increase",
                    prev.index
                )));
            }
        }
        out.push(Expected {
            index,
            label: label.to_string(),
            line,
        });
    }
    Ok(out)
}

/// Read and parse an expected-verdict file.
pub fn load_expected(path: &Path) -> Result<Vec<Expected>, ExpectFileError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ExpectFileError::Io {
        path: shown.clone(),
        source,
    })?;
    parse_expected(&text, &shown)
}

/// A frame whose verdict differs from the expected one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    /// Frame index.
    pub index: u64,
    /// Its capture time, unix ns (`None`: the capture has no such frame).
    pub time_ns: Option<u64>,
    /// The expected label.
    pub expected: String,
    /// What the replay gave (`None`: no such frame).
    pub got: Option<&'static str>,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.time_ns, self.got) {
            (Some(t), Some(got)) => write!(
                f,
                "frame {} (capture time {}): expected {}, got {got}",
                self.index,
                epoch(t),
                self.expected
            ),
            _ => write!(
                f,
                "frame {}: expected {}, but the capture has no such frame",
                self.index, self.expected
            ),
        }
    }
}

/// How a replay compared with its expected verdicts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExpectOutcome {
    /// Frames with an expected verdict that the replay had.
    pub checked: u64,
    /// Frames (expected or replayed) whose verdicts differ.
    pub mismatches: u64,
    /// The first [`ExpectCheck::KEEP`] of them, in frame order.
    pub first: Vec<Mismatch>,
}

impl ExpectOutcome {
    /// True when every expected verdict was met.
    pub fn passed(&self) -> bool {
        self.mismatches == 0
    }
}

/// `--expect FILE`: compares each frame with its expected verdict as it is replayed.
#[derive(Debug)]
pub struct ExpectCheck {
    expected: Vec<Expected>,
    cursor: usize,
    next: u64,
    outcome: ExpectOutcome,
    result: Arc<Mutex<Option<ExpectOutcome>>>,
}

impl ExpectCheck {
    /// Mismatches listed (all are counted).
    pub const KEEP: usize = 20;

    /// A check of `expected`; its outcome is put in the returned slot when the replay
    /// ends.
    pub fn new(expected: Vec<Expected>) -> (ExpectCheck, Arc<Mutex<Option<ExpectOutcome>>>) {
        let result = Arc::new(Mutex::new(None));
        let check = ExpectCheck {
            expected,
            cursor: 0,
            next: 0,
            outcome: ExpectOutcome::default(),
            result: Arc::clone(&result),
        };
        (check, result)
    }

    fn mismatch(&mut self, m: Mismatch) {
        self.outcome.mismatches += 1;
        if self.outcome.first.len() < Self::KEEP {
            self.outcome.first.push(m);
        }
    }
}

impl Tee for ExpectCheck {
    fn frame(&mut self, f: &TeeFrame<'_>) {
        let index = self.next;
        self.next += 1;
        let Some(e) = self.expected.get(self.cursor) else {
            return;
        };
        if e.index != index {
            return;
        }
        self.cursor += 1;
        self.outcome.checked += 1;
        let got = f.disposition.label();
        if e.label != got {
            let expected = e.label.clone();
            self.mismatch(Mismatch {
                index,
                time_ns: Some(f.time_ns),
                expected,
                got: Some(got),
            });
        }
    }

    fn finish(&mut self) -> std::io::Result<()> {
        // Expected frames the capture does not have.
        let rest: Vec<Expected> = self.expected.drain(self.cursor..).collect();
        for e in rest {
            self.mismatch(Mismatch {
                index: e.index,
                time_ns: None,
                expected: e.label,
                got: None,
            });
        }
        if let Ok(mut slot) = self.result.lock() {
            *slot = Some(std::mem::take(&mut self.outcome));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_files_parse_with_comments_odd_and_gaps() {
        let text = "# header\n0 assumed-good # a SYN\n\n1 outbound\n5 martian odd # multicast\n";
        let e = parse_expected(text, "x.verdicts").unwrap();
        assert_eq!(
            e.iter()
                .map(|e| (e.index, e.label.as_str()))
                .collect::<Vec<_>>(),
            [(0, "assumed-good"), (1, "outbound"), (5, "martian")]
        );
        assert_eq!(e[2].line, 5);
    }

    #[test]
    fn bad_expected_lines_name_file_and_line() {
        for (text, want) in [
            (
                "0 known-good\nzero known-good\n",
                "x:2: `zero` is not a frame index",
            ),
            ("0 kn0wn-good\n", "x:1: `kn0wn-good` is not a verdict label"),
            (
                "3 host\n2 host\n",
                "x:2: frame 2 after frame 3: indexes must increase",
            ),
            ("7\n", "x:1: expected `INDEX LABEL`, found `7`"),
            ("0 host even\n", "x:1: unexpected `even` after the label"),
        ] {
            let e = parse_expected(text, "x").unwrap_err().to_string();
            assert!(e.starts_with(want), "{e} / {want}");
        }
    }

    #[test]
    fn epoch_keeps_nanoseconds() {
        assert_eq!(epoch(1_700_000_000_000_000_123), "1700000000.000000123");
    }
}
