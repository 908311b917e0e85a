//! A temporary directory removed on drop (tests and benches share it:
//! benches/common includes this file by path).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

static N: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory under the system's temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// `wic-tna-test-<pid>-<n>`.
    #[allow(dead_code)]
    pub fn new() -> TempDir {
        TempDir::with_tag("test")
    }

    /// `wic-tna-<tag>-<pid>-<n>`.
    pub fn with_tag(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "wic-tna-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
