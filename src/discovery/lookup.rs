//! One lookup of a pool's `[pool.discovery]` name, through
//! hickory-resolver: the backends it gives, or why there are none.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};

use crate::config::{DiscoverySpec, RecordType as Kind};
use crate::state::MAX_WEIGHT;
use crate::state::discovery::Found;
use crate::state::resolver_address;

/// What a lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The backends, sorted, one per address.
    pub found: Vec<Found>,
    /// The shortest TTL of the records it came from.
    pub ttl: Duration,
}

/// Why a lookup gave no backends: a word for status and metrics, and
/// the resolver's own message for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// `timeout`, `SERVFAIL`, `REFUSED`, `NXDOMAIN`, `no records`,
    /// `unreachable` or `error`.
    pub reason: &'static str,
    /// The details.
    pub detail: String,
}

/// A resolver for one pool's settings.
pub struct Lookup {
    resolver: TokioResolver,
    spec: DiscoverySpec,
}

impl Lookup {
    /// A resolver asking `spec.resolvers`, or the host's name servers
    /// (`/etc/resolv.conf`) when there are none. It caches nothing: every
    /// lookup asks.
    pub fn new(spec: &DiscoverySpec) -> Result<Lookup, String> {
        let mut builder = if spec.resolvers.is_empty() {
            TokioResolver::builder_tokio()
                .map_err(|e| format!("cannot read the host's resolver configuration: {e}"))?
        } else {
            let servers = spec
                .resolvers
                .iter()
                .filter_map(|text| resolver_address(text))
                .map(name_server)
                .collect();
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            )
        };
        let options = builder.options_mut();
        options.timeout = lookup_timeout(spec);
        options.attempts = 1;
        options.use_hosts_file = ResolveHosts::Never;
        let resolver = builder
            .build()
            .map_err(|e| format!("cannot make a resolver: {e}"))?;
        Ok(Lookup {
            resolver,
            spec: spec.clone(),
        })
    }

    /// [`Lookup::run`], given up as a timeout after four queries' time
    /// (an SRV answer's targets are looked up in turn).
    pub async fn run_within(&self) -> Result<Answer, Failure> {
        let limit = lookup_timeout(&self.spec) * 4;
        tokio::time::timeout(limit, self.run())
            .await
            .unwrap_or_else(|_| {
                Err(Failure {
                    reason: "timeout",
                    detail: format!("{}: no answer within {limit:?}", self.spec.name),
                })
            })
    }

    /// Looks the name up once.
    pub async fn run(&self) -> Result<Answer, Failure> {
        self.resolver.clear_cache();
        let name = self.spec.name.as_str();
        let (found, ttl) = match self.spec.record_type {
            Kind::A | Kind::Aaaa => {
                let record_type = match self.spec.record_type {
                    Kind::A => RecordType::A,
                    _ => RecordType::AAAA,
                };
                let lookup = self
                    .resolver
                    .lookup(name, record_type)
                    .await
                    .map_err(failure)?;
                let port = self.spec.port.unwrap_or_default();
                let weight = self.spec.address_weight();
                let found = addresses(lookup.answers())
                    .map(|ip| Found {
                        address: SocketAddr::new(ip, port).to_string(),
                        weight,
                    })
                    .collect();
                (found, shortest_ttl(lookup.answers()))
            }
            Kind::Srv => self.srv(name).await?,
        };
        let found = one_per_address(found);
        if found.is_empty() {
            return Err(Failure {
                reason: "no records",
                detail: format!("{name}: the answer holds no usable record"),
            });
        }
        Ok(Answer { found, ttl })
    }

    /// SRV: the records of the best (lowest) priority, each target's
    /// addresses from the answer's additional records or a lookup of
    /// its own. A target that no longer exists is left out; one whose
    /// lookup fails otherwise fails the whole lookup (so a broken name
    /// server never shrinks the set).
    async fn srv(&self, name: &str) -> Result<(Vec<Found>, Duration), Failure> {
        let lookup = self
            .resolver
            .lookup(name, RecordType::SRV)
            .await
            .map_err(failure)?;
        let records: Vec<_> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                // "." as the target: no such service there; port 0: none.
                RData::SRV(srv) if !srv.target.is_root() && srv.port != 0 => Some(srv.clone()),
                _ => None,
            })
            .collect();
        let best = records.iter().map(|s| s.priority).min();
        let mut ttl = shortest_ttl(lookup.answers());
        let mut found = Vec::new();
        for srv in records.iter().filter(|s| Some(s.priority) == best) {
            let extra: Vec<IpAddr> =
                addresses(lookup.additionals().iter().filter(|r| r.name == srv.target)).collect();
            let ips = if extra.is_empty() {
                match self.target_addresses(&srv.target).await {
                    Ok((ips, target_ttl)) => {
                        ttl = ttl.min(target_ttl);
                        ips
                    }
                    Err(f) if matches!(f.reason, "NXDOMAIN" | "no records") => continue,
                    Err(f) => return Err(f),
                }
            } else {
                extra
            };
            let weight = u32::from(srv.weight).clamp(1, MAX_WEIGHT);
            found.extend(ips.into_iter().map(|ip| Found {
                address: SocketAddr::new(ip, srv.port).to_string(),
                weight,
            }));
        }
        Ok((found, ttl))
    }

    async fn target_addresses(&self, target: &Name) -> Result<(Vec<IpAddr>, Duration), Failure> {
        let lookup = self
            .resolver
            .lookup_ip(target.clone())
            .await
            .map_err(failure)?;
        let records = lookup.as_lookup().answers();
        Ok((addresses(records).collect(), shortest_ttl(records)))
    }
}

