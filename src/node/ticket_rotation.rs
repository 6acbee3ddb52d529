//! The leader keeps the cluster's session-ticket keys fresh while a
//! frontend terminates TLS: when there is none yet, or the newest is older
//! than `ROTATE_EVERY_MS`, it commits a new one (made here, so every node
//! applies the same key). A cluster without `https` or `tls` frontends,
//! nor pools that sign sticky cookies, makes no such writes.

use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use tokio_util::sync::CancellationToken;

use crate::config::Protocol;
use crate::control::{ClusterControl, unix_millis};
use crate::state::Command;
use crate::state::ticket_keys::{TicketKey, due};

/// How often the leader looks.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Runs until `stop`.
pub(super) async fn run(control: Arc<ClusterControl>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        let leading = control.raft.metrics().borrow().state == ServerState::Leader;
        if !leading {
            continue;
        }
        let state = control.served.state();
        // Also the keys of signed sticky cookies (derived from these).
        let terminates = state
            .spec
            .frontends
            .iter()
            .any(|f| matches!(f.protocol, Protocol::Https | Protocol::Tls))
            || state
                .spec
                .pools
                .iter()
                .any(|p| p.sticky.as_ref().is_some_and(|s| s.signed));
        let now = unix_millis();
        if !terminates || !due(&state.ticket_keys, now) {
            continue;
        }
        let key = TicketKey::generate(now);
        // A request id: an entry without one counts as a version (0.7's
        // rule), and a rotation is no configuration change.
        let request_id = format!("ticket-key-{}", key.id);
        let command = Command::RotateTicketKeys { key };
        let caller = format!("node {} (session-ticket key rotation)", control.id);
        match control.write(command, caller, Some(request_id)).await {
            Ok(_) => tracing::info!("session-ticket keys rotated"),
            Err(error) => {
                crate::warn_limited!("ticket rotation", %error, "session-ticket key rotation failed")
            }
        }
    }
}
