//! Differential tests of the relay's reading of HTTP/1.1 against hyper's
//! (the hyper path's parser): generated requests through hyper's server,
//! generated responses through hyper's client. Where the relay is stricter
//! on purpose, it must refuse outright; everywhere else the two must read
//! the same messages, with the same bodies, ending at the same byte.

mod headers;
mod requests;
mod responses;

use proptest::prelude::*;

use super::chunked::ChunkedScanner;
use super::framing::BodyLength;

/// The body framed by `body` at the start of `after`, decoded, and how
/// many bytes it took; `None` if it is malformed or incomplete (or, for a
/// response read until close, all of `after`).
fn read_body(body: BodyLength, after: &[u8]) -> Option<(Vec<u8>, usize)> {
    match body {
        BodyLength::Empty => Some((Vec::new(), 0)),
        BodyLength::Length(n) if after.len() as u64 >= n => {
            Some((after[..n as usize].to_vec(), n as usize))
        }
        BodyLength::Length(_) => None,
        BodyLength::Chunked => {
            let mut scanner = ChunkedScanner::default();
            let mut decoded = Vec::new();
            match scanner.feed(after, &mut |d| decoded.extend_from_slice(d)) {
                Ok(used) if scanner.is_done() => Some((decoded, used)),
                _ => None,
            }
        }
        BodyLength::UntilClose => Some((after.to_vec(), after.len())),
    }
}

/// Whether the relay takes these `Transfer-Encoding` lines: none, or one
/// that is `chunked` alone.
fn codings_taken(codings: &[Coding]) -> bool {
    codings.is_empty() || (codings.len() == 1 && codings[0].is_chunked())
}

/// A `Content-Length` line's value.
#[derive(Debug, Clone, Copy)]
enum Length {
    Exact,
    Listed,
    Plus,
    OneMore,
    Hex,
    Padded,
    Zeros,
}

/// A `Transfer-Encoding` line's value.
#[derive(Debug, Clone, Copy)]
enum Coding {
    Chunked,
    Mixed,
    Tab,
    Comma,
    X,
    ThenIdentity,
    Gzip,
    Identity,
    Spaces,
}

impl Coding {
    fn value(self) -> &'static str {
        match self {
            Coding::Chunked => "chunked",
            Coding::Mixed => "ChUnKeD",
            Coding::Tab => "chunked\t",
            Coding::Comma => "chunked,",
            Coding::X => "xchunked",
            Coding::ThenIdentity => "chunked, identity",
            Coding::Gzip => "gzip, chunked",
            Coding::Identity => "identity",
            Coding::Spaces => "  chunked  ",
        }
    }

    /// Means `chunked` alone.
    fn is_chunked(self) -> bool {
        matches!(
            self,
            Coding::Chunked | Coding::Mixed | Coding::Tab | Coding::Spaces
        )
    }
}

/// How the chunked body is written.
#[derive(Debug, Clone, Copy)]
enum Chunks {
    Plain,
    Upper,
    Zeros,
    Extension,
    Quoted,
    SpaceAfterSize,
    TabBeforeExtension,
    Trailers,
    BareLfAfterSize,
    BareLfInExtension,
    BareLfAfterData,
    BareLfInTrailers,
    NoCrlfAfterData,
}

impl Chunks {
    /// Encodes `body` in chunks of up to 12 bytes (sizes with letters).
    fn encode(self, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for piece in body.chunks(12) {
            let size = match self {
                Chunks::Upper => format!("{:X}", piece.len()),
                Chunks::Zeros => format!("00{:x}", piece.len()),
                _ => format!("{:x}", piece.len()),
            };
            out.extend_from_slice(size.as_bytes());
            out.extend_from_slice(match self {
                Chunks::Extension => b";name=value\r\n",
                Chunks::Quoted => b";name=\"a b\"\r\n",
                Chunks::SpaceAfterSize => b" \r\n",
                Chunks::TabBeforeExtension => b"\t;a\r\n",
                Chunks::BareLfAfterSize => b"\n",
                Chunks::BareLfInExtension => b";a\nb\r\n",
                _ => b"\r\n",
            });
            out.extend_from_slice(piece);
            out.extend_from_slice(match self {
                Chunks::BareLfAfterData => b"\n",
                Chunks::NoCrlfAfterData => b"",
                _ => b"\r\n",
            });
        }
        out.extend_from_slice(b"0\r\n");
        out.extend_from_slice(match self {
            Chunks::Trailers => b"X-Sum: 1\r\n\r\n",
            Chunks::BareLfInTrailers => b"X-Sum: 1\n\r\n",
            _ => b"\r\n",
        });
        out
    }
}

impl Length {
    /// The line's value for a body of `n` bytes.
    fn value(self, n: usize) -> String {
        match self {
            Length::Exact => n.to_string(),
            Length::Listed => format!("{n}, {n}"),
            Length::Plus => format!("+{n}"),
            Length::OneMore => (n + 1).to_string(),
            Length::Hex => format!("0x{n:x}"),
            Length::Padded => format!(" {n} "),
            Length::Zeros => format!("00{n}"),
        }
    }
}

fn lengths() -> impl Strategy<Value = Length> {
    prop_oneof![
        Just(Length::Exact),
        Just(Length::Listed),
        Just(Length::Plus),
        Just(Length::OneMore),
        Just(Length::Hex),
        Just(Length::Padded),
        Just(Length::Zeros),
    ]
}

fn codings() -> impl Strategy<Value = Coding> {
    prop_oneof![
        Just(Coding::Chunked),
        Just(Coding::Mixed),
        Just(Coding::Tab),
        Just(Coding::Comma),
        Just(Coding::X),
        Just(Coding::ThenIdentity),
        Just(Coding::Gzip),
        Just(Coding::Identity),
        Just(Coding::Spaces),
    ]
}

fn chunk_forms() -> impl Strategy<Value = Chunks> {
    prop_oneof![
        Just(Chunks::Plain),
        Just(Chunks::Upper),
        Just(Chunks::Zeros),
        Just(Chunks::Extension),
        Just(Chunks::Quoted),
        Just(Chunks::SpaceAfterSize),
        Just(Chunks::TabBeforeExtension),
        Just(Chunks::Trailers),
        Just(Chunks::BareLfAfterSize),
        Just(Chunks::BareLfInExtension),
        Just(Chunks::BareLfAfterData),
        Just(Chunks::BareLfInTrailers),
        Just(Chunks::NoCrlfAfterData),
    ]
}
