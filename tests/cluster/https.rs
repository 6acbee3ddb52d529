//! HTTPS frontends: certificates committed with `ctl cert`, chosen by SNI
//! on every node, replaced without cutting open connections, keys never
//! shown; checked with curl and a rustls client.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::fixture::*;

/// `ctl cert add|replace NAME --cert … --key …` (and `extra`): exit code,
/// stdout, stderr.
fn try_cert(
    endpoints: &str,
    verb: &str,
    name: &str,
    files: (&Path, &Path),
    extra: &[&str],
) -> (i32, String, String) {
    let (pem, key) = (files.0.display().to_string(), files.1.display().to_string());
    let mut args = vec!["cert", verb, name, "--cert", &pem, "--key", &key];
    args.extend_from_slice(extra);
    ctl(endpoints, &args)
}

/// The same, which must succeed.
fn cert(endpoints: &str, verb: &str, name: &str, files: &(PathBuf, PathBuf), extra: &[&str]) {
    let (code, out, err) = try_cert(endpoints, verb, name, (&files.0, &files.1), extra);
    assert_eq!(code, 0, "cert {verb} {name}: {out}{err}");
}

/// A client trusting `ca` (a certificate that does not name the SNI is
/// taken when `any`: the default certificate, looked at by the test). Its
/// session cache is shared by every connection made with it.
fn client_config(ca: &Path, sni: bool, any: bool) -> Arc<rustls::ClientConfig> {
    client_config_on(rustls::crypto::ring::default_provider(), ca, sni, any)
}

/// [`client_config`] on `provider`.
fn client_config_on(
    provider: rustls::crypto::CryptoProvider,
    ca: &Path,
    sni: bool,
    any: bool,
) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_file(ca).expect("ca"))
        .expect("root");
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.enable_sni = sni;
    if any || !sni {
        config
            .dangerous()
            .set_certificate_verifier(Arc::new(AnyCertificate));
    }
    Arc::new(config)
}

pub(crate) type Session = rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>;

/// A TLS session to `address` with `config`, naming `sni`.
fn connect_config(config: Arc<rustls::ClientConfig>, address: SocketAddr, sni: &str) -> Session {
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).expect("name");
    let connection = rustls::ClientConnection::new(config, name).expect("client");
    let tcp = std::net::TcpStream::connect(address).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    tls.flush().expect("handshake");
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).expect("handshake");
    }
    tls
}

/// A TLS session to `address` naming `sni` (none: no SNI), trusting `ca`.
pub(crate) fn connect_with(
    ca: &Path,
    address: SocketAddr,
    sni: Option<&str>,
    any: bool,
) -> Session {
    let config = client_config(ca, sni.is_some(), any);
    connect_config(config, address, sni.unwrap_or("no-sni.invalid"))
}

/// A TLS session whose certificate must name `sni`.
fn connect(
    ca: &Path,
    address: SocketAddr,
    sni: Option<&str>,
) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    connect_with(ca, address, sni, false)
}

/// The DER of the certificate a session got.
pub(crate) fn served(tls: &Session) -> Vec<u8> {
    tls.conn.peer_certificates().expect("certificates")[0].to_vec()
}

fn der(pem: &Path) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_file(pem)
        .expect("pem")
        .to_vec()
}

/// One keep-alive request on `tls`; the response's head and body.
fn get(
    tls: &mut rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>,
    host: &str,
) -> String {
    write!(tls, "GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").expect("write");
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&response).contains(" 0\n") {
        let n = tls.read(&mut buf).expect("read");
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&response));
        response.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&response).into_owned()
}

#[derive(Debug)]
struct AnyCertificate;

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

