//! The known HTTP/2 attacks against an h2c frontend, sent frame by frame:
//! rapid reset (CVE-2023-44487), a CONTINUATION flood, and PING and
//! SETTINGS floods. Each must end in the attacker's connection closed or
//! held in check, with other clients served meanwhile, the node's memory
//! bounded, and a count an operator sees.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::fixture::*;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// One frame.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(9 + payload.len());
    bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    bytes.push(kind);
    bytes.push(flags);
    bytes.extend_from_slice(&stream.to_be_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

/// HPACK for `GET http://x/`: indexed `:method GET`, `:scheme http`,
/// `:path /`, and `:authority x` as a literal without indexing.
const GET_BLOCK: &[u8] = &[0x82, 0x86, 0x84, 0x01, 0x01, b'x'];

/// A header `x-fill: ...` (literal, new name, not indexed) of `len` bytes.
fn filler(len: usize) -> Vec<u8> {
    let mut block = vec![0x00, 6];
    block.extend_from_slice(b"x-fill");
    block.push(0x7f);
    // HPACK integer: 127 then the rest in 7-bit groups.
    let mut rest = len - 127;
    while rest >= 128 {
        block.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    block.push(rest as u8);
    block.extend(std::iter::repeat_n(b'a', len));
    block
}

/// Takes the whole frames off the front of `seen` (a partial last one
/// stays): type, flags and payload of each.
fn whole_frames(seen: &mut Vec<u8>) -> Vec<(u8, u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while seen.len() >= 9 {
        let len = u32::from_be_bytes([0, seen[0], seen[1], seen[2]]) as usize;
        if seen.len() < 9 + len {
            break;
        }
        frames.push((seen[3], seen[4], seen[9..9 + len].to_vec()));
        seen.drain(..9 + len);
    }
    frames
}

/// A GOAWAY payload's error code.
fn goaway_code(payload: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(payload.get(4..8)?.try_into().ok()?))
}

/// What the attacker's connection ended with.
#[derive(Debug)]
struct Outcome {
    /// The GOAWAY's error code, if one came.
    goaway: Option<u32>,
    /// The connection was closed by the node.
    closed: bool,
    /// Bytes the node sent back.
    received: usize,
    /// Bytes of the attack the node took.
    sent: usize,
}

/// Reads frames until the node closes or is quiet for 3 s: the GOAWAY's
/// code if one came, whether it closed, the bytes read.
async fn read_frames(mut read: tokio::net::tcp::OwnedReadHalf) -> (Option<u32>, bool, usize) {
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut goaway = None;
    let mut received = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(3), read.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (goaway, true, received),
            Ok(Ok(n)) => {
                received += n;
                seen.extend_from_slice(&buf[..n]);
                for (kind, _, payload) in whole_frames(&mut seen) {
                    if kind == GOAWAY {
                        goaway = goaway_code(&payload).or(goaway);
                    }
                }
            }
            Err(_) => return (goaway, false, received),
        }
    }
}

/// Sends `attack` (in chunks, as fast as the node takes them, for at most
/// `limit`) after the preface and an empty SETTINGS; `reading`: reads what
/// comes back meanwhile, else only after. Then reads until the node
/// closes or goes quiet.
async fn attack(address: SocketAddr, attack: Vec<u8>, limit: Duration, reading: bool) -> Outcome {
    let stream = TcpStream::connect(address).await.expect("connect");
    let (read, mut write) = stream.into_split();
    let (sending_done, done) = tokio::sync::oneshot::channel::<()>();
    let reader = tokio::spawn(async move {
        if !reading {
            let _ = done.await;
        }
        read_frames(read).await
    });
    let mut bytes = PREFACE.to_vec();
    bytes.extend(frame(SETTINGS, 0, 0, &[]));
    bytes.extend(attack);
    let deadline = Instant::now() + limit;
    let mut sent = 0;
    for chunk in bytes.chunks(16 * 1024) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, write.write_all(chunk)).await {
            Ok(Ok(())) => sent += chunk.len(),
            _ => break,
        }
    }
    let _ = sending_done.send(());
    let (goaway, closed, received) = reader.await.expect("reader");
    Outcome {
        goaway,
        closed,
        received,
        sent,
    }
}

/// Requests that the node takes up and the client then cancels, 20 at a
/// time (a PING's answer says the node has read them), until the node
/// closes the connection or 300 were cancelled.
async fn accepted_then_reset(address: SocketAddr) -> (Outcome, u32) {
    let stream = TcpStream::connect(address).await.expect("connect");
    let (mut read, mut write) = stream.into_split();
    let mut start = PREFACE.to_vec();
    start.extend(frame(SETTINGS, 0, 0, &[]));
    write.write_all(&start).await.expect("preface");
    let mut buf = vec![0u8; 64 * 1024];
    let mut seen = Vec::new();
    let mut next_id = 1u32;
    let mut cancelled = 0u32;
    while cancelled < 300 {
        let ids: Vec<u32> = (0..20).map(|i| next_id + 2 * i).collect();
        next_id += 40;
        let mut batch = Vec::new();
        for id in &ids {
            batch.extend(frame(HEADERS, END_STREAM | END_HEADERS, *id, GET_BLOCK));
        }
        batch.extend(frame(PING, 0, 0, &cancelled.to_be_bytes().repeat(2)));
        if write.write_all(&batch).await.is_err() {
            break;
        }
        // Until the PING's answer: the node has read the requests.
        let mut acked = false;
        let mut goaway = None;
        while !acked && goaway.is_none() {
            let n = match tokio::time::timeout(Duration::from_secs(3), read.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => n,
                _ => {
                    return (
                        Outcome {
                            goaway,
                            closed: true,
                            received: 0,
                            sent: 0,
                        },
                        cancelled,
                    );
                }
            };
            seen.extend_from_slice(&buf[..n]);
            for (kind, flags, payload) in whole_frames(&mut seen) {
                match kind {
                    PING if flags & 1 == 1 => acked = true,
                    GOAWAY => goaway = goaway_code(&payload).or(goaway),
                    _ => {}
                }
            }
        }
        if goaway.is_some() {
            let (_, closed, received) = read_frames(read).await;
            return (
                Outcome {
                    goaway,
                    closed,
                    received,
                    sent: 0,
                },
                cancelled,
            );
        }
        let mut resets = Vec::new();
        for id in &ids {
            resets.extend(frame(RST_STREAM, 0, *id, &8u32.to_be_bytes()));
        }
        if write.write_all(&resets).await.is_err() {
            break;
        }
        cancelled += 20;
    }
    let (goaway, closed, received) = read_frames(read).await;
    (
        Outcome {
            goaway,
            closed,
            received,
            sent: 0,
        },
        cancelled,
    )
}

