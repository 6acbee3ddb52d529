//! The forwarding engine: one listener per frontend, opened and closed as
//! published routing tables come and go; L4 relays in [`tcp`], L7 in
//! [`http`].

pub mod http;
mod listener;
pub mod tcp;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Protocol;
use crate::routing::PublishedTable;
use listener::Listener;

/// How long a listener that could not bind waits before trying again.
const REBIND_INTERVAL: Duration = Duration::from_secs(2);

/// What every connection task needs: the table, where to listen, and the
/// shutdown signal.
pub struct Engine {
    table: Arc<PublishedTable>,
    serve_ip: IpAddr,
    shutdown: CancellationToken,
    connections: TaskTracker,
}

struct Running {
    port: u16,
    protocol: Protocol,
    stop: CancellationToken,
}

impl Engine {
    /// An engine serving `table` on `serve_ip`. `shutdown` stops accepting
    /// and asks open HTTP connections to finish; connection tasks are
    /// spawned on `connections` so the caller can wait for them.
    pub fn new(
        table: Arc<PublishedTable>,
        serve_ip: IpAddr,
        shutdown: CancellationToken,
        connections: TaskTracker,
    ) -> Arc<Self> {
        Arc::new(Engine {
            table,
            serve_ip,
            shutdown,
            connections,
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

    /// Keeps one listener per configured frontend until shutdown: a
    /// frontend added to the table opens, a removed one closes (its open
    /// connections go on), one whose port or protocol changed reopens.
    pub async fn run(self: Arc<Self>) {
        let mut changes = self.table.subscribe();
        let mut running: HashMap<String, Running> = HashMap::new();
        loop {
            let all_bound = self.reconcile(&mut running);
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                () = tokio::time::sleep(REBIND_INTERVAL), if !all_bound => {}
                () = self.shutdown.cancelled() => break,
            }
        }
        for (_, listener) in running {
            listener.stop.cancel();
        }
    }

    /// Brings the listeners in line with the table; false if some frontend
    /// could not bind.
    fn reconcile(self: &Arc<Self>, running: &mut HashMap<String, Running>) -> bool {
        let table = self.table.load_full();
        running.retain(|name, listener| {
            let keep = table.frontend(name).is_some_and(|f| {
                f.spec.port == listener.port && f.spec.protocol == listener.protocol
            });
            if !keep {
                tracing::info!(frontend = %name, port = listener.port, "closing listener");
                listener.stop.cancel();
            }
            keep
        });
        let mut all_bound = true;
        for frontend in &table.frontends {
            let name = &frontend.spec.name;
            if running.contains_key(name) {
                continue;
            }
            let address = SocketAddr::new(self.serve_ip, frontend.spec.port);
            match Listener::bind(address) {
                Ok(socket) => {
                    let stop = self.shutdown.child_token();
                    tracing::info!(frontend = %name, %address, protocol = frontend.spec.protocol.as_str(), "listening");
                    let listener =
                        Listener::new(name.clone(), frontend.spec.protocol, socket, stop.clone());
                    tokio::spawn(listener.run(self.clone()));
                    running.insert(
                        name.clone(),
                        Running {
                            port: frontend.spec.port,
                            protocol: frontend.spec.protocol,
                            stop,
                        },
                    );
                }
                Err(error) => {
                    all_bound = false;
                    tracing::error!(frontend = %name, %address, %error, "cannot listen; retrying");
                }
            }
        }
        all_bound
    }
}
