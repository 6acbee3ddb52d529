//! Who may read the admin endpoint, and how many at once. `/readyz` is
//! open to all (load balancers, systemd). With `[admin] token_file`,
//! everything else needs the token: `Authorization: Bearer <token>` (as
//! Prometheus sends it), or Basic with the token as the password, so a
//! browser asks for it and the status page's own requests carry it. With
//! `[admin] tls`, the port speaks HTTPS with the node's certificate, and a
//! client certificate from the cluster's CA stands in for the token.
//! Connections beyond `max_connections` are closed at once.

use std::sync::Arc;

use base64::Engine;

use crate::auth::Token;
use crate::tls::ClusterTls;

/// The admin endpoint's access settings.
pub struct AdminAccess {
    /// Needed for everything but `/readyz`, when set.
    pub token: Token,
    /// HTTPS with the node's certificate.
    pub tls: Option<Arc<ClusterTls>>,
    /// Connections served at once.
    pub max_connections: usize,
}

impl AdminAccess {
    /// Plain HTTP, no token, `max_connections` at once.
    pub fn open(max_connections: usize) -> Self {
        AdminAccess {
            token: Token::none(),
            tls: None,
            max_connections,
        }
    }

    /// Whether a request for `path` with `headers` may be answered;
    /// `certified`: its connection presented a client certificate from the
    /// cluster's CA.
    pub(super) fn allows(&self, path: &str, headers: &http::HeaderMap, certified: bool) -> bool {
        path == "/readyz"
            || !self.token.is_set()
            || certified
            || self.token.matches(headers)
            || basic_password(headers).is_some_and(|password| self.token.is(&password))
    }
}

/// The password of a Basic `Authorization` header.
fn basic_password(headers: &http::HeaderMap) -> Option<String> {
    let encoded = headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    Some(text.split_once(':')?.1.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, value.parse().expect("header"));
        headers
    }

    #[test]
    fn the_token_opens_all_but_readyz_which_is_always_open() {
        let access = AdminAccess {
            token: Token::from_value(Some("s3cret".into())),
            tls: None,
            max_connections: 1,
        };
        let none = http::HeaderMap::new();
        assert!(access.allows("/readyz", &none, false));
        assert!(!access.allows("/metrics", &none, false));
        assert!(access.allows("/metrics", &with("Bearer s3cret"), false));
        assert!(!access.allows("/metrics", &with("Bearer s3cres"), false));
        // Basic, any user: "prometheus:s3cret".
        assert!(access.allows("/", &with("Basic cHJvbWV0aGV1czpzM2NyZXQ="), false));
        assert!(!access.allows("/", &with("Basic cHJvbWV0aGV1czp4"), false));
        assert!(access.allows("/status", &none, true));
        assert!(AdminAccess::open(1).allows("/status", &none, false));
    }
}
