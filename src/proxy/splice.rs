//! The L4 relay. Small reads are copied through one buffer per thread (an
//! idle connection holds no buffer at all); once a direction fills that
//! buffer in one read it switches to `splice(2)`, which moves bytes socket
//! → pipe → socket inside the kernel without copying them through user
//! space (HAProxy's `option splice-auto`). Pipes are kept in a per-thread
//! pool: creating two per connection cost more than it saved on short ones.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::metrics::counter::Counter;
use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::routing::now_ms;

/// Most bytes moved by one splice call, and the pipes' capacity (the
/// default is 64 KiB; bulk transfers need fewer calls with more).
const CHUNK: usize = 1024 * 1024;
/// The per-thread copy buffer; a read that fills it switches the
/// direction to splice.
const COPY_BUFFER: usize = 16 * 1024;
/// Empty pipes kept for reuse, per thread.
const PIPE_POOL: usize = 256;

thread_local! {
    static BUFFER: RefCell<Box<[u8]>> = RefCell::new(vec![0; COPY_BUFFER].into_boxed_slice());
    static PIPES: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
}

/// A pipe whose two ends close when it is dropped.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    /// An empty pipe from this thread's pool, or a new one.
    fn take() -> io::Result<Pipe> {
        match PIPES.with_borrow_mut(Vec::pop) {
            Some(pipe) => Ok(pipe),
            None => Pipe::new(),
        }
    }

    /// Gives an empty pipe back to this thread's pool.
    fn give_back(self) {
        PIPES.with_borrow_mut(|pool| {
            if pool.len() < PIPE_POOL {
                pool.push(self);
            }
        });
    }

    fn new() -> io::Result<Pipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: pipe2 fills the two descriptors on success; they are
        // owned by the returned Pipe alone.
        unsafe {
            if libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) < 0 {
                return Err(io::Error::last_os_error());
            }
            // A smaller pipe (if the system limit is lower) still works.
            libc::fcntl(fds[1], libc::F_SETPIPE_SZ, CHUNK as libc::c_int);
            Ok(Pipe {
                read: OwnedFd::from_raw_fd(fds[0]),
                write: OwnedFd::from_raw_fd(fds[1]),
            })
        }
    }
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: both descriptors are open for the duration of the call (the
    // caller borrows their owners); null offsets mean "current position".
    let moved = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if moved < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(moved as usize)
    }
}

/// Counts what one direction moved and stamps activity for the idle
/// timeout.
pub struct Meter<'a> {
    /// Bytes read from the source side.
    pub read: &'a Counter,
    /// Unix ms of the last bytes moved either way.
    pub last_activity: &'a AtomicU64,
}

/// What one read moved.
enum Moved {
    /// The source half-closed.
    End,
    /// Bytes moved, and whether the read filled the copy buffer.
    Bytes(usize, bool),
}

/// Moves everything `from` sends to `to` until `from` half-closes, then
/// half-closes `to`; the bytes moved.
pub async fn one_way(from: &TcpStream, to: &TcpStream, meter: Meter<'_>) -> io::Result<u64> {
    let mut pipe: Option<Pipe> = None;
    let mut total = 0u64;
    loop {
        from.readable().await?;
        let moved = match &pipe {
            Some(pipe) => splice_once(from, to, pipe).await?,
            None => copy_once(from, to).await?,
        };
        match moved {
            Moved::End => {
                // Pass the half-close on.
                // SAFETY: shutdown on a socket `to` owns and we borrow.
                unsafe { libc::shutdown(to.as_raw_fd(), libc::SHUT_WR) };
                if let Some(pipe) = pipe {
                    pipe.give_back();
                }
                return Ok(total);
            }
            Moved::Bytes(0, _) => continue,
            Moved::Bytes(n, filled) => {
                meter.read.inc_by(n as u64);
                meter.last_activity.store(now_ms(), Ordering::Relaxed);
                total += n as u64;
                if filled && pipe.is_none() {
                    pipe = Some(Pipe::take()?);
                }
            }
        }
    }
}

