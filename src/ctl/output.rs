//! What `raftlb ctl` prints: aligned tables for people, JSON for scripts.

use crate::config::ClusterSpec;
use crate::proto::v1 as pb;

/// Left-aligned columns, two spaces apart.
pub(super) fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(header.iter().map(|h| h.to_uppercase()).collect())];
    out.extend(rows.into_iter().map(line));
    out.join("\n")
}

/// Time left until `expires` as whole days (`12 d`), `expired` when past.
pub(super) fn days_left(expires: u64, now_ms: u64) -> String {
    crate::tls::days_left(expires, now_ms).map_or("expired".into(), |days| format!("{days} d"))
}

/// `ctl status`.
pub fn status(status: &pb::StatusReply, json: bool) -> String {
    status_at(status, json, crate::control::unix_millis())
}

fn status_at(status: &pb::StatusReply, json: bool, now_ms: u64) -> String {
    if json {
        let nodes: Vec<_> = status
            .nodes
            .iter()
            .map(|n| {
                serde_json::json!({
                    "id": n.id, "raft_addr": n.raft_addr, "api_addr": n.api_addr,
                    "membership": n.membership, "matched_index": n.matched_index,
                    "applied_index": n.applied_index, "vip_held": n.vip_held,
                    "bgp_announcing": n.bgp_announcing, "bgp_why_not": n.bgp_why_not,
                    "bgp_session": n.bgp_session,
                    "cert_expires_ms": n.cert_expires_ms,
                })
            })
            .collect();
        return serde_json::json!({
            "id": status.id, "role": status.role, "leader_confirmed": status.leader_confirmed,
            "leader": status.leader, "term": status.term,
            "last_log_index": status.last_log_index, "applied_index": status.applied_index,
            "config_version": status.config_version, "nodes": nodes,
            "vip": {
                "address": status.vip_address, "holders": vip_holders(status),
                "announced_by": bgp_announcers(status),
            },
            "discovery": status.discovery.iter().map(|d| serde_json::json!({
                "pool": d.pool, "name": d.name, "type": d.r#type, "backends": d.backends,
                "stale_since_ms": d.stale_since_ms, "stale_reason": d.stale_reason,
            })).collect::<Vec<_>>(),
        })
        .to_string();
    }
    let leader = status
        .leader
        .map_or("none".to_string(), |l| format!("node {l}"));
    let rows = status
        .nodes
        .iter()
        .map(|n| {
            let role = if Some(n.id) == status.leader {
                "leader".to_string()
            } else {
                n.membership.clone()
            };
            vec![
                n.id.to_string(),
                role,
                n.raft_addr.clone(),
                if n.api_addr.is_empty() {
                    "unknown".into()
                } else {
                    n.api_addr.clone()
                },
                n.applied_index
                    .map_or("no answer".into(), |applied| applied.to_string()),
                match (n.bgp_announcing, n.vip_held) {
                    (Some(true), _) => "announced".into(),
                    (Some(false), _) => format!("withdrawn: {}", n.bgp_why_not.join(", ")),
                    (None, Some(true)) => "held".into(),
                    (None, Some(false)) => "no".into(),
                    (None, None) => "no answer".into(),
                },
                match (n.cert_expires_ms, n.applied_index) {
                    (Some(expires), _) => days_left(expires, now_ms),
                    (None, Some(_)) => "no TLS".into(),
                    (None, None) => "no answer".into(),
                },
            ]
        })
        .collect();
    let warnings: String = status
        .nodes
        .iter()
        .filter_map(|n| Some((n.id, n.cert_expires_ms?)))
        .filter(|(_, expires)| crate::tls::expires_soon(*expires, now_ms))
        .map(|(id, expires)| {
            format!(
                "WARNING node {id}'s certificate {} ({}): make a new one with raftlb certs init and send the node SIGHUP\n",
                if expires <= now_ms {
                    "has expired".to_string()
                } else {
                    format!("expires in {}", days_left(expires, now_ms))
                },
                utc(expires)
            )
        })
        .collect();
    let holders = vip_holders(status);
    let bgp = status.nodes.iter().any(|n| n.bgp_announcing.is_some());
    let vip = match (status.vip_address.as_str(), holders.as_slice()) {
        (address, _) if bgp => format!(
            "VIP {address} (BGP, every eligible node): announced by nodes {:?}",
            bgp_announcers(status)
        ),
        ("", _) => "VIP: none configured".to_string(),
        (address, []) => format!("VIP {address}: held by no node"),
        (address, [one]) => format!("VIP {address}: held by node {one}"),
        (address, many) => format!(
            "VIP {address}: WARNING held by {} nodes: {many:?}",
            many.len()
        ),
    };
    let role = if status.role == "leader" && !status.leader_confirmed {
        "leader, unconfirmed: its lease ran out; a newer term may exist".to_string()
    } else {
        status.role.clone()
    };
    let discovery: String = status
        .discovery
        .iter()
        .map(|d| discovery_line(d, now_ms))
        .collect();
    format!(
        "answered by node {} ({role}); leader {leader}, term {}, applied index {}, config version {}\n{vip}\n{discovery}{warnings}\n{}",
        status.id,
        status.term,
        status.applied_index,
        status.config_version,
        table(
            &[
                "node",
                "role",
                "raft_addr",
                "api_addr",
                "applied",
                "vip",
                "cert"
            ],
            rows
        )
    )
}

