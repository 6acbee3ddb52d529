//! `[vip] mode = "bgp"`: every eligible node announces the VIP through
//! its local BIRD, and the router spreads flows over them (ECMP), as
//! MetalLB's BGP mode or Katran do. raftlb speaks no BGP: BIRD does
//! ([`bird`]), learning the VIP from an interface this process owns
//! ([`device`]).
//!
//! What the cluster adds is the fence: a node announces only while it is
//! eligible, that is
//! - healthy: every frontend's default pool has a backend its own checks
//!   pass;
//! - in the quorum, within its lease: a majority of voters, itself
//!   included, answered it within the last lease ([`quorum`]; no leader
//!   needed, so an election does not withdraw the cluster, and a node cut
//!   off from the others withdraws within a lease though its BGP session
//!   to the router stays up);
//! - not draining (SIGTERM, where it withdraws first and drains after).
//!
//! Every node also keeps the VIP on `lo`, so the kernel takes traffic for
//! it whether or not this node announces it: flows the router still sends
//! during a withdrawal are served, not reset.

pub mod bird;
mod device;
mod quorum;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{AdminState, BgpConfig};
use crate::control::{ClusterControl, unix_millis};
use crate::routing::{Health, RoutingTable};
use device::AnnounceDevice;
use quorum::QuorumWatch;

/// How often a held announcement's address is renewed (its lifetime is
/// one second).
const RENEW_EVERY: Duration = Duration::from_millis(250);
/// How long an added address lives unless renewed (the kernel's
/// lifetime).
const ANNOUNCED_FOR: Duration = Duration::from_secs(crate::vip::netlink::ADDRESS_LIFETIME_S as u64);
/// How often BIRD is asked for the session's state.
const SESSION_POLL: Duration = Duration::from_secs(1);

/// What `/status` shows of the announcement (and `ctl status`, through
/// the node's report to its peers).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BgpStatus {
    /// The VIP.
    pub address: String,
    /// Eligible, and BIRD's session to the router is established.
    pub announcing: bool,
    /// Why not: `unhealthy`, `no quorum`, `draining`, `BIRD: <state>`.
    pub why_not: Vec<String>,
    /// Unix ms of the last change of `announcing`.
    pub since_ms: Option<u64>,
    /// BIRD's session state (`Established`, `Active`, …) or why unknown.
    pub session: String,
    /// The router.
    pub peer: String,
    /// The interface the announcement lives on.
    pub device: String,
}

/// One node's announcement of the VIP.
pub struct BgpSpeaker {
    config: BgpConfig,
    device: AnnounceDevice,
    draining: AtomicBool,
    /// Withdrawn for good (SIGTERM): no undrain takes it back.
    stopping: AtomicBool,
    /// Held across deciding and acting, by the loop and by a withdrawal
    /// for good, so no renewal lands after that withdrawal.
    turn: tokio::sync::Mutex<()>,
    quorum: Arc<QuorumWatch>,
    status: Mutex<BgpStatus>,
    lease: Duration,
    every: Duration,
    announcing_gauge: Gauge,
    session_gauge: Gauge,
    /// The VIP, for good: every node's engine listens on it.
    listen_on: tokio::sync::watch::Sender<Option<IpAddr>>,
}

impl BgpSpeaker {
    /// Creates the announcing interface and puts the VIP on `lo`;
    /// refuses to start without the privileges.
    pub async fn open(
        vip: IpAddr,
        config: BgpConfig,
        lease: Duration,
        every: Duration,
        metrics: &crate::metrics::Metrics,
    ) -> Result<Self, String> {
        let device = AnnounceDevice::open(&config.device, vip).await?;
        device.accept_on_loopback().await?;
        let status = BgpStatus {
            address: vip.to_string(),
            peer: config.peer.to_string(),
            device: device.name().to_string(),
            session: "not read yet".into(),
            ..BgpStatus::default()
        };
        tracing::info!(vip = %vip, device = device.name(), peer = %config.peer, "BGP mode: announcing through the local BIRD while eligible");
        Ok(BgpSpeaker {
            config,
            device,
            draining: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            turn: tokio::sync::Mutex::new(()),
            quorum: Arc::default(),
            status: Mutex::new(status),
            lease,
            every,
            announcing_gauge: metrics.bgp_announcing.clone(),
            session_gauge: metrics.bgp_session_established.clone(),
            listen_on: tokio::sync::watch::channel(Some(vip)).0,
        })
    }

    /// Where the engine listens: the VIP, on every node, for good.
    pub fn listen_on(&self) -> tokio::sync::watch::Receiver<Option<IpAddr>> {
        self.listen_on.subscribe()
    }

