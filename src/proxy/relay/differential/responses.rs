//! Responses: each generated one answered to a GET or a HEAD, read by the
//! relay and by hyper's HTTP/1.1 client. They must agree on its status
//! and body, and on whether the connection can carry the next exchange:
//! a second request, whose answer follows only once it is sent, must be
//! read right by hyper exactly when the relay would reuse the connection
//! (the response ended where its framing said, no byte after it, framing
//! other than until-close). Where the relay is stricter on purpose
//! ([`Case::relay_stricter`]), it must refuse the response.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Chunks, Coding, Length, chunk_forms, codings, lengths, read_body};
use crate::proxy::http::MAX_HEADERS;
use crate::proxy::relay::framing::BodyLength;
use crate::proxy::relay::head;

/// What a reader made of the response: its status and body (`None`:
/// refused), and whether the connection carried the next exchange.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    first: Option<(u16, Vec<u8>)>,
    reusable: bool,
}

/// How long hyper is given for an exchange (in paused time: the wait
/// passes at once when nothing else can happen).
const WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The second exchange's answer, sent once its request arrives.
const NEXT: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext";

/// The relay's reading of `input` as the answer to a GET or HEAD: a
/// `100 Continue` before it is passed over, as the relay does.
fn relay(input: &[u8], head_request: bool) -> Outcome {
    let refused = Outcome {
        first: None,
        reusable: false,
    };
    let mut rest = input;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let head = match head::parse_response(rest, &mut headers, head_request) {
            Ok(Some(head)) => head,
            Ok(None) | Err(_) => return refused,
        };
        let after = &rest[head.length..];
        if (100..200).contains(&head.status) {
            rest = after;
            continue;
        }
        let Some((body, used)) = read_body(head.body, after) else {
            return refused;
        };
        return Outcome {
            first: Some((head.status, body)),
            reusable: head.body != BodyLength::UntilClose && used == after.len(),
        };
    }
}

/// hyper's reading: its client on one end of a pipe; the other end
/// answers the first request with `input` (then closes if `close`) and a
/// second request, if one comes, with [`NEXT`].
async fn hyper(input: Vec<u8>, head_request: bool, close: bool) -> Outcome {
    let (near, mut far) = tokio::io::duplex(1 << 20);
    let server = tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        let mut answered = 0;
        loop {
            let heads = seen.windows(4).filter(|w| *w == b"\r\n\r\n").count();
            if heads > answered {
                let answer: &[u8] = if answered == 0 { &input } else { NEXT };
                if far.write_all(answer).await.is_err() {
                    return;
                }
                answered += 1;
                if answered == 1 && close {
                    let _ = far.shutdown().await;
                    return;
                }
                continue;
            }
            match far.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    });
    let Ok((mut sender, connection)) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(near)).await
    else {
        return Outcome {
            first: None,
            reusable: false,
        };
    };
    tokio::spawn(connection);
    let method = if head_request { "HEAD" } else { "GET" };
    let request = |path: &str| {
        Request::builder()
            .method(method)
            .uri(path)
            .header("host", "h")
            .body(Empty::<Bytes>::new())
            .expect("request")
    };
    let mut outcome = Outcome {
        first: None,
        reusable: false,
    };
    // Time is paused (see the test): a response that never ends, as one
    // shorter than its framing says, times out at once.
    let first = tokio::time::timeout(WAIT, async {
        let response = sender.send_request(request("/first")).await.ok()?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.ok()?;
        Some((status, body.to_bytes().to_vec()))
    });
    outcome.first = first.await.ok().flatten();
    let ready = tokio::time::timeout(WAIT, sender.ready()).await;
    if outcome.first.is_some() && matches!(ready, Ok(Ok(()))) {
        let expected: &[u8] = if head_request { b"" } else { b"next" };
        let next = tokio::time::timeout(WAIT, async {
            let response = sender.send_request(request("/next")).await.ok()?;
            let status = response.status();
            let body = response.into_body().collect().await.ok()?;
            Some(status == 200 && body.to_bytes() == expected)
        });
        outcome.reusable = next.await.ok().flatten().unwrap_or(false);
    }
    server.abort();
    outcome
}

