//! Request smuggling and framing cases that broke other proxies, sent as
//! raw bytes through a node: each named for the case it guards against.
//! Most run on both HTTP/1.1 paths (the relay and hyper).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::fixture::*;

/// A frontend on 8080 over `backend` with a route answering `/blocked/`
/// alone (403).
fn guarded(backend: std::net::SocketAddr) -> String {
    one_frontend(
        "http",
        8080,
        "round_robin",
        &[backend],
        "  [[frontend.route]]\n  path_prefix = \"/blocked/\"\n  respond = { status = 403, body = \"blocked\\n\" }\n",
    )
}

async fn connect(node: &Node) -> TcpStream {
    TcpStream::connect(node.frontend(8080))
        .await
        .expect("connect")
}

on_both_paths! {
#[tokio::test]
async fn a_body_left_unread_by_a_local_answer_is_never_read_as_a_request() {
    // Pingora, CVE-2025-4366: a request answered without reading its
    // body had the body parsed as the next request.
    let backend = HttpBackend::start("b", unique_ip()).await;
    let node = Node::start(&guarded(backend.address)).await;
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut stream = connect(&node).await;
    stream
        .write_all(
            format!(
                "POST /blocked/x HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{smuggled}",
                smuggled.len()
            )
            .as_bytes(),
        )
        .await
        .expect("write");
    let (answers, _) = read_responses(&mut stream, 2).await;
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(answers[0], ("403".to_string(), "blocked\n".to_string()));
    assert_eq!(backend.count(), 0, "{:?}", backend.requests());
}
}

on_both_paths! {
#[tokio::test]
async fn bytes_after_an_upgrade_request_are_read_as_requests_when_the_backend_refuses() {
    // Pingora, CVE-2026-2833: bytes sent after an upgrade request went to
    // the backend before its 101, past the proxy's own rules. The test
    // backend refuses every upgrade (answers 200): what follows must be
    // read by the node as the next request, and the route refuses it.
    let backend = HttpBackend::start("b", unique_ip()).await;
    let node = Node::start(&guarded(backend.address)).await;
    let mut stream = connect(&node).await;
    stream
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n\
              GET /blocked/admin HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .await
        .expect("write");
    let (answers, _) = read_responses(&mut stream, 2).await;
    let statuses: Vec<&str> = answers.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(statuses, ["200", "403"], "{answers:?}");
    let paths: Vec<String> = backend.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/ws"]);
}
}

/// A raw backend that answers every request head with `answer`, as it
/// is (`keep_alive`: then waits for the next head; else closes at once,
/// whatever the client still sends); the number of connections it
/// accepted.
async fn scripted_backend(
    answer: &'static [u8],
    keep_alive: bool,
) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind((unique_ip(), 0)).await.expect("bind");
    let address = listener.local_addr().expect("address");
    let connections = Arc::new(AtomicUsize::new(0));
    let accepted = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                loop {
                    while !head.ends_with(b"\r\n\r\n") {
                        match stream.read(&mut byte).await {
                            Ok(1) => head.push(byte[0]),
                            _ => return,
                        }
                    }
                    head.clear();
                    if stream.write_all(answer).await.is_err() || !keep_alive {
                        return;
                    }
                }
            });
        }
    });
    (address, connections)
}

on_both_paths! {
#[tokio::test]
async fn bytes_a_backend_sends_after_its_response_never_reach_a_client() {
    // A backend that writes more than its response (a second, unasked
    // one): its connection must not be reused, or the next request gets
    // the leftover as its answer.
    let (address, connections) = scripted_backend(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok\
          HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil",
        true,
    )
    .await;
    let node = Node::start(&one_frontend("http", 8080, "round_robin", &[address], "")).await;
    let mut stream = connect(&node).await;
    for _ in 0..3 {
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let (answers, _) = read_responses(&mut stream, 1).await;
        assert_eq!(answers, [("200".to_string(), "ok".to_string())]);
    }
    // Each request had a connection of its own.
    assert_eq!(connections.load(Ordering::Relaxed), 3);
}
}

