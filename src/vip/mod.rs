//! The leader role: the node that is Raft leader, and has confirmed it with
//! a quorum within its lease, holds the virtual IP.
//!
//! The lease is shorter than the minimum election timeout, and it is
//! measured from the *start* of the last successful quorum confirmation:
//! no follower can campaign before a full election timeout has passed since
//! it last heard from this leader, so an isolated (or frozen and resumed)
//! old leader drops the VIP before any other node can be elected and take
//! it. In `bind` mode the VIP sockets are bound without SO_REUSEPORT, so
//! even a leader frozen while holding them keeps others out rather than
//! sharing the address.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use openraft::ServerState;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::control::{ClusterControl, unix_millis};

/// What `/status` shows of the role.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VipStatus {
    /// The virtual address, if one is configured.
    pub address: Option<String>,
    /// Whether this node holds it now.
    pub held: bool,
    /// `standby`, `holding` or `disabled`.
    pub state: &'static str,
    /// Unix ms of the last acquisition.
    pub last_acquire_ms: Option<u64>,
    /// Unix ms of the last release.
    pub last_release_ms: Option<u64>,
    /// While held: how long the lease still runs, in ms.
    pub fence_margin_ms: Option<u64>,
    /// The lease, in ms.
    pub lease_ms: u64,
}

/// The role on one node.
pub struct VipRole {
    address: Option<IpAddr>,
    lease: Duration,
    confirm_every: Duration,
    held: watch::Sender<Option<IpAddr>>,
    status: Mutex<VipStatus>,
    deadline: Mutex<Option<Instant>>,
    held_gauge: Gauge,
    acquisitions: Counter,
    releases: Counter,
}

impl VipRole {
    /// A role for `address` (none: the role is tracked but nothing is held),
    /// fencing on `lease` and confirming leadership every `confirm_every`.
    pub fn new(
        address: Option<IpAddr>,
        lease: Duration,
        confirm_every: Duration,
        metrics: &crate::metrics::Metrics,
    ) -> Self {
        let status = VipStatus {
            address: address.map(|a| a.to_string()),
            state: if address.is_some() {
                "standby"
            } else {
                "disabled"
            },
            lease_ms: lease.as_millis() as u64,
            ..VipStatus::default()
        };
        VipRole {
            address,
            lease,
            confirm_every,
            held: watch::channel(None).0,
            status: Mutex::new(status),
            deadline: Mutex::new(None),
            held_gauge: metrics.vip_held.clone(),
            acquisitions: metrics.vip_acquisitions.clone(),
            releases: metrics.vip_releases.clone(),
        }
    }

    /// The address while held, `None` otherwise; the engine listens on it.
    pub fn watch(&self) -> watch::Receiver<Option<IpAddr>> {
        self.held.subscribe()
    }

    /// The role now, for `/status`.
    pub fn status(&self) -> VipStatus {
        let mut status = self
            .status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        // The claim is fenced like the role: a node resumed after a freeze
        // says "not held" from its first answer, before its role task has
        // even run the release.
        match *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(deadline) if status.held && Instant::now() < deadline => {
                status.fence_margin_ms = Some(
                    deadline
                        .saturating_duration_since(Instant::now())
                        .as_millis() as u64,
                );
            }
            _ => status.held = false,
        }
        status
    }

    fn set_deadline(&self, deadline: Option<Instant>) {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) = deadline;
    }

    fn acquire(&self) {
        let Some(address) = self.address else { return };
        if self.held.borrow().is_some() {
            return;
        }
        self.held.send_replace(Some(address));
        self.held_gauge.set(1);
        self.acquisitions.inc();
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        status.held = true;
        status.state = "holding";
        status.last_acquire_ms = Some(unix_millis());
        tracing::info!(vip = %address, "VIP acquired");
    }

    fn release(&self, why: &str) {
        if self.held.borrow().is_none() {
            return;
        }
        self.held.send_replace(None);
        self.held_gauge.set(0);
        self.releases.inc();
        self.set_deadline(None);
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        status.held = false;
        status.state = "standby";
        status.last_release_ms = Some(unix_millis());
        tracing::info!(vip = ?self.address, why, "VIP released");
    }

    /// Runs the role until `stop`: while this node leads, confirms its
    /// leadership with a quorum every `confirm_every` and holds the VIP
    /// until the lease of the last confirmation runs out; releases at once
    /// when it stops leading or the lease expires.
    pub async fn run(&self, control: std::sync::Arc<ClusterControl>, stop: CancellationToken) {
        if self.address.is_none() {
            return;
        }
        let mut metrics = control.raft.metrics();
        let mut deadline: Option<Instant> = None;
        loop {
            let leading = {
                let m = metrics.borrow_and_update();
                m.state == ServerState::Leader && m.current_leader == Some(control.id)
            };
            if leading {
                let started = Instant::now();
                let confirm = tokio::time::timeout(self.lease, control.raft.get_read_log_id());
                tokio::pin!(confirm);
                let confirmed = loop {
                    tokio::select! {
                        result = &mut confirm => break matches!(result, Ok(Ok(_))),
                        () = sleep_until(deadline) => {
                            self.release("lease expired while confirming leadership");
                            deadline = None;
                        }
                        () = stop.cancelled() => {
                            self.release("shutting down");
                            return;
                        }
                    }
                };
                if confirmed {
                    deadline = Some(started + self.lease);
                    self.set_deadline(deadline);
                    self.acquire();
                }
            } else if deadline.take().is_some() || self.held.borrow().is_some() {
                self.release("no longer leader");
            }
            let next = Instant::now() + self.confirm_every;
            tokio::select! {
                () = tokio::time::sleep_until(next) => {}
                () = sleep_until(deadline) => {
                    self.release("lease expired");
                    deadline = None;
                }
                changed = metrics.changed() => if changed.is_err() { break },
                () = stop.cancelled() => break,
            }
        }
        self.release("shutting down");
    }

    /// Releases the VIP now (graceful hand-over, shutdown).
    pub fn step_down(&self, why: &str) {
        self.release(why);
    }
}

/// Sleeps until `deadline`, or forever when there is none.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