on_both_paths! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_the_cluster_certificates_by_sni_on_every_node() {
    let curl = debian_tool("curl", "curl");
    let backend = HttpBackend::start("site", unique_ip()).await;
    let seed = one_frontend("https", 8443, "round_robin", &[backend.address], "");
    let mut cluster = Cluster::start(3, &seed).await;
    cluster.wait_leader(Duration::from_secs(10)).await;
    let endpoints = cluster.endpoints();
    let ca = TestCa::new();
    let site = ca.site("site", &["site.test", "www.site.test"]);
    let wild = ca.site("wild", &["*.wild.test"]);
    let fallback = ca.site("fallback", &["fallback.test"]);
    tokio::task::block_in_place(|| {
        cert(&endpoints, "add", "site", &site, &[]);
        cert(&endpoints, "add", "wild", &wild, &[]);
        cert(&endpoints, "add", "fallback", &fallback, &["--default"]);
        // A name another certificate serves, and a key of another
        // certificate, are refused.
        let clash = ca.site("clash", &["www.site.test"]);
        let (code, _, err) = try_cert(&endpoints, "add", "clash", (&clash.0, &clash.1), &[]);
        assert_eq!(code, 1, "{err}");
        assert!(
            err.contains("www.site.test is already served by certificate \"site\""),
            "{err}"
        );
        let (code, _, err) = try_cert(&endpoints, "add", "mixed", (&site.0, &wild.1), &[]);
        assert_eq!(code, 1, "{err}");
        assert!(
            err.contains("the key does not match the certificate"),
            "{err}"
        );
    });
    let version = cluster.nodes[0].config_version().expect("version");
    assert!(
        wait_until(Duration::from_secs(5), || cluster
            .nodes
            .iter()
            .all(|n| n.config_version() == Some(version)))
        .await,
        "not every node applied the certificates"
    );

    // Every node chooses by SNI: exact, wildcard, default.
    tokio::task::block_in_place(|| {
        for node in &cluster.nodes {
            let address = node.frontend(8443);
            assert_eq!(
                served(&connect(&ca.ca(), address, Some("www.site.test"))),
                der(&site.0)
            );
            assert_eq!(
                served(&connect(&ca.ca(), address, Some("api.wild.test"))),
                der(&wild.0)
            );
            assert_eq!(
                served(&connect_with(&ca.ca(), address, Some("unknown.test"), true)),
                der(&fallback.0)
            );
            assert_eq!(served(&connect(&ca.ca(), address, None)), der(&fallback.0));
        }
    });

    // curl end to end: HTTP behind it, X-Forwarded-Proto https; TLS 1.1
    // refused.
    let address = cluster.nodes[1].frontend(8443);
    let resolve = format!("site.test:8443:{}", address.ip());
    let output = Command::new(&curl)
        .args(["-s", "--cacert"])
        .arg(ca.ca())
        .args(["--resolve", &resolve, "https://site.test:8443/hello"])
        .output()
        .expect("curl");
    let body = String::from_utf8_lossy(&output.stdout);
    assert!(body.starts_with("site GET /hello"), "{body}");
    let seen = backend.requests();
    let last = seen.last().expect("a request");
    assert_eq!(last.headers["x-forwarded-proto"], "https");
    let old = Command::new(&curl)
        .args([
            "-s",
            "-o",
            "/dev/null",
            "--tlsv1.1",
            "--tls-max",
            "1.1",
            "--cacert",
        ])
        .arg(ca.ca())
        .args(["--resolve", &resolve, "https://site.test:8443/"])
        .status()
        .expect("curl");
    assert!(!old.success(), "TLS 1.1 was accepted");
    // Refused by the node (a TLS 1.1 ClientHello lacks what 1.2 and 1.3
    // need), not by curl before it asked.
    assert!(
        wait_until(Duration::from_secs(5), || cluster.nodes[1]
            .log()
            .lines()
            .any(
                |l| l.contains("TLS handshake failed") && l.contains("peer is incompatible")
            ))
        .await,
        "node 2 logged no refused handshake"
    );

    // Replaced while a client keeps its connection: the next handshake gets
    // the new certificate, the open connection goes on.
    let address = cluster.nodes[2].frontend(8443);
    let (kept, renewed) = tokio::task::block_in_place(|| {
        let mut kept = connect(&ca.ca(), address, Some("site.test"));
        assert!(get(&mut kept, "site.test").contains("200 OK"));
        let renewed = ca.site("site-renewed", &["site.test", "www.site.test"]);
        cert(&endpoints, "replace", "site", &renewed, &[]);
        (kept, renewed)
    });
    assert!(
        wait_until(Duration::from_secs(5), || {
            served(&connect(&ca.ca(), address, Some("site.test"))) == der(&renewed.0)
        })
        .await,
        "node 3 did not serve the replaced certificate"
    );
    let mut kept = kept;
    tokio::task::block_in_place(|| {
        assert!(
            get(&mut kept, "site.test").contains("200 OK"),
            "the open connection was cut"
        );
        assert_eq!(served(&kept), der(&site.0));
    });

    // Expiry: a metric per certificate, and a warning in ctl status for one
    // within 30 days of its end.
    let metric = cluster.nodes[0]
        .metric("raftlb_certificate_expiry_timestamp_seconds{certificate=\"wild\"}")
        .expect("expiry metric");
    assert!(metric as u64 > raftlb::control::unix_millis() / 1000 + 300 * 24 * 3600);
    let (_, status, _) = ctl(&endpoints, &["status"]);
    assert!(!status.contains("WARNING"), "{status}");
    let soon = ca.site_for_days("soon", &["soon.test"], 10);
    tokio::task::block_in_place(|| cert(&endpoints, "add", "soon", &soon, &[]));
    let (_, status, _) = ctl(&endpoints, &["status"]);
    assert!(
        status.contains("WARNING certificate soon (soon.test) ends in 9 days"),
        "{status}"
    );

    // Keys are never shown: ctl get, cert list, history, /status and the
    // node logs hold no private key.
    let (_, list, _) = ctl(&endpoints, &["cert", "list"]);
    assert!(
        list.contains("site") && list.contains("*.wild.test") && list.contains("yes"),
        "{list}"
    );
    let mut shown = list;
    for args in [
        &["get"][..],
        &["history"],
        &["--json", "history"],
        &["--json", "cert", "list"],
    ] {
        shown.push_str(&ctl(&endpoints, args).1);
    }
    for node in &cluster.nodes {
        shown.push_str(
            &node
                .admin_get("/status")
                .map(|(_, b)| b)
                .unwrap_or_default(),
        );
        shown.push_str(
            &node
                .admin_get("/status/live")
                .map(|(_, b)| b)
                .unwrap_or_default(),
        );
        shown.push_str(&node.log());
    }
    assert!(
        shown.contains("add certificate site"),
        "no history of the certificate"
    );
    assert!(!shown.contains("PRIVATE KEY"), "a key was shown");
    for key in [&site.1, &wild.1, &fallback.1, &renewed.1] {
        let pem = std::fs::read_to_string(key).expect("key");
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        assert!(
            !shown.replace('\n', "").contains(&body[..40]),
            "a key's text was shown"
        );
    }

    // A restarted node serves the certificates it applied, from disk.
    let node = &mut cluster.nodes[2];
    node.kill9();
    node.launch();
    node.wait_ready().await;
    let address = node.frontend(8443);
    tokio::task::block_in_place(|| {
        assert_eq!(
            served(&connect(&ca.ca(), address, Some("site.test"))),
            der(&renewed.0)
        );
    });
}
}

