//! wic-tna: the token check of a WebRTC-to-IMS gateway (eP-CSCF).
//!
//! It takes the OAuth 2.0 access token out of a REGISTER's `Authorization`
//! header, validates it against the configured authorization entities,
//! extracts the IMS identities and builds the Trusted Node Authentication
//! header, or says why not (SIP status, reason name, Bearer challenge).
//!
//! The token logic is plain Rust; [`ffi`] is the C ABI over it
//! (`include/wic_tna.h`).

#![deny(unsafe_op_in_unsafe_fn)]

pub mod config;
pub mod context;
pub mod dns;
pub mod ffi;
pub mod fleet;
pub mod header;
pub mod http;
pub mod identity;
pub mod json;
pub mod keys;
pub mod log;
pub mod mint;
pub mod remote;
pub mod reason;
pub mod replay;
pub mod shared;
pub mod tna;
pub mod token;

pub use config::{Config, ConfigError};
pub use context::{Context, Outcome, Request};
pub use reason::Reason;
