//! The leader role: the node that is Raft leader, and has confirmed it with
//! a quorum within its lease, holds the virtual IP.
//!
//! The lease is shorter than the minimum election timeout, and it is
//! measured from the *start* of the last successful quorum confirmation:
//! each voter that confirmed promised to vote for nobody for a full
//! election timeout (see `control::lease`), so an isolated (or frozen and
//! resumed) old leader drops the VIP before any other node can be elected and take
//! it. In `bind` mode the VIP sockets are bound without SO_REUSEPORT, so
//! even a leader frozen while holding them keeps others out rather than
//! sharing the address.
//!
//! How the address is held is the [`Holder`]: `bind` (the engine listens on
//! it), [`netlink`] (a local address, announced and answered for on the
//! wire by this process: ARP in [`garp`], IPv6 neighbour discovery in
//! [`ndp`]) or [`script`] (operator commands).
//!
//! Here: the role's state, acquiring and releasing. `lease_loop` runs the
//! role (confirmations, the lease's end, the netlink address's renewal);
//! `neighbours` announces and answers for the VIP on the wire; `hooks` runs
//! the script mode's commands in order.

pub mod bgp;
pub mod garp;
mod hooks;
mod lease_loop;
pub mod ndp;
mod neighbours;
pub mod netlink;
pub mod script;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::control::unix_millis;
use hooks::HookJob;
use lease_loop::{lease_end, lease_live};

pub use netlink::NetlinkHolder;
pub use script::ScriptHooks;

/// How the held address is made to receive traffic. In every mode the
/// engine also listens on the VIP while it is held (unless it already
/// listens on the wildcard address).
pub enum Holder {
    /// Listening is all there is to it (loopback, or an address routed to
    /// every node).
    Bind,
    /// A local address on `lo`, announced (gratuitous ARP, unsolicited
    /// neighbour advertisements) and answered for by this process.
    Netlink(Arc<NetlinkHolder>),
    /// Operator commands on acquire and release.
    Script(ScriptHooks),
}

/// What `/status` shows of the role.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VipStatus {
    /// The virtual address, if one is configured.
    pub address: Option<String>,
    /// Whether this node holds it now.
    pub held: bool,
    /// `standby`, `holding`, `disabled`, or `bgp` (every eligible node
    /// announces it; see `bgp`).
    pub state: &'static str,
    /// Unix ms of the last acquisition.
    pub last_acquire_ms: Option<u64>,
    /// Unix ms of the last release.
    pub last_release_ms: Option<u64>,
    /// While held: how long the lease still runs, in ms.
    pub fence_margin_ms: Option<u64>,
    /// The lease, in ms.
    pub lease_ms: u64,
    /// `mode = "bgp"`: this node's announcement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bgp: Option<bgp::BgpStatus>,
}

/// The role on one node.
pub struct VipRole {
    address: Option<IpAddr>,
    holder: Holder,
    paused: AtomicBool,
    /// Graceful hand-over (SIGTERM) in netlink mode: the VIP stays here,
    /// unconfirmed, until the successor holds it (make before break).
    handing_over: AtomicBool,
    /// Off once a successor holds the VIP during a hand-over: this node
    /// still serves connections already sent here, but answers no more ARP,
    /// so neighbours settle on the successor.
    answering_neighbours: AtomicBool,
    announcing: Mutex<Option<CancellationToken>>,
    /// Held through every acquire and release, so neither interleaves with
    /// the other (an address added while a release ran would stay).
    transition: tokio::sync::Mutex<()>,
    /// Script hooks queued for the hook task, in event order.
    hooks: Option<mpsc::UnboundedSender<HookJob>>,
    hook_queue: Mutex<Option<mpsc::UnboundedReceiver<HookJob>>>,
    peer_back: Arc<Notify>,
    lease: Duration,
    confirm_every: Duration,
    held: watch::Sender<Option<IpAddr>>,
    /// The VIP the engine listens on (every frontend's listener bound),
    /// reported by the engine: the VIP is announced, and ARP answered for
    /// it, only once it equals `held`.
    listening: Arc<watch::Sender<Option<IpAddr>>>,
    status: Mutex<VipStatus>,
    /// End of the leader lease from the last quorum confirmation; shared
    /// with announcement tasks, which check it before every frame.
    deadline: Arc<Mutex<Option<Instant>>>,
    held_gauge: Gauge,
    confirmed_gauge: Gauge,
    acquisitions: Counter,
    releases: Counter,
    last_acquire_gauge: Gauge,
    last_release_gauge: Gauge,
    margin_gauge: Gauge,
    /// `mode = "bgp"`: the announcement, whose state `/status` shows.
    bgp: std::sync::OnceLock<Arc<bgp::BgpSpeaker>>,
}

