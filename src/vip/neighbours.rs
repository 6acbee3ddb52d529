//! The VIP on the wire (netlink mode): gratuitous announcements after
//! each acquisition, and answers to ARP and neighbour solicitations, both
//! only while this node holds the VIP within its lease and the engine
//! listens on it.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::lease_loop::lease_live;
use super::{Holder, VipRole};

impl VipRole {
    /// Whether the engine listens on the held VIP: until it does, an
    /// announcement would send clients to a node that refuses them.
    pub(super) fn listening_on_held(&self) -> bool {
        let held = *self.held.borrow();
        held.is_some() && *self.listening.borrow() == held
    }

    /// Announces the address in the background (netlink mode) until
    /// released: once at once, then repeated over the first second. Every
    /// frame is sent only inside the lease, checked at that moment: a task
    /// that wakes after a freeze sends nothing for an address it no longer
    /// holds.
    pub(super) fn announce(&self) {
        let Holder::Netlink(holder) = &self.holder else {
            return;
        };
        let stop = CancellationToken::new();
        if let Some(previous) = self
            .announcing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(stop.clone())
        {
            previous.cancel();
        }
        let Some(target) = holder.announcer() else {
            return;
        };
        let (frames, deadline) = (holder.announcements(), self.deadline.clone());
        let (mut listening, address) = (self.listening.subscribe(), *self.held.borrow());
        tokio::spawn(async move {
            // Opened and closed on a blocking thread (see AnnouncerTarget):
            // on the runtime's, the kernel's wait there held up the lease
            // loop that called it, and the confirmations queued behind it
            // (a live leader's lease lapsed as a partition healed: the
            // netns drill, "a peer answers again" followed by "lease
            // expired" 95 ms later).
            let announcer = match tokio::task::spawn_blocking(move || target.open()).await {
                Ok(Ok(announcer)) => announcer,
                Ok(Err(error)) => {
                    crate::warn_limited!("vip announce", %error, "cannot open a socket to announce the VIP");
                    return;
                }
                Err(_) => return,
            };
            let sending = async {
                // Not before the engine listens on the VIP: announced first,
                // it sent clients to a node that refused them for the ~10 ms
                // the engine took (1 request in about 10 runs of the SIGTERM
                // drill). Bounded: a frontend that cannot bind must not keep
                // the VIP unannounced.
                let _ = tokio::time::timeout(
                    LISTENING_WAIT,
                    listening.wait_for(|now| address.is_some() && *now == address),
                )
                .await;
                let gap = Duration::from_millis(1_000 / u64::from(frames.max(2) - 1));
                for frame in 0..frames {
                    if frame > 0 {
                        tokio::select! {
                            () = tokio::time::sleep(gap) => {}
                            () = stop.cancelled() => return,
                        }
                    }
                    if stop.is_cancelled() || !lease_live(&deadline) {
                        return;
                    }
                    if let Err(error) = announcer.send() {
                        crate::warn_limited!("vip announce", %error, "VIP announcement not sent");
                    }
                }
            };
            sending.await;
            drop(tokio::task::spawn_blocking(move || drop(announcer)));
        });
    }

    /// Answers ARP requests (IPv4) or neighbour solicitations (IPv6) for
    /// the VIP (netlink mode) until `stop`, and only while this node holds
    /// the VIP within its lease, checked for each question: the kernel does
    /// not answer for the VIP on the wire, so a holder that is dead or
    /// frozen answers nothing.
    pub async fn answer_neighbours(&self, stop: CancellationToken) {
        let Holder::Netlink(holder) = &self.holder else {
            return;
        };
        let socket = match holder.neighbour_socket() {
            None => return,
            Some(Ok(socket)) => socket,
            Some(Err(error)) => {
                tracing::error!(%error, "cannot open the ARP/NDP socket: nothing will answer for the VIP on the wire");
                return;
            }
        };
        // SAFETY: both socket kinds own their descriptor (an OwnedFd) for
        // their whole life and always return that one from as_raw_fd.
        let registered = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(socket, tokio::io::Interest::READABLE)
        };
        let socket = match registered {
            Ok(socket) => socket,
            Err(error) => {
                tracing::error!(%error, "cannot watch the ARP/NDP socket: nothing will answer for the VIP on the wire");
                return;
            }
        };
        let may_answer = || {
            self.listening_on_held()
                && self.answering_neighbours.load(Ordering::Acquire)
                && (self.leader_confirmed() || self.handing_over.load(Ordering::Acquire))
        };
        let mut buf = [0u8; 2048];
        loop {
            let mut ready = tokio::select! {
                ready = socket.readable() => match ready {
                    Ok(ready) => ready,
                    Err(error) => {
                        tracing::error!(%error, "ARP/NDP socket failed");
                        return;
                    }
                },
                () = stop.cancelled() => return,
            };
            loop {
                match ready.try_io(|s| s.get_ref().answer_one(&mut buf, may_answer)) {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => {
                        crate::warn_limited!("neighbour read", %error, "ARP/NDP socket read failed");
                        break;
                    }
                    Err(_would_block) => break,
                }
            }
        }
    }

    /// A hand-over's successor holds the VIP: stop answering ARP and
    /// neighbour solicitations for it
    /// (connections already here are still served until step_down).
    pub fn stop_answering_neighbours(&self) {
        self.answering_neighbours.store(false, Ordering::Release);
    }
}

/// Longest wait for the engine to listen on a newly held VIP before it
/// is announced anyway.
const LISTENING_WAIT: Duration = Duration::from_secs(1);
