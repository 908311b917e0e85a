//! The edge: what talks to the world outside the process's memory (files,
//! HTTP, DNS, Redis, the mapping shared between processes). It may use the
//! core, never the context or the C ABI. Each module may use the ones
//! before it in this order: dns, http, files, shared, fleet, remote.

pub mod dns;
pub mod files;
pub mod fleet;
pub mod http;
pub mod remote;
pub mod shared;
