//! The forwarding engine: one listener per frontend, opened and closed as
//! published routing tables come and go; L4 relays in [`tcp`], L7 in
//! [`http`].

pub mod backend_stream;
pub mod http;
mod lazy_stream;
mod listener;
pub mod maybe_tls;
pub mod relay;
mod splice;
pub mod tcp;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Protocol;
use crate::routing::PublishedTable;
use listener::Listener;

/// How long a listener that could not bind waits before trying again.
const REBIND_INTERVAL: Duration = Duration::from_secs(2);
/// The same for the VIP, which a previous holder may release any moment.
const VIP_REBIND_INTERVAL: Duration = Duration::from_millis(20);

/// What every connection task needs: the table, where to listen, and the
/// shutdown signal.
pub struct Engine {
    table: Arc<PublishedTable>,
    serve_ip: IpAddr,
    vip: watch::Receiver<Option<IpAddr>>,
    /// Told the VIP once every frontend listens on it (`None` else).
    vip_listening: Arc<watch::Sender<Option<IpAddr>>>,
    shutdown: CancellationToken,
    connections: TaskTracker,
    /// HTTP/1.1 clients are served by the relay (else by hyper).
    relay: bool,
}

struct Running {
    port: u16,
    protocol: Protocol,
    stop: CancellationToken,
}

/// Listeners are keyed by frontend name and the address they listen on
/// (the node's `serve_ip`, and the VIP while this node holds it).
type ListenerKey = (String, IpAddr);

impl Engine {
    /// An engine serving `table` on `serve_ip`, and also on the address in
    /// `vip` while it holds one. `shutdown` stops accepting and asks open
    /// HTTP connections to finish; connection tasks are spawned on
    /// `connections` so the caller can wait for them.
    pub fn new(
        table: Arc<PublishedTable>,
        serve_ip: IpAddr,
        vip: watch::Receiver<Option<IpAddr>>,
        vip_listening: Arc<watch::Sender<Option<IpAddr>>>,
        shutdown: CancellationToken,
        connections: TaskTracker,
        http1: crate::config::Http1Engine,
    ) -> Arc<Self> {
        Arc::new(Engine {
            table,
            serve_ip,
            vip,
            vip_listening,
            shutdown,
            connections,
            relay: http1 == crate::config::Http1Engine::Relay,
        })
    }

    /// The address this node's connections to backends leave from, when it
    /// serves on a specific one.
    pub fn source_ip(&self) -> Option<IpAddr> {
        (!self.serve_ip.is_unspecified()).then_some(self.serve_ip)
    }

    /// The table the engine serves.
    pub fn table(&self) -> &Arc<PublishedTable> {
        &self.table
    }

    /// Keeps one listener per configured frontend and address until
    /// shutdown: a frontend added to the table opens, a removed one closes
    /// (its open connections go on), one whose port or protocol changed
    /// reopens; VIP listeners open when the VIP is acquired and close when
    /// it is released (open connections go on).
    pub async fn run(self: Arc<Self>) {
        let mut changes = self.table.subscribe();
        let mut vip = self.vip.clone();
        let mut running: HashMap<ListenerKey, Running> = HashMap::new();
        loop {
            let held = *vip.borrow_and_update();
            let (all_bound, vip_bound) = self.reconcile(&mut running, held);
            let listening = if vip_bound { held } else { None };
            self.vip_listening.send_if_modified(|now| {
                let changed = *now != listening;
                *now = listening;
                changed
            });
            let retry = if !vip_bound {
                VIP_REBIND_INTERVAL
            } else {
                REBIND_INTERVAL
            };
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                changed = vip.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                () = tokio::time::sleep(retry), if !all_bound || !vip_bound => {}
                () = self.shutdown.cancelled() => break,
            }
        }
        for (_, listener) in running {
            listener.stop.cancel();
        }
    }

    /// Brings the listeners in line with the table and the VIP; whether
    /// every serve_ip listener and every VIP listener is bound.
    fn reconcile(
        self: &Arc<Self>,
        running: &mut HashMap<ListenerKey, Running>,
        vip: Option<IpAddr>,
    ) -> (bool, bool) {
        let table = self.table.load_full();
        // A wildcard serve_ip already receives the VIP's traffic.
        let vip = vip.filter(|vip| {
            !(self.serve_ip.is_unspecified() && self.serve_ip.is_ipv4() == vip.is_ipv4())
        });
        let addresses: Vec<IpAddr> = std::iter::once(self.serve_ip).chain(vip).collect();
        running.retain(|(name, ip), listener| {
            let keep = addresses.contains(ip)
                && table.frontend(name).is_some_and(|f| {
                    f.spec.port == listener.port && f.spec.protocol == listener.protocol
                });
            if !keep {
                tracing::info!(frontend = %name, %ip, port = listener.port, "closing listener");
                listener.stop.cancel();
            }
            keep
        });
        let (mut all_bound, mut vip_bound) = (true, true);
        for frontend in &table.frontends {
            let name = &frontend.spec.name;
            for &ip in &addresses {
                let key = (name.clone(), ip);
                if running.contains_key(&key) {
                    continue;
                }
                let is_vip = Some(ip) == vip && ip != self.serve_ip;
                let address = SocketAddr::new(ip, frontend.spec.port);
                match Listener::bind(address) {
                    Ok(socket) => {
                        let stop = self.shutdown.child_token();
                        tracing::info!(frontend = %name, %address, protocol = frontend.spec.protocol.as_str(), vip = is_vip, "listening");
                        let listener = Listener::new(
                            name.clone(),
                            frontend.spec.protocol,
                            socket,
                            stop.clone(),
                        );
                        tokio::spawn(listener.run(self.clone()));
                        running.insert(
                            key,
                            Running {
                                port: frontend.spec.port,
                                protocol: frontend.spec.protocol,
                                stop,
                            },
                        );
                    }
                    Err(error) if is_vip => {
                        // Usually the previous holder has not let go yet.
                        vip_bound = false;
                        tracing::debug!(frontend = %name, %address, %error, "VIP not free yet; retrying");
                    }
                    Err(error) => {
                        all_bound = false;
                        tracing::error!(frontend = %name, %address, %error, "cannot listen; retrying");
                    }
                }
            }
        }
        (all_bound, vip_bound)
    }
}
