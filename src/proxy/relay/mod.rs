//! The HTTP/1.1 relay (issue 19): a purpose-built path for HTTP/1.1
//! between clients and backends, as HAProxy, Pingora and Sozu each have
//! one. Heads are parsed by httparse in place, in a buffer kept for the
//! connection's life; bodies move by their framing in bounded memory;
//! backends are raw pooled keep-alive connections.
//!
//! - `connection`: the loop over one client connection; hands it to hyper
//!   ([`Prefixed`], with what was read) at the first request it does not
//!   take.
//! - `plan`: what a request comes to (answer, hand off, forward), by the
//!   hyper path's routing, splits, sticky pins and rate limits; writes the
//!   backend's head.
//! - `exchange`: one forwarded request: backend picked, connection taken
//!   ([`backends`]) or opened, retried when safe; `attempt`: one try on
//!   one connection (body sent, response passed on).
//! - [`head`], [`framing`], [`chunked`]: where heads and bodies end,
//!   strictly; [`request_head`], [`response_head`], `local`: the heads
//!   written; [`body`]: moving a body.
//!
//! Checked against hyper by differential tests (`differential/`) and named
//! smuggling cases (`smuggling.rs`, and `tests/cluster/smuggling.rs`
//! through a node).

mod attempt;
pub mod backends;
pub mod body;
pub mod chunked;
mod connection;
#[cfg(test)]
mod differential;
mod exchange;
mod fields;
pub mod framing;
pub mod head;
mod local;
mod plan;
mod prefixed;
pub mod request_head;
pub mod response_head;
#[cfg(test)]
mod smuggling;

pub use connection::{Connection, Ended};
pub use prefixed::Prefixed;

/// The settings of the relay's property tests: `cases` generated inputs;
/// failures printed, not saved (a case found becomes a named test).
#[cfg(test)]
fn cases(cases: u32) -> proptest::prelude::ProptestConfig {
    proptest::prelude::ProptestConfig {
        cases,
        failure_persistence: None,
        ..proptest::prelude::ProptestConfig::default()
    }
}