on_both_paths! {
#[tokio::test]
async fn an_empty_answer_keeps_its_framing() {
    // `Content-Length: 0` from the backend must reach the client as a
    // length (without one, a client reads until the connection closes);
    // and a request's own `Content-Length: 0` reaches the backend.
    let (address, _) = scripted_backend(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n", true).await;
    let node = Node::start(&one_frontend("http", 8080, "round_robin", &[address], "")).await;
    let mut stream = connect(&node).await;
    stream
        .write_all(b"POST /new HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        .await
        .expect("write");
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .expect("an answer")
            .expect("read");
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&head));
        head.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 201"), "{head}");
    assert!(head.contains("\r\ncontent-length: 0\r\n"), "{head}");

    let backend = HttpBackend::start("b", unique_ip()).await;
    let node = Node::start(&guarded(backend.address)).await;
    let (answer, _) = raw_exchange(
        node.frontend(8080),
        b"POST /empty HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = backend.requests();
    assert_eq!(
        seen[0].headers.get("content-length").map(|v| v.as_bytes()),
        Some(&b"0"[..])
    );
}
}

on_both_paths! {
#[tokio::test]
async fn a_small_body_is_consumed_whatever_the_backend_answers() {
    // A request whose body is held whole for retries, answered 504 by
    // the node (the backend is too slow): its body must not be read as
    // the next request.
    let backend = HttpBackend::start_slow(unique_ip(), Duration::from_secs(3)).await;
    let node = Node::start(&one_frontend(
        "http",
        8080,
        "round_robin",
        &[backend.address],
        "response_timeout_ms = 300\nretries = 0",
    ))
    .await;
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut stream = connect(&node).await;
    stream
        .write_all(
            format!(
                "POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{smuggled}",
                smuggled.len()
            )
            .as_bytes(),
        )
        .await
        .expect("write");
    let (answers, _) = read_responses(&mut stream, 2).await;
    let statuses: Vec<&str> = answers.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(statuses, ["504"], "{answers:?}");
    let paths: Vec<String> = backend.requests().into_iter().map(|r| r.path).collect();
    assert!(!paths.contains(&"/smuggled".to_string()), "{paths:?}");
}
}

on_both_paths! {
#[tokio::test]
async fn local_answers_to_head_have_no_body_and_honour_connection_close() {
    let backend = HttpBackend::start("b", unique_ip()).await;
    let node = Node::start(&guarded(backend.address)).await;
    let (answer, closed) = raw_exchange(
        node.frontend(8080),
        b"HEAD /blocked/a HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /blocked/b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(closed, "Connection: close on a local answer left the connection open");
    let (first, rest) = answer.split_once("\r\n\r\n").expect("a head");
    assert!(first.starts_with("HTTP/1.1 403"), "{answer}");
    // The HEAD's answer ends at its head: the next answer follows at once.
    assert!(rest.starts_with("HTTP/1.1 403"), "{answer:?}");
    assert!(rest.ends_with("blocked\n"), "{answer:?}");
    assert_eq!(backend.count(), 0);
}
}

on_both_paths! {
#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let backend = HttpBackend::start("b", unique_ip()).await;
    let node = Node::start(&guarded(backend.address)).await;
    let mut stream = connect(&node).await;
    stream
        .write_all(
            b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n\
              POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n\
              GET /blocked/c HTTP/1.1\r\nHost: x\r\n\r\n\
              PUT /d HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
        )
        .await
        .expect("write");
    let (answers, closed) = read_responses(&mut stream, 4).await;
    let statuses: Vec<&str> = answers.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(statuses, ["200", "200", "403", "200"], "{answers:?}");
    assert!(closed, "Connection: close was not honoured");
    let seen: Vec<(String, u64)> = backend
        .requests()
        .into_iter()
        .map(|r| (r.path, r.body_bytes))
        .collect();
    assert_eq!(
        seen,
        [("/a".to_string(), 0), ("/b".to_string(), 5), ("/d".to_string(), 3)]
    );
}
}

on_both_paths! {
#[tokio::test]
async fn expect_100_continue_gets_its_interim_answer_before_the_body() {
    let backend = HttpBackend::start("b", unique_ip()).await;
    let node = Node::start(&guarded(backend.address)).await;
    let mut stream = connect(&node).await;
    stream
        .write_all(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .await
        .expect("write");
    let (interim, _) = read_responses(&mut stream, 1).await;
    assert_eq!(interim.first().map(|(s, _)| s.as_str()), Some("100"), "{interim:?}");
    stream.write_all(b"hello").await.expect("body");
    let (answers, _) = read_responses(&mut stream, 1).await;
    assert_eq!(answers.first().map(|(s, _)| s.as_str()), Some("200"), "{answers:?}");
    let seen = backend.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body_bytes, 5);
    assert!(!seen[0].headers.contains_key("expect"), "Expect was passed on");
}
}

#[tokio::test]
async fn obfuscated_transfer_encodings_are_refused_and_chunked_in_any_spelling_is_taken() {
    // Relay only (hyper's own rules are hyper's): Sozu's `chunked\t`
    // (sozu#726) is chunked; anything but `chunked` alone is refused
    // before a backend sees it.
    let backend = HttpBackend::start("b", unique_ip()).await;
    let node = Node::start(&guarded(backend.address)).await;
    for coding in [
        "xchunked",
        "chunked, identity",
        "identity, chunked",
        "chunked;q=1",
        "gzip",
    ] {
        let request = format!(
            "POST /te HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {coding}\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        );
        let (answer, closed) = raw_exchange(node.frontend(8080), request.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{coding:?}: {answer}");
        assert!(closed, "{coding:?}: left open");
    }
    assert_eq!(backend.count(), 0, "{:?}", backend.requests());
    for coding in ["chunked\t", "CHUNKED", "Chunked "] {
        let request = format!(
            "POST /te HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {coding}\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        );
        let (answer, _) = raw_exchange(node.frontend(8080), request.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{coding:?}: {answer}");
    }
    let bodies: Vec<u64> = backend.requests().iter().map(|r| r.body_bytes).collect();
    assert_eq!(bodies, [5, 5, 5]);
}

#[tokio::test]
async fn an_early_answer_to_an_upload_reaches_the_client() {
    // A backend that refuses a large upload at once (413) and closes
    // without reading it: the client gets the 413, not a reset. Relay
    // only: on the hyper path, hyper's client reports the failed body
    // write instead of the answer now and then (a 502).
    let (address, _) = scripted_backend(
        b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntoo large",
        false,
    )
    .await;
    let node = Node::start(&one_frontend("http", 8080, "round_robin", &[address], "")).await;
    let stream = connect(&node).await;
    let (mut read, mut write) = stream.into_split();
    let size = 64 * 1024 * 1024;
    let upload = tokio::spawn(async move {
        let head = format!("PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n");
        write.write_all(head.as_bytes()).await.expect("head");
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..size / chunk.len() {
            if write.write_all(&chunk).await.is_err() {
                return;
            }
        }
    });
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), read.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    upload.abort();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?}");
    assert!(answer.ends_with("too large"), "{answer:?}");
}
