//! What an HTTP route can do besides choosing a pool (`[[frontend.route]]`
//! in `cluster.toml`): change request and response headers, and answer by
//! itself with a redirect or a fixed response, without a backend.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Headers to change on a request (before it is sent to the backend) or on
/// a response (before it is sent to the client), applied in this order:
/// `remove`, then `set` (replacing any value), then `add` (appending).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderRewrite {
    /// Header names to take out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
    /// Headers to set, replacing every value the header had.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    /// Headers to append, keeping any value already there.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub add: BTreeMap<String, String>,
}

impl HeaderRewrite {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }
}

/// A fixed answer (`respond = { status = 503, body = "…" }`), as nginx's
/// `return 503 "…"` or HAProxy's `http-request return`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixedResponse {
    /// The status, 200 to 599.
    pub status: u16,
    /// The body, at most 4 KiB.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub body: String,
    /// Its `Content-Type` (default `text/plain; charset=utf-8`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

/// A redirect (`redirect = { location = "https://new.example", status =
/// 301 }`), as HAProxy's `http-request redirect location`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redirect {
    /// Where to: an absolute URL or a path.
    pub location: String,
    /// 301, 302 (default), 303, 307 or 308.
    #[serde(default = "default_redirect_status")]
    pub status: u16,
    /// Append the request's path and query to `location` (nginx's
    /// `$request_uri`; HAProxy's `redirect prefix`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_path: bool,
}

fn default_redirect_status() -> u16 {
    302
}

/// Longest body a fixed response may carry.
pub const MAX_FIXED_BODY: usize = 4096;
