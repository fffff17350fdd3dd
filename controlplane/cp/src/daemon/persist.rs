//! The state file: the runtime overlay and the policy version, written atomically.
//!
//! A write goes to a temporary file in the same directory (`.NAME.tmp.PID`), is flushed
//! with `fsync`, renamed over the state file, and the directory is synced so the rename
//! itself is durable. `rename(2)` within one file system is atomic: after a crash at any
//! point the path holds either the old file or the new one, never half of either. The file
//! is created `0600` (it holds the blocklist, which is nobody else's business), and a
//! missing directory is created `0700`.
//!
//! The format is JSON with a `format` number: readable and editable by an operator in an
//! emergency, and `serde_json` is already a dependency. A state file that does not parse is
//! **refused** with a one-line error naming the file: silently starting from the config
//! alone would drop the operator's blocks (a security regression) and restart the version
//! count below what the dataplanes hold. The operator can read it, fix it, or delete it.
//!
//! Rejected: TOML (the overlay's nested optional structures read worse and the encoder
//! cannot write every shape), a write-ahead log (more code, nothing gained at this size).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::state::Overlay;

/// The version of the state file's layout (2: rules in the config file's form, `{"rule": "src-mix", ...}`).
pub const FORMAT: u32 = 2;

/// What the state file holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateFile {
    /// Always [`FORMAT`].
    pub format: u32,
    /// The policy version last in force.
    pub version: u64,
    /// The runtime changes.
    pub overlay: Overlay,
}

/// A state file that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// Reading failed.
    #[error("state file {path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error the operating system gave.
        source: std::io::Error,
    },
    /// The content is not a state file of this format.
    #[error("state file {path}: {message} (fix or remove it to start from the config file alone)")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column.
        message: String,
    },
    /// Writing failed; the old file is untouched.
    #[error("state file {path}: cannot write: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The error the operating system gave.
        source: std::io::Error,
    },
}

/// Read the state file; `Ok(None)` when it does not exist yet.
pub fn load(path: &Path) -> Result<Option<StateFile>, PersistError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(PersistError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let corrupt = |message: String| PersistError::Corrupt {
        path: path.to_path_buf(),
        message,
    };
    let state: StateFile = serde_json::from_str(&text).map_err(|e| {
        corrupt(format!(
            "{}:{}: {}",
            e.line(),
            e.column(),
            e.to_string().replace('\n', " ")
        ))
    })?;
    if state.format != FORMAT {
        return Err(corrupt(format!(
            "format {} is not the supported format {FORMAT}",
            state.format
        )));
    }
    Ok(Some(state))
}

/// Write the state file atomically (temp file, fsync, rename, fsync of the directory).
pub fn save(path: &Path, state: &StateFile) -> Result<(), PersistError> {
    let fail = |source| PersistError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut text = serde_json::to_string_pretty(state)
        .map_err(|e| fail(std::io::Error::other(e.to_string())))?;
    text.push('\n');
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".into());
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let written = (|| {
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)?;
        }
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        File::open(&dir)?.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(fail(e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use weir_testkit::Scratch;

    #[test]
    fn round_trip_and_no_temp_left() {
        let d = Scratch::new("persist-rt");
        let p = d.join("state.json");
        assert!(load(&p).unwrap().is_none());
        let s = StateFile {
            format: FORMAT,
            version: 42,
            overlay: Overlay::default(),
        };
        save(&p, &s).unwrap();
        assert_eq!(load(&p).unwrap(), Some(s));
        let names: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn corrupt_file_is_refused_with_its_name() {
        let d = Scratch::new("persist-bad");
        let p = d.join("bad.json");
        fs::write(&p, "{\"format\": 1, \"version\": ").unwrap();
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("bad.json"), "{e}");
        assert!(!e.contains('\n'));
        fs::write(&p, "{\"format\": 9, \"version\": 1, \"overlay\": {}}").unwrap();
        assert!(load(&p).unwrap_err().to_string().contains("format 9"));
    }
}