impl VipRole {
    /// A role for `address` (none: the role is tracked but nothing is held),
    /// held by `holder`, fencing on `lease` and confirming leadership every
    /// `confirm_every`. `peer_back` is notified when a peer that was
    /// unreachable answers again (a healed partition): the holder announces
    /// itself again.
    pub fn new(
        address: Option<IpAddr>,
        holder: Holder,
        peer_back: Arc<Notify>,
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
        let (hooks, hook_queue) = match holder {
            Holder::Script(_) => {
                let (tx, rx) = mpsc::unbounded_channel();
                (Some(tx), Some(rx))
            }
            _ => (None, None),
        };
        VipRole {
            address,
            holder,
            paused: AtomicBool::new(false),
            handing_over: AtomicBool::new(false),
            answering_neighbours: AtomicBool::new(true),
            announcing: Mutex::new(None),
            transition: tokio::sync::Mutex::new(()),
            hooks,
            hook_queue: Mutex::new(hook_queue),
            peer_back,
            lease,
            confirm_every,
            held: watch::channel(None).0,
            listening: Arc::new(watch::channel(None).0),
            status: Mutex::new(status),
            deadline: Arc::default(),
            held_gauge: metrics.vip_held.clone(),
            confirmed_gauge: metrics.leader_confirmed.clone(),
            acquisitions: metrics.vip_acquisitions.clone(),
            releases: metrics.vip_releases.clone(),
            last_acquire_gauge: metrics.vip_last_acquire.clone(),
            last_release_gauge: metrics.vip_last_release.clone(),
            margin_gauge: metrics.vip_fence_margin.clone(),
            bgp: std::sync::OnceLock::new(),
        }
    }

    /// `mode = "bgp"`: the node's announcement, shown in `/status`.
    pub fn set_bgp(&self, speaker: Arc<bgp::BgpSpeaker>) {
        let _ = self.bgp.set(speaker);
    }

    /// `mode = "bgp"`: withdraws (`drain`) or announces again when
    /// eligible; whether it drains now (`None`: not in BGP mode).
    pub fn drain_bgp(&self, drain: bool) -> Option<bool> {
        let speaker = self.bgp.get()?;
        speaker.set_draining(drain);
        Some(drain)
    }

    /// Where the engine reports the VIP it listens on (see `listening`).
    pub fn listening_reporter(&self) -> Arc<watch::Sender<Option<IpAddr>>> {
        self.listening.clone()
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
        match lease_end(&self.deadline) {
            Some(deadline) if status.held && Instant::now() < deadline => {
                status.fence_margin_ms = Some(
                    deadline
                        .saturating_duration_since(Instant::now())
                        .as_millis() as u64,
                );
            }
            _ => status.held = false,
        }
        status.bgp = self.bgp.get().map(|speaker| speaker.status());
        if let Some(bgp) = &status.bgp {
            status.address = Some(bgp.address.clone());
            status.state = "bgp";
        }
        status
    }