/// The nodes that say they announce the VIP (`[vip] mode = "bgp"`).
fn bgp_announcers(status: &pb::StatusReply) -> Vec<u64> {
    status
        .nodes
        .iter()
        .filter(|n| n.bgp_announcing == Some(true))
        .map(|n| n.id)
        .collect()
}

/// The nodes that say they hold the VIP.
fn vip_holders(status: &pb::StatusReply) -> Vec<u64> {
    status
        .nodes
        .iter()
        .filter(|n| n.vip_held == Some(true))
        .map(|n| n.id)
        .collect()
}

/// `ctl node drain|undrain`.
pub fn drained(reply: &pb::DrainNodeReply, json: bool) -> String {
    if json {
        return serde_json::json!({ "id": reply.id, "draining": reply.draining }).to_string();
    }
    if reply.draining {
        format!(
            "node {} withdraws the VIP: new flows go to the other nodes",
            reply.id
        )
    } else {
        format!("node {} announces the VIP again once eligible", reply.id)
    }
}

/// `ctl cluster transfer-leader`.
pub fn transferred(reply: &pb::TransferLeaderReply, json: bool) -> String {
    if json {
        return serde_json::json!({
            "previous_leader": reply.previous_leader, "leader": reply.leader,
            "elapsed_ms": reply.elapsed_ms,
        })
        .to_string();
    }
    if reply.previous_leader == reply.leader {
        return format!("node {} already leads", reply.leader);
    }
    format!(
        "leadership moved from node {} to node {} in {} ms",
        reply.previous_leader, reply.leader, reply.elapsed_ms
    )
}

/// One pool that takes backends from DNS, for `ctl status`.
fn discovery_line(d: &pb::DiscoveryState, now_ms: u64) -> String {
    let head = format!(
        "pool {}: {} backends from DNS {} {}",
        d.pool, d.backends, d.r#type, d.name
    );
    match d.stale_since_ms {
        None => format!("{head}\n"),
        Some(since) => format!(
            "{head}: STALE since {} ({} s): lookups fail ({}), the last set is kept\n",
            utc(since),
            now_ms.saturating_sub(since) / 1000,
            d.stale_reason
        ),
    }
}

/// `ctl get [what]`.
pub fn config(
    version: u64,
    spec: &ClusterSpec,
    health: &std::collections::HashMap<String, String>,
    what: Option<&str>,
    json: bool,
) -> String {
    if json {
        let value = match what {
            Some("frontends") => serde_json::to_value(&spec.frontends),
            Some("pools") => serde_json::to_value(&spec.pools),
            Some("backends") => serde_json::to_value(backend_rows(spec, health)),
            _ => serde_json::to_value(spec),
        }
        .unwrap_or_default();
        return serde_json::json!({ "version": version, what.unwrap_or("config"): value })
            .to_string();
    }
    match what {
        Some("frontends") => table(
            &["name", "port", "protocol", "pool", "routes"],
            spec.frontends
                .iter()
                .map(|f| {
                    vec![
                        f.name.clone(),
                        f.port.to_string(),
                        f.protocol.as_str().into(),
                        f.pool.clone(),
                        f.routes.len().to_string(),
                    ]
                })
                .collect(),
        ),
        Some("pools") => table(
            &["name", "algorithm", "backends", "check"],
            spec.pools
                .iter()
                .map(|p| {
                    vec![
                        p.name.clone(),
                        p.algorithm.as_str().to_string(),
                        p.backends.len().to_string(),
                        p.health.check.as_str().to_string(),
                    ]
                })
                .collect(),
        ),
        Some("backends") => table(
            &[
                "pool",
                "address",
                "weight",
                "admin_state",
                "health",
                "source",
            ],
            backend_rows(spec, health)
                .into_iter()
                .map(|b| {
                    vec![
                        b.pool,
                        b.address,
                        b.weight.to_string(),
                        b.admin_state,
                        b.health,
                        b.discovered
                            .map_or_else(|| "config".to_string(), |name| format!("dns {name}")),
                    ]
                })
                .collect(),
        ),
        _ => format!(
            "# configuration version {version}\n{}",
            toml::to_string_pretty(spec).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
        ),
    }
}

