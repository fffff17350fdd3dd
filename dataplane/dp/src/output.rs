//! Writing reports to standard output.

use std::io::Write;

/// Write `text` to standard output. A reader that has gone (`weir-dp replay … | head`)
/// ends the output quietly, as for any Unix filter; any other write error is an error
/// with its cause, never a panic (as `println!` would make it).
pub fn emit(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("writing to standard output"))
        }
        _ => Ok(()),
    }
}
