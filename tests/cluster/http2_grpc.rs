//! HTTP/2 from clients (ALPN `h2`, h2c by prior knowledge) and to
//! backends, and gRPC balanced per call through it: real clients (curl,
//! Python's grpcio) against real servers (grpcio).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::fixture::*;

/// A grpcio server with generic handlers (no generated code): `Unary`
/// answers its name, `Slow` its name after the asked seconds, `Stream`
/// the asked number of messages, `Fail` NOT_FOUND with a trailer; and
/// `grpc.health.v1.Health/Check` answers SERVING.
const GRPC_SERVER: &str = r#"
import sys, time, grpc
from concurrent import futures
name, address = sys.argv[1], sys.argv[2]
def unary(request, context):
    return name.encode()
def slow(request, context):
    time.sleep(float(request.decode()))
    return name.encode()
def stream(request, context):
    for i in range(int(request.decode())):
        yield b"%d" % i
def fail(request, context):
    context.set_trailing_metadata((("x-detail", "kept"),))
    context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
def check(request, context):
    return b"\x08\x01"
echo = grpc.method_handlers_generic_handler("test.Echo", {
    "Unary": grpc.unary_unary_rpc_method_handler(unary),
    "Slow": grpc.unary_unary_rpc_method_handler(slow),
    "Stream": grpc.unary_stream_rpc_method_handler(stream),
    "Fail": grpc.unary_unary_rpc_method_handler(fail),
})
health = grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
    "Check": grpc.unary_unary_rpc_method_handler(check),
})
server = grpc.server(futures.ThreadPoolExecutor(max_workers=64), handlers=[echo, health])
server.add_insecure_port(address)
server.start()
print("ready", flush=True)
server.wait_for_termination()
"#;

/// The client: 300 unary calls on one channel, a stream of 10,000
/// messages, a failing call, then 30 slow calls in flight while the
/// backend with pid argv[2] is killed, then 60 more unary calls. Prints
/// what it saw as JSON.
const GRPC_CLIENT: &str = r#"
import json, os, sys, time, grpc
target, victim = sys.argv[1], int(sys.argv[2])
out = {}
def tally(call, n, **kw):
    seen = {}
    for _ in range(n):
        try:
            name = call(b"", timeout=5, **kw).decode()
        except grpc.RpcError as error:
            name = error.code().name
        seen[name] = seen.get(name, 0) + 1
    return seen
with grpc.insecure_channel(target) as channel:
    unary = channel.unary_unary("/test.Echo/Unary")
    out["unary"] = tally(unary, 300)
    got = list(channel.unary_stream("/test.Echo/Stream")(b"10000", timeout=60))
    out["stream"] = len(got)
    out["stream_in_order"] = got == [b"%d" % i for i in range(10000)]
    try:
        channel.unary_unary("/test.Echo/Fail")(b"", timeout=5)
        out["fail"] = "answered"
    except grpc.RpcError as error:
        out["fail"] = [error.code().name, error.details(), dict(error.trailing_metadata() or ())]
    slow = channel.unary_unary("/test.Echo/Slow")
    calls = [slow.future(b"2", timeout=20) for _ in range(30)]
    time.sleep(0.7)
    os.kill(victim, 9)
    in_flight = {}
    for call in calls:
        try:
            name = call.result().decode()
        except grpc.RpcError as error:
            name = error.code().name
        in_flight[name] = in_flight.get(name, 0) + 1
    out["in_flight"] = in_flight
    out["after"] = tally(unary, 60)
print(json.dumps(out))
"#;

/// A grpcio server process, killed when dropped.
struct GrpcServer {
    address: SocketAddr,
    child: Child,
}

