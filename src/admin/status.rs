//! What the admin endpoint reports: `/status` (this node) and
//! `/status/live` (the status page's data: every node, traffic, changes
//! and what is wrong).

use serde::Serialize;

use super::AdminState;
use crate::vip::VipStatus;

/// `/status/live`: what the status page shows, this node's and the
/// cluster's.
#[derive(Serialize)]
pub(super) struct Live {
    node: Status,
    /// Every member's report of itself (`null`: it did not answer).
    cluster: Vec<LiveMember>,
    /// Nodes that say they hold the VIP.
    vip_holders: Vec<u64>,
    /// This node's traffic, a point a second per frontend.
    traffic: std::collections::BTreeMap<String, Vec<crate::traffic::Rates>>,
    /// This node's traffic to each backend over the last second.
    backend_traffic: Vec<crate::traffic::BackendRates>,
    /// The last minute of the first backends', by "pool/address".
    backend_series: std::collections::HashMap<String, crate::traffic::BackendSeries>,
    /// The last configuration changes, newest first.
    changes: Vec<LiveChange>,
    /// What is wrong, for the banner.
    alerts: Vec<String>,
}

#[derive(Serialize)]
struct LiveMember {
    id: u64,
    report: Option<crate::control::NodeReport>,
}

#[derive(Serialize)]
struct LiveChange {
    version: u64,
    time_ms: u64,
    caller: String,
    summary: String,
}

/// Changes shown on the status page.
const PAGE_CHANGES: usize = 8;
/// Down backends named one by one in the banner.
const PAGE_BACKEND_ALERTS: usize = 10;

/// `/status` as JSON.
#[derive(Serialize)]
pub struct Status {
    id: u64,
    role: &'static str,
    /// Leads within a lease a quorum confirmed.
    leader_confirmed: bool,
    leader: Option<u64>,
    term: u64,
    applied_index: u64,
    config_version: u64,
    vip: VipStatus,
    /// When this node's TLS certificate expires, ms since the Unix epoch
    /// (no TLS: null).
    cert_expires_ms: Option<u64>,
    /// Session-ticket keys this node holds (the secrets are never shown).
    session_ticket_keys: usize,
    frontends: Vec<FrontendStatus>,
    backends: Vec<BackendStatus>,
    /// Pools that take backends from DNS, and whether their lookups fail.
    discovery: Vec<crate::state::discovery::DiscoveryView>,
}

#[derive(Serialize)]
struct FrontendStatus {
    name: String,
    port: u16,
    protocol: &'static str,
    active_connections: i64,
}

#[derive(Serialize)]
struct BackendStatus {
    pool: String,
    address: String,
    health: &'static str,
    ejected: bool,
    committed: &'static str,
    admin_state: &'static str,
    weight: u32,
    active_connections: i64,
    /// The last change of this node's view of it.
    last_change: Option<crate::routing::HealthChange>,
}

impl AdminState {
    /// The node's status now.
    pub fn status(&self) -> Status {
        let cluster = self.control.status();
        let table = self.control.served.table().load_full();
        let frontends = table
            .frontends
            .iter()
            .map(|f| FrontendStatus {
                name: f.spec.name.clone(),
                port: f.spec.port,
                protocol: f.spec.protocol.as_str(),
                active_connections: f.stats.active.get(),
            })
            .collect();
        let backends = table
            .pools
            .iter()
            .flat_map(|pool| {
                pool.backends.iter().map(|b| BackendStatus {
                    pool: pool.name.clone(),
                    address: b.address.to_string(),
                    health: b.runtime.health().as_str(),
                    ejected: b.runtime.is_ejected(crate::routing::now_ms()),
                    committed: b.runtime.committed().as_str(),
                    admin_state: b.admin_state.as_str(),
                    weight: b.weight,
                    active_connections: b.runtime.active.get(),
                    last_change: b.runtime.last_change(),
                })
            })
            .collect();
        Status {
            id: cluster.id,
            role: cluster.role,
            leader_confirmed: cluster.leader_confirmed,
            leader: cluster.leader,
            term: cluster.term,
            applied_index: cluster.applied_index,
            config_version: table.version,
            vip: self.vip.status(),
            cert_expires_ms: self.control.tls.as_ref().map(|tls| tls.expires_ms()),
            session_ticket_keys: self.control.served.state().ticket_keys.len(),
            discovery: crate::state::discovery::views(&self.control.served.state()),
            frontends,
            backends,
        }
    }
}