#[derive(serde::Serialize)]
struct BackendRow {
    pool: String,
    address: String,
    weight: u32,
    admin_state: String,
    /// The committed (majority) health, `-` when not checked or not known.
    health: String,
    /// The DNS name it was found under; absent for a written backend.
    #[serde(skip_serializing_if = "Option::is_none")]
    discovered: Option<String>,
}

fn backend_rows(
    spec: &ClusterSpec,
    health: &std::collections::HashMap<String, String>,
) -> Vec<BackendRow> {
    spec.pools
        .iter()
        .flat_map(|p| {
            p.backends.iter().map(|b| BackendRow {
                pool: p.name.clone(),
                address: b.address.clone(),
                weight: b.weight,
                admin_state: b.admin_state.as_str().into(),
                health: health
                    .get(&format!("{}/{}", p.name, b.address))
                    .cloned()
                    .unwrap_or_else(|| "-".into()),
                discovered: b.discovered.clone(),
            })
        })
        .collect()
}

/// Membership changes.
pub fn voters(voters: &[u64], json: bool) -> String {
    if json {
        return serde_json::json!({ "voters": voters }).to_string();
    }
    let list: Vec<String> = voters.iter().map(u64::to_string).collect();
    format!("voters now: {}", list.join(", "))
}

/// What a change did (or would do, for a dry run).
pub fn changes(reply: &pb::ChangeReply, json: bool) -> String {
    if json {
        let changes: Vec<_> = reply
            .changes
            .iter()
            .map(|c| serde_json::json!({"kind": c.kind, "object": c.object, "name": c.name, "detail": c.detail}))
            .collect();
        return serde_json::json!({"version": reply.version, "dry_run": reply.dry_run,
            "unchanged": reply.unchanged, "replayed": reply.replayed, "changes": changes})
        .to_string();
    }
    let mut lines: Vec<String> = reply
        .changes
        .iter()
        .map(|c| {
            let sign = match c.kind.as_str() {
                "added" => '+',
                "removed" => '-',
                _ => '~',
            };
            if c.detail.is_empty() {
                format!("{sign} {} {}", c.object, c.name)
            } else {
                format!("{sign} {} {} ({})", c.object, c.name, c.detail)
            }
        })
        .collect();
    if lines.is_empty() {
        lines.push("no change".into());
    }
    lines.push(if reply.dry_run {
        format!(
            "dry run: nothing changed (configuration is at version {})",
            reply.version
        )
    } else if reply.unchanged {
        format!(
            "unchanged: the configuration already was so (version {})",
            reply.version
        )
    } else {
        format!("applied: configuration version {}", reply.version)
    });
    if reply.replayed {
        lines.push("(this request had been applied already; nothing was applied again)".into());
    }
    lines.join("\n")
}

/// A drain wait's outcome.
pub fn drain(reply: &pb::WaitDrainedReply, timeout_s: u64, json: bool) -> String {
    if json {
        let nodes: Vec<_> = reply
            .nodes
            .iter()
            .map(|n| serde_json::json!({"node": n.node, "active": n.active, "reached": n.reached}))
            .collect();
        return serde_json::json!({"drained": reply.drained, "nodes": nodes}).to_string();
    }
    if reply.drained {
        return format!(
            "drained: no node has connections to it ({} nodes asked)",
            reply.nodes.len()
        );
    }
    let holding: Vec<String> = reply
        .nodes
        .iter()
        .filter(|n| !n.reached || n.active > 0)
        .map(|n| {
            if n.reached {
                format!("node {} has {}", n.node, n.active)
            } else {
                format!("node {} did not answer", n.node)
            }
        })
        .collect();
    format!("not drained after {timeout_s} s: {}", holding.join(", "))
}

