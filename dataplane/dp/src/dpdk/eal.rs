//! EAL start-up, once per process, and the mbuf dynamic fields weir reads per packet.

use std::ffi::{c_char, c_int, CString};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::OnceLock;

use super::{errno, strerror, DpdkError};

/// The arguments the EAL runs with and how its start went (`Err((rte_errno, text))`).
type Started = (Vec<String>, Result<(), (i32, String)>);
static EAL: OnceLock<Started> = OnceLock::new();

/// Offset of the `weir_stamp` u64 dynfield in `rte_mbuf`, −1 until registered.
pub(super) static STAMP_OFFSET: AtomicI32 = AtomicI32::new(-1);
/// Offset of DPDK's rx-timestamp dynfield, −1 until registered.
pub(super) static RX_TS_OFFSET: AtomicI32 = AtomicI32::new(-1);
/// The `ol_flags` bit saying the rx timestamp is valid, 0 until registered.
pub(super) static RX_TS_FLAG: AtomicU64 = AtomicU64::new(0);

/// Name of the queue-stamp dynfield.
const STAMP_NAME: &str = "weir_stamp";

/// Start the EAL with argv `["weir-dp", args...]`.
///
/// The EAL starts once per process: a later call with the same `args` returns the first
/// call's result, one with other args returns [`DpdkError::AlreadyInitialised`]. The calling
/// thread becomes the main lcore and `rte_eal_init` pins it to that lcore's CPU set.
pub fn eal_init(args: &[String]) -> Result<(), DpdkError> {
    let (running, result) = EAL.get_or_init(|| (args.to_vec(), start(args)));
    if running != args {
        return Err(DpdkError::AlreadyInitialised {
            running: running.clone(),
            requested: args.to_vec(),
        });
    }
    result.clone().map_err(|(code, text)| DpdkError::Init {
        args: args.to_vec(),
        code,
        text,
    })
}

/// Whether [`eal_init`] has succeeded in this process.
pub(super) fn running() -> bool {
    matches!(EAL.get(), Some((_, Ok(()))))
}

/// `Ok` when the EAL runs.
pub(super) fn ensure() -> Result<(), DpdkError> {
    if running() {
        Ok(())
    } else {
        Err(DpdkError::NotInitialised)
    }
}

fn start(args: &[String]) -> Result<(), (i32, String)> {
    let mut owned = Vec::with_capacity(args.len() + 1);
    for a in std::iter::once("weir-dp").chain(args.iter().map(String::as_str)) {
        let c =
            CString::new(a).map_err(|_| (22, format!("EAL argument {a:?} contains a NUL byte")))?;
        owned.push(c);
    }
    // The EAL keeps pointers into argv (argv[0] becomes the syslog ident, getopt permutes the
    // array), so both are leaked: once per process, a few hundred bytes.
    let owned: &'static [CString] = Box::leak(owned.into_boxed_slice());
    let argv: &'static mut [*mut c_char] = Box::leak(
        owned
            .iter()
            .map(|c| c.as_ptr().cast_mut())
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    );
    let argc = c_int::try_from(argv.len()).map_err(|_| (7, "too many EAL arguments".into()))?;
    // SAFETY: argv holds argc valid NUL-terminated strings that live for the rest of the
    // process; OnceLock guarantees this runs once per process.
    let ret = unsafe { weir_ffi::rte_eal_init(argc, argv.as_mut_ptr()) };
    if ret < 0 {
        let code = errno();
        return Err((code, strerror(code)));
    }
    register_dynfields().map_err(|e| (0, e.to_string()))
}

fn register_dynfields() -> Result<(), DpdkError> {
    let mut desc = weir_ffi::rte_mbuf_dynfield {
        size: std::mem::size_of::<u64>(),
        align: std::mem::align_of::<u64>(),
        ..Default::default()
    };
    for (dst, src) in desc.name.iter_mut().zip(STAMP_NAME.bytes()) {
        *dst = src as c_char;
    }
    // SAFETY: desc is a valid, NUL-terminated (zeroed tail) descriptor; the EAL runs.
    let offset = unsafe { weir_ffi::rte_mbuf_dynfield_register(&desc) };
    if offset < 0 {
        let code = errno();
        return Err(DpdkError::Dynfield {
            name: STAMP_NAME,
            code,
            text: strerror(code),
        });
    }
    STAMP_OFFSET.store(offset, Ordering::Release);

    let mut ts_offset: c_int = -1;
    let mut ts_flag: u64 = 0;
    // SAFETY: both pointers are to live locals; the EAL runs. Registration is idempotent by
    // name, so drivers that register the same field (net_pcap) get the same offset and flag.
    let ret = unsafe { weir_ffi::rte_mbuf_dyn_rx_timestamp_register(&mut ts_offset, &mut ts_flag) };
    if ret < 0 {
        let code = errno();
        return Err(DpdkError::Dynfield {
            name: "rte_dynfield_timestamp",
            code,
            text: strerror(code),
        });
    }
    RX_TS_OFFSET.store(ts_offset, Ordering::Release);
    RX_TS_FLAG.store(ts_flag, Ordering::Release);
    Ok(())
}

/// The EAL argument that makes a single-process EAL leave nothing behind when it exits:
/// `--in-memory` on hugepages (no hugepage files and no shared config; each run with a
/// per-process file prefix had left its hugepages allocated), `--no-shconf` with
/// `--no-huge`, where DPDK refuses `--in-memory` (each such run had left ~13 MB of
/// config and memseg files in `/var/run/dpdk`, which is RAM). Only for processes that
/// take no secondaries, such as replays, benchmarks and tests.
pub fn private_eal_arg(eal: &[String]) -> &'static str {
    if eal.iter().any(|a| a == "--no-huge") {
        "--no-shconf"
    } else {
        "--in-memory"
    }
}

/// The EAL arguments the tests use: no hugepages, no PCI (keeps DPDK off this machine's own
/// NIC), 512 MB of ordinary memory, a per-process runtime directory with no files left in
/// it (`--no-shconf`: see [`private_eal_arg`]), and four lcores that
/// float over CPUs 0–1 so a 2-core machine has a main lcore and three workers.
pub fn test_eal_args() -> Vec<String> {
    [
        "--no-huge",
        "--no-pci",
        "--no-telemetry",
        "--no-shconf",
        "-m",
        "512",
        "--file-prefix",
        &format!("weir-test-{}", std::process::id()),
        "--log-level=lib.eal:error",
        "--lcores=(0-3)@(0-1)",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}
