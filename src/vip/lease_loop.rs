//! The VIP role's loop: while this node leads, a quorum confirms its
//! lease every `confirm_every`, and the VIP is held until the lease of the
//! latest confirmation runs out; in netlink mode the address's lifetime
//! is renewed beside it.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use openraft::ServerState;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Holder, VipRole};
use crate::control::ClusterControl;

impl VipRole {
    /// Runs the role until `stop`: while this node leads, starts a
    /// confirmation of its leadership with a quorum every `confirm_every`,
    /// and holds the VIP until the lease of the latest confirmation (from
    /// when it started) runs out; releases at once when it stops leading or
    /// the lease expires.
    ///
    /// Confirmations overlap: one that a busy scheduler delays does not hold
    /// back the next. One at a time, each waiting for the last, the lease
    /// lapsed whenever a confirmation took more than about a third of it
    /// (on a loaded CI machine: the VIP released and taken again 9 ms later,
    /// and a request refused meanwhile); overlapping, it lapses only when
    /// confirmations take longer than the lease less `confirm_every`.
    ///
    /// It runs with no VIP configured too: the lease it keeps is what
    /// `/status` and `ctl status` report as a confirmed leader.
    pub async fn run(self: &Arc<Self>, control: Arc<ClusterControl>, stop: CancellationToken) {
        use futures_util::StreamExt;
        tokio::spawn(self.clone().renew_while_held(stop.clone()));
        let mut metrics = control.raft.metrics();
        let mut deadline: Option<Instant> = None;
        // Each resolves with when it started and whether a quorum
        // confirmed; none waits past its lease. Each runs on a task of its
        // own (aborted when dropped): while this loop awaits the kernel
        // (renewing the address after every confirmation, netlink mode) or
        // a release, the confirmations under way go on. Polled only from
        // here, their own promise step used to wait for the loop, and on a
        // loaded machine a node's return made one such wait outlast the
        // lease under a live leader (netns drill, kill round).
        let mut confirming = futures_util::stream::FuturesUnordered::new();
        let mut next_confirm = Instant::now();
        let mut last_turn = Instant::now();
        loop {
            // While leading, the loop turns at least every confirm_every; a
            // longer gap means it was held up inside a turn.
            let turn = Instant::now();
            let gap = turn.duration_since(last_turn);
            last_turn = turn;
            if deadline.is_some() && gap > self.lease / 2 {
                crate::warn_each_second!(
                    "lease loop turned late",
                    gap_ms = gap.as_millis() as u64,
                    "the VIP role's loop was held up for over half the lease"
                );
            }
            if self.handing_over.load(Ordering::Acquire) {
                // Held without confirmations until the hand-over ends
                // (step_down releases it); the lease does not apply.
                confirming.clear();
                tokio::select! {
                    () = tokio::time::sleep(self.confirm_every) => continue,
                    () = stop.cancelled() => break,
                }
            }
            let leading = {
                let m = metrics.borrow_and_update();
                m.state == ServerState::Leader && m.current_leader == Some(control.id)
            } && !self.paused.load(Ordering::Acquire);
            if !leading {
                confirming.clear();
                if deadline.take().is_some() || self.held.borrow().is_some() {
                    self.release("no longer leader").await;
                }
            } else if Instant::now() >= next_confirm {
                let started = Instant::now();
                let (control, lease) = (control.clone(), self.lease);
                confirming.push(tokio_util::task::AbortOnDropHandle::new(tokio::spawn(
                    async move {
                        let confirmed = control.confirm_lease(lease).await;
                        (started, confirmed, Instant::now())
                    },
                )));
                next_confirm = started + self.confirm_every;
            }
            tokio::select! {
                // A confirmation that has come back is taken before the
                // lease's end is acted on: if it is still in time, the
                // lease runs on from it.
                biased;
                Some(finished) = confirming.next(), if !confirming.is_empty() => {
                    let (started, confirmed, came_back) = match finished {
                        Ok(finished) => finished,
                        Err(error) => {
                            crate::warn_each_second!(
                                "lease confirmation lost",
                                %error,
                                "a lease confirmation's task ended without an answer"
                            );
                            continue;
                        }
                    };
                    let end = started + self.lease;
                    if confirmed && came_back >= end {
                        crate::warn_each_second!(
                            "lease confirmation after its lease",
                            took_ms = came_back.duration_since(started).as_millis() as u64,
                            "a quorum confirmed the lease only after that lease had ended"
                        );
                    }
                    if confirmed && came_back < end && Instant::now() >= end {
                        // In time, but read after its lease ended: the loop
                        // itself was held up (a lapse with no other warning).
                        crate::warn_each_second!(
                            "lease confirmation read late",
                            read_late_ms = Instant::now().duration_since(came_back).as_millis() as u64,
                            "a lease confirmation came back in time but this loop read it after the lease ended"
                        );
                    }
                    // A confirmation that comes back after its own lease
                    // ran out (the process was frozen while it waited)
                    // gives nothing; nor does one older than the lease
                    // already held.
                    if confirmed
                        && Instant::now() < end
                        && deadline.is_none_or(|held| end > held)
                        && !self.paused.load(Ordering::Acquire)
                    {
                        deadline = Some(end);
                        self.set_deadline(deadline);
                        self.acquire().await;
                        if self.held.borrow().is_some() {
                            let margin = end.saturating_duration_since(Instant::now());
                            self.margin_gauge.set(margin.as_millis() as i64);
                        }
                    }
                }
                () = tokio::time::sleep_until(next_confirm), if leading => {}
                () = sleep_until(deadline) => {
                    if !self.handing_over.load(Ordering::Acquire) {
                        self.release("lease expired").await;
                    }
                    deadline = None;
                }
                () = self.peer_back.notified() => {
                    if self.held.borrow().is_some() {
                        tracing::info!("a peer answers again: announcing the VIP again");
                        self.announce();
                    }
                }
                changed = metrics.changed() => if changed.is_err() { break },
                () = stop.cancelled() => break,
            }
        }
        self.release("shutting down").await;
    }

