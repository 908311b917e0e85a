//! Library messages, routed to the host (Kamailio's `LM_*`) through a
//! callback; nothing is written to stderr.

use std::sync::RwLock;

/// Levels passed to the callback.
pub const ERROR: i32 = 1;
/// Warning.
pub const WARN: i32 = 2;
/// Information.
pub const INFO: i32 = 3;
/// Debug.
pub const DEBUG: i32 = 4;

/// A log sink.
pub type Sink = Box<dyn Fn(i32, &str) + Send + Sync>;

static SINK: RwLock<Option<Sink>> = RwLock::new(None);

/// Install (or with `None`, remove) the sink.
pub fn set_sink(sink: Option<Sink>) {
    let mut g = SINK.write().unwrap_or_else(|e| e.into_inner());
    *g = sink;
}

/// Send a message at `level`.
pub fn log(level: i32, msg: &str) {
    let g = SINK.read().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = g.as_ref() {
        s(level, msg);
    }
}

/// Error.
pub fn error(msg: &str) {
    log(ERROR, msg)
}
/// Warning.
pub fn warn(msg: &str) {
    log(WARN, msg)
}
/// Information.
pub fn info(msg: &str) {
    log(INFO, msg)
}