/// One read through the thread's buffer, written on at once; what the
/// socket would not take now is written from a copy.
async fn copy_once(from: &TcpStream, to: &TcpStream) -> io::Result<Moved> {
    let read = BUFFER.with_borrow_mut(|buffer| -> io::Result<Option<(usize, Vec<u8>)>> {
        let read = match read_draining(from, buffer) {
            Ok(read) => read,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Some((0, Vec::new()))),
            Err(e) => return Err(e),
        };
        if read == 0 {
            return Ok(None);
        }
        let mut written = 0;
        while written < read {
            match to.try_write(&buffer[written..read]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(Some((read, buffer[written..read].to_vec())))
    })?;
    let Some((read, rest)) = read else {
        return Ok(Moved::End);
    };
    let mut written = 0;
    while written < rest.len() {
        to.writable().await?;
        match to.try_write(&rest[written..]) {
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(Moved::Bytes(read, read == COPY_BUFFER))
}

/// Reads what `from` holds into `buffer`. A read that does not fill the
/// buffer has emptied the socket's queue, so the socket's read readiness is
/// cleared right away, instead of by one more read that would only say
/// EAGAIN: that saves a system call per exchange (HAProxy does the same).
/// Nothing is missed: bytes arriving later raise a new readiness event, and
/// tokio does not clear readiness that a newer event set.
fn read_draining(from: &TcpStream, buffer: &mut [u8]) -> io::Result<usize> {
    let mut read = 0;
    let result = from.try_io(Interest::READABLE, || {
        // SAFETY: recv writes at most `buffer.len()` bytes into `buffer`,
        // which we borrow mutably; the socket is open while `from` lives.
        let n = unsafe {
            libc::recv(
                from.as_raw_fd(),
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                0,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        read = n as usize;
        if read > 0 && read < buffer.len() {
            // Drained: have tokio clear the readiness.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(read)
    });
    match result {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && read > 0 => Ok(read),
        other => other,
    }
}

/// One splice into the pipe, then until the pipe is drained into `to`.
async fn splice_once(from: &TcpStream, to: &TcpStream, pipe: &Pipe) -> io::Result<Moved> {
    let filled = match from.try_io(Interest::READABLE, || {
        splice(from.as_raw_fd(), pipe.write.as_raw_fd(), CHUNK)
    }) {
        Ok(0) => return Ok(Moved::End),
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Moved::Bytes(0, false)),
        Err(e) => return Err(e),
    };
    let mut left = filled;
    while left > 0 {
        to.writable().await?;
        match to.try_io(Interest::WRITABLE, || {
            splice(pipe.read.as_raw_fd(), to.as_raw_fd(), left)
        }) {
            Ok(n) => left -= n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(Moved::Bytes(filled, true))
}

/// Relays both ways until both sides have half-closed: (bytes to the
/// backend, bytes to the client).
pub async fn relay(
    client: &TcpStream,
    backend: &TcpStream,
    to_backend: Meter<'_>,
    to_client: Meter<'_>,
) -> io::Result<(u64, u64)> {
    tokio::try_join!(
        one_way(client, backend, to_backend),
        one_way(backend, client, to_client)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A connected pair of loopback sockets.
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let (outer, accepted) = tokio::join!(TcpStream::connect(address), listener.accept());
        (outer.expect("connect"), accepted.expect("accept").0)
    }

    async fn read_exactly(stream: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut bytes = vec![0; n];
        stream.read_exact(&mut bytes).await.expect("read");
        bytes
    }

    #[tokio::test]
    async fn small_bursts_data_with_fin_and_replies_all_arrive() {
        // Every small read drains the socket and clears its readiness
        // without an EAGAIN read; each later burst must still wake the
        // relay, and data sent together with FIN must pass with the FIN.
        let (mut client, client_side) = pair().await;
        let (backend_side, mut backend) = pair().await;
        let (to_backend, to_client) = (Counter::default(), Counter::default());
        let activity = AtomicU64::new(0);
        let relay = relay(
            &client_side,
            &backend_side,
            Meter {
                read: &to_backend,
                last_activity: &activity,
            },
            Meter {
                read: &to_client,
                last_activity: &activity,
            },
        );
        let peers = async {
            for i in 0..50u8 {
                client.write_all(&[i; 10]).await.expect("write");
                assert_eq!(read_exactly(&mut backend, 10).await, [i; 10]);
                backend.write_all(&[i; 3]).await.expect("write");
                assert_eq!(read_exactly(&mut client, 3).await, [i; 3]);
            }
            client.write_all(b"last").await.expect("write");
            client.shutdown().await.expect("half-close");
            let mut rest = Vec::new();
            backend.read_to_end(&mut rest).await.expect("read to FIN");
            assert_eq!(rest, b"last");
            backend.write_all(b"reply").await.expect("write");
            backend.shutdown().await.expect("half-close");
            let mut rest = Vec::new();
            client.read_to_end(&mut rest).await.expect("read to FIN");
            assert_eq!(rest, b"reply");
        };
        let (moved, ()) = tokio::time::timeout(Duration::from_secs(10), async {
            tokio::join!(relay, peers)
        })
        .await
        .expect("no stall");
        assert_eq!(moved.expect("relay"), (50 * 10 + 4, 50 * 3 + 5));
        assert_eq!(to_backend.get(), 504);
    }
}
