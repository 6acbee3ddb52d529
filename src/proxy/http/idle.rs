//! The idle timeout of an HTTP exchange after its request is in: like
//! HAProxy's `timeout client` and `timeout server`, a body that moves no
//! data for `idle_timeout_ms` is cut, and which side stalled is known from
//! who the proxy was waiting on: the backend (its next bytes, or room for
//! the client's upload) or the client (its next bytes, or reading what was
//! already passed on).
//!
//! hyper stops polling a response body while the client does not read, so
//! a stalled client cannot be seen from inside the body; the bodies stamp
//! their progress here and the connection's own task watches the stamps.

use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::routing::now_ms;

/// The side an exchange waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client.
    Client,
    /// The backend.
    Server,
}

impl Side {
    /// `client` or `server`, as metrics and logs name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Server => "server",
        }
    }
}

/// Progress of the bodies of one client connection.
#[derive(Debug, Default)]
pub struct Activity {
    /// Bodies streaming now (request bodies sent, response bodies relayed).
    bodies: AtomicUsize,
    /// When a body last moved, in [`now_ms`].
    moved_ms: AtomicU64,
    /// Who the last body to move waits on now (0 client, 1 server).
    waiting_on: AtomicU8,
    /// Requests being handled now (HTTP/2: streams before their response
    /// head; the bodies after it count in `bodies`).
    requests: AtomicUsize,
}

impl Activity {
    /// A body starts streaming.
    pub fn begin(&self) {
        self.bodies.fetch_add(1, Ordering::Relaxed);
        self.moved(Side::Server);
    }

    /// A body ended or was dropped.
    pub fn end(&self) {
        self.bodies.fetch_sub(1, Ordering::Relaxed);
    }

    /// A body moved; it now waits on `side`.
    pub fn moved(&self, waiting_on: Side) {
        self.moved_ms.store(now_ms(), Ordering::Relaxed);
        self.waiting_on
            .store(u8::from(waiting_on == Side::Server), Ordering::Relaxed);
    }

    /// Bytes moved on the client's socket: progress, whoever is waited on.
    /// A slow but steady client moves bytes long before hyper asks a body
    /// for its next frame.
    pub fn progress(&self) {
        self.moved_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// Nothing moved, but the body now waits on `side` (a spurious poll
    /// must not count as progress).
    pub fn waits_on(&self, side: Side) {
        self.waiting_on
            .store(u8::from(side == Side::Server), Ordering::Relaxed);
    }

    /// A request came in; stamps the connection as busy.
    pub fn request_began(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.progress();
    }

    /// A request got its response head or was dropped.
    pub fn request_ended(&self) {
        self.requests.fetch_sub(1, Ordering::Relaxed);
        self.progress();
    }

    /// Resolves once the connection has had no request and no body in
    /// flight for `idle` (an HTTP/2 connection's keep-alive limit).
    pub async fn quiet(&self, idle: Duration) {
        let idle_ms = idle.as_millis() as u64;
        loop {
            let still = now_ms().saturating_sub(self.moved_ms.load(Ordering::Relaxed));
            let busy = self.requests.load(Ordering::Relaxed) > 0
                || self.bodies.load(Ordering::Relaxed) > 0;
            if !busy && still >= idle_ms {
                return;
            }
            let wait = if busy { idle_ms } else { idle_ms - still };
            tokio::time::sleep(Duration::from_millis(wait.max(1))).await;
        }
    }

    /// Resolves with the side that kept a body still for `idle`; never
    /// while no body streams. Sleeps until the earliest moment that can be
    /// true, so an idle connection wakes once per `idle`, not on a beat.
    pub async fn stalled(&self, idle: Duration) -> Side {
        let idle_ms = idle.as_millis() as u64;
        loop {
            let still = now_ms().saturating_sub(self.moved_ms.load(Ordering::Relaxed));
            let streaming = self.bodies.load(Ordering::Relaxed) > 0;
            if streaming && still >= idle_ms {
                return if self.waiting_on.load(Ordering::Relaxed) == 1 {
                    Side::Server
                } else {
                    Side::Client
                };
            }
            // A body that begins stamps `moved_ms`, so its deadline is at
            // least `idle` away from any wake-up before it began.
            let wait = if streaming { idle_ms - still } else { idle_ms };
            tokio::time::sleep(Duration::from_millis(wait.max(1))).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn names_the_side_a_streaming_body_waits_on() {
        let activity = Activity::default();
        // Nothing streams: never stalled.
        let idle = Duration::from_millis(40);
        assert!(
            tokio::time::timeout(Duration::from_millis(150), activity.stalled(idle))
                .await
                .is_err()
        );
        activity.begin();
        activity.moved(Side::Client);
        assert_eq!(activity.stalled(idle).await, Side::Client);
        activity.moved(Side::Server);
        assert_eq!(activity.stalled(idle).await, Side::Server);
        activity.end();
    }
}