    fn set_deadline(&self, deadline: Option<Instant>) {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) = deadline;
        self.confirmed_gauge.set(i64::from(deadline.is_some()));
    }

    /// Whether this node leads within a lease confirmed by a quorum, now.
    /// A node frozen and resumed, or cut off and healed, is not, from its
    /// first look here, whatever its Raft metrics still say.
    pub fn leader_confirmed(&self) -> bool {
        lease_live(&self.deadline)
    }

    async fn acquire(&self) {
        let Some(address) = self.address else { return };
        // Held: nothing to wait for (the netlink address's lifetime is
        // renewed by its own task, `renew_while_held`).
        if self.held.borrow().is_some() {
            return;
        }
        let _transition = self.transition.lock().await;
        if self.paused.load(Ordering::Acquire) || !self.leader_confirmed() {
            return;
        }
        if self.held.borrow().is_some() {
            return;
        }
        match &self.holder {
            Holder::Bind => {}
            Holder::Netlink(holder) => {
                if let Err(error) = holder.add().await {
                    tracing::error!(%error, "cannot acquire the VIP");
                    return;
                }
                // The lease may have run out, or a pause come, while the
                // kernel added it: then it must not stay.
                if self.paused.load(Ordering::Acquire) || !self.leader_confirmed() {
                    if let Err(error) = holder.remove().await {
                        tracing::error!(%error, "cannot remove the VIP");
                    }
                    return;
                }
            }
            // Queued below, once held: the hook task skips an acquire
            // hook whose VIP is not held when it comes to run it.
            Holder::Script(_) => {}
        }
        self.held.send_replace(Some(address));
        if matches!(self.holder, Holder::Script(_)) {
            // Run by the hook task: the role never waits for a script.
            self.queue_hook("acquire", address);
        }
        self.held_gauge.set(1);
        self.acquisitions.inc();
        {
            let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
            status.held = true;
            status.state = "holding";
            status.last_acquire_ms = Some(unix_millis());
            self.last_acquire_gauge.set(unix_millis() as i64);
        }
        tracing::info!(vip = %address, "VIP acquired");
        self.announce();
    }

    /// Puts back what the role changed on the host (netlink mode's ARP
    /// settings), at exit.
    pub fn restore_host(&self) {
        if let Holder::Netlink(holder) = &self.holder {
            holder.restore();
        }
    }

    async fn release(&self, why: &str) {
        // Before anything else: no announcement may follow a release.
        if let Some(announcing) = self
            .announcing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            announcing.cancel();
        }
        self.set_deadline(None);
        let _transition = self.transition.lock().await;
        if self.held.borrow().is_none() {
            return;
        }
        self.held.send_replace(None);
        self.held_gauge.set(0);
        self.releases.inc();
        {
            let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
            status.held = false;
            status.state = "standby";
            status.last_release_ms = Some(unix_millis());
            self.last_release_gauge.set(unix_millis() as i64);
            self.margin_gauge.set(0);
        }
        tracing::info!(vip = ?self.address, why, "VIP released");
        match (&self.holder, self.address) {
            (Holder::Netlink(holder), _) => {
                if let Err(error) = holder.remove().await {
                    tracing::error!(%error, "cannot remove the VIP");
                }
            }
            (Holder::Script(_), Some(address)) => self.queue_hook("release", address),
            _ => {}
        }
    }

    /// Releases the VIP now (graceful hand-over, shutdown), and waits
    /// for the release's script hook, if any, to have run.
    pub async fn step_down(&self, why: &str) {
        // For good: a confirmation in flight must not take the VIP again.
        self.paused.store(true, Ordering::Release);
        self.release(why).await;
        self.flush_hooks().await;
    }

    /// Releases the VIP and stops confirming leadership (whose messages
    /// would renew the followers' vote lease) until [`VipRole::resume`]:
    /// a leadership transfer.
    pub async fn pause(&self, why: &str) {
        self.paused.store(true, Ordering::Release);
        self.release(why).await;
    }

    /// Graceful hand-over in netlink mode: keeps the VIP held and answered
    /// here, with no more confirmations (they would renew the followers'
    /// vote lease), until [`VipRole::step_down`]; the successor takes it
    /// meanwhile. Both nodes are alive and serve the VIP for that moment,
    /// so no client request finds nobody (make before break). Whether it
    /// applies: this node holds the VIP in netlink mode now.
    pub fn hold_through_hand_over(&self) -> bool {
        let applies = matches!(self.holder, Holder::Netlink(_)) && self.held.borrow().is_some();
        if applies {
            self.handing_over.store(true, Ordering::Release);
        }
        applies
    }

    /// Takes the role up again after [`VipRole::pause`].
    pub fn resume(&self) {
        self.paused.store(false, Ordering::Release);
    }
}