on_both_paths! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_its_tls_session_on_the_new_vip_holder_after_a_failover() {
    let backend = HttpBackend::start("site", unique_ip()).await;
    let seed = one_frontend("https", 8443, "round_robin", &[backend.address], "");
    let vip = unique_ip();
    let options = NodeOptions {
        vip: Some(vip),
        ..Default::default()
    };
    let mut cluster = Cluster::start_with(3, &seed, &options).await;
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let endpoints = cluster.endpoints();
    let ca = TestCa::new();
    let site = ca.site("site", &["site.test"]);
    tokio::task::block_in_place(|| cert(&endpoints, "add", "site", &site, &[]));
    // The leader made the first session-ticket key; every node has it, and
    // the VIP is held.
    assert!(
        wait_until(Duration::from_secs(10), || {
            cluster
                .nodes
                .iter()
                .all(|n| n.status()["session_ticket_keys"].as_u64() >= Some(1))
                && cluster.nodes[leader].status()["vip"]["held"] == true
        })
        .await,
        "not every node got a session-ticket key"
    );
    let address = SocketAddr::new(vip, 8443);
    let client = client_config(&ca.ca(), true, false);
    tokio::task::block_in_place(|| {
        let mut first = connect_config(client.clone(), address, "site.test");
        assert_eq!(
            first.conn.handshake_kind(),
            Some(rustls::HandshakeKind::Full)
        );
        // The tickets come after the handshake: read a response.
        assert!(get(&mut first, "site.test").contains("200 OK"));
    });

    // The holder dies; the next holder resumes the session.
    cluster.nodes[leader].kill9();
    let answers =
        || std::net::TcpStream::connect_timeout(&address, Duration::from_millis(100)).is_ok();
    assert!(
        wait_until(Duration::from_secs(10), answers).await,
        "no node took the VIP over"
    );
    tokio::task::block_in_place(|| {
        let mut second = connect_config(client.clone(), address, "site.test");
        assert_eq!(
            second.conn.handshake_kind(),
            Some(rustls::HandshakeKind::Resumed),
            "the new holder did not resume the session"
        );
        assert!(get(&mut second, "site.test").contains("200 OK"));
        // A client without the session does a full handshake there.
        let fresh = connect_config(client_config(&ca.ca(), true, false), address, "site.test");
        assert_eq!(
            fresh.conn.handshake_kind(),
            Some(rustls::HandshakeKind::Full)
        );
    });
    // The ticket keys' secrets (64 hex digits) are in no log or /status.
    for node in &cluster.nodes {
        let shown = format!(
            "{}{}",
            node.log(),
            node.admin_get("/status")
                .map(|(_, b)| b)
                .unwrap_or_default()
        );
        let longest_hex = shown
            .split(|c: char| !c.is_ascii_hexdigit())
            .map(str::len)
            .max()
            .unwrap_or(0);
        assert!(
            longest_hex < 64,
            "node {} shows a 64-digit hex secret",
            node.id
        );
    }
}
}

