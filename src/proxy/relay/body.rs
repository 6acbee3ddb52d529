//! Moving a body from one side to the other as its framing says, through
//! the connection's read buffer and never more than [`CHUNK`] bytes of it
//! at a time: what the relay read past the head goes first, then reads
//! from the sender as the receiver takes the bytes. The bytes after the
//! body (a pipelined request, say) stay in the buffer for the next head.

use std::io;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::chunked::{ChunkError, ChunkedScanner};
use super::framing::BodyLength;

/// Most bytes read from the sender at a time.
pub const CHUNK: usize = 16 * 1024;

/// Why a body was not passed on whole.
#[derive(Debug)]
pub enum BodyError {
    /// The sender closed before the body's end.
    Closed,
    /// A malformed chunked body.
    Chunk(ChunkError),
    /// Reading from the sender failed.
    Read(io::Error),
    /// Writing to the receiver failed.
    Write(io::Error),
    /// The sender sent nothing for the idle timeout.
    SenderIdle,
    /// The receiver took nothing for the idle timeout.
    ReceiverIdle,
}

/// Passes on the body framed by `length`: from `buffer` (what was read
/// past the head), then from `from`, to `to`. Each read and each write
/// must move within `idle`. Returns the body's bytes as sent; `buffer`
/// keeps what follows the body.
pub async fn copy<R, W>(
    length: BodyLength,
    buffer: &mut BytesMut,
    from: &mut R,
    to: &mut W,
    idle: Duration,
) -> Result<u64, BodyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut sent = 0u64;
    match length {
        BodyLength::Empty => {}
        BodyLength::Length(total) => {
            while sent < total {
                if buffer.is_empty() && fill(buffer, from, idle).await? == 0 {
                    return Err(BodyError::Closed);
                }
                let take = (total - sent).min(buffer.len() as u64) as usize;
                send(to, &buffer[..take], idle).await?;
                buffer.advance(take);
                sent += take as u64;
            }
        }
        BodyLength::Chunked => {
            let mut scanner = ChunkedScanner::default();
            loop {
                if buffer.is_empty() && fill(buffer, from, idle).await? == 0 {
                    return Err(BodyError::Closed);
                }
                let used = scanner
                    .feed(buffer, &mut |_| {})
                    .map_err(BodyError::Chunk)?;
                send(to, &buffer[..used], idle).await?;
                buffer.advance(used);
                sent += used as u64;
                if scanner.is_done() {
                    break;
                }
            }
        }
        BodyLength::UntilClose => loop {
            if buffer.is_empty() && fill(buffer, from, idle).await? == 0 {
                break;
            }
            send(to, buffer, idle).await?;
            sent += buffer.len() as u64;
            buffer.clear();
        },
    }
    to.flush().await.map_err(BodyError::Write)?;
    Ok(sent)
}

/// Reads up to [`CHUNK`] bytes into the (empty) buffer: how many, 0 at
/// the sender's end.
async fn fill<R: AsyncRead + Unpin>(
    buffer: &mut BytesMut,
    from: &mut R,
    idle: Duration,
) -> Result<usize, BodyError> {
    buffer.reserve(CHUNK);
    let mut limited = (&mut *from).take(CHUNK as u64);
    match tokio::time::timeout(idle, limited.read_buf(buffer)).await {
        Ok(Ok(n)) => Ok(n),
        Ok(Err(error)) => Err(BodyError::Read(error)),
        Err(_) => Err(BodyError::SenderIdle),
    }
}