    /// The announcement now, for `/status`.
    pub fn status(&self) -> BgpStatus {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Withdraws for good and waits `withdraw_wait_ms` while the router
    /// moves new flows to the other nodes; this node still serves what
    /// reaches it meanwhile. Then the caller drains.
    pub async fn withdraw_for_drain(&self) {
        {
            let _turn = self.turn.lock().await;
            self.stopping.store(true, Ordering::Release);
            if let Err(error) = self.device.withdraw().await {
                tracing::error!(%error, "cannot withdraw the VIP");
            }
        }
        self.set_announcing(false, vec!["draining".into()]);
        let wait = Duration::from_millis(self.config.withdraw_wait_ms);
        tracing::info!(
            wait_ms = wait.as_millis() as u64,
            "VIP withdrawn; waiting for the router before draining"
        );
        tokio::time::sleep(wait).await;
    }

    /// Drains (withdraws at the next turn, new flows go elsewhere, open
    /// ones go on) or stops draining (`ctl node drain|undrain`).
    pub fn set_draining(&self, drain: bool) {
        if self.draining.swap(drain, Ordering::AcqRel) != drain {
            tracing::info!(drain, "BGP announcement: drain set by the operator");
        }
    }

    /// Why this node may not announce now (empty: it may).
    fn why_not(&self, control: &ClusterControl) -> Vec<String> {
        let mut why = Vec::new();
        if self.draining.load(Ordering::Acquire) || self.stopping.load(Ordering::Acquire) {
            why.push("draining".into());
        }
        if control.served.version() == 0 {
            why.push("no configuration yet".into());
        }
        if !self.quorum.reaches_quorum(control, self.lease) {
            why.push("no quorum".into());
        }
        if let Some(pool) = unhealthy_pool(&control.served.table().load()) {
            why.push(format!("unhealthy: pool {pool} has no backend up"));
        }
        why
    }

    /// Runs the announcement until `stop`, then withdraws.
    pub async fn run(self: Arc<Self>, control: Arc<ClusterControl>, stop: CancellationToken) {
        tokio::spawn(self.clone().poll_session(stop.clone()));
        tokio::spawn(self.quorum.clone().run(
            control.clone(),
            self.every,
            self.lease,
            stop.clone(),
        ));
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut renewed: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.cancelled() => break,
            }
            let _turn = self.turn.lock().await;
            let mut why = self.why_not(&control);
            if why.is_empty() {
                if renewed.is_none_or(|at| at.elapsed() >= RENEW_EVERY) {
                    match self.device.announce().await {
                        Ok(()) => renewed = Some(Instant::now()),
                        Err(error) => {
                            crate::warn_each_second!("bgp announce failed", %error, "cannot announce the VIP");
                        }
                    }
                }
                // Not renewed within the address's lifetime: it is gone.
                if renewed.is_some_and(|at| at.elapsed() >= ANNOUNCED_FOR) {
                    renewed = None;
                    why.push("cannot add the address (see the log)".into());
                }
            } else if renewed.take().is_some()
                && let Err(error) = self.device.withdraw().await
            {
                tracing::error!(%error, "cannot withdraw the VIP");
            }
            if renewed.is_some() {
                let session = self.status().session;
                if session != bird::ESTABLISHED {
                    why.push(format!("BIRD: {session}"));
                }
            }
            self.set_announcing(why.is_empty() && renewed.is_some(), why);
        }
        if let Err(error) = self.device.withdraw().await {
            tracing::error!(%error, "cannot withdraw the VIP");
        }
        self.set_announcing(false, vec!["stopped".into()]);
    }

    fn set_announcing(&self, announcing: bool, why_not: Vec<String>) {
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        if status.announcing != announcing || status.since_ms.is_none() {
            tracing::info!(announcing, why_not = ?why_not, "BGP announcement changed");
            status.since_ms = Some(unix_millis());
        }
        status.announcing = announcing;
        status.why_not = why_not;
        self.announcing_gauge.set(i64::from(announcing));
    }

    /// Reads BIRD's session state every [`SESSION_POLL`].
    async fn poll_session(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(SESSION_POLL);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.cancelled() => return,
            }
            let session = bird::session_state(&self.config.bird_socket)
                .await
                .unwrap_or_else(|error| error);
            self.session_gauge
                .set(i64::from(session == bird::ESTABLISHED));
            self.status
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .session = session;
        }
    }

    /// Removes the VIP from `lo` at exit.
    pub async fn restore_host(&self) {
        if let Err(error) = self.device.stop_accepting_on_loopback().await {
            tracing::warn!(%error, "cannot remove the VIP from lo");
        }
    }
}

/// A frontend's default pool with no backend this node's checks pass, if
/// any (the backends of an unchecked pool count as up from the start).
fn unhealthy_pool(table: &RoutingTable) -> Option<&str> {
    table.frontends.iter().find_map(|frontend| {
        let pool = table.pools.get(frontend.default_pool)?;
        let up = pool.backends.iter().any(|backend| {
            backend.admin_state == AdminState::Active && backend.runtime.health() == Health::Up
        });
        (!up).then_some(pool.name.as_str())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(check: &str, admin_state: &str) -> RoutingTable {
        RoutingTable::compiled_for_tests(&format!(
            "[[frontend]]\nname = \"web\"\nport = 8080\nprotocol = \"http\"\npool = \"web\"\n\n\
             [[pool]]\nname = \"web\"\n  [pool.health]\n  check = \"{check}\"\n  rise = 1\n  fall = 1\n\
             \x20 [[pool.backend]]\n  address = \"127.0.0.1:9000\"\n  admin_state = \"{admin_state}\"\n"
        ))
    }

    #[test]
    fn a_node_is_unhealthy_while_a_default_pool_has_no_backend_up() {
        let checked = table("tcp", "active");
        // Not checked yet: not eligible until the first check passes.
        assert_eq!(unhealthy_pool(&checked), Some("web"));
        let backend = &checked.pools[0].backends[0].runtime;
        backend.record_check(Ok(()), 1, 1);
        assert_eq!(unhealthy_pool(&checked), None);
        backend.record_check(Err("refused".into()), 1, 1);
        assert_eq!(unhealthy_pool(&checked), Some("web"));
        // Unchecked pools count as up; a disabled backend never does.
        assert_eq!(unhealthy_pool(&table("none", "active")), None);
        assert_eq!(unhealthy_pool(&table("none", "disabled")), Some("web"));
    }
}
