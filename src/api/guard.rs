//! Who may call the control API, and what: every call is made by an
//! identity (a client certificate's, or a token's) with a role, `read` or
//! `admin`. Methods that only read are listed here; every other method,
//! including any added later, needs `admin` (fail closed).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::server::NamedService;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use crate::auth::Token;
use crate::tls::{Identity, Role, identity};

/// Methods a `read` identity may call.
const READ_METHODS: &[&str] = &[
    "/raftlb.v1.ControlService/Status",
    "/raftlb.v1.ControlService/GetConfig",
    "/raftlb.v1.ControlService/History",
    "/raftlb.v1.ControlService/Watch",
    "/raftlb.v1.ControlService/Traffic",
    "/raftlb.v1.ControlService/WaitDrained",
    "/raftlb.v1.ControlService/ListCertificates",
];

/// The role a method needs.
pub fn needed_role(path: &str) -> Role {
    if READ_METHODS.contains(&path) || path.starts_with("/grpc.reflection.") {
        Role::Read
    } else {
        Role::Admin
    }
}

/// Who made a call, as the history records it.
#[derive(Debug, Clone)]
pub struct Caller(pub String);

/// How the API authenticates its callers.
#[derive(Clone)]
pub struct ApiAuth {
    /// Client certificates are verified by the TLS handshake.
    pub tls: bool,
    /// The `admin` token.
    pub admin_token: Token,
    /// The `read` token.
    pub read_token: Token,
}

impl ApiAuth {
    /// The caller's identity and role, or why it is refused.
    fn identify(
        &self,
        extensions: &http::Extensions,
        headers: &http::HeaderMap,
    ) -> Result<(String, Role), tonic::Status> {
        let certified = extensions
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(TlsConnectInfo::peer_certs)
            .and_then(|certs| identity::read(certs.first()?).ok());
        if let Some(info) = certified {
            return match info.identity {
                Some(identity @ Identity::Client { .. }) | Some(identity @ Identity::Node(_)) => {
                    Ok((identity.to_string(), identity.role()))
                }
                None => Err(tonic::Status::unauthenticated(
                    "the client certificate names no raftlb identity (make one with raftlb certs init --client NAME)",
                )),
            };
        }
        if self.admin_token.is_set() && self.admin_token.matches(headers) {
            return Ok(("token admin".into(), Role::Admin));
        }
        if self.read_token.is_set() && self.read_token.matches(headers) {
            return Ok(("token read".into(), Role::Read));
        }
        if !self.tls && !self.admin_token.is_set() {
            // Nothing configured: loopback only (node.toml refuses more).
            return Ok(("api client".into(), Role::Admin));
        }
        Err(tonic::Status::unauthenticated(if self.tls {
            "no client certificate: raftlb ctl needs --ca, --cert and --key (or RAFTLB_CA, \
             RAFTLB_CERT, RAFTLB_KEY, or ca, cert and key in ctl.toml)"
        } else {
            "missing or wrong token: send the metadata entry `authorization: Bearer <token>` \
             (raftlb ctl: --token or RAFTLB_TOKEN)"
        }))
    }

    /// The caller of a call to `path`, if its role allows the call.
    fn check(
        &self,
        path: &str,
        extensions: &http::Extensions,
        headers: &http::HeaderMap,
    ) -> Result<Caller, tonic::Status> {
        let (who, role) = self.identify(extensions, headers)?;
        let needed = needed_role(path);
        if role < needed {
            return Err(tonic::Status::permission_denied(format!(
                "{path} needs the role {}; {who} has {}",
                needed.as_str(),
                role.as_str()
            )));
        }
        let address = extensions
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .map(|info| info.get_ref())
            .or_else(|| extensions.get::<TcpConnectInfo>())
            .and_then(TcpConnectInfo::remote_addr);
        Ok(Caller(match address {
            Some(address) => format!("{who} from {address}"),
            None => who,
        }))
    }

    /// `service` behind this check.
    pub fn guard<S>(&self, service: S) -> Guarded<S> {
        Guarded {
            inner: service,
            auth: Arc::new(self.clone()),
        }
    }
}

/// A service whose calls pass [`ApiAuth::check`] first; the caller is
/// in the request's extensions.
#[derive(Clone)]
pub struct Guarded<S> {
    inner: S,
    auth: Arc<ApiAuth>,
}

impl<S: NamedService> NamedService for Guarded<S> {
    const NAME: &'static str = S::NAME;
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, Infallible>> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for Guarded<S>
where
    S: tower::Service<
            http::Request<B>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
        >,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        match self.auth.check(
            request.uri().path(),
            request.extensions(),
            request.headers(),
        ) {
            Ok(caller) => {
                request.extensions_mut().insert(caller);
                Box::pin(self.inner.call(request))
            }
            Err(status) => {
                let response = status.into_http();
                Box::pin(async move { Ok(response) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_need_admin_and_reads_do_not() {
        assert_eq!(needed_role("/raftlb.v1.ControlService/Status"), Role::Read);
        assert_eq!(needed_role("/raftlb.v1.ControlService/Watch"), Role::Read);
        assert_eq!(
            needed_role("/raftlb.v1.ControlService/ApplyConfig"),
            Role::Admin
        );
        assert_eq!(
            needed_role("/raftlb.v1.ControlService/SomethingNew"),
            Role::Admin
        );
        assert_eq!(
            needed_role("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            Role::Read
        );
    }

    #[test]
    fn tokens_give_their_roles_and_a_read_token_cannot_write() {
        let auth = ApiAuth {
            tls: false,
            admin_token: Token::from_value(Some("admin-secret".into())),
            read_token: Token::from_value(Some("read-secret".into())),
        };
        let with = |token: &str| {
            let mut headers = http::HeaderMap::new();
            headers.insert(
                "authorization",
                format!("Bearer {token}").parse().expect("header"),
            );
            headers
        };
        let none = http::Extensions::new();
        let write = "/raftlb.v1.ControlService/SetWeight";
        assert!(auth.check(write, &none, &with("admin-secret")).is_ok());
        let denied = auth
            .check(write, &none, &with("read-secret"))
            .expect_err("read cannot write");
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        assert!(
            denied.message().contains("needs the role admin"),
            "{denied:?}"
        );
        assert!(
            auth.check(
                "/raftlb.v1.ControlService/Status",
                &none,
                &with("read-secret")
            )
            .is_ok()
        );
        let refused = auth
            .check(write, &none, &http::HeaderMap::new())
            .expect_err("no token");
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    }
}