/// The first flight of a TLS client naming `sni` (none: no SNI).
fn client_hello(sni: Option<&str>) -> Vec<u8> {
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    config.enable_sni = sni.is_some();
    let name = rustls::pki_types::ServerName::try_from(sni.unwrap_or("no-sni.invalid").to_string())
        .expect("name");
    let mut connection = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
    let mut hello = Vec::new();
    connection.write_tls(&mut hello).expect("hello");
    hello
}

on_both_paths! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_frontend_passes_tls_through_to_the_pool_its_sni_names() {
    let ip = unique_ip();
    let alpha = TcpBackend::start("alpha", ip).await;
    let wild = TcpBackend::start("wild", ip).await;
    let other = TcpBackend::start("other", ip).await;
    let pool = |name: &str, backend: &TcpBackend| {
        format!(
            "[[pool]]\nname = \"{name}\"\n  [[pool.backend]]\n  address = \"{}\"\n",
            backend.address
        )
    };
    let seed = format!(
        "[[frontend]]\nname = \"pass\"\nport = 8443\nprotocol = \"tcp\"\npool = \"other\"\n\
         \x20 [[frontend.route]]\n  sni = \"alpha.test\"\n  pool = \"alpha\"\n\
         \x20 [[frontend.route]]\n  sni = \"*.wild.test\"\n  pool = \"wild\"\n\n{}{}{}",
        pool("alpha", &alpha),
        pool("wild", &wild),
        pool("other", &other)
    );
    let node = Node::start(&seed).await;
    let address = node.frontend(8443);
    tokio::task::block_in_place(|| {
        let cases: [(Option<&str>, &str); 4] = [
            (Some("alpha.test"), "alpha"),
            (Some("api.wild.test"), "wild"),
            (Some("unknown.test"), "other"),
            (None, "other"),
        ];
        for (sni, expected) in cases {
            let hello = client_hello(sni);
            let mut tcp = std::net::TcpStream::connect(address).expect("connect");
            tcp.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            tcp.write_all(&hello).expect("send");
            // The backend greets with its name, then echoes: the
            // ClientHello must arrive byte for byte, undecrypted.
            let mut answer = vec![0u8; expected.len() + 1 + hello.len()];
            tcp.read_exact(&mut answer).expect("answer");
            assert_eq!(
                &answer[..expected.len() + 1],
                format!("{expected}\n").as_bytes(),
                "{sni:?}"
            );
            assert_eq!(
                &answer[expected.len() + 1..],
                &hello[..],
                "{sni:?}: the ClientHello changed"
            );
        }
        // Not TLS at all: the default pool, bytes unchanged.
        let mut tcp = std::net::TcpStream::connect(address).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        tcp.write_all(b"PING\r\n").expect("send");
        let mut answer = [0u8; 12];
        tcp.read_exact(&mut answer).expect("answer");
        assert_eq!(&answer, b"other\nPING\r\n");
    });
}
}