/// A name server at `address`, over UDP with TCP for long answers.
fn name_server(address: SocketAddr) -> NameServerConfig {
    let mut udp = ConnectionConfig::udp();
    udp.port = address.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = address.port();
    NameServerConfig::new(address.ip(), true, vec![udp, tcp])
}

/// How long one query may take: the interval, at most two seconds (a
/// name server that slow is failing).
pub fn lookup_timeout(spec: &DiscoverySpec) -> Duration {
    Duration::from_millis(spec.interval_ms.clamp(50, 2_000))
}

fn addresses<'a>(records: impl IntoIterator<Item = &'a Record>) -> impl Iterator<Item = IpAddr> {
    records.into_iter().filter_map(|r| match &r.data {
        RData::A(a) => Some(IpAddr::V4(a.0)),
        RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
        _ => None,
    })
}

fn shortest_ttl(records: &[Record]) -> Duration {
    let seconds = records.iter().map(|r| r.ttl).min().unwrap_or(u32::MAX);
    Duration::from_secs(u64::from(seconds))
}

/// One entry per address (an address under two SRV targets keeps the
/// higher weight), sorted.
fn one_per_address(found: Vec<Found>) -> Vec<Found> {
    let mut by_address: BTreeMap<String, u32> = BTreeMap::new();
    for f in found {
        let weight = by_address.entry(f.address).or_default();
        *weight = (*weight).max(f.weight);
    }
    by_address
        .into_iter()
        .map(|(address, weight)| Found { address, weight })
        .collect()
}

/// The resolver's error as a [`Failure`].
fn failure(error: NetError) -> Failure {
    let reason = match &error {
        NetError::Timeout => "timeout",
        NetError::Dns(DnsError::NoRecordsFound(none)) => match none.response_code {
            ResponseCode::NXDomain => "NXDOMAIN",
            _ => "no records",
        },
        NetError::Dns(DnsError::ResponseCode(code)) => match code {
            ResponseCode::ServFail => "SERVFAIL",
            ResponseCode::Refused => "REFUSED",
            ResponseCode::NXDomain => "NXDOMAIN",
            _ => "error",
        },
        NetError::Io(_) | NetError::NoConnections => "unreachable",
        _ => "error",
    };
    Failure {
        reason,
        detail: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_entry_per_address_keeps_the_higher_weight() {
        let found = |address: &str, weight| Found {
            address: address.into(),
            weight,
        };
        assert_eq!(
            one_per_address(vec![
                found("127.0.0.3:80", 1),
                found("127.0.0.2:80", 5),
                found("127.0.0.3:80", 9),
            ]),
            vec![found("127.0.0.2:80", 5), found("127.0.0.3:80", 9)]
        );
    }
}
