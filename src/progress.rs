//! Progress output on stderr: the rekey bar, and hiding it while someone asks the user a
//! question on the same terminal (a passphrase prompt must not be drawn over).

use std::io::{self, IsTerminal};
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};

/// Below this many items a progress bar is noise.
const MIN_ITEMS: usize = 20;

static ACTIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// A bar for `len` items when stderr is a terminal and there are many; finish with [`finish`].
pub fn start(label: &str, len: usize) -> Option<ProgressBar> {
    if len < MIN_ITEMS || !io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(len as u64);
    if let Ok(style) = ProgressStyle::with_template(&format!("{label} {{bar:40}} {{pos}}/{{len}}"))
    {
        bar.set_style(style);
    }
    *ACTIVE.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar.clone());
    Some(bar)
}

/// Clears the bar from the terminal.
pub fn finish(bar: Option<ProgressBar>) {
    if let Some(bar) = bar {
        bar.finish_and_clear();
        *ACTIVE.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// Runs `f` (a prompt) with the active bar, if any, hidden.
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    let bar = ACTIVE.lock().unwrap_or_else(|e| e.into_inner()).clone();
    match bar {
        Some(bar) => bar.suspend(f),
        None => f(),
    }
}