/// `ctl history`.
pub fn history(reply: &pb::HistoryReply, json: bool) -> String {
    if json {
        let revisions: Vec<_> = reply
            .revisions
            .iter()
            .map(|r| {
                serde_json::json!({"version": r.version, "time_unix_ms": r.time_unix_ms, "caller": r.caller,
                    "command": r.command, "summary": r.summary})
            })
            .collect();
        return serde_json::json!({"current_version": reply.current_version, "revisions": revisions}).to_string();
    }
    table(
        &["version", "time", "caller", "change", "summary"],
        reply
            .revisions
            .iter()
            .map(|r| {
                vec![
                    r.version.to_string(),
                    utc(r.time_unix_ms),
                    r.caller.clone(),
                    r.command.clone(),
                    r.summary.clone(),
                ]
            })
            .collect(),
    )
}

/// `ctl watch`: one line per event.
pub fn event(event: &pb::WatchEvent, json: bool) -> String {
    use pb::watch_event::Event as E;
    let time = utc(event.time_unix_ms);
    match (&event.event, json) {
        (Some(E::Config(c)), false) => format!(
            "{time} node {} config version {}: {} (by {}){}",
            event.node,
            c.version,
            c.summary,
            c.caller,
            if c.replayed { " [history]" } else { "" }
        ),
        (Some(E::Leader(l)), false) => format!(
            "{time} node {} leader {} (term {})",
            event.node,
            l.leader.map_or("none".into(), |id| format!("node {id}")),
            l.term
        ),
        (Some(E::Health(h)), false) => format!(
            "{time} node {} backend {}/{} {}: {}",
            event.node, h.pool, h.address, h.health, h.reason
        ),
        (Some(E::Config(c)), true) => serde_json::json!({"node": event.node, "time_unix_ms": event.time_unix_ms,
            "config": {"version": c.version, "summary": c.summary, "caller": c.caller, "replayed": c.replayed}})
        .to_string(),
        (Some(E::Leader(l)), true) => serde_json::json!({"node": event.node, "time_unix_ms": event.time_unix_ms,
            "leader": {"leader": l.leader, "term": l.term}})
        .to_string(),
        (Some(E::Health(h)), true) => serde_json::json!({"node": event.node, "time_unix_ms": event.time_unix_ms,
            "health": {"pool": h.pool, "address": h.address, "health": h.health, "reason": h.reason}})
        .to_string(),
        (None, _) => String::new(),
    }
}

/// An HTTP-style UTC date (`Fri, 27 Nov 2026 10:23:18 GMT`) from Unix
/// milliseconds.
fn utc(ms: u64) -> String {
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::DAY_MS;

    #[test]
    fn status_names_each_nodes_certificate_and_warns_within_30_days() {
        let now = 1_800_000_000_000;
        let node = |id, cert_expires_ms| pb::NodeInfo {
            id,
            raft_addr: format!("127.0.0.1{id}:7100"),
            api_addr: format!("127.0.0.1{id}:7200"),
            membership: "voter".into(),
            matched_index: None,
            vip_held: Some(false),
            applied_index: Some(3),
            cert_expires_ms,
            config_version: Some(1),
            bgp_announcing: None,
            bgp_why_not: Vec::new(),
            bgp_session: String::new(),
        };
        let reply = pb::StatusReply {
            id: 1,
            role: "leader".into(),
            leader: Some(1),
            nodes: vec![
                node(1, Some(now + 300 * DAY_MS)),
                node(2, Some(now + 12 * DAY_MS + 5)),
                node(3, Some(now - 1)),
            ],
            ..pb::StatusReply::default()
        };
        let out = status_at(&reply, false, now);
        assert!(!out.contains("node 1's certificate"), "{out}");
        assert!(
            out.contains("WARNING node 2's certificate expires in 12 d"),
            "{out}"
        );
        assert!(
            out.contains("WARNING node 3's certificate has expired"),
            "{out}"
        );
        assert!(out.contains("300 d"), "{out}");
        let mut plain = reply.clone();
        plain.nodes = vec![node(1, None)];
        let out = status_at(&plain, false, now);
        assert!(out.contains("no TLS") && !out.contains("WARNING"), "{out}");
    }
}
