//! The leader role: the node that is Raft leader, and has confirmed it with
//! a quorum within its lease, holds the virtual IP.
//!
//! The lease is shorter than the minimum election timeout, and it is
//! measured from the *start* of the last successful quorum confirmation:
//! each voter that confirmed promised to vote for nobody for a full
//! election timeout (see `control::lease`), so an isolated (or frozen and
//! resumed)
//! old leader drops the VIP before any other node can be elected and take
//! it. In `bind` mode the VIP sockets are bound without SO_REUSEPORT, so
//! even a leader frozen while holding them keeps others out rather than
//! sharing the address.
//!
//! How the address is held is the [`Holder`]: `bind` (the engine listens on
//! it), [`netlink`] (a local address, announced and answered for on the
//! wire by this process: ARP in [`garp`], IPv6 neighbour discovery in
//! [`ndp`]) or [`script`] (operator commands).

pub mod garp;
pub mod ndp;
pub mod netlink;
pub mod script;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::ServerState;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::control::{ClusterControl, unix_millis};

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
}

/// Longest wait for the engine to listen on a newly held VIP before it
/// is announced anyway.
const LISTENING_WAIT: Duration = Duration::from_secs(1);

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
        }
    }

    /// Where the engine reports the VIP it listens on (see `listening`).
    pub fn listening_reporter(&self) -> Arc<watch::Sender<Option<IpAddr>>> {
        self.listening.clone()
    }

    /// Whether the engine listens on the held VIP: until it does, an
    /// announcement would send clients to a node that refuses them.
    fn listening_on_held(&self) -> bool {
        let held = *self.held.borrow();
        held.is_some() && *self.listening.borrow() == held
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

    /// Announces the address in the background (netlink mode) until
    /// released: once at once, then repeated over the first second. Every
    /// frame is sent only inside the lease, checked at that moment: a task
    /// that wakes after a freeze sends nothing for an address it no longer
    /// holds.
    fn announce(&self) {
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
        let announcer = match holder.announcer() {
            None => return,
            Some(Ok(announcer)) => announcer,
            Some(Err(error)) => {
                crate::warn_limited!("vip announce", %error, "cannot open a socket to announce the VIP");
                return;
            }
        };
        let (frames, deadline) = (holder.announcements(), self.deadline.clone());
        let (mut listening, address) = (self.listening.subscribe(), *self.held.borrow());
        tokio::spawn(async move {
            // Not before the engine listens on the VIP: announced first, it
            // sent clients to a node that refused them for the ~10 ms the
            // engine took (1 request in about 10 runs of the SIGTERM drill).
            // Bounded: a frontend that cannot bind must not keep the VIP
            // unannounced.
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
        });
    }

    /// Queues a script hook for the hook task.
    fn queue_hook(&self, event: &'static str, address: IpAddr) {
        if let Some(hooks) = &self.hooks {
            let _ = hooks.send(HookJob::Run(event, address));
        }
    }

    /// Runs the queued script hooks one at a time, in the order of the
    /// events, each bounded by its timeout, for as long as the process
    /// lives. Runs beside the role: a slow `on_acquire` never holds up a
    /// release that the lease demands (the release's own hook runs after
    /// it, in order).
    pub async fn run_hooks(&self) {
        let Holder::Script(hooks) = &self.holder else {
            return;
        };
        let Some(mut queue) = self
            .hook_queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return;
        };
        while let Some(job) = queue.recv().await {
            match job {
                HookJob::Run("acquire", address)
                    if self.held.borrow().is_none() || !self.leader_confirmed() =>
                {
                    // Queued behind a slow hook, and the VIP is gone since:
                    // announcing it now could put it on two nodes.
                    tracing::warn!(vip = %address, "acquire hook skipped: the VIP was released before it could run");
                }
                HookJob::Run(event, address) => {
                    // A failed script is logged; the role is unchanged.
                    hooks.run(event, address).await;
                }
                HookJob::Flushed(done) => {
                    let _ = done.send(());
                }
            }
        }
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

    /// Puts back what the role changed on the host (netlink mode's ARP
    /// settings), at exit.
    pub fn restore_host(&self) {
        if let Holder::Netlink(holder) = &self.holder {
            holder.restore();
        }
    }

    /// Waits until every hook queued so far has run (shutdown).
    async fn flush_hooks(&self) {
        let Some(hooks) = &self.hooks else { return };
        let (done, flushed) = oneshot::channel();
        if hooks.send(HookJob::Flushed(done)).is_ok() {
            let _ = flushed.await;
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
        loop {
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
                    async move { (started, control.confirm_lease(lease).await) },
                )));
                next_confirm = started + self.confirm_every;
            }
            tokio::select! {
                // A confirmation that has come back is taken before the
                // lease's end is acted on: if it is still in time, the
                // lease runs on from it.
                biased;
                Some(finished) = confirming.next(), if !confirming.is_empty() => {
                    let Ok((started, confirmed)) = finished else { continue };
                    let end = started + self.lease;
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
    async fn renew_while_held(self: Arc<Self>, stop: CancellationToken) {
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
                crate::warn_limited!(
                    "vip renewal slow",
                    took_ms = began.elapsed().as_millis() as u64,
                    "renewing the VIP's address took over half the lease (the kernel's rtnl lock is busy)"
                );
            }
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

    /// A hand-over's successor holds the VIP: stop answering ARP and
    /// neighbour solicitations for it
    /// (connections already here are still served until step_down).
    pub fn stop_answering_neighbours(&self) {
        self.answering_neighbours.store(false, Ordering::Release);
    }

    /// Takes the role up again after [`VipRole::pause`].
    pub fn resume(&self) {
        self.paused.store(false, Ordering::Release);
    }
}

/// A script hook for the hook task, or a marker that the queue up to it
/// has run.
enum HookJob {
    Run(&'static str, IpAddr),
    Flushed(oneshot::Sender<()>),
}

/// The lease's end as last confirmed, if any.
fn lease_end(deadline: &Mutex<Option<Instant>>) -> Option<Instant> {
    *deadline.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether the lease still runs now.
fn lease_live(deadline: &Mutex<Option<Instant>>) -> bool {
    lease_end(deadline).is_some_and(|end| Instant::now() < end)
}

/// Sleeps until `deadline`, or forever when there is none.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