/// One generated response.
#[derive(Debug, Clone)]
struct Case {
    head_request: bool,
    status: u16,
    interim: bool,
    lengths: Vec<Length>,
    codings: Vec<Coding>,
    chunks: Chunks,
    body: Vec<u8>,
    extra_byte: bool,
    bare_lf_in_head: bool,
}

impl Case {
    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.interim {
            out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        let eol = if self.bare_lf_in_head { "\n" } else { "\r\n" };
        let mut head = format!("HTTP/1.1 {} X\r\nServer: t{eol}", self.status);
        for length in &self.lengths {
            head.push_str(&format!(
                "Content-Length: {}\r\n",
                length.value(self.body.len())
            ));
        }
        for coding in &self.codings {
            head.push_str(&format!("Transfer-Encoding: {}\r\n", coding.value()));
        }
        head.push_str("\r\n");
        out.extend_from_slice(head.as_bytes());
        // What the backend sends after the head: a HEAD's or a 204's
        // answer has no body, whatever it says.
        let bodiless = self.head_request || matches!(self.status, 204 | 304);
        if !bodiless {
            if self.codings.is_empty() {
                out.extend_from_slice(&self.body);
            } else {
                out.extend_from_slice(&self.chunks.encode(&self.body));
            }
        }
        if self.extra_byte {
            out.push(b'X');
        }
        out
    }

    /// A response framed only by its end: the backend closes after it.
    fn until_close(&self) -> bool {
        self.lengths.is_empty()
            && self.codings.is_empty()
            && !self.head_request
            && !matches!(self.status, 204 | 304)
    }

    /// Where the relay refuses on purpose what hyper may take: both
    /// framings, a coding other than `chunked` alone, a bare LF, and a
    /// list as `Content-Length` (`5, 5`, which hyper's client takes and
    /// its server refuses: the relay refuses it both ways).
    fn relay_stricter(&self) -> bool {
        let bodiless = self.head_request || matches!(self.status, 204 | 304);
        if bodiless {
            return self.bare_lf_in_head;
        }
        (!self.lengths.is_empty() && !self.codings.is_empty())
            || self.lengths.iter().any(|l| matches!(l, Length::Listed))
            || !super::codings_taken(&self.codings)
            || self.bare_lf_in_head
            || (!self.codings.is_empty()
                && !head::strict_line_ends(&self.chunks.encode(&self.body)))
    }
}

fn cases() -> impl Strategy<Value = Case> {
    (
        (
            proptest::bool::weighted(0.2),
            prop_oneof![Just(200u16), Just(204), Just(304), Just(404), Just(503)],
            proptest::bool::weighted(0.1),
        ),
        proptest::collection::vec(lengths(), 0..=2),
        proptest::collection::vec(codings(), 0..=2),
        chunk_forms(),
        proptest::collection::vec(b'a'..=b'z', 0..40),
        proptest::bool::weighted(0.15),
        proptest::bool::weighted(0.1),
    )
        .prop_map(
            |(
                (head_request, status, interim),
                lengths,
                codings,
                chunks,
                body,
                extra_byte,
                bare_lf_in_head,
            )| Case {
                head_request,
                status,
                interim,
                lengths,
                codings,
                chunks,
                body,
                extra_byte,
                bare_lf_in_head,
            },
        )
}

proptest! {
    #![proptest_config(crate::proxy::relay::cases(1000))]

    #[test]
    fn the_relay_reads_responses_as_hyper_does(case in cases()) {
        let bytes = case.bytes();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("runtime");
        let reference = runtime.block_on(hyper(bytes.clone(), case.head_request, case.until_close()));
        let relayed = relay(&bytes, case.head_request);
        if case.relay_stricter() {
            prop_assert_eq!(
                relayed,
                Outcome { first: None, reusable: false },
                "hyper: {:?}\n{}",
                reference,
                String::from_utf8_lossy(&bytes)
            );
        } else {
            prop_assert_eq!(relayed, reference, "{}", String::from_utf8_lossy(&bytes));
        }
    }
}
