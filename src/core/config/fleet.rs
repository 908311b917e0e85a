//! `[fleet]`: the fleet's shared store (Redis, src/edge/fleet.rs) as the
//! configuration gives it, checked.

use serde::Deserialize;
use std::time::Duration;

/// `[fleet]` as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFleet {
    /// `redis://host:port/db`.
    pub redis_url: String,
    /// Prefix of every key.
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
    /// This node's name in the fleet (bindings are per node). Default: the
    /// host name.
    pub node_id: Option<String>,
    /// Connect timeout, ms.
    #[serde(default = "default_connect_ms")]
    pub connect_timeout_ms: u64,
    /// Read/write timeout of a worker's request (replay check), ms.
    #[serde(default = "default_io_ms")]
    pub timeout_ms: u64,
    /// Read/write timeout of the refresher's poll, ms.
    #[serde(default = "default_poll_ms")]
    pub refresher_timeout_ms: u64,
}

fn default_prefix() -> String {
    "wic-tna:".into()
}
fn default_connect_ms() -> u64 {
    200
}
fn default_io_ms() -> u64 {
    50
}
fn default_poll_ms() -> u64 {
    500
}

/// `[fleet]`, checked.
#[derive(Clone, Debug)]
pub struct FleetConfig {
    /// Parsed URL.
    pub url: String,
    /// Key prefix.
    pub key_prefix: String,
    /// This node's id.
    pub node_id: String,
    /// Timeouts.
    pub connect_timeout: Duration,
    /// Worker I/O timeout.
    pub timeout: Duration,
    /// Refresher I/O timeout.
    pub refresher_timeout: Duration,
}

impl RawFleet {
    /// Check it; the error names the field. `hostname` gives the default
    /// `node_id`.
    pub fn check(
        self,
        hostname: impl FnOnce() -> String,
    ) -> Result<FleetConfig, (&'static str, String)> {
        redis::Client::open(self.redis_url.as_str())
            .map_err(|e| ("redis_url", format!("not a Redis URL: {e}")))?;
        if self.key_prefix.is_empty()
            || self.key_prefix.len() > 128
            || self.key_prefix.bytes().any(|c| !c.is_ascii_graphic())
        {
            return Err(("key_prefix", "must be 1 to 128 printable characters".into()));
        }
        let node_id = self.node_id.unwrap_or_else(hostname);
        if node_id.is_empty()
            || node_id.len() > 128
            || node_id.bytes().any(|c| !c.is_ascii_graphic())
        {
            return Err(("node_id", "must be 1 to 128 printable characters".into()));
        }
        for (name, v) in [
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("timeout_ms", self.timeout_ms),
            ("refresher_timeout_ms", self.refresher_timeout_ms),
        ] {
            if v == 0 || v > 10_000 {
                return Err((name, "must be 1 to 10000".into()));
            }
        }
        Ok(FleetConfig {
            url: self.redis_url,
            key_prefix: self.key_prefix,
            node_id,
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            timeout: Duration::from_millis(self.timeout_ms),
            refresher_timeout: Duration::from_millis(self.refresher_timeout_ms),
        })
    }
}
