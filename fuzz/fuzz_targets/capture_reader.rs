//! Fuzz target: capture files from anywhere (an operator's tcpdump, a mirror, a broken
//! download). `Capture::open` and reading every record must end in frames, `Err` or a
//! capture marked cut short — never a panic, and never more bytes than the file holds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_dp::capture::Capture;

fuzz_target!(|data: &[u8]| {
    // The reader takes a path (it streams files of any size); a per-process file in
    // memory-backed /dev/shm keeps the target fast.
    let path = std::path::PathBuf::from(format!("/dev/shm/weir-fuzz-capture-{}", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(mut cap) = Capture::open(&path) {
        let mut bytes = 0usize;
        if cap.for_each(|r| bytes += r.data.len()).is_ok() {
            assert!(bytes <= data.len(), "records hold more bytes than the file");
        }
    }
});
