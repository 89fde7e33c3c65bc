//! One test binary for the whole crate: shared helpers in `util`, one module per area.

mod beyond;
mod cli;
mod install;
mod rules;
mod util;