impl AdminState {
    /// The status page's data: this node's status and traffic, every
    /// member's report (asked over the peer port), the last changes, and
    /// what is wrong.
    pub(super) async fn live(&self) -> Live {
        let node = self.status();
        let reports = self.control.reports().await;
        let vip_holders: Vec<u64> = reports
            .iter()
            .filter(|(_, r)| r.as_ref().is_some_and(|r| r.vip_held))
            .map(|(id, _)| *id)
            .collect();
        let mut alerts = Vec::new();
        if node.leader.is_none() {
            alerts.push("no leader: the cluster has no quorum, or is electing one".to_string());
        }
        let now_ms = crate::control::unix_millis();
        for (id, report) in &reports {
            match report.as_ref().and_then(|r| r.cert_expires_ms) {
                _ if report.is_none() => alerts.push(format!("node {id} does not answer")),
                Some(expires) if crate::tls::expires_soon(expires, now_ms) => {
                    alerts.push(match crate::tls::days_left(expires, now_ms) {
                        None => format!("node {id}'s TLS certificate has expired"),
                        Some(days) => format!("node {id}'s TLS certificate expires in {days} days"),
                    })
                }
                _ => {}
            }
        }
        let all_answered = reports.values().all(Option::is_some);
        match (node.vip.address.as_ref(), vip_holders.len()) {
            // A node that does not answer may hold it.
            (Some(vip), 0) if all_answered => {
                alerts.push(format!("the VIP {vip} is held by no node"))
            }
            (Some(vip), n) if n > 1 => alerts.push(format!(
                "the VIP {vip} is held by {n} nodes: {vip_holders:?}"
            )),
            _ => {}
        }
        for pool in self.control.served.table().load().pools.iter() {
            if pool.runtime.is_panicking() {
                alerts.push(format!(
                    "pool {} is in panic mode: no backend is healthy, traffic goes to all of them",
                    pool.name
                ));
            }
        }
        for d in &node.discovery {
            if let (Some(since), Some(reason)) = (d.stale_since_ms, &d.stale_reason) {
                let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(since);
                alerts.push(format!(
                    "pool {}: DNS lookups of {} fail ({reason}), stale since {} ({} s): its last {} discovered backends are kept",
                    d.pool,
                    d.name,
                    humantime::format_rfc3339_seconds(at),
                    now_ms.saturating_sub(since) / 1000,
                    d.backends
                ));
            }
        }
        // An operator's draining or disabled backend is no alarm, and ten
        // thousand down backends are not ten thousand lines.
        let down: Vec<&BackendStatus> = node
            .backends
            .iter()
            .filter(|b| b.admin_state == "active")
            .filter(|b| b.committed == "down" || b.health == "down" || b.ejected)
            .collect();
        if down.len() > PAGE_BACKEND_ALERTS {
            alerts.push(format!(
                "{} backends are down; the first {PAGE_BACKEND_ALERTS}:",
                down.len()
            ));
        }
        for b in down.into_iter().take(PAGE_BACKEND_ALERTS) {
            alerts.push(format!(
                "backend {}/{} is down (this node: {}{}, cluster: {})",
                b.pool,
                b.address,
                b.health,
                if b.ejected { ", ejected" } else { "" },
                b.committed
            ));
        }
        let changes = self
            .control
            .served
            .state()
            .history
            .revisions()
            .rev()
            .take(PAGE_CHANGES)
            .map(|r| LiveChange {
                version: r.version,
                time_ms: r.origin.time_ms,
                caller: r.origin.caller.clone(),
                summary: r.summary.clone(),
            })
            .collect();
        Live {
            node,
            cluster: reports
                .into_iter()
                .map(|(id, report)| LiveMember { id, report })
                .collect(),
            vip_holders,
            traffic: self.traffic.series(),
            backend_traffic: self.traffic.backends(),
            backend_series: self.traffic.backend_series(),
            changes,
            alerts,
        }
    }
}
