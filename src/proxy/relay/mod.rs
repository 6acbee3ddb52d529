//! The HTTP/1.1 relay of issue 19, being built: a purpose-built path for
//! HTTP/1.1 between clients and backends that parses heads with httparse
//! into buffers reused per connection and forwards bodies without hyper's
//! general client and server in between (as HAProxy, Pingora and Sozu
//! each do).
//!
//! What exists so far is its framing core and its head writers, checked
//! against hyper by differential tests: where a request or response head
//! ends and what it says ([`head`]), where a body ends ([`framing`],
//! [`chunked`]), and the heads a backend and a client get
//! ([`request_head`], [`response_head`], by the hyper path's header
//! rules), and how a body moves from one side to the other in bounded
//! memory ([`body`]). No traffic goes through it yet; every connection is
//! served by hyper (`proxy::http`). What remains is the connection loop
//! around these: a client's heads read into a buffer reused per
//! connection, routed and balanced by the same `routing` as the hyper
//! path, sent on a raw pooled backend connection, retried when safe; the
//! connection handed to hyper at a request it does not take (`Upgrade`,
//! `Expect`, HTTP/2 backends); and a node switch back to hyper.

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
