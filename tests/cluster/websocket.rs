//! WebSocket and `Upgrade` through an HTTP frontend: Python's `websockets`
//! on both ends, and a raw backend to see what crosses before the `101`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::fixture::*;

/// An echo server: greets with "hello", answers each message with
/// "echo:" and it; refuses the upgrade on /refuse with a 403 of its own.
const WS_SERVER: &str = r#"
import asyncio, logging, sys, websockets
from http import HTTPStatus
# Closed tunnels (idle, shutdown) are what the test makes: not errors.
logging.disable(logging.CRITICAL)
host, port = sys.argv[1], int(sys.argv[2])
async def echo(socket, *_):
    await socket.send("hello")
    async for message in socket:
        await socket.send("echo:" + message)
def refuse(first, second):
    # websockets before 13: (path, headers) and a tuple back; from 13 on:
    # (connection, request) and connection.respond().
    if isinstance(first, str):
        if first == "/refuse":
            return (HTTPStatus.FORBIDDEN, [("X-Why", "refused")], b"no upgrade here\n")
        return None
    if second.path == "/refuse":
        response = first.respond(HTTPStatus.FORBIDDEN, "no upgrade here\n")
        response.headers["X-Why"] = "refused"
        return response
async def main():
    async with websockets.serve(echo, host, port, process_request=refuse):
        print("ready", flush=True)
        await asyncio.Future()
asyncio.run(main())
"#;

/// The client, by mode: `talk` (messages both ways, then the refused
/// path), `hold` (prints "open", then waits for the close and prints how
/// long it took and its code).
const WS_CLIENT: &str = r#"
import asyncio, json, sys, time, websockets
base, mode = sys.argv[1], sys.argv[2]
async def talk():
    out = {}
    async with websockets.connect(base + "/chat") as socket:
        out["greeting"] = await socket.recv()
        echoes = []
        for word in ["one", "two", "x" * 100000]:
            await socket.send(word)
            echoes.append(await socket.recv())
        out["echoes"] = [e[:9] for e in echoes]
        out["long_echo_length"] = len(echoes[2])
    try:
        async with websockets.connect(base + "/refuse"):
            out["refused"] = "upgraded"
    except Exception as error:
        response = getattr(error, "response", None)
        out["refused"] = getattr(error, "status_code", None) or getattr(response, "status_code", None)
        body = getattr(response, "body", b"") or b""
        out["refused_body"] = body.decode()
        headers = getattr(response, "headers", None) or getattr(error, "headers", {})
        out["refused_why"] = headers.get("X-Why") if headers else None
    print(json.dumps(out), flush=True)
async def hold():
    async with websockets.connect(base + "/chat", ping_interval=None) as socket:
        await socket.recv()
        print("open", flush=True)
        started = time.monotonic()
        try:
            while True:
                await asyncio.wait_for(socket.recv(), timeout=30)
        except websockets.exceptions.ConnectionClosed as closed:
            print(json.dumps({"after_ms": int((time.monotonic() - started) * 1000),
                              "code": closed.code}), flush=True)
asyncio.run(talk() if mode == "talk" else hold())
"#;

/// A `websockets` echo server process, killed when dropped.
struct WsServer {
    address: SocketAddr,
    child: Child,
}

