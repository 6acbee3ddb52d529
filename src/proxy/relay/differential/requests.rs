//! Requests: each generated one followed by a valid pipelined one, read by
//! the relay and by hyper's HTTP/1.1 server. They must agree on which
//! requests are taken, with what body, and so where each ends. Where the
//! relay is stricter on purpose ([`Case::relay_stricter`]), it must refuse
//! the request outright, taking nothing.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Chunks, Coding, Length, chunk_forms, codings, lengths, read_body};
use crate::proxy::http::MAX_HEADERS;
use crate::proxy::relay::head;

/// What a reader made of the bytes: the requests it took (method, target,
/// decoded body), and whether it refused what came next.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    taken: Vec<(String, String, Vec<u8>)>,
    refused: bool,
}

/// The relay's reading.
fn relay(input: &[u8]) -> Outcome {
    let mut taken = Vec::new();
    let mut rest = input;
    let refused = |taken| Outcome {
        taken,
        refused: true,
    };
    while !rest.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let head = match head::parse_request(rest, &mut headers) {
            Ok(Some(head)) => head,
            Ok(None) | Err(_) => return refused(taken),
        };
        let after = &rest[head.length..];
        let Some((body, used)) = read_body(head.body, after) else {
            return refused(taken);
        };
        taken.push((head.method.to_string(), head.target.to_string(), body));
        // HTTP/1.0 without keep-alive: the connection ends after it.
        let keep_alive = head.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("connection") && h.value.eq_ignore_ascii_case(b"keep-alive")
        });
        if head.version == 0 && !keep_alive {
            return Outcome {
                taken,
                refused: false,
            };
        }
        rest = &after[used..];
    }
    Outcome {
        taken,
        refused: false,
    }
}

/// hyper's reading: its server on one end of a pipe, the input written to
/// the other and the pipe half-closed.
async fn hyper(input: Vec<u8>) -> Outcome {
    let (mut client, server) = tokio::io::duplex(1 << 20);
    let taken = Arc::new(Mutex::new(Vec::new()));
    let body_failed = Arc::new(AtomicBool::new(false));
    let service = {
        let (taken, body_failed) = (taken.clone(), body_failed.clone());
        service_fn(move |request: Request<Incoming>| {
            let (taken, body_failed) = (taken.clone(), body_failed.clone());
            async move {
                let method = request.method().to_string();
                let target = request.uri().to_string();
                match request.into_body().collect().await {
                    Ok(body) => taken.lock().expect("taken").push((
                        method,
                        target,
                        body.to_bytes().to_vec(),
                    )),
                    Err(_) => body_failed.store(true, Ordering::Relaxed),
                }
                Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
            }
        })
    };
    let connection = hyper::server::conn::http1::Builder::new()
        .half_close(true)
        .serve_connection(TokioIo::new(server), service);
    let peer = async move {
        client.write_all(&input).await.expect("write");
        client.shutdown().await.expect("shutdown");
        let mut answers = Vec::new();
        let _ = client.read_to_end(&mut answers).await;
        answers
    };
    let (result, answers) = tokio::join!(connection, peer);
    let answers = String::from_utf8_lossy(&answers);
    let refused =
        result.is_err() || body_failed.load(Ordering::Relaxed) || answers.contains("HTTP/1.1 4");
    let taken = std::mem::take(&mut *taken.lock().expect("taken"));
    Outcome { taken, refused }
}

/// One generated request.
#[derive(Debug, Clone)]
struct Case {
    method: &'static str,
    lengths: Vec<Length>,
    codings: Vec<Coding>,
    chunks: Chunks,
    body: Vec<u8>,
    bare_lf_in_head: bool,
    http10: bool,
}

impl Case {
    fn bytes(&self) -> Vec<u8> {
        let eol = if self.bare_lf_in_head { "\n" } else { "\r\n" };
        let version = if self.http10 { "1.0" } else { "1.1" };
        let mut head = format!("{} /t?q=1 HTTP/{version}\r\nHost: h{eol}", self.method);
        let n = self.body.len();
        for length in &self.lengths {
            head.push_str(&format!("Content-Length: {}\r\n", length.value(n)));
        }
        for coding in &self.codings {
            head.push_str(&format!("Transfer-Encoding: {}\r\n", coding.value()));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        if self.codings.is_empty() {
            bytes.extend_from_slice(&self.body);
        } else {
            bytes.extend_from_slice(&self.chunks.encode(&self.body));
        }
        bytes.extend_from_slice(b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n");
        bytes
    }

    /// Where the relay refuses on purpose what hyper may take: both
    /// framings, a coding other than `chunked` alone or on HTTP/1.0, a
    /// bare LF.
    fn relay_stricter(&self) -> bool {
        (!self.lengths.is_empty() && !self.codings.is_empty())
            || (self.http10 && !self.codings.is_empty())
            || !super::codings_taken(&self.codings)
            || self.bare_lf_in_head
            || (!self.codings.is_empty()
                && !head::strict_line_ends(&self.chunks.encode(&self.body)))
    }
}

fn cases() -> impl Strategy<Value = Case> {
    (
        prop_oneof![Just("GET"), Just("POST"), Just("PUT")],
        proptest::collection::vec(lengths(), 0..=2),
        proptest::collection::vec(codings(), 0..=2),
        chunk_forms(),
        proptest::collection::vec(b'a'..=b'z', 0..40),
        proptest::bool::weighted(0.1),
        proptest::bool::weighted(0.15),
    )
        .prop_map(
            |(method, lengths, codings, chunks, body, bare_lf_in_head, http10)| Case {
                method,
                lengths,
                codings,
                chunks,
                body,
                bare_lf_in_head,
                http10,
            },
        )
}

proptest! {
    #![proptest_config(crate::proxy::relay::cases(1500))]

    #[test]
    fn the_relay_reads_requests_as_hyper_does(case in cases()) {
        let bytes = case.bytes();
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let reference = runtime.block_on(hyper(bytes.clone()));
        let relayed = relay(&bytes);
        if case.relay_stricter() {
            prop_assert_eq!(
                relayed,
                Outcome { taken: Vec::new(), refused: true },
                "hyper: {:?}\n{}",
                reference,
                String::from_utf8_lossy(&bytes)
            );
        } else {
            prop_assert_eq!(relayed, reference, "{}", String::from_utf8_lossy(&bytes));
        }
    }
}
