//! What the TAP tests of weir-cp share: weir-dp run in this process (its control server
//! and its `run` on threads) with weir-cp directing it, all stopped and removed when the
//! guard drops, also when a test fails.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use weir_control::transport::{current_uid, Listener};
use weir_cp::daemon::Daemon;
use weir_dp::run::{self, RunOptions};
use weir_dp::rx::RxReport;
use weir_dp::state::DataplaneState;
use weir_model::config::Config;

/// weir-dp (threads of this process) and, once started, weir-cp; `dir` is removed at the
/// end. The TAP device goes with weir-dp's file descriptor when its `run` ends.
pub struct InProcess {
    pub dir: PathBuf,
    pub stop: Arc<AtomicBool>,
    pub shared: Arc<DataplaneState>,
    control: Option<std::thread::JoinHandle<()>>,
    run: Option<std::thread::JoinHandle<anyhow::Result<RxReport>>>,
    cp: Option<Daemon>,
}

impl InProcess {
    /// weir-dp with `dp_cfg`, its control server on `dp_sock`; `dir` is the test's own.
    pub fn start(dir: &Path, dp_cfg: &Config, dp_sock: &Path) -> InProcess {
        let stop = Arc::new(AtomicBool::new(false));
        let shared = DataplaneState::for_run(dp_cfg, Arc::clone(&stop)).unwrap();
        let control = weir_dp::control::spawn(
            Listener::bind(dp_sock, current_uid()).unwrap(),
            Arc::clone(&shared),
        )
        .unwrap();
        let run = {
            let (c, s) = (dp_cfg.clone(), Arc::clone(&shared));
            std::thread::spawn(move || run::run(&c, &s, &RunOptions::default()))
        };
        InProcess {
            dir: dir.to_path_buf(),
            stop,
            shared,
            control: Some(control),
            run: Some(run),
            cp: None,
        }
    }

    /// weir-cp from its config file (replacing one started before).
    pub fn start_cp(&mut self, cp_toml: &Path) {
        if let Some(cp) = self.cp.take() {
            cp.stop();
        }
        self.cp = Some(Daemon::start(cp_toml).unwrap());
    }

    /// The rx core's count of `name` (a reason's name).
    pub fn reason(&self, name: &str) -> u64 {
        let r = self.shared.rx_report();
        weir_model::Reason::ALL
            .iter()
            .find(|x| x.name() == name)
            .map_or(0, |&x| r.counters.reason(x))
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(cp) = self.cp.take() {
            cp.stop();
        }
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.control.take() {
            let _ = h.join();
        }
        if let Some(h) = self.run.take() {
            let _ = h.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