impl WsServer {
    fn start(python: &Path) -> WsServer {
        let listener = std::net::TcpListener::bind(SocketAddr::new(unique_ip(), 0)).expect("bind");
        let address = listener.local_addr().expect("address");
        drop(listener);
        let mut child = Command::new(python)
            .args(["-c", WS_SERVER])
            .arg(address.ip().to_string())
            .arg(address.port().to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3");
        let mut ready = String::new();
        BufReader::new(child.stdout.as_mut().expect("stdout"))
            .read_line(&mut ready)
            .expect("server output");
        assert_eq!(ready.trim(), "ready", "the websockets server did not start");
        WsServer { address, child }
    }
}

impl Drop for WsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client(python: &Path, base: &str, mode: &str) -> Child {
    Command::new(python)
        .args(["-c", WS_CLIENT, base, mode])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3")
}

/// The next line the client prints.
fn line_of(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().expect("stdout"))
        .read_line(&mut line)
        .expect("client output");
    line
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_pass_both_ways_and_refusals_come_back_unchanged() {
    let python = debian_python_module("websockets", "python3-websockets");
    let server = WsServer::start(&python);
    let seed = one_frontend(
        "http",
        8080,
        "least_connections",
        &[server.address],
        "tunnel_timeout_ms = 1500",
    );
    let mut node = Node::start(&seed).await;
    let base = format!("ws://{}", node.frontend(8080));
    let talked = tokio::task::block_in_place(|| {
        let mut talk = client(&python, &base, "talk");
        let line = line_of(&mut talk);
        let _ = talk.wait();
        line
    });
    let seen: serde_json::Value = serde_json::from_str(talked.trim()).expect("client JSON");
    assert_eq!(seen["greeting"], "hello", "{seen}");
    assert_eq!(
        seen["echoes"],
        serde_json::json!(["echo:one", "echo:two", "echo:xxxx"]),
        "{seen}"
    );
    assert_eq!(seen["long_echo_length"], 100_005, "{seen}");
    assert_eq!(seen["refused"], 403, "{seen}");
    assert_eq!(seen["refused_why"], "refused", "{seen}");

    // Idle for the tunnel timeout: closed, and counted while open.
    let (opened, closed) = tokio::task::block_in_place(|| {
        let mut hold = client(&python, &base, "hold");
        assert_eq!(line_of(&mut hold).trim(), "open");
        let opened = (
            node.metric("raftlb_frontend_tunnels{frontend=\"front\"}"),
            node.metric(&format!(
                "raftlb_backend_active{{pool=\"pool\",backend=\"{}\"}}",
                server.address
            )),
        );
        let closed = line_of(&mut hold);
        let _ = hold.wait();
        (opened, closed)
    });
    assert_eq!(opened, (Some(1.0), Some(1.0)), "tunnel not counted");
    let closed: serde_json::Value = serde_json::from_str(closed.trim()).expect("close JSON");
    let after = closed["after_ms"].as_u64().expect("after_ms");
    assert!(
        (1_400..5_000).contains(&after),
        "closed after {after} ms: {closed}"
    );
    assert!(
        wait_until(Duration::from_secs(5), || node
            .metric("raftlb_frontend_tunnels{frontend=\"front\"}")
            == Some(0.0))
        .await,
        "the tunnel stayed counted"
    );

    // SIGTERM: the open tunnel is closed (the client sees it) and the
    // node exits cleanly, well within its grace period.
    let mut hold = client(&python, &base, "hold");
    tokio::task::block_in_place(|| assert_eq!(line_of(&mut hold).trim(), "open"));
    node.signal("TERM");
    let closed = tokio::task::block_in_place(|| line_of(&mut hold));
    let _ = hold.wait();
    let closed: serde_json::Value = serde_json::from_str(closed.trim()).expect("close JSON");
    assert!(closed["after_ms"].as_u64() < Some(1_400), "{closed}");
    assert_eq!(node.wait_exit(Duration::from_secs(10)).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_byte_crosses_before_the_backends_101() {
    // A raw backend: reads the request head, records what else arrives in
    // the next 300 ms, then switches protocols and echoes.
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(unique_ip(), 0))
        .await
        .expect("bind");
    let backend = listener.local_addr().expect("address");
    let (early_tx, early_rx) = tokio::sync::oneshot::channel::<(String, Vec<u8>)>();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed before the head");
            seen.extend_from_slice(&buf[..n]);
        }
        let end = seen
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("head")
            + 4;
        let head = String::from_utf8_lossy(&seen[..end]).into_owned();
        let mut early = seen[end..].to_vec();
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buf)).await
        {
            early.extend_from_slice(&buf[..n]);
        }
        let _ = early_tx.send((head, early));
        stream
            .write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: raw\r\nConnection: Upgrade\r\n\r\n",
            )
            .await
            .expect("101");
        // Echo what comes after the switch.
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if stream.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    // A sticky pool: the 101 pins the client like any answer.
    let seed = format!(
        "{}  [pool.sticky]\n  cookie = \"SRV\"\n",
        one_frontend("http", 8080, "round_robin", &[backend], "")
    );
    let node = Node::start(&seed).await;
    let mut client = tokio::net::TcpStream::connect(node.frontend(8080))
        .await
        .expect("connect");
    client
        .write_all(
            b"GET /raw HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: raw\r\n\r\nEARLY",
        )
        .await
        .expect("write");
    let (head, early) = early_rx.await.expect("backend saw the request");
    assert!(head.starts_with("GET /raw HTTP/1.1\r\n"), "{head}");
    assert!(head.to_ascii_lowercase().contains("upgrade: raw"), "{head}");
    assert!(
        early.is_empty(),
        "bytes crossed before the 101: {:?}",
        String::from_utf8_lossy(&early)
    );
    // After the 101 the two are joined: the early bytes arrive then, and
    // what the client sends next comes back.
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf))
            .await
            .expect("answer in time")
            .expect("read");
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("\r\nset-cookie: srv="),
        "{text}"
    );
    client.write_all(b"-later").await.expect("write");
    let end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("head")
        + 4;
    let mut echoed = answer[end..].to_vec();
    while echoed.len() < b"EARLY-later".len() {
        let n = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf))
            .await
            .expect("echo in time")
            .expect("read");
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&echoed));
        echoed.extend_from_slice(&buf[..n]);
    }
    assert_eq!(String::from_utf8_lossy(&echoed), "EARLY-later");
}
