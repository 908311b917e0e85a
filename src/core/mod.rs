//! The pure core: what a token, a header and a configuration mean, with no
//! I/O and no knowledge of processes. Each module may use the ones before
//! it in this order (and `crate::log`), never the edge, the context or the
//! C ABI: reason, identity, json, url, keys, header, tna, replay, config,
//! token, mint.

pub mod config;
pub mod header;
pub mod identity;
pub mod json;
pub mod keys;
pub mod mint;
pub mod reason;
pub mod replay;
pub mod tna;
pub mod token;
pub mod url;
