//! Requests HTTP/1.1 calls ambiguous or too large are refused, never
//! forwarded, and the node keeps serving.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::fixture::*;

on_both_paths! {
#[tokio::test]
async fn malformed_requests_get_4xx_and_are_not_forwarded() {
    let (backend, node) = HttpBackend::behind_one_node("b").await;
    let address = node.frontend(8080);
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(10_000));
    let many_headers = format!(
        "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..150)
            .map(|i| format!("x-h{i}: v\r\n"))
            .collect::<String>()
    );
    let huge_header = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nx-big: {}\r\n\r\n",
        "v".repeat(40_000)
    );
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "Content-Length and Transfer-Encoding",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
            "400",
        ),
        (
            "Transfer-Encoding before Content-Length",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n".to_vec(),
            "400",
        ),
        (
            "two differing Content-Length",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!".to_vec(),
            "400",
        ),
        (
            "malformed chunk size",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n".to_vec(),
            "400",
        ),
        ("NUL in a header", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n".to_vec(), "400"),
        ("bare CR in a header", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n".to_vec(), "400"),
        ("HTTP/1.1 without Host", b"GET / HTTP/1.1\r\nX-A: a\r\n\r\n".to_vec(), "400"),
        ("two Host headers", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_vec(), "400"),
        ("request target too long", long_uri.into_bytes(), "414"),
        ("too many headers", many_headers.into_bytes(), "431"),
        ("header block too large", huge_header.into_bytes(), "431"),
    ];
    for (what, request, expected) in &cases {
        let (answer, closed) = raw_exchange(address, request).await;
        let status = answer.split(' ').nth(1).unwrap_or("none");
        assert_eq!(status, *expected, "{what}: {answer:?}");
        assert!(closed, "{what}: connection left open");
    }
    assert_eq!(
        backend.count(),
        0,
        "a malformed request reached the backend: {:?}",
        backend.requests()
    );
    let (answer, _) = raw_exchange(
        address,
        b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "node still serves: {answer}"
    );
    assert_eq!(backend.count(), 1);
}
}

on_both_paths! {
#[tokio::test]
async fn slowloris_is_cut_at_the_header_timeout() {
    let ip = unique_ip();
    let backend = HttpBackend::start("b", ip).await;
    let node = Node::start(&one_frontend(
        "http",
        8080,
        "round_robin",
        &[backend.address],
        "header_timeout_ms = 400",
    ))
    .await;
    let mut stream = TcpStream::connect(node.frontend(8080))
        .await
        .expect("connect");
    let started = Instant::now();
    let trickle = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    let mut closed_after = None;
    // One byte every 50 ms, bounded to 10 s: never a complete head.
    for i in 0..200 {
        let byte = trickle.get(i).copied().unwrap_or(b'a');
        if stream.write_all(&[byte]).await.is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(50), stream.read(&mut buf)).await {
            Ok(Ok(_)) | Ok(Err(_)) => {
                closed_after = Some(started.elapsed());
                break;
            }
            Err(_) => {}
        }
    }
    let closed_after = closed_after.expect("slow client was never cut");
    println!("slowloris client cut after {closed_after:?} (header_timeout_ms = 400)");
    assert!(
        closed_after >= Duration::from_millis(350),
        "cut too early: {closed_after:?}"
    );
    assert!(
        closed_after < Duration::from_secs(5),
        "cut too late: {closed_after:?}"
    );
    assert_eq!(backend.count(), 0);
}
}
