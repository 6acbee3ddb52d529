//! `[pool.tls]`: the nodes speak TLS to a pool's backends, for HTTP and
//! TCP frontends and for health checks, verifying the backend against the
//! committed CA and presenting a client certificate from the store.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;

use crate::fixture::*;

type HttpClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Full<bytes::Bytes>,
>;

/// An HTTPS backend that asks for (and does not require) a client
/// certificate signed by its CA. Every answer says what the handshake
/// brought: `sni=NAME client=yes|no path=PATH`.
struct TlsBackend {
    address: SocketAddr,
    /// Handshakes that finished, and the paths asked for.
    seen: Arc<Mutex<Vec<String>>>,
    _stop: tokio_util::sync::DropGuard,
}

impl TlsBackend {
    async fn start(ca: &TestCa, names: &[&str]) -> TlsBackend {
        let (cert, key) = ca.site("backend", names);
        let chain = CertificateDer::pem_file_iter(&cert)
            .expect("chain")
            .collect::<Result<Vec<_>, _>>()
            .expect("chain");
        let key = PrivateKeyDer::from_pem_file(&key).expect("key");
        let mut roots = rustls::RootCertStore::empty();
        for root in CertificateDer::pem_file_iter(ca.ca()).expect("ca") {
            roots.add(root.expect("ca")).expect("root");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        .expect("client verifier");
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind(SocketAddr::new(unique_ip(), 0))
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = tokio_util::sync::CancellationToken::new();
        let (accepting, recorded) = (stop.clone(), seen.clone());
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => continue,
                    },
                    () = accepting.cancelled() => return,
                };
                let (acceptor, seen) = (acceptor.clone(), recorded.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let (_, session) = tls.get_ref();
                    let facts = format!(
                        "sni={} client={}",
                        session.server_name().unwrap_or("-"),
                        if session.peer_certificates().is_some() {
                            "yes"
                        } else {
                            "no"
                        }
                    );
                    let service = hyper::service::service_fn(
                        move |request: hyper::Request<hyper::body::Incoming>| {
                            let answer = format!("{facts} path={}", request.uri().path());
                            seen.lock().expect("seen").push(answer.clone());
                            async move {
                                Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                    http_body_util::Full::new(bytes::Bytes::from(answer)),
                                ))
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        TlsBackend {
            address,
            seen,
            _stop: stop.drop_guard(),
        }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().expect("seen").clone()
    }
}

/// An HTTP and a TCP frontend before one pool of `backend`, with `tls`
/// as its `[pool.tls]` section (empty: none) and HTTP health checks.
fn config(backend: SocketAddr, tls: &str) -> String {
    format!(
        r#"[[frontend]]
name = "web"
port = 8080
protocol = "http"
pool = "secure"

[[frontend]]
name = "raw"
port = 9000
protocol = "tcp"
pool = "secure"

[[pool]]
name = "secure"
  [pool.health]
  check = "http"
  path = "/healthz"
  interval_ms = 100
  timeout_ms = 90
  rise = 1
  fall = 1
{tls}
  [[pool.backend]]
  address = "{backend}"
"#
    )
}

fn tls_section(sni: &str, ca: &Path, client_certificate: Option<&str>) -> String {
    let mut section = format!(
        "  [pool.tls]\n  sni = \"{sni}\"\n  verify = \"{}\"\n",
        ca.display()
    );
    if let Some(name) = client_certificate {
        section.push_str(&format!("  client_certificate = \"{name}\"\n"));
    }
    section
}

/// GETs `url` every 50 ms until `done` says yes to the status, for up to
/// 10 s; the last status and body.
async fn get_until(
    client: &HttpClient,
    url: &str,
    done: impl Fn(hyper::StatusCode) -> bool,
) -> (hyper::StatusCode, String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, body) = get(client, url, &[]).await;
        if done(status) || std::time::Instant::now() > deadline {
            return (status, body);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `ctl apply` of `text` (written beside the node): exit code and output.
fn apply(node: &Node, text: &str) -> (i32, String) {
    let file = node.dir.join("next.toml");
    std::fs::write(&file, text).expect("write config");
    let (code, out, err) = ctl(
        &node.api(),
        &["apply", "--file", &file.display().to_string()],
    );
    (code, format!("{out}{err}"))
}

on_both_paths! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_speaks_tls_to_its_backends_verified_and_with_a_client_certificate() {
    let ca = TestCa::new();
    let backend = TlsBackend::start(&ca, &["backend.test"]).await;
    // Plain at first: the pool's client certificate must be in the store
    // before a configuration may name it.
    let node = Node::start(&config(backend.address, "")).await;
    let client_files = ca.site("pool-client", &["pool-client.test"]);
    tokio::task::block_in_place(|| {
        let (pem, key) = (
            client_files.0.display().to_string(),
            client_files.1.display().to_string(),
        );
        let (code, out, err) = ctl(
            &node.api(),
            &["cert", "add", "pool-client", "--cert", &pem, "--key", &key],
        );
        assert_eq!(code, 0, "{out}{err}");
        // A certificate not in the store is refused, naming the field.
        let (code, out) = apply(
            &node,
            &config(
                backend.address,
                &tls_section("backend.test", &ca.ca(), Some("missing")),
            ),
        );
        assert_ne!(code, 0, "{out}");
        assert!(out.contains("tls.client_certificate"), "{out}");
        let (code, out) = apply(
            &node,
            &config(
                backend.address,
                &tls_section("backend.test", &ca.ca(), Some("pool-client")),
            ),
        );
        assert_eq!(code, 0, "{out}");
        // What was committed: the CA's PEM, never the client key.
        let (code, shown, err) = ctl(&node.api(), &["get"]);
        assert_eq!(code, 0, "{err}");
        assert!(shown.contains("sni = \"backend.test\""), "{shown}");
        assert!(shown.contains("BEGIN CERTIFICATE"), "{shown}");
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
        // In use: the certificate cannot be removed.
        let (code, out, err) = ctl(&node.api(), &["cert", "remove", "pool-client"]);
        assert_ne!(code, 0, "{out}{err}");
        assert!(
            format!("{out}{err}").contains("uses the certificate"),
            "{out}{err}"
        );
    });

    // HTTP: verified by name, SNI sent, the client certificate presented.
    let client = client();
    let url = node.url(8080, "/hello");
    let (status, answer) = get_until(&client, &url, |status| status == 200).await;
    assert_eq!(status, 200, "no answer through the TLS pool: {answer}");
    assert_eq!(answer, "sni=backend.test client=yes path=/hello");
    // Health checks went over TLS too (a plain GET would get no answer).
    let checks = format!(
        "raftlb_health_checks_total{{pool=\"secure\",backend=\"{}\",result=\"passed\"}}",
        backend.address
    );
    assert!(
        wait_until(Duration::from_secs(5), || node
            .metric(&checks)
            .unwrap_or(0.0)
            >= 1.0)
        .await,
        "no passed health check over TLS"
    );
    assert!(
        backend.seen().iter().any(|s| s.ends_with("path=/healthz")),
        "{:?}",
        backend.seen()
    );

    // TCP: the node opens TLS to the backend and relays plain bytes.
    let (raw, _) = raw_exchange(
        node.frontend(9000),
        b"GET /over-tcp HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(
        raw.ends_with("sni=backend.test client=yes path=/over-tcp"),
        "{raw}"
    );

    // A CA that did not sign the backend: no request gets through, and
    // the log says why.
    let other = TestCa::new();
    let (code, out) = tokio::task::block_in_place(|| {
        apply(
            &node,
            &config(
                backend.address,
                &tls_section("backend.test", &other.ca(), Some("pool-client")),
            ),
        )
    });
    assert_eq!(code, 0, "{out}");
    let (status, _) = get_until(&client, &url, |status| status.is_server_error()).await;
    let refused = status.is_server_error();
    assert!(refused, "a backend the CA did not sign was still served");
    let log = node.log();
    assert!(!log.contains("PRIVATE KEY"), "a key in the node's log");
    assert!(
        log.contains("TLS handshake: invalid peer certificate"),
        "the log does not say the backend's certificate was not trusted"
    );
}
}