async fn send<W: AsyncWrite + Unpin>(
    to: &mut W,
    bytes: &[u8],
    idle: Duration,
) -> Result<(), BodyError> {
    match tokio::time::timeout(idle, to.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(BodyError::Write(error)),
        Err(_) => Err(BodyError::ReceiverIdle),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(5);

    /// Runs `copy` with `already` in the buffer and `rest` still to come
    /// from a pipe that closes after it: what the receiver got, the count,
    /// and what stayed in the buffer (the sender's bytes after the body,
    /// if it read them).
    async fn relay(
        length: BodyLength,
        already: &[u8],
        rest: &[u8],
    ) -> (Result<u64, BodyError>, Vec<u8>, Vec<u8>) {
        let (mut sender, mut from) = tokio::io::duplex(64);
        let rest = rest.to_vec();
        let writer = tokio::spawn(async move {
            let _ = sender.write_all(&rest).await;
        });
        let (mut to, mut receiver) = tokio::io::duplex(1 << 20);
        let mut buffer = BytesMut::from(already);
        let result = copy(length, &mut buffer, &mut from, &mut to, IDLE).await;
        drop(to);
        let mut got = Vec::new();
        receiver.read_to_end(&mut got).await.expect("read");
        writer.await.expect("writer");
        (result, got, buffer.to_vec())
    }

    #[tokio::test]
    async fn a_length_takes_its_bytes_and_leaves_the_next_message() {
        let (sent, got, left) = relay(BodyLength::Length(10), b"0123", b"456789GET").await;
        assert_eq!(sent.expect("copied"), 10);
        assert_eq!(got, b"0123456789");
        // What the sender sent after the body is the next message's.
        assert!(b"GET".starts_with(&left), "{left:?}");
        let (sent, _, _) = relay(BodyLength::Length(10), b"0123", b"45").await;
        assert!(matches!(sent, Err(BodyError::Closed)));
    }

    #[tokio::test]
    async fn a_chunked_body_goes_as_it_came_and_ends_where_it_ends() {
        let body = b"5\r\nhello\r\n3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n";
        let (sent, got, left) = relay(
            BodyLength::Chunked,
            &body[..4],
            &[&body[4..], b"NEXT"].concat(),
        )
        .await;
        assert_eq!(sent.expect("copied"), body.len() as u64);
        assert_eq!(got, body);
        assert!(b"NEXT".starts_with(&left), "{left:?}");
        let (sent, _, _) = relay(BodyLength::Chunked, b"", b"5\nhello\r\n0\r\n\r\n").await;
        assert!(matches!(sent, Err(BodyError::Chunk(ChunkError::BadSize))));
    }

    #[tokio::test]
    async fn a_body_until_close_is_everything() {
        let (sent, got, left) = relay(BodyLength::UntilClose, b"ab", b"cdef").await;
        assert_eq!(sent.expect("copied"), 6);
        assert_eq!(got, b"abcdef");
        assert!(left.is_empty());
    }

    #[tokio::test]
    async fn a_large_body_passes_in_bounded_memory() {
        let total = 4 << 20;
        let (mut sender, mut from) = tokio::io::duplex(64 * 1024);
        let writer = tokio::spawn(async move {
            let block = vec![b'x'; 64 * 1024];
            for _ in 0..total / block.len() {
                sender.write_all(&block).await.expect("write");
            }
        });
        let (mut to, mut receiver) = tokio::io::duplex(64 * 1024);
        let reader = tokio::spawn(async move {
            let mut n = 0u64;
            let mut buf = vec![0; 64 * 1024];
            loop {
                match receiver.read(&mut buf).await.expect("read") {
                    0 => return n,
                    k => n += k as u64,
                }
            }
        });
        let mut buffer = BytesMut::new();
        let sent = copy(
            BodyLength::Length(total as u64),
            &mut buffer,
            &mut from,
            &mut to,
            IDLE,
        )
        .await
        .expect("copied");
        drop(to);
        assert_eq!(sent, total as u64);
        assert_eq!(reader.await.expect("reader"), total as u64);
        assert!(buffer.capacity() <= 2 * CHUNK, "{}", buffer.capacity());
        writer.await.expect("writer");
    }

    #[tokio::test(start_paused = true)]
    async fn a_sender_that_stops_is_cut_at_the_idle_timeout() {
        let (_sender, mut from) = tokio::io::duplex(64);
        let (mut to, _receiver) = tokio::io::duplex(64);
        let mut buffer = BytesMut::from(&b"01"[..]);
        let result = copy(
            BodyLength::Length(10),
            &mut buffer,
            &mut from,
            &mut to,
            IDLE,
        )
        .await;
        assert!(matches!(result, Err(BodyError::SenderIdle)));
    }
}