    /// Netlink mode: renews the held address's lifetime (one second) every
    /// `confirm_every` while the lease is live, so that the kernel drops
    /// it by itself a second after a holder died or froze. On a task of
    /// its own: the kernel may keep a renewal waiting on its rtnl lock
    /// (taken by every address and link change on the machine, and held
    /// long by a network namespace's removal), and the role's loop, which
    /// starts the confirmations, must not wait with it. Done in that loop
    /// after every confirmation, such a wait of over 100 ms let a live
    /// leader's lease lapse (netns drill, while other tests made and
    /// removed namespaces).
    pub(super) async fn renew_while_held(self: Arc<Self>, stop: CancellationToken) {
        let Holder::Netlink(holder) = &self.holder else {
            return;
        };
        let mut tick = tokio::time::interval(self.confirm_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.cancelled() => return,
            }
            // Under the transition lock, checked again there: a renewal
            // never re-adds an address a release has removed.
            let _transition = self.transition.lock().await;
            if self.held.borrow().is_none()
                || self.paused.load(Ordering::Acquire)
                || !self.leader_confirmed()
            {
                continue;
            }
            let began = Instant::now();
            if let Err(error) = holder.add().await {
                tracing::warn!(%error, "cannot renew the VIP");
            }
            if began.elapsed() > self.lease / 2 {
                crate::warn_each_second!(
                    "vip renewal slow",
                    took_ms = began.elapsed().as_millis() as u64,
                    "renewing the VIP's address took over half the lease (the kernel's rtnl lock is busy)"
                );
            }
        }
    }
}

/// The lease's end as last confirmed, if any.
pub(super) fn lease_end(deadline: &Mutex<Option<Instant>>) -> Option<Instant> {
    *deadline.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether the lease still runs now.
pub(super) fn lease_live(deadline: &Mutex<Option<Instant>>) -> bool {
    lease_end(deadline).is_some_and(|end| Instant::now() < end)
}

/// Sleeps until `deadline`, or forever when there is none.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
