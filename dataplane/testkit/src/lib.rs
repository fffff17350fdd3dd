//! What weir's real-process tests share: whether they may run here (root, tools on
//! PATH), and the rule that a test missing a prerequisite skips with a note, except under
//! `WEIR_REQUIRE_ROOT_TESTS` (set by CI), where it fails instead.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// CI sets `WEIR_REQUIRE_ROOT_TESTS`: a missing privilege or tool fails instead of
/// skipping.
pub fn required() -> bool {
    std::env::var_os("WEIR_REQUIRE_ROOT_TESTS").is_some()
}

/// Whether `tool` is on PATH (or is an absolute path that exists).
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether this process runs as root (effective uid 0).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// Whether Debian's python3 (which the tests call as /usr/bin/python3) has scapy.
pub fn have_scapy() -> bool {
    Command::new("/usr/bin/python3")
        .args(["-c", "import scapy.all"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether `test` can run: `root` when it needs root, `tools` on PATH, and `extra`
/// further prerequisites each with what is missing when it is false (scapy, built
/// binaries). Otherwise it prints a note and returns false, or panics under
/// [`required`].
pub fn ready(test: &str, root: bool, tools: &[&str], extra: &[(bool, &str)]) -> bool {
    let mut missing: Vec<String> = tools
        .iter()
        .filter(|t| !have(t))
        .map(|t| t.to_string())
        .collect();
    missing.extend(
        extra
            .iter()
            .filter(|(ok, _)| !ok)
            .map(|(_, w)| w.to_string()),
    );
    if root && !is_root() {
        missing.push("root".to_string());
    }
    if missing.is_empty() {
        return true;
    }
    assert!(
        !required(),
        "{test}: WEIR_REQUIRE_ROOT_TESTS is set but this is missing: {missing:?}"
    );
    eprintln!("{test}: skipped: missing {missing:?}");
    false
}

/// Run `cmd` with sh; panics with the command when it fails.
pub fn sh(cmd: &str) {
    let st = Command::new("sh")
        .args(["-c", cmd])
        .status()
        .unwrap_or_else(|e| panic!("sh: {e}"));
    assert!(st.success(), "{cmd}");
}

/// Run `script` with sh and return what it printed and its status, for the caller to
/// check.
pub fn sh_output(script: &str) -> Output {
    Command::new("sh")
        .args(["-c", script])
        .output()
        .unwrap_or_else(|e| panic!("sh: {e}"))
}

/// A test's own directory, `weir-NAME-PID` under the temp dir: made empty (mode 0700)
/// when created, removed when dropped, also when the test fails.
#[derive(Debug)]
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        use std::os::unix::fs::DirBuilderExt;
        let d = std::env::temp_dir().join(format!("weir-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&d)
            .unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        Scratch(d)
    }

    /// A file (or folder) inside it.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sh_is_found_and_a_made_up_tool_is_not() {
        assert!(have("sh"));
        assert!(!have("weir-no-such-tool-here"));
    }

    #[test]
    fn a_missing_tool_is_not_ready() {
        // Under WEIR_REQUIRE_ROOT_TESTS a missing prerequisite panics instead.
        let r = std::panic::catch_unwind(|| ready("t", false, &["weir-no-such-tool-here"], &[]));
        match r {
            Ok(ok) => assert!(!ok && !required()),
            Err(_) => assert!(required()),
        }
        assert!(ready("t", false, &["sh"], &[(true, "nothing")]));
    }

    #[test]
    fn scratch_is_made_empty_and_removed() {
        let kept;
        {
            let s = Scratch::new("testkit-scratch");
            std::fs::write(s.path("f"), b"x").unwrap();
            assert!(s.join("f").exists());
            kept = s.to_path_buf();
        }
        assert!(!kept.exists());
    }

    #[test]
    fn sh_output_reports_failure() {
        assert!(!sh_output("exit 3").status.success());
        assert_eq!(sh_output("printf hi").stdout, b"hi");
    }
}
