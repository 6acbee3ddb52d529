//! Mutual TLS with real handshakes: certificates from `raftlb certs init`,
//! a three-node cluster that admits its own nodes and clients and refuses
//! everyone else, roles, and a certificate rotated on SIGHUP.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use raftlb::proto::v1::RaftPayload;
use raftlb::proto::v1::raft_service_client::RaftServiceClient;
use raftlb::tls::TlsFiles;

use crate::fixture::*;

/// `raftlb certs init --out DIR` with `args`, as an operator runs it.
fn certs_init(out: &Path, args: &[String]) {
    let output = Command::new(env!("CARGO_BIN_EXE_raftlb"))
        .args(["certs", "init", "--out"])
        .arg(out)
        .args(args)
        .output()
        .expect("raftlb certs init");
    assert!(
        output.status.success(),
        "certs init: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `--ca CA --cert DIR/NAME.pem --key DIR/NAME-key.pem`.
fn tls_args(ca: &Path, dir: &Path, name: &str) -> Vec<String> {
    vec![
        "--ca".into(),
        ca.display().to_string(),
        "--cert".into(),
        dir.join(format!("{name}.pem")).display().to_string(),
        "--key".into(),
        dir.join(format!("{name}-key.pem")).display().to_string(),
    ]
}

fn ctl_with(endpoints: &str, tls: &[String], args: &[&str]) -> (i32, String, String) {
    let mut all: Vec<&str> = tls.iter().map(String::as_str).collect();
    all.extend_from_slice(args);
    ctl(endpoints, &all)
}

/// Sends a Raft vote request naming `candidate` to `peer`'s peer port,
/// presenting `files`' certificate.
async fn vote_as(files: &TlsFiles, peer: SocketAddr, candidate: u64) -> Result<(), tonic::Status> {
    let settings = raftlb::tls::client_config(files).expect("client config");
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{peer}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .connect_with_connector(raftlb::tls::transport::connector(
            move || settings.clone(),
            Default::default(),
        ))
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let request = openraft::raft::VoteRequest::<u64>::new(openraft::Vote::new(99, candidate), None);
    let json = serde_json::to_vec(&request).expect("json");
    RaftServiceClient::new(channel)
        .vote(RaftPayload { json })
        .await
        .map(|_| ())
}

/// The certificate a TLS server at `address` presents now.
async fn served_certificate(files: &TlsFiles, address: SocketAddr) -> Option<Vec<u8>> {
    let settings = raftlb::tls::client_config(files).ok()?;
    let tcp = tokio::net::TcpStream::connect(address).await.ok()?;
    let name = rustls::pki_types::ServerName::IpAddress(address.ip().into());
    let tls = tokio_rustls::TlsConnector::from(settings)
        .connect(name, tcp)
        .await
        .ok()?;
    let (_, session) = tls.get_ref();
    Some(session.peer_certificates()?.first()?.to_vec())
}

fn pem_der(path: &Path) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_file(path)
        .expect("certificate")
        .to_vec()
}

/// `raftlb ctl watch`, its lines read on a thread; killed on drop.
struct Watch {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
}

impl Watch {
    fn start(endpoints: &str, tls: &[String]) -> Watch {
        let mut child = Command::new(env!("CARGO_BIN_EXE_raftlb"))
            .args(["ctl", "--endpoint", endpoints])
            .args(tls)
            // From version 1: the add above, then what comes.
            .args(["watch", "--from-version", "1"])
            .env("XDG_CONFIG_HOME", "/nonexistent/raftlb-test")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("ctl watch");
        let stdout = child.stdout.take().expect("stdout");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    return;
                }
            }
        });
        Watch { child, lines }
    }

    /// Waits up to 10 s for a line containing `text`.
    fn wait_for(&self, text: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(text) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `NAME.pem` and `NAME-key.pem` into `certs`: an admin client
/// certificate from its CA that expired yesterday.
fn expired_client(certs: &Path, name: &str) {
    use std::os::unix::fs::PermissionsExt;
    let read = |file: &str| std::fs::read_to_string(certs.join(file)).expect(file);
    let ca_key = rcgen::KeyPair::from_pem(&read("ca-key.pem")).expect("CA key");
    let issuer = rcgen::Issuer::from_ca_cert_pem(&read("ca.pem"), ca_key).expect("CA");
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationalUnitName, "admin");
    params.subject_alt_names = vec![rcgen::SanType::URI(
        format!("raftlb://client/{name}").try_into().expect("uri"),
    )];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(30);
    params.not_after = now - time::Duration::days(1);
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &issuer).expect("sign");
    std::fs::write(certs.join(format!("{name}.pem")), cert.pem()).expect("write");
    let key_file = certs.join(format!("{name}-key.pem"));
    std::fs::write(&key_file, key.serialize_pem()).expect("write");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "raftlb-{name}-{}-{}",
        std::process::id(),
        unique_ip()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_the_cluster_and_refuses_everyone_else() {
    let backend = HttpBackend::start("a", unique_ip()).await;
    let seed = one_frontend("http", 8080, "round_robin", &[backend.address], "");
    let (certs, stranger) = (temp_dir("certs"), temp_dir("stranger-certs"));
    let options = NodeOptions {
        tls: Some(certs.clone()),
        ..Default::default()
    };
    let mut cluster = Cluster::create(3, &seed, &options);
    let mut args: Vec<String> = cluster
        .nodes
        .iter()
        .flat_map(|n| ["--node".to_string(), format!("{}={}", n.id, n.ip)])
        .collect();
    args.extend(["--client", "admin", "--client", "viewer:read"].map(String::from));
    certs_init(&certs, &args);
    let ip3 = cluster.nodes[2].ip;
    certs_init(
        &stranger,
        &[
            "--node".into(),
            format!("3={ip3}"),
            "--client".into(),
            "admin".into(),
        ],
    );
    for node in &mut cluster.nodes {
        node.launch();
    }
    for node in &cluster.nodes {
        node.wait_ready().await;
    }
    cluster.wait_leader(Duration::from_secs(10)).await;
    let endpoints = cluster.endpoints();
    let ca = certs.join("ca.pem");
    let (admin, viewer) = (
        tls_args(&ca, &certs, "admin"),
        tls_args(&ca, &certs, "viewer"),
    );

    // The admin reads and writes; the history names who wrote.
    let (code, out, err) = ctl_with(&endpoints, &admin, &["status"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("leader node"), "{out}");
    // Each node's certificate, a year from now: in ctl status, /status and
    // the metrics; no warning.
    assert!(out.contains(" 364 d") || out.contains(" 365 d"), "{out}");
    assert!(!out.contains("WARNING"), "{out}");
    let year_ms = 365 * 24 * 3600 * 1000;
    let expires = cluster.nodes[1].status()["cert_expires_ms"]
        .as_u64()
        .expect("cert_expires_ms");
    assert!(expires > raftlb::control::unix_millis() + year_ms - 2 * 24 * 3600 * 1000);
    let metric = cluster.nodes[1]
        .metric("raftlb_tls_certificate_expiry_timestamp_seconds")
        .expect("expiry metric");
    assert_eq!(metric as u64, expires / 1000);
    let (code, out, err) = ctl_with(
        &endpoints,
        &admin,
        &["backend", "add", "pool", "127.0.0.1:9"],
    );
    assert_eq!(code, 0, "{out}{err}");
    let (_, history, _) = ctl_with(&endpoints, &admin, &["history"]);
    assert!(history.contains("admin (admin) from 127."), "{history}");

    // Without a certificate, or with one from another CA: refused, saying why.
    let (code, out, err) = ctl(&endpoints, &["status"]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(err.contains("mutual TLS"), "{err}");
    let (code, out, err) = ctl_with(&endpoints, &tls_args(&ca, &stranger, "admin"), &["status"]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        err.contains("did not take this client certificate"),
        "{err}"
    );
    // An admin certificate from the cluster's CA that has expired.
    expired_client(&certs, "retired");
    let (code, out, err) = ctl_with(&endpoints, &tls_args(&ca, &certs, "retired"), &["status"]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        err.contains("did not take this client certificate"),
        "{err}"
    );
    let logged = |node: &Node| {
        node.log()
            .lines()
            .any(|l| l.contains("TLS handshake refused") && l.to_lowercase().contains("expired"))
    };
    assert!(
        wait_until(Duration::from_secs(5), || cluster.nodes.iter().any(logged)).await,
        "no node logged the expired certificate: {}",
        cluster.nodes[0].log()
    );

    // A read client reads and watches but cannot write.
    let (code, out, err) = ctl_with(&endpoints, &viewer, &["status"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = ctl_with(
        &endpoints,
        &viewer,
        &["backend", "set-weight", "pool", "127.0.0.1:9", "3"],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("needs the role admin; viewer (read) has read"),
        "{err}"
    );
    let watch = Watch::start(&endpoints, &viewer);
    assert!(
        watch.wait_for("config version 2: +1 backend (by admin (admin) from"),
        "the read client's watch did not print the admin's change"
    );

    // The peer port: node 2 cannot speak for node 3, a client is no node,
    // and another CA's node 3 is refused at the handshake.
    let node = |dir: &Path, id: u64| TlsFiles {
        ca: ca.clone(),
        cert: dir.join(format!("node{id}.pem")),
        key: dir.join(format!("node{id}-key.pem")),
    };
    let peer = SocketAddr::new(cluster.nodes[0].ip, 7100);
    let denied = vote_as(&node(&certs, 2), peer, 3)
        .await
        .expect_err("node 2 as node 3");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    assert!(
        denied
            .message()
            .contains("names node 3 as its sender, but comes from node 2"),
        "{denied:?}"
    );
    let client = TlsFiles {
        ca: ca.clone(),
        cert: certs.join("admin.pem"),
        key: certs.join("admin-key.pem"),
    };
    let denied = vote_as(&client, peer, 1)
        .await
        .expect_err("a client on the peer port");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    assert!(
        vote_as(&node(&stranger, 3), peer, 3).await.is_err(),
        "another CA's node was heard"
    );
    assert!(
        wait_until(Duration::from_secs(5), || cluster.nodes[0]
            .log()
            .contains("TLS handshake refused"))
        .await,
        "node 1 did not log the refused handshake"
    );

    // Rotation: a new certificate for node 1, then SIGHUP; new handshakes
    // get it, the read client's open watch stream stays and sees the next
    // change.
    let api = SocketAddr::new(cluster.nodes[0].ip, 7200);
    let old = pem_der(&certs.join("node1.pem"));
    assert_eq!(served_certificate(&client, api).await, Some(old.clone()));
    std::fs::remove_file(certs.join("node1.pem")).expect("remove");
    certs_init(
        &certs,
        &["--node".into(), format!("1={}", cluster.nodes[0].ip)],
    );
    let new = pem_der(&certs.join("node1.pem"));
    assert_ne!(new, old);
    cluster.nodes[0].signal("HUP");
    let mut served = None;
    for _ in 0..100 {
        served = served_certificate(&client, api).await;
        if served.as_ref() == Some(&new) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(served, Some(new), "node 1 still serves its old certificate");
    let (code, out, err) = ctl_with(
        &endpoints,
        &admin,
        &[
            "backend",
            "set-weight",
            "pool",
            &backend.address.to_string(),
            "7",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let version = out
        .split("configuration version ")
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .expect("a version");
    assert!(
        watch.wait_for(&format!("config version {version}:")),
        "the watch stream did not survive the rotation"
    );
    drop(watch);

    // A rolling CA change: with both CAs in the bundle, a client of the new
    // CA is taken too.
    let bundle = [certs.join("ca.pem"), stranger.join("ca.pem")]
        .iter()
        .map(|f| std::fs::read_to_string(f).expect("ca"))
        .collect::<String>();
    std::fs::write(certs.join("ca.pem"), bundle).expect("bundle");
    for node in &cluster.nodes {
        node.signal("HUP");
    }
    let newcomer = tls_args(&ca, &stranger, "admin");
    let mut answered = false;
    for _ in 0..50 {
        let endpoints = endpoints.clone();
        let newcomer = newcomer.clone();
        let (code, _, _) =
            tokio::task::spawn_blocking(move || ctl_with(&endpoints, &newcomer, &["status"]))
                .await
                .expect("ctl");
        if code == 0 {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        answered,
        "a client of the second CA in the bundle was refused"
    );
    drop(cluster);
    let _ = std::fs::remove_dir_all(&certs);
    let _ = std::fs::remove_dir_all(&stranger);
}

/// Calls the control API from Python's grpcio (no generated code: the
/// messages are written as protobuf bytes): `Status` and a `SetWeight`
/// with the client certificate, and `Status` without one.
const GRPCIO_CLIENT: &str = r#"
import sys, grpc
target, ca, cert, key, pool, address = sys.argv[1:7]
read = lambda path: open(path, "rb").read()
def call(creds, method, body):
    with grpc.secure_channel(target, creds) as channel:
        return channel.unary_unary("/raftlb.v1.ControlService/" + method)(body, timeout=10)
mutual = grpc.ssl_channel_credentials(read(ca), read(key), read(cert))
status = call(mutual, "Status", b"")
print("status: %d bytes" % len(status))
field = lambda number, text: bytes([number << 3 | 2, len(text)]) + text.encode()
weight = field(1, pool) + field(2, address) + bytes([3 << 3, 9])
call(mutual, "SetWeight", weight)
print("set-weight: done")
try:
    call(grpc.ssl_channel_credentials(read(ca)), "Status", b"")
    print("without a certificate: answered")
except grpc.RpcError as error:
    print("without a certificate: refused,", error.code())
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_grpcio_with_a_client_certificate_reads_and_writes() {
    let python = debian_python_module("grpc", "python3-grpcio");
    let backend = HttpBackend::start("a", unique_ip()).await;
    let seed = one_frontend("http", 8080, "round_robin", &[backend.address], "");
    let certs = temp_dir("grpcio-certs");
    let options = NodeOptions {
        tls: Some(certs.clone()),
        ..Default::default()
    };
    let mut cluster = Cluster::create(1, &seed, &options);
    let ip = cluster.nodes[0].ip;
    certs_init(
        &certs,
        &[
            "--node".into(),
            format!("1={ip}"),
            "--client".into(),
            "grafana".into(),
        ],
    );
    cluster.nodes[0].launch();
    cluster.nodes[0].wait_ready().await;
    let output = Command::new(python)
        .arg("-c")
        .arg(GRPCIO_CLIENT)
        .arg(cluster.nodes[0].api())
        .args(["ca.pem", "grafana.pem", "grafana-key.pem"].map(|f| certs.join(f)))
        .args(["pool", &backend.address.to_string()])
        .output()
        .expect("python3");
    let out = String::from_utf8_lossy(&output.stdout);
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{out}{err}");
    println!("{out}");
    assert!(out.contains("set-weight: done"), "{out}");
    assert!(
        out.contains("without a certificate: refused, StatusCode.UNAVAILABLE"),
        "{out}"
    );
    let weight = cluster.nodes[0].status()["backends"][0]["weight"].as_u64();
    let (_, history, _) = ctl_with(
        &cluster.endpoints(),
        &tls_args(&certs.join("ca.pem"), &certs, "grafana"),
        &["history"],
    );
    assert!(history.contains("grafana (admin) from 127."), "{history}");
    drop(cluster);
    let _ = std::fs::remove_dir_all(&certs);
    assert_eq!(weight, Some(9));
}

/// `curl` against the admin port over HTTPS: the status code.
fn curl_admin(curl: &Path, url: &str, args: &[String]) -> String {
    let output = Command::new(curl)
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "5"])
        .args(args)
        .arg(url)
        .output()
        .expect("curl");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_port_takes_https_a_token_or_a_certificate_and_bounds_its_connections() {
    let curl = debian_tool("curl", "curl");
    let backend = HttpBackend::start("a", unique_ip()).await;
    let seed = one_frontend("http", 8080, "round_robin", &[backend.address], "");
    let certs = temp_dir("admin-certs");
    let options = NodeOptions {
        tls: Some(certs.clone()),
        sections: "[admin]\ntls = true\ntoken_file = \"admin-token\"\nmax_connections = 2\n".into(),
        ..Default::default()
    };
    let mut cluster = Cluster::create(1, &seed, &options);
    let node = &mut cluster.nodes[0];
    certs_init(
        &certs,
        &[
            "--node".into(),
            format!("1={}", node.ip),
            "--client".into(),
            "prometheus:read".into(),
        ],
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let token = node.dir.join("admin-token");
        std::fs::write(&token, "scrape-secret\n").expect("token");
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    node.launch();
    let base = format!("https://{}", node.admin);
    let ca = vec![
        "--cacert".to_string(),
        certs.join("ca.pem").display().to_string(),
    ];
    assert!(
        wait_until(Duration::from_secs(10), || curl_admin(
            &curl,
            &format!("{base}/readyz"),
            &ca
        ) == "200")
        .await,
        "/readyz never answered 200 over HTTPS without a token"
    );
    assert_eq!(curl_admin(&curl, &format!("{base}/metrics"), &ca), "401");
    let mut bearer = ca.clone();
    bearer.extend(["-H".into(), "Authorization: Bearer scrape-secret".into()]);
    assert_eq!(
        curl_admin(&curl, &format!("{base}/metrics"), &bearer),
        "200"
    );
    let mut basic = ca.clone();
    basic.extend(["-u".into(), "me:scrape-secret".into()]);
    assert_eq!(curl_admin(&curl, &format!("{base}/status"), &basic), "200");
    let mut certified = ca.clone();
    certified.extend([
        "--cert".into(),
        certs.join("prometheus.pem").display().to_string(),
        "--key".into(),
        certs.join("prometheus-key.pem").display().to_string(),
    ]);
    assert_eq!(
        curl_admin(&curl, &format!("{base}/status/live"), &certified),
        "200"
    );
    // Plain HTTP gets no answer.
    assert_ne!(
        curl_admin(&curl, &format!("http://{}/readyz", node.admin), &[]),
        "200"
    );

    // Two connections that never say hello hold both slots; a third is
    // closed at once.
    let held: Vec<std::net::TcpStream> = (0..2)
        .map(|_| std::net::TcpStream::connect(node.admin).expect("connect"))
        .collect();
    // Once the node has taken both (a busy machine may take a while), a
    // further connection is closed at once; an earlier probe may still
    // get a slot, and is dropped.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let read = loop {
        let mut third = std::net::TcpStream::connect(node.admin).expect("connect");
        third
            .set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        let mut byte = [0u8; 1];
        let read = std::io::Read::read(&mut third, &mut byte);
        if matches!(read, Ok(0)) || std::time::Instant::now() > deadline {
            break read;
        }
    };
    assert!(
        matches!(read, Ok(0)),
        "the third connection was not closed: {read:?}"
    );
    drop(held);
    assert!(
        !node.log().contains("scrape-secret"),
        "the admin token was logged"
    );
    assert!(
        wait_until(Duration::from_secs(5), || curl_admin(
            &curl,
            &format!("{base}/readyz"),
            &ca
        ) == "200")
        .await,
        "the admin port did not answer again once the slots were free"
    );
    drop(cluster);
    let _ = std::fs::remove_dir_all(&certs);
}