/// Sum of a metric family's series for the frontend, from `/metrics`.
fn metric_sum(node: &Node, family: &str) -> f64 {
    let (_, text) = node.admin_get("/metrics").expect("metrics");
    text.lines()
        .filter(|l| l.starts_with(&format!("{family}{{")) && l.contains("frontend=\"front\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_attacks_are_cut_off_counted_and_others_served() {
    let backend = HttpBackend::start_slow(unique_ip(), Duration::from_millis(50)).await;
    let node = Node::start(&one_frontend(
        "http",
        8080,
        "round_robin",
        &[backend.address],
        "h2c = true",
    ))
    .await;
    let address = node.frontend(8080);
    let url = node.url(8080, "/still-served");
    let rss_before = node.memory_kb("VmRSS");
    let mut lines = Vec::new();

    // Rapid reset: 5,000 requests, each cancelled as soon as it is sent.
    let mut burst = Vec::new();
    for i in 0..5_000u32 {
        let id = 2 * i + 1;
        burst.extend(frame(HEADERS, END_STREAM | END_HEADERS, id, GET_BLOCK));
        burst.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes()));
    }
    let (outcome, served) = tokio::join!(
        attack(address, burst, Duration::from_secs(10), true),
        async { get(&client(), &url, &[]).await.0 }
    );
    lines.push(format!("rapid reset: {outcome:?}"));
    assert_eq!(served, hyper::StatusCode::OK, "not served during the burst");
    // ENHANCE_YOUR_CALM (11), then closed.
    assert_eq!(outcome.goaway, Some(11), "{outcome:?}");
    assert!(outcome.closed, "{outcome:?}");
    assert_eq!(
        metric_sum(&node, "raftlb_frontend_http2_errors_total"),
        1.0,
        "{lines:?}"
    );

    // The slower kind: requests taken up (each costs a route and a
    // backend request), then cancelled; the node closes the connection
    // once 100 were, over half of its requests.
    let (outcome, cancelled) = accepted_then_reset(address).await;
    lines.push(format!(
        "accepted then reset: {outcome:?} after {cancelled} cancelled"
    ));
    assert!(outcome.goaway.is_some() && outcome.closed, "{lines:?}");
    assert!((100..300).contains(&cancelled), "{lines:?}");
    let counted = metric_sum(&node, "raftlb_frontend_cancelled_requests_total");
    assert!(
        counted >= 100.0,
        "{counted} cancellations counted: {lines:?}"
    );
    assert!(
        node.metric(
            "raftlb_frontend_http2_errors_total{frontend=\"front\",reason=\"rapid_reset\"}"
        ) == Some(1.0),
        "{lines:?}"
    );

    // CONTINUATION flood: one header block in 20,000 frames, never ended.
    let mut flood = frame(HEADERS, END_STREAM, 1, GET_BLOCK);
    let fill = filler(200);
    for _ in 0..20_000 {
        flood.extend(frame(CONTINUATION, 0, 1, &fill));
    }
    let outcome = attack(address, flood, Duration::from_secs(10), true).await;
    lines.push(format!("continuation flood: {outcome:?}"));
    assert_eq!(outcome.goaway, Some(11), "{outcome:?}");
    assert!(outcome.closed, "{outcome:?}");

    // PING and SETTINGS floods, the answers never read.
    for (name, kind) in [("ping", PING), ("settings", SETTINGS)] {
        let mut flood = Vec::new();
        for i in 0..1_000_000u64 {
            let payload = if kind == PING {
                i.to_be_bytes().to_vec()
            } else {
                Vec::new()
            };
            flood.extend(frame(kind, 0, 0, &payload));
        }
        // Not reading the answers: the node must stop reading rather than
        // queue them without bound.
        let total = flood.len();
        let outcome = attack(address, flood, Duration::from_secs(3), false).await;
        lines.push(format!(
            "{name} flood of {total} bytes, answers unread: {outcome:?}"
        ));
        // Answered as far as it was read, then held back.
        assert!(outcome.sent > 0 && outcome.received > 0, "{lines:?}");
    }
    assert_eq!(
        get(&client(), &url, &[]).await.0,
        hyper::StatusCode::OK,
        "not served after the floods"
    );
    let growth_mib = node.memory_kb("VmHWM").saturating_sub(rss_before) / 1024;
    lines.push(format!("peak memory growth {growth_mib} MiB"));
    println!("http2 attacks: {}", lines.join("; "));
    assert!(growth_mib < 64, "{lines:?}");
}