on_both_paths! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_frontend_can_redirect_every_request_to_https() {
    let curl = debian_tool("curl", "curl");
    let backend = HttpBackend::start("site", unique_ip()).await;
    let seed = one_frontend(
        "http",
        8080,
        "round_robin",
        &[backend.address],
        "redirect_https = true",
    );
    let node = Node::start(&seed).await;
    let resolve = format!("site.test:8080:{}", node.ip);
    let redirect = |method: &str| {
        let output = Command::new(&curl)
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{redirect_url}",
                "-X",
                method,
            ])
            .args(["--resolve", &resolve, "http://site.test:8080/a/b?c=1"])
            .output()
            .expect("curl");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let (get, post) = tokio::task::block_in_place(|| (redirect("GET"), redirect("POST")));
    assert_eq!(get, "301 https://site.test/a/b?c=1");
    assert_eq!(post, "308 https://site.test/a/b?c=1");
    assert_eq!(
        backend.count(),
        0,
        "a redirected request reached the backend"
    );
}
}

on_both_paths! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_frontend_terminates_and_relays_the_plain_bytes() {
    let backend = TcpBackend::start("echo", unique_ip()).await;
    let seed = one_frontend("tls", 8443, "round_robin", &[backend.address], "");
    let node = Node::start(&seed).await;
    let ca = TestCa::new();
    let site = ca.site("site", &["db.test"]);
    tokio::task::block_in_place(|| cert(&node.api(), "add", "db", &site, &[]));
    let address = node.frontend(8443);
    tokio::task::block_in_place(|| {
        let mut tls = connect(&ca.ca(), address, Some("db.test"));
        assert_eq!(served(&tls), der(&site.0));
        let mut greeting = [0u8; 5];
        tls.read_exact(&mut greeting).expect("greeting");
        assert_eq!(&greeting, b"echo\n");
        tls.write_all(b"over tls\n").expect("send");
        let mut echoed = [0u8; 9];
        tls.read_exact(&mut echoed).expect("echo");
        assert_eq!(&echoed, b"over tls\n");
    });
    // Key exchange: post-quantum hybrid with a client that offers it
    // (rustls on aws-lc-rs), X25519 with one that does not (ring).
    tokio::task::block_in_place(|| {
        let hybrid = client_config_on(
            rustls::crypto::aws_lc_rs::default_provider(),
            &ca.ca(),
            true,
            false,
        );
        let group = |tls: &Session| tls.conn.negotiated_key_exchange_group().map(|g| g.name());
        let tls = connect_config(hybrid, address, "db.test");
        assert_eq!(group(&tls), Some(rustls::NamedGroup::X25519MLKEM768));
        let tls = connect(&ca.ca(), address, Some("db.test"));
        assert_eq!(group(&tls), Some(rustls::NamedGroup::X25519));
    });
    let relayed = node
        .metric("raftlb_frontend_received_bytes_total{frontend=\"front\"}")
        .unwrap_or_default();
    assert!(
        relayed >= 9.0,
        "the plain bytes were not counted: {relayed}"
    );
}
}
