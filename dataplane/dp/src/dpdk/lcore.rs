//! Lcores: which ones the EAL runs, and running a closure on a worker.

use std::ffi::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;

use super::{eal, strerror, DpdkError};

/// What [`wait`] returns when the closure panicked.
pub const LCORE_PANICKED: i32 = i32::MIN;
/// What [`wait`] returns for a lcore that is not an EAL worker.
pub const LCORE_INVALID: i32 = i32::MIN + 1;

/// Serialises launches: two launches racing for one lcore would both see it idle.
static LAUNCH: Mutex<()> = Mutex::new(());

type Job = Box<dyn FnOnce() -> i32 + Send + 'static>;

/// The calling thread's lcore id; `u32::MAX` outside EAL threads.
#[inline]
pub fn lcore_id() -> u32 {
    // SAFETY: reads the calling thread's lcore id (LCORE_ID_ANY until the EAL sets it).
    unsafe { weir_ffi::weir_lcore_id() }
}

/// The EAL's worker lcores (every enabled lcore but the main one); empty before `eal_init`.
pub fn worker_lcores() -> Vec<u32> {
    if !eal::running() {
        return Vec::new();
    }
    let mut lcores = Vec::new();
    // SAFETY: rte_get_next_lcore accepts any start value; −1 (u32::MAX) starts at lcore 0.
    let mut i = unsafe { weir_ffi::rte_get_next_lcore(u32::MAX, 1, 0) };
    while i < weir_ffi::RTE_MAX_LCORE {
        lcores.push(i);
        // SAFETY: as above.
        i = unsafe { weir_ffi::rte_get_next_lcore(i, 1, 0) };
    }
    lcores
}

unsafe extern "C" fn trampoline(arg: *mut c_void) -> c_int {
    // SAFETY: arg is the Box<Job> leaked by launch, handed to exactly this one call.
    let job = unsafe { Box::from_raw(arg.cast::<Job>()) };
    catch_unwind(AssertUnwindSafe(move || (*job)())).unwrap_or(LCORE_PANICKED)
}

/// Run `f` on worker `lcore` (`rte_eal_remote_launch`); [`wait`] returns its value.
pub fn launch(lcore: u32, f: impl FnOnce() -> i32 + Send + 'static) -> Result<(), DpdkError> {
    eal::ensure()?;
    let workers = worker_lcores();
    if !workers.contains(&lcore) {
        return Err(DpdkError::Launch {
            lcore,
            code: -22,
            text: "not a worker lcore of this EAL".into(),
            workers,
        });
    }
    let _launch = LAUNCH.lock().unwrap_or_else(|p| p.into_inner());
    let job: Box<Job> = Box::new(Box::new(f));
    let arg = Box::into_raw(job).cast::<c_void>();
    // SAFETY: lcore is a worker; trampoline takes back arg exactly once when it runs.
    let ret = unsafe { weir_ffi::rte_eal_remote_launch(Some(trampoline), arg, lcore) };
    if ret < 0 {
        // SAFETY: the launch was refused, so trampoline never runs: arg is still ours.
        drop(unsafe { Box::from_raw(arg.cast::<Job>()) });
        return Err(DpdkError::Launch {
            lcore,
            code: ret,
            text: strerror(ret),
            workers,
        });
    }
    Ok(())
}

/// Wait for the closure launched on `lcore` and return its value (0 if none was launched,
/// [`LCORE_PANICKED`] if it panicked, [`LCORE_INVALID`] if `lcore` is not a worker).
pub fn wait(lcore: u32) -> i32 {
    if !worker_lcores().contains(&lcore) {
        return LCORE_INVALID;
    }
    // SAFETY: lcore is a worker lcore of the running EAL.
    unsafe { weir_ffi::rte_eal_wait_lcore(lcore) }
}