impl GrpcServer {
    fn start(python: &Path, name: &str) -> GrpcServer {
        let address = SocketAddr::new(unique_ip(), free_port());
        let mut child = Command::new(python)
            .args(["-c", GRPC_SERVER, name, &address.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3");
        let mut ready = String::new();
        let stdout = child.stdout.as_mut().expect("stdout");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut ready)
            .expect("server output");
        assert_eq!(ready.trim(), "ready", "the grpcio server did not start");
        GrpcServer { address, child }
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free on every test address (bound on the wildcard, then let go).
fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_are_balanced_per_call_with_trailers_and_unavailable_only_in_flight() {
    let python = debian_python_module("grpc", "python3-grpcio");
    let servers: Vec<GrpcServer> = ["b1", "b2", "b3"]
        .iter()
        .map(|name| GrpcServer::start(&python, name))
        .collect();
    let mut seed = String::from(
        "[[frontend]]\nname = \"grpc\"\nport = 8080\nprotocol = \"http\"\npool = \"grpc\"\nh2c = true\n\n\
         [[pool]]\nname = \"grpc\"\nprotocol = \"h2c\"\n  [pool.health]\n  check = \"grpc\"\n  interval_ms = 300\n  timeout_ms = 250\n",
    );
    for server in &servers {
        seed.push_str(&format!(
            "  [[pool.backend]]\n  address = \"{}\"\n",
            server.address
        ));
    }
    let node = Node::start(&seed).await;
    assert!(
        wait_until(Duration::from_secs(10), || {
            node.status()["backends"]
                .as_array()
                .is_some_and(|b| b.len() == 3 && b.iter().all(|b| b["health"] == "up"))
        })
        .await,
        "the gRPC health checks did not pass: {}",
        node.status()["backends"]
    );
    let victim = servers[0].child.id();
    let output = tokio::task::block_in_place(|| {
        Command::new(&python)
            .args(["-c", GRPC_CLIENT, &node.frontend(8080).to_string()])
            .arg(victim.to_string())
            .output()
            .expect("python3")
    });
    let out = String::from_utf8_lossy(&output.stdout);
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{out}{err}");
    let seen: serde_json::Value = serde_json::from_str(out.trim()).expect("client JSON");
    println!("grpcio through raftlb: {seen}");
    // Per call, not per connection: one channel spread over the three.
    for name in ["b1", "b2", "b3"] {
        let calls = seen["unary"][name].as_u64().unwrap_or(0);
        assert!(
            (90..=110).contains(&calls),
            "{name}: {calls} of 300: {seen}"
        );
    }
    assert_eq!(seen["stream"], 10_000, "{seen}");
    assert_eq!(seen["stream_in_order"], true, "{seen}");
    // The backend's status, message and trailer arrive as it sent them.
    assert_eq!(seen["fail"][0], "NOT_FOUND", "{seen}");
    assert_eq!(seen["fail"][1], "no such thing", "{seen}");
    assert_eq!(seen["fail"][2]["x-detail"], "kept", "{seen}");
    // The killed backend's calls in flight fail UNAVAILABLE; the others
    // finish, and every later call goes to the two left.
    let in_flight = &seen["in_flight"];
    let unavailable = in_flight["UNAVAILABLE"].as_u64().unwrap_or(0);
    let finished = in_flight["b2"].as_u64().unwrap_or(0) + in_flight["b3"].as_u64().unwrap_or(0);
    assert!((1..=15).contains(&unavailable), "{seen}");
    assert_eq!(unavailable + finished, 30, "{seen}");
    let after = &seen["after"];
    assert_eq!(
        after["b2"].as_u64().unwrap_or(0) + after["b3"].as_u64().unwrap_or(0),
        60,
        "{seen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_timeout_bounds_the_wait_for_a_backend_that_ignores_it() {
    // An h2c backend that answers every call after 2 s, whatever its
    // deadline (grpcio servers end late calls themselves, which would
    // hide the balancer's part).
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(unique_ip(), 0))
        .await
        .expect("bind");
    let backend = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper::service::service_fn(|_request| async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let response = hyper::Response::builder()
                    .header("content-type", "application/grpc")
                    .header("grpc-status", "0")
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .expect("response");
                Ok::<_, std::convert::Infallible>(response)
            });
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    let seed = format!(
        "[[frontend]]\nname = \"grpc\"\nport = 8080\nprotocol = \"http\"\npool = \"grpc\"\nh2c = true\n\n\
         [[pool]]\nname = \"grpc\"\nprotocol = \"h2c\"\n  [[pool.backend]]\n  address = \"{backend}\"\n"
    );
    let node = Node::start(&seed).await;
    // `grpc-timeout: 300m`: the balancer ends the call, DEADLINE_EXCEEDED.
    let started = std::time::Instant::now();
    let (status, message) = call_with_deadline(node.frontend(8080), "300m").await;
    let took = started.elapsed();
    assert_eq!(status.as_deref(), Some("4"), "{message:?}");
    assert!(message.is_some_and(|m| m.starts_with("raftlb")));
    assert!(took < Duration::from_millis(1_500), "took {took:?}");
    // Without it, the frontend's response timeout applies and the answer
    // comes through.
    let (status, _) = call_with_deadline(node.frontend(8080), "10S").await;
    assert_eq!(status.as_deref(), Some("0"));
}

/// One `Slow` call (2 s) over HTTP/2 with `grpc-timeout: deadline`, sent
/// by hand (no client-side deadline of its own): the answer's
/// `grpc-status` and `grpc-message`.
async fn call_with_deadline(
    frontend: SocketAddr,
    deadline: &str,
) -> (Option<String>, Option<String>) {
    use http_body_util::BodyExt;
    let stream = tokio::net::TcpStream::connect(frontend)
        .await
        .expect("connect");
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(connection);
    // One uncompressed message: the seconds to sleep, "2".
    let message = bytes::Bytes::from_static(&[0, 0, 0, 0, 1, b'2']);
    let request = hyper::Request::post(format!("http://{frontend}/test.Echo/Slow"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", deadline)
        .body(http_body_util::Full::new(message))
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    let text = |v: &hyper::header::HeaderValue| v.to_str().unwrap_or_default().to_string();
    let head = response.headers().clone();
    let collected = response.into_body().collect().await.expect("body");
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let field = |name: &str| trailers.get(name).or(head.get(name)).map(text);
    (field("grpc-status"), field("grpc-message"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_speaks_http2_by_alpn_and_by_prior_knowledge() {
    let curl = debian_tool("curl", "curl");
    let backend = HttpBackend::start("site", unique_ip()).await;
    let ca = TestCa::new();
    let (cert, key) = ca.site("site", &["site.test"]);
    let seed = format!(
        "[[frontend]]\nname = \"tls\"\nport = 8443\nprotocol = \"https\"\npool = \"pool\"\n\n\
         [[frontend]]\nname = \"clear\"\nport = 8080\nprotocol = \"http\"\npool = \"pool\"\nh2c = true\n\n\
         [[frontend]]\nname = \"h1only\"\nport = 8081\nprotocol = \"http\"\npool = \"pool\"\n\n\
         [[pool]]\nname = \"pool\"\n  [[pool.backend]]\n  address = \"{}\"\n\n\
         [[certificate]]\nname = \"site\"\ncert = \"{}\"\nkey = \"{}\"\n",
        backend.address,
        cert.display(),
        key.display()
    );
    let node = Node::start(&seed).await;
    let ip = node.frontend(8443).ip();
    let fetch = |args: &[&str], url: &str| {
        let output = Command::new(&curl)
            .args(["-s", "-m", "5", "-w", "\n%{http_version}"])
            .args(args)
            .arg(url)
            .output()
            .expect("curl");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let resolve = format!("site.test:8443:{ip}");
    let ca_file = ca.ca();
    let tls = tokio::task::block_in_place(|| {
        fetch(
            &[
                "--http2",
                "--cacert",
                ca_file.to_str().expect("path"),
                "--resolve",
                &resolve,
            ],
            "https://site.test:8443/over-tls",
        )
    });
    assert!(tls.starts_with("site GET /over-tls"), "{tls}");
    assert!(tls.ends_with("\n2"), "ALPN did not choose h2: {tls}");
    let clear = tokio::task::block_in_place(|| {
        fetch(
            &["--http2-prior-knowledge"],
            &format!("http://{ip}:8080/in-clear"),
        )
    });
    assert!(clear.starts_with("site GET /in-clear"), "{clear}");
    assert!(clear.ends_with("\n2"), "h2c not spoken: {clear}");
    // HTTP/1.1 still works on the h2c frontend, and the backend sees the
    // authority as Host either way.
    let old =
        tokio::task::block_in_place(|| fetch(&["--http1.1"], &format!("http://{ip}:8080/old")));
    assert!(old.ends_with("\n1.1"), "{old}");
    let seen = backend.requests();
    assert!(
        seen.iter()
            .any(|r| r.path == "/in-clear" && r.headers["host"] == format!("{ip}:8080")),
        "{seen:?}"
    );
    // A frontend without h2c does not take the preface as a request.
    let refused = tokio::task::block_in_place(|| {
        fetch(
            &["--http2-prior-knowledge"],
            &format!("http://{ip}:8081/nope"),
        )
    });
    assert!(!refused.contains("site GET /nope"), "{refused}");
    assert!(
        node.metric("raftlb_frontend_requests_total{frontend=\"clear\"}") >= Some(2.0),
        "h2 requests not counted"
    );
}
