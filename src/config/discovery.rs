//! `[pool.discovery]`: a pool's backends taken from DNS, as HAProxy's
//! `server-template` with `resolvers`, or Envoy's `STRICT_DNS` cluster.
//! The leader resolves the name and commits each change of the set
//! through Raft, so every node serves the same set (`crate::discovery`).

use serde::{Deserialize, Serialize};

/// Where a pool's discovered backends come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoverySpec {
    /// The DNS name: `web.shop.svc.cluster.local` (A/AAAA) or
    /// `_http._tcp.web.shop.svc.cluster.local` (SRV).
    pub name: String,
    /// Which records: `A`, `AAAA` or `SRV`.
    #[serde(rename = "type")]
    pub record_type: RecordType,
    /// A/AAAA: the backends' port (SRV records carry their own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Name servers to ask, `IP` or `IP:PORT`; empty: the host's
    /// (`/etc/resolv.conf`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolvers: Vec<String>,
    /// Time between lookups; a record's TTL shorter than this brings the
    /// next lookup forward, but never below [`TTL_FLOOR_MS`].
    #[serde(default = "defaults::interval_ms")]
    pub interval_ms: u64,
    /// A/AAAA: the weight every discovered backend gets (default 1); SRV
    /// records carry their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// Flap damping: a backend leaves the pool only after this many
    /// successful answers in a row without it.
    #[serde(default = "defaults::remove_after")]
    pub remove_after: u32,
}

/// A TTL never brings a lookup closer than this to the one before.
pub const TTL_FLOOR_MS: u64 = 1_000;

/// The record types a pool can follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RecordType {
    /// IPv4 addresses, with the pool's `port`.
    A,
    /// IPv6 addresses, with the pool's `port`.
    #[serde(rename = "AAAA")]
    Aaaa,
    /// Targets with ports, weights and priorities; the targets' addresses
    /// are looked up in turn (or taken from the answer's extra records).
    #[serde(rename = "SRV")]
    Srv,
}

impl RecordType {
    /// The name used in files and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordType::A => "A",
            RecordType::Aaaa => "AAAA",
            RecordType::Srv => "SRV",
        }
    }
}

impl DiscoverySpec {
    /// The weight of a discovered A/AAAA backend.
    pub fn address_weight(&self) -> u32 {
        self.weight.unwrap_or(1)
    }

    /// Whether `other` follows the same records (so the backends found
    /// for this one still stand): name, type and port alike.
    pub fn same_records(&self, other: &DiscoverySpec) -> bool {
        self.name == other.name && self.record_type == other.record_type && self.port == other.port
    }
}

/// The defaults of `[pool.discovery]`.
pub mod defaults {
    /// Five seconds, as Envoy's `dns_refresh_rate`.
    pub fn interval_ms() -> u64 {
        5_000
    }
    /// Three answers: a record missing from one answer of a round-robin
    /// DNS server, or while a pod restarts, does not move traffic.
    pub fn remove_after() -> u32 {
        3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_interface_example() {
        let spec: crate::config::ClusterSpec = toml::from_str(
            r#"
[[pool]]
name = "web"
  [pool.discovery]
  name = "web.shop.svc.cluster.local"
  type = "A"
  port = 8080
  resolvers = ["10.96.0.10:53"]
  interval_ms = 5000
"#,
        )
        .expect("parses");
        let discovery = spec.pools[0].discovery.as_ref().expect("discovery");
        assert_eq!(discovery.record_type, RecordType::A);
        assert_eq!(discovery.port, Some(8080));
        assert_eq!(discovery.remove_after, 3);
        assert_eq!(discovery.address_weight(), 1);
        let srv: DiscoverySpec =
            toml::from_str("name = \"_http._tcp.web\"\ntype = \"SRV\"\n").expect("srv");
        assert_eq!(srv.record_type, RecordType::Srv);
        assert!(toml::from_str::<DiscoverySpec>("name = \"a\"\ntype = \"MX\"\n").is_err());
    }
}
