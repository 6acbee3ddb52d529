//! Shared tokens: the API's alternative to client certificates (an
//! admin and a read token), and the peer port's guard without TLS.

use std::path::Path;
use std::sync::Arc;

use subtle::ConstantTimeEq;
use tonic::metadata::MetadataValue;
use tonic::{Request, Status};

/// Refuses a secret file (a token, a private key) that its group or
/// others may read.
pub fn owner_only(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{}: readable by group or others (mode {mode:o}); run chmod 600 on it",
            path.display()
        ));
    }
    Ok(())
}

/// Metadata key carrying the token, as `Bearer <token>`.
const HEADER: &str = "authorization";

/// The cluster token, if one is configured.
#[derive(Clone, Default)]
pub struct Token(Option<Arc<str>>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Token(set)"
        } else {
            "Token(none)"
        })
    }
}

impl Token {
    /// No token: every call is accepted.
    pub fn none() -> Token {
        Token(None)
    }

    /// A token given directly (the `raftlb ctl --token` value).
    pub fn from_value(value: Option<String>) -> Token {
        Token(value.filter(|v| !v.is_empty()).map(Into::into))
    }

    /// Reads the token file; refuses one that others can read, or an empty one.
    pub fn load(path: &Path) -> Result<Token, String> {
        let shown = path.display();
        owner_only(path).map_err(|e| format!("token_file {e}"))?;
        let text = std::fs::read_to_string(path).map_err(|e| format!("token_file {shown}: {e}"))?;
        let token = text.trim();
        if token.is_empty() {
            return Err(format!("token_file {shown}: empty"));
        }
        Ok(Token(Some(token.into())))
    }

    /// Whether a token is configured.
    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }

    /// Adds the token to an outgoing request.
    pub fn attach<T>(&self, request: &mut Request<T>) {
        if let Some(token) = &self.0
            && let Ok(value) = MetadataValue::try_from(format!("Bearer {token}"))
        {
            request.metadata_mut().insert(HEADER, value);
        }
    }

    /// Whether `given` is this token (compared in constant time).
    pub fn is(&self, given: &str) -> bool {
        self.0
            .as_ref()
            .is_some_and(|expected| bool::from(given.as_bytes().ct_eq(expected.as_bytes())))
    }

    /// Whether `headers` carry this token (compared in constant time).
    pub fn matches(&self, headers: &http::HeaderMap) -> bool {
        let Some(expected) = &self.0 else {
            return false;
        };
        let given = headers
            .get(HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
    }

    /// Checks an incoming request: with a token configured, only a request
    /// carrying the same token passes (compared in constant time).
    pub fn check<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let Some(expected) = &self.0 else {
            return Ok(());
        };
        let given = request
            .metadata()
            .get(HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
            Ok(())
        } else {
            Err(Status::unauthenticated(
                "missing or wrong token: send the metadata entry `authorization: Bearer <token>` \
                 (raftlb ctl: --token or RAFTLB_TOKEN)",
            ))
        }
    }

    /// A tonic interceptor enforcing [`Token::check`].
    pub fn interceptor(
        &self,
    ) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone + use<> {
        let token = self.clone();
        move |request: Request<()>| {
            token.check(&request)?;
            Ok(request)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_file_the_group_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("raftlb-token-{}", std::process::id()));
        std::fs::write(&path, "s3cret\n").expect("write");
        for (mode, ok) in [(0o600, true), (0o640, false), (0o604, false), (0o400, true)] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            let loaded = Token::load(&path);
            assert_eq!(loaded.is_ok(), ok, "mode {mode:o}: {:?}", loaded.err());
        }
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn only_the_same_token_passes() {
        let token = Token::from_value(Some("s3cret".into()));
        let mut good = Request::new(());
        token.attach(&mut good);
        assert!(token.check(&good).is_ok());
        let mut wrong = Request::new(());
        Token::from_value(Some("s3cres".into())).attach(&mut wrong);
        assert_eq!(
            token.check(&wrong).map_err(|s| s.code()),
            Err(tonic::Code::Unauthenticated)
        );
        assert!(token.check(&Request::new(())).is_err());
        assert!(Token::none().check(&Request::new(())).is_ok());
    }

    #[test]
    fn a_world_readable_token_file_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("raftlb-token-test-{}", std::process::id()));
        std::fs::write(&path, "abc\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(
            Token::load(&path)
                .expect_err("refused")
                .contains("chmod 600")
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(Token::load(&path).expect("accepted").is_set());
        let _ = std::fs::remove_file(&path);
    }
}
