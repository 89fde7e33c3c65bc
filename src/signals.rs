//! Fatal signals (SIGINT, SIGTERM, SIGHUP): run the registered cleanups, then exit with
//! 128 + the signal. Used to remove plaintext (`edit`) and half-written temp files (`rekey`).
//!
//! SIGINT while a foreground child (the editor) runs belongs to that child: Ctrl-C in vi.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::Mutex;

use anyhow::{Context, Result};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

type Cleanup = Box<dyn Fn() + Send>;

static CLEANUPS: Mutex<Vec<(u64, Cleanup)>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(0);
static CHILD: AtomicI32 = AtomicI32::new(0);
static WATCHING: AtomicBool = AtomicBool::new(false);

/// Removes its cleanup when dropped (the normal exit path does its own cleaning).
pub struct Registration(u64);

impl Drop for Registration {
    fn drop(&mut self) {
        lock().retain(|(id, _)| *id != self.0);
    }
}

fn lock() -> std::sync::MutexGuard<'static, Vec<(u64, Cleanup)>> {
    CLEANUPS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `cleanup` if a fatal signal arrives before the returned registration is dropped.
pub fn on_fatal_signal(cleanup: impl Fn() + Send + 'static) -> Result<Registration> {
    watch()?;
    let id = NEXT_ID.fetch_add(1, Ordering::SeqCst);
    lock().push((id, Box::new(cleanup)));
    Ok(Registration(id))
}

/// Marks `pid` as the foreground child (0: none): SIGINT is left to it, and it is sent SIGTERM
/// before we exit on SIGTERM/SIGHUP so it cannot write into a removed directory.
pub fn set_child(pid: u32) {
    CHILD.store(pid as i32, Ordering::SeqCst);
}

fn watch() -> Result<()> {
    if WATCHING.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    let mut signals =
        Signals::new([SIGINT, SIGTERM, SIGHUP]).context("installing signal handlers")?;
    std::thread::spawn(move || {
        for sig in signals.forever() {
            let child = CHILD.load(Ordering::SeqCst);
            if sig == SIGINT && child != 0 {
                continue;
            }
            if let Some(pid) = rustix::process::Pid::from_raw(child) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            // Held until exit, so no registration can be dropped (and its resource reused)
            // while we clean.
            let cleanups = lock();
            for (_, cleanup) in cleanups.iter() {
                cleanup();
            }
            eprintln!("ragenix: interrupted, nothing was written");
            std::process::exit(128 + sig);
        }
    });
    Ok(())
}
