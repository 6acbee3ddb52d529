//! L4: relaying, half-close, connect failover, limits and idle timeout.

use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::fixture::*;

/// Connects through the node and returns the greeting line (the backend's
/// name) and the open stream.
async fn connect(node: &Node, port: u16) -> (String, BufReader<TcpStream>) {
    let stream = TcpStream::connect(node.frontend(port))
        .await
        .expect("connect");
    let mut reader = BufReader::new(stream);
    let mut greeting = String::new();
    tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut greeting))
        .await
        .expect("greeting in time")
        .expect("greeting");
    (greeting.trim().to_string(), reader)
}

#[tokio::test]
async fn relays_both_ways_with_half_close_and_round_robin() {
    let ip = unique_ip();
    let one = TcpBackend::start("one", ip).await;
    let two = TcpBackend::start("two", ip).await;
    let node = Node::start(&one_frontend(
        "tcp",
        9000,
        "round_robin",
        &[one.address, two.address],
        "",
    ))
    .await;
    let mut names = Vec::new();
    for _ in 0..4 {
        let (name, mut stream) = connect(&node, 9000).await;
        names.push(name);
        // Larger than the relay's copy buffer, so the relay switches to
        // splice mid-stream; a varying pattern shows any lost, repeated or
        // reordered byte.
        let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        stream.get_mut().write_all(&payload).await.expect("write");
        // Half-close: the backend sees EOF, and its answer still comes back.
        stream.get_mut().shutdown().await.expect("shutdown write");
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest))
            .await
            .expect("answer in time")
            .expect("read");
        assert_eq!(rest.len(), payload.len() + "bytes 300000\n".len());
        assert!(rest[..payload.len()] == payload[..], "echo intact");
        assert!(rest.ends_with(b"bytes 300000\n"));
    }
    assert_eq!(names, ["one", "two", "one", "two"]);
}

#[tokio::test]
async fn a_refused_connect_moves_on_to_the_next_backend() {
    let ip = unique_ip();
    let live = TcpBackend::start("live", ip).await;
    // A port with nothing listening: bind, note it, close.
    let dead = std::net::TcpListener::bind((ip, 0))
        .expect("bind")
        .local_addr()
        .expect("addr");
    let node = Node::start(&one_frontend(
        "tcp",
        9000,
        "round_robin",
        &[dead, live.address],
        "",
    ))
    .await;
    for _ in 0..6 {
        let (name, _) = connect(&node, 9000).await;
        assert_eq!(name, "live");
    }
}

#[tokio::test]
async fn connection_limit_queues_further_clients() {
    let ip = unique_ip();
    let backend = TcpBackend::start("b", ip).await;
    let node = Node::start(&one_frontend(
        "tcp",
        9000,
        "round_robin",
        &[backend.address],
        "max_connections = 2",
    ))
    .await;
    let (_, first) = connect(&node, 9000).await;
    let (_, _second) = connect(&node, 9000).await;
    // The third client's TCP connect completes in the kernel's queue, but
    // the node does not take it while two are open.
    let mut third = BufReader::new(
        TcpStream::connect(node.frontend(9000))
            .await
            .expect("connect"),
    );
    let mut greeting = String::new();
    let early =
        tokio::time::timeout(Duration::from_millis(500), third.read_line(&mut greeting)).await;
    assert!(
        early.is_err(),
        "third client served beyond the limit: {greeting:?}"
    );
    drop(first);
    tokio::time::timeout(Duration::from_secs(5), third.read_line(&mut greeting))
        .await
        .expect("served once a slot frees")
        .expect("greeting");
    assert_eq!(greeting, "b\n");
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let ip = unique_ip();
    let backend = TcpBackend::start("b", ip).await;
    let node = Node::start(&one_frontend(
        "tcp",
        9000,
        "round_robin",
        &[backend.address],
        "idle_timeout_ms = 300",
    ))
    .await;
    let (_, mut stream) = connect(&node, 9000).await;
    let started = Instant::now();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest))
        .await
        .expect("idle connection closed in time")
        .expect("read");
    let after = started.elapsed();
    assert!(
        after >= Duration::from_millis(250),
        "closed too early: {after:?}"
    );
    println!("idle tcp connection closed after {after:?} (idle_timeout_ms = 300)");
}
