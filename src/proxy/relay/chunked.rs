//! The end of a chunked body (RFC 9112 section 7.1), found as its bytes go
//! by, so the relay can forward them unchanged and know where the next
//! message begins. Chunk-size lines and the trailer section are parsed by
//! httparse; on top of it the scanner refuses what httparse lets through
//! and backends have read differently (the chunk-extension smuggling of
//! 2024–2025): a line without its CR, a bare CR, a control character in
//! an extension, a size line without a digit, and anything but CRLF after
//! a chunk's data.

/// Longest chunk-size line, extensions included.
pub const MAX_SIZE_LINE: usize = 4096;
/// Largest trailer section.
pub const MAX_TRAILERS: usize = 8192;
/// Most trailer fields.
const MAX_TRAILER_FIELDS: usize = 32;

/// Why a chunked body is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    /// A chunk-size line that is not `1*HEXDIG [ext] CRLF`.
    BadSize,
    /// A chunk-size line over [`MAX_SIZE_LINE`].
    SizeLineTooLong,
    /// Chunk data not followed by CRLF.
    BadDataEnd,
    /// A trailer section that is not field lines and CRLF.
    BadTrailers,
    /// A trailer section over [`MAX_TRAILERS`].
    TrailersTooLong,
}

impl ChunkError {
    /// The reason given to the client (400) or logged (502).
    pub fn reason(self) -> &'static str {
        match self {
            ChunkError::BadSize => "malformed chunk size",
            ChunkError::SizeLineTooLong => "chunk size line too long",
            ChunkError::BadDataEnd => "chunk data not followed by CRLF",
            ChunkError::BadTrailers => "malformed trailers",
            ChunkError::TrailersTooLong => "trailers too large",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a chunk-size line (kept in `line`).
    Size,
    /// This many data bytes to go.
    Data(u64),
    /// The CRLF after data: how many of its two bytes were seen.
    DataEnd(u8),
    /// The trailer section (kept in `line`).
    Trailers,
    /// The body has ended.
    Done,
}

/// Follows one chunked body.
#[derive(Debug)]
pub struct ChunkedScanner {
    state: State,
    line: Vec<u8>,
}

impl Default for ChunkedScanner {
    fn default() -> Self {
        ChunkedScanner {
            state: State::Size,
            line: Vec::new(),
        }
    }
}

impl ChunkedScanner {
    /// Whether the body has ended.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Follows `input`: how many of its bytes belong to the body (all of
    /// them, unless the body ends inside it). `data` is given each piece
    /// of chunk data (the body decoded).
    pub fn feed(
        &mut self,
        input: &[u8],
        data: &mut impl FnMut(&[u8]),
    ) -> Result<usize, ChunkError> {
        let mut used = 0;
        while used < input.len() {
            let rest = &input[used..];
            match self.state {
                State::Done => break,
                State::Size => {
                    let (taken, line_done) = take_line(&mut self.line, rest);
                    used += taken;
                    if self.line.len() > MAX_SIZE_LINE {
                        return Err(ChunkError::SizeLineTooLong);
                    }
                    if line_done {
                        let size = size_line(&self.line)?;
                        self.line.clear();
                        self.state = if size == 0 {
                            State::Trailers
                        } else {
                            State::Data(size)
                        };
                    }
                }
                State::Data(left) => {
                    let step = left.min(rest.len() as u64) as usize;
                    data(&rest[..step]);
                    used += step;
                    self.state = match left - step as u64 {
                        0 => State::DataEnd(0),
                        left => State::Data(left),
                    };
                }
                State::DataEnd(seen) => {
                    let want = if seen == 0 { b'\r' } else { b'\n' };
                    if rest[0] != want {
                        return Err(ChunkError::BadDataEnd);
                    }
                    used += 1;
                    self.state = if seen == 0 {
                        State::DataEnd(1)
                    } else {
                        State::Size
                    };
                }
                State::Trailers => {
                    let (taken, line_done) = take_line(&mut self.line, rest);
                    used += taken;
                    if self.line.len() > MAX_TRAILERS {
                        return Err(ChunkError::TrailersTooLong);
                    }
                    // The section ends at an empty line: the first line
                    // of it, or a line after the last field.
                    if line_done && (self.line == b"\r\n" || self.line.ends_with(b"\r\n\r\n")) {
                        trailers(&self.line)?;
                        self.line = Vec::new();
                        self.state = State::Done;
                    } else if line_done && !self.line.ends_with(b"\r\n") {
                        return Err(ChunkError::BadTrailers);
                    }
                }
            }
        }
        Ok(used)
    }
}

/// Moves bytes of `input` into `line` up to and including the first LF:
/// how many were moved, and whether an LF ended them.
fn take_line(line: &mut Vec<u8>, input: &[u8]) -> (usize, bool) {
    match input.iter().position(|b| *b == b'\n') {
        Some(end) => {
            line.extend_from_slice(&input[..=end]);
            (end + 1, true)
        }
        None => {
            line.extend_from_slice(input);
            (input.len(), false)
        }
    }
}

/// The size of a complete chunk-size line (ending in LF).
fn size_line(line: &[u8]) -> Result<u64, ChunkError> {
    let Some(body) = line.strip_suffix(b"\r\n") else {
        return Err(ChunkError::BadSize);
    };
    // At least one digit first (httparse takes an empty size as 0), and no
    // control character but HTAB anywhere (httparse takes anything in an
    // extension, a bare CR or LF too).
    let starts_with_digit = body.first().is_some_and(u8::is_ascii_hexdigit);
    let clean = body
        .iter()
        .all(|b| *b == b'\t' || (*b >= 0x20 && *b != 0x7f));
    if !starts_with_digit || !clean {
        return Err(ChunkError::BadSize);
    }
    match httparse::parse_chunk_size(line) {
        Ok(httparse::Status::Complete((used, size))) if used == line.len() => Ok(size),
        _ => Err(ChunkError::BadSize),
    }
}

/// Checks a complete trailer section (field lines, then CRLF).
fn trailers(section: &[u8]) -> Result<(), ChunkError> {
    if !super::head::strict_line_ends(section) {
        return Err(ChunkError::BadTrailers);
    }
    let mut fields = [httparse::EMPTY_HEADER; MAX_TRAILER_FIELDS];
    match httparse::parse_headers(section, &mut fields) {
        Ok(httparse::Status::Complete((used, _))) if used == section.len() => Ok(()),
        _ => Err(ChunkError::BadTrailers),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole of `input` through a new scanner, `split` bytes at a
    /// time: the decoded body and how many bytes belonged to it (`None`:
    /// the input ended first).
    fn scan(input: &[u8], split: usize) -> Result<Option<(Vec<u8>, usize)>, ChunkError> {
        let mut scanner = ChunkedScanner::default();
        let mut body = Vec::new();
        let mut used = 0;
        for piece in input.chunks(split) {
            used += scanner.feed(piece, &mut |d| body.extend_from_slice(d))?;
            if scanner.is_done() {
                return Ok(Some((body, used)));
            }
        }
        Ok(None)
    }

    proptest::proptest! {
        #![proptest_config(crate::proxy::relay::cases(300))]

        /// However a body is cut into reads, the scanner finds the same
        /// data and the same end.
        #[test]
        fn any_split_finds_the_same_body_and_end(
            pieces in proptest::collection::vec(proptest::collection::vec(0u8..=255, 1..40), 0..6),
            split in 1usize..50,
        ) {
            let mut input = Vec::new();
            for piece in &pieces {
                input.extend_from_slice(format!("{:x};e=1\r\n", piece.len()).as_bytes());
                input.extend_from_slice(piece);
                input.extend_from_slice(b"\r\n");
            }
            input.extend_from_slice(b"0\r\nX-T: 1\r\n\r\nNEXT");
            let (body, used) = scan(&input, split).expect("valid").expect("complete");
            proptest::prop_assert_eq!(body, pieces.concat());
            proptest::prop_assert_eq!(&input[used..], b"NEXT");
        }
    }

    #[test]
    fn well_formed_bodies_end_where_they_end_however_they_arrive() {
        let input = b"5\r\nhello\r\nA;name=value\r\n0123456789\r\n0\r\nX-Sum: 1\r\n\r\nGET /next";
        for split in [1, 2, 3, 7, input.len()] {
            let (body, used) = scan(input, split).expect("valid").expect("complete");
            assert_eq!(body, b"hello0123456789", "split {split}");
            assert_eq!(&input[used..], b"GET /next", "split {split}");
        }
        let (body, used) = scan(b"0\r\n\r\n", 1).expect("valid").expect("complete");
        assert!(body.is_empty());
        assert_eq!(used, 5);
    }

    #[test]
    fn the_smuggling_shapes_are_refused() {
        let cases: [(&[u8], ChunkError); 12] = [
            (b"5\nhello\r\n0\r\n\r\n", ChunkError::BadSize), // bare LF after the size
            (b"5;a\nb\r\nhello\r\n0\r\n\r\n", ChunkError::BadSize), // bare LF in an extension
            (b"5;a\rb\r\nhello\r\n0\r\n\r\n", ChunkError::BadSize), // bare CR in an extension
            (b";a\r\nhello\r\n0\r\n\r\n", ChunkError::BadSize), // no digit
            (b" 5\r\nhello\r\n0\r\n\r\n", ChunkError::BadSize), // space before the size
            (b"0x5\r\nhello\r\n0\r\n\r\n", ChunkError::BadSize), // a 0x prefix
            (b"-5\r\nhello\r\n0\r\n\r\n", ChunkError::BadSize), // a sign
            (b"fffffffffffffffff\r\n", ChunkError::BadSize), // over 64 bits
            (b"5\r\nhelloXX0\r\n\r\n", ChunkError::BadDataEnd), // data longer than its size
            (b"5\r\nhello\n0\r\n\r\n", ChunkError::BadDataEnd), // bare LF after data
            (b"5\r\nhello\r\n0\r\nX: 1\n\r\n", ChunkError::BadTrailers), // bare LF in trailers
            (
                b"5\r\nhello\r\n0\r\nno colon\r\n\r\n",
                ChunkError::BadTrailers,
            ),
        ];
        for (input, error) in cases {
            assert_eq!(
                scan(input, input.len()).map(|_| ()),
                Err(error),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        let long = format!("5;{}\r\n", "x".repeat(MAX_SIZE_LINE));
        assert_eq!(
            scan(long.as_bytes(), 100).map(|_| ()),
            Err(ChunkError::SizeLineTooLong)
        );
    }
}
