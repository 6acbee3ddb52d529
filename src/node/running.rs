//! A started node: reload on SIGHUP, hand-over and drain on SIGTERM.

use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};

use super::RunningNode;
use crate::config::ClusterSpec;
use crate::raft::NodeId;
use crate::state::Command;

/// Longest a graceful hand-over keeps the VIP here waiting for the
/// successor to hold it.
const HAND_OVER_LIMIT: Duration = Duration::from_secs(3);
/// How long the old holder still serves once the successor holds the VIP:
/// requests already sent here finish, and neighbours move to the
/// successor, whose gratuitous ARPs span a second; Linux ignores an ARP
/// update within `locktime` (1 s by default) of the last one, so a
/// neighbour that refreshed the old entry a moment ago moves only with a
/// later announcement.
const HAND_OVER_LINGER: Duration = Duration::from_millis(1_200);

/// How long, past the vote lease, the other voters leave the election to
/// the successor of a node shutting down (its late messages may take up to
/// a second to drain first).
const HAND_OVER_WINDOW: Duration = Duration::from_millis(1_700);

impl RunningNode {
    /// SIGHUP: re-reads the TLS files, then the seed file, proposed as the
    /// whole configuration; a file that does not validate is logged and
    /// nothing of it changes.
    pub async fn reload(&self) {
        if let Some(tls) = &self.tls
            && let Err(error) = tls.reload(self.control.id)
        {
            tracing::error!(%error, "TLS reload refused; keeping the previous certificate");
        }
        let Some(path) = &self.seed_path else {
            if self.tls.is_none() {
                tracing::warn!("SIGHUP: no seed file configured; nothing to reload");
            }
            return;
        };
        let spec = match ClusterSpec::read(path) {
            Ok(spec) => spec,
            Err(error) => {
                tracing::error!(%error, "reload refused; keeping the current configuration");
                return;
            }
        };
        let command = Command::ApplyConfig {
            spec,
            if_version: None,
            note: None,
        };
        let caller = format!("SIGHUP on node {}", self.control.id);
        match self.control.write(command, caller, None).await {
            Ok(applied) => {
                tracing::info!(
                    version = applied.version,
                    changes = %crate::state::summarize(&applied.changes),
                    path = %path.display(),
                    "configuration reloaded"
                )
            }
            Err(error) => {
                tracing::error!(%error, path = %path.display(), "reload refused; keeping the current configuration")
            }
        }
    }

    /// Stops accepting, lets open requests and connections finish within
    /// the grace period, reports what had to be cut, then stops Raft.
    pub async fn shutdown(self) {
        // BGP mode: withdraw first, and take new connections while the
        // router moves the flows elsewhere; then drain.
        if let Some(bgp) = &self.bgp {
            bgp.withdraw_for_drain().await;
        }
        // Hand over first, so another node takes over while this one
        // finishes its open connections: release the VIP, stop Raft (no more
        // heartbeats), and once the followers' vote lease has run out, ask
        // the most caught-up follower to campaign at once instead of waiting
        // for its election timer.
        let mut successor = self.control.most_caught_up_follower();
        if let Some((id, raft_addr)) = &successor
            && self.vip.hold_through_hand_over()
        {
            // netlink mode, make before break: the successor is elected and
            // takes the VIP while this node still serves it; only then does
            // this node let go.
            if self.hand_over_keeping_vip(*id, raft_addr).await {
                successor = None;
            }
        }
        if let Some((id, _)) = &successor {
            // As a transfer does: the others keep still while the successor
            // takes over, rather than campaigning beside it (seen: two
            // candidates, each refusing the other, 10 s without a leader).
            self.control
                .announce_hand_over(*id, self.vote_lease + HAND_OVER_WINDOW)
                .await;
        }
        self.vip_stop.cancel();
        self.vip.step_down("shutting down").await;
        self.vip.restore_host();
        if let Err(error) = self.control.raft.shutdown().await {
            tracing::warn!(%error, "raft did not stop cleanly");
        }
        if let Some((id, raft_addr)) = successor {
            self.control.peer_rpcs.drained(Duration::from_secs(1)).await;
            tokio::time::sleep(self.vote_lease + Duration::from_millis(10)).await;
            let asked = self.control.ask_to_campaign(&raft_addr).await;
            tracing::info!(successor = id, asked, "handed leadership over");
        }
        self.shutdown.cancel();
        self.connections.close();
        let open = self.connections.len();
        tracing::info!(
            open,
            grace_ms = self.grace.as_millis() as u64,
            "draining connections"
        );
        if tokio::time::timeout(self.grace, self.connections.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                cut = self.connections.len(),
                "grace period over; cutting connections still open"
            );
        } else {
            tracing::info!("all connections finished");
        }
        // Only now: open connections to the VIP needed it local.
        if let Some(bgp) = &self.bgp {
            bgp.restore_host().await;
        }
        self.servers.cancel();
    }

    /// Hands leadership to `successor` while this node keeps serving the
    /// VIP, and returns once the successor holds it (plus a moment for
    /// requests already on their way here), or [`HAND_OVER_LIMIT`] passed;
    /// whether leadership moved.
    async fn hand_over_keeping_vip(&self, successor: NodeId, raft_addr: &str) -> bool {
        let started = std::time::Instant::now();
        if let Err(error) = self.control.transfer(Some(successor), true).await {
            tracing::warn!(%error, "hand-over failed; releasing the VIP first");
            return false;
        }
        let taken = tokio::time::timeout(HAND_OVER_LIMIT, async {
            loop {
                if self.control.vip_held_by(raft_addr).await == Some(true) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .is_ok();
        if taken {
            // Neighbours now learn the successor: this node stops answering
            // ARP, and still serves what was sent here meanwhile.
            self.vip.stop_answering_neighbours();
            tokio::time::sleep(HAND_OVER_LINGER).await;
        }
        tracing::info!(
            successor,
            taken,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "handed leadership over, keeping the VIP until the successor held it"
        );
        true
    }

    /// Runs until SIGTERM or SIGINT, reloading on SIGHUP, then shuts down.
    pub async fn run_until_signal(self) -> std::io::Result<()> {
        let mut hangup = signal(SignalKind::hangup())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        loop {
            tokio::select! {
                _ = hangup.recv() => {
                    tracing::info!("SIGHUP received: reloading the seed configuration");
                    self.reload().await;
                }
                _ = terminate.recv() => {
                    tracing::info!("SIGTERM received: shutting down");
                    break;
                }
                _ = interrupt.recv() => {
                    tracing::info!("SIGINT received: shutting down");
                    break;
                }
            }
        }
        self.shutdown().await;
        Ok(())
    }
}
