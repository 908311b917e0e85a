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

// Layers, bottom up (doc/architecture.md): `log`; the pure core; the edge
// (I/O); the context that composes them; the C ABI.
pub mod context;
pub mod core;
pub mod edge;
pub mod ffi;
pub mod log;
pub mod metrics;

// The module paths of earlier versions (`wic_tna::keys::Alg`, ...).
pub use self::core::{config, header, identity, json, keys, mint, reason, replay, tna, token, url};
pub use self::edge::{dns, fleet, http, remote, shared};

pub use config::{Config, ConfigError};
pub use context::{Context, Outcome, Request};
pub use reason::Reason;
