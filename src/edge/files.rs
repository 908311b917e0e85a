//! The configuration from the disk: the file itself, the files it names
//! (key files, the introspection secret, CA certificates) and the TLS
//! settings built from them. The rules are in src/core/config/.

use crate::core::config::{Config, ConfigError, Sources, MAX_CONFIG_SIZE};
use crate::edge::http;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The real [`Sources`]: files read from the disk, TLS settings with the
/// public roots.
pub struct Disk;

impl Sources for Disk {
    fn read(&self, path: &Path, limit: u64) -> Result<Vec<u8>, String> {
        read_limited(path, limit)
    }

    fn tls(&self, ca_pem: Option<&[u8]>) -> Result<Arc<rustls::ClientConfig>, String> {
        http::tls_config(ca_pem)
    }

    fn hostname(&self) -> String {
        hostname()
    }
}

/// The bytes of the regular file `path`, at most `limit` of them.
pub fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    if meta.len() > limit {
        return Err(format!("{} is larger than {limit} bytes", path.display()));
    }
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for its length.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

impl Config {
    /// Load and check a configuration file, with its keys.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let bytes = read_limited(path, MAX_CONFIG_SIZE).map_err(|m| ConfigError {
            file: file.clone(),
            line: None,
            field: None,
            message: m,
        })?;
        let text = String::from_utf8(bytes).map_err(|e| ConfigError {
            file: file.clone(),
            line: None,
            field: None,
            message: format!("not UTF-8 (byte {})", e.utf8_error().valid_up_to()),
        })?;
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Config::parse(&text, &file, &dir, path)
    }

    /// Parse configuration text, reading the files it names from the disk.
    /// `file` names it in errors, relative key paths are resolved against
    /// `dir`.
    pub fn parse(text: &str, file: &str, dir: &Path, path: &Path) -> Result<Config, ConfigError> {
        Config::build(text, file, dir, path, &Disk)
    }
}
