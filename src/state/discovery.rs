//! Backends found in DNS (`[pool.discovery]`), on the state's side: the
//! leader's lookups change them through [`super::Command::SetDiscovered`],
//! one committed version per change of the set; the state records which
//! pools' lookups fail ([`Stale`]); and a configuration applied or rolled
//! back keeps the discovered backends of the records it still follows, so
//! they belong to DNS, not to versions of the file.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::{ClusterState, StateError};
use crate::config::{AdminState, BackendSpec, ClusterSpec, DiscoverySpec, PoolSpec};

/// One backend a lookup found.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Found {
    /// `IP:PORT`.
    pub address: String,
    /// From the SRV record, or the pool's `[pool.discovery] weight`.
    pub weight: u32,
}

/// A pool whose lookups fail: its last good set is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stale {
    /// The name whose lookups fail.
    pub name: String,
    /// The first failure after the last answer, ms since the Unix epoch.
    pub since_ms: u64,
    /// `timeout`, `SERVFAIL`, `NXDOMAIN`, `no records`, …
    pub reason: String,
}

/// Stale pools, by pool name.
pub type StaleDiscoveries = BTreeMap<String, Stale>;

/// Makes `found` the discovered backends of `pool` under `name`. A
/// backend found again keeps its admin state (an operator's drain or
/// disable stands); its weight is DNS's. An address the operator wrote
/// into the pool stays the operator's.
pub(super) fn replace_discovered(pool: &mut PoolSpec, name: &str, found: Vec<Found>) {
    let mut before: HashMap<String, AdminState> = HashMap::new();
    pool.backends.retain(|b| {
        if b.discovered.is_none() {
            return true;
        }
        before.insert(b.address.clone(), b.admin_state);
        false
    });
    let written: HashSet<String> = pool.backends.iter().map(|b| b.address.clone()).collect();
    for f in found {
        if written.contains(&f.address) {
            continue;
        }
        pool.backends.push(BackendSpec {
            admin_state: before.get(&f.address).copied().unwrap_or_default(),
            address: f.address,
            weight: f.weight,
            discovered: Some(name.to_string()),
        });
    }
}

/// Refuses a [`super::Command::SetDiscovered`] made for other settings
/// than the pool's now, or computed from another set than its current one.
pub(super) fn check_unchanged(
    pool: &PoolSpec,
    discovery: &DiscoverySpec,
    expected: &[Found],
) -> Result<(), StateError> {
    if pool.discovery.as_ref() != Some(discovery) {
        return Err(StateError::invalid(
            format!("pool[{}].discovery", pool.name),
            &discovery.name,
            "the pool's discovery settings changed since the lookup",
        ));
    }
    if current_found(pool) != expected {
        return Err(StateError::invalid(
            format!("pool[{}].discovery", pool.name),
            &discovery.name,
            "the pool's discovered backends changed since the lookup",
        ));
    }
    Ok(())
}

/// What a lookup's answer comes to for `pool`: the found backends less
/// the addresses the operator wrote into the pool (those stay theirs).
pub fn without_written(pool: &PoolSpec, found: Vec<Found>) -> Vec<Found> {
    let written: HashSet<&str> = pool
        .backends
        .iter()
        .filter(|b| b.discovered.is_none())
        .map(|b| b.address.as_str())
        .collect();
    found
        .into_iter()
        .filter(|f| !written.contains(f.address.as_str()))
        .collect()
}

/// Gives `next` (a configuration being applied or rolled back to) the
/// discovered backends `current` has for the records each pool still
/// follows; backends marked discovered in `next` itself (a file written
/// by `ctl get config`) are dropped for them.
pub(super) fn keep_discovered(current: &ClusterSpec, next: &mut ClusterSpec) {
    for pool in &mut next.pools {
        pool.backends.retain(|b| b.discovered.is_none());
        let Some(discovery) = &pool.discovery else {
            continue;
        };
        let Some(old) = current.pools.iter().find(|p| p.name == pool.name) else {
            continue;
        };
        if !old
            .discovery
            .as_ref()
            .is_some_and(|d| d.same_records(discovery))
        {
            continue;
        }
        let written: HashSet<&str> = pool.backends.iter().map(|b| b.address.as_str()).collect();
        let kept: Vec<BackendSpec> = old
            .backends
            .iter()
            .filter(|b| b.discovered.is_some() && !written.contains(b.address.as_str()))
            .cloned()
            .collect();
        pool.backends.extend(kept);
    }
}

/// Forgets stale marks of pools that no longer follow the name.
pub(super) fn prune_stale(
    spec: &ClusterSpec,
    stale: &StaleDiscoveries,
) -> Option<StaleDiscoveries> {
    let follows = |pool: &str, name: &str| {
        spec.pools
            .iter()
            .any(|p| p.name == pool && p.discovery.as_ref().is_some_and(|d| d.name == name))
    };
    if stale.iter().all(|(pool, s)| follows(pool, &s.name)) {
        return None;
    }
    Some(
        stale
            .iter()
            .filter(|(pool, s)| follows(pool, &s.name))
            .map(|(pool, s)| (pool.clone(), s.clone()))
            .collect(),
    )
}

/// The found set of a lookup, as the state holds it for `pool` now.
pub fn current_found(pool: &PoolSpec) -> Vec<Found> {
    let mut found: Vec<Found> = pool
        .backends
        .iter()
        .filter(|b| b.discovered.is_some())
        .map(|b| Found {
            address: b.address.clone(),
            weight: b.weight,
        })
        .collect();
    found.sort();
    found
}

/// A pool that takes backends from DNS, as `ctl status` and `/status`
/// show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiscoveryView {
    /// Pool name.
    pub pool: String,
    /// The name followed.
    pub name: String,
    /// `A`, `AAAA` or `SRV`.
    #[serde(rename = "type")]
    pub record_type: &'static str,
    /// Discovered backends in the pool now.
    pub backends: usize,
    /// While lookups fail: since when (ms since the Unix epoch).
    pub stale_since_ms: Option<u64>,
    /// And why.
    pub stale_reason: Option<String>,
}

/// Every pool that takes backends from DNS, in file order.
pub fn views(state: &ClusterState) -> Vec<DiscoveryView> {
    discovered_pools(&state.spec)
        .map(|(pool, discovery)| {
            let stale = state
                .stale_discoveries
                .get(&pool.name)
                .filter(|s| s.name == discovery.name);
            DiscoveryView {
                pool: pool.name.clone(),
                name: discovery.name.clone(),
                record_type: discovery.record_type.as_str(),
                backends: pool
                    .backends
                    .iter()
                    .filter(|b| b.discovered.is_some())
                    .count(),
                stale_since_ms: stale.map(|s| s.since_ms),
                stale_reason: stale.map(|s| s.reason.clone()),
            }
        })
        .collect()
}

/// The pools that take backends from DNS, with their settings.
pub fn discovered_pools(spec: &ClusterSpec) -> impl Iterator<Item = (&PoolSpec, &DiscoverySpec)> {
    spec.pools
        .iter()
        .filter_map(|p| p.discovery.as_ref().map(|d| (p, d)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{ClusterState, Command, Origin};

    fn state() -> ClusterState {
        let spec: ClusterSpec = toml::from_str(
            r#"
[[frontend]]
name = "web"
port = 8080
protocol = "http"
pool = "web"
[[pool]]
name = "web"
  [[pool.backend]]
  address = "127.0.0.1:9001"
  [pool.discovery]
  name = "web.test"
  type = "A"
  port = 9000
"#,
        )
        .expect("spec");
        let mut state = ClusterState::default();
        state
            .apply(
                Command::ApplyConfig {
                    spec,
                    if_version: None,
                    note: None,
                },
                Origin {
                    time_ms: 0,
                    caller: "test".into(),
                },
            )
            .expect("applies");
        state
    }

    fn found(addresses: &[&str]) -> Vec<Found> {
        addresses
            .iter()
            .map(|a| Found {
                address: a.to_string(),
                weight: 2,
            })
            .collect()
    }

    /// A lookup's commit, as the leader makes it from the state now.
    fn lookup(state: &ClusterState, addresses: &[&str]) -> Command {
        let pool = &state.spec.pools[0];
        Command::SetDiscovered {
            pool: "web".into(),
            discovery: pool.discovery.clone().expect("discovery"),
            expected: current_found(pool),
            found: found(addresses),
        }
    }

    fn discover(state: &mut ClusterState, addresses: &[&str]) -> Result<u64, StateError> {
        state
            .apply(
                lookup(state, addresses),
                Origin {
                    time_ms: 1,
                    caller: "dns web.test".into(),
                },
            )
            .map(|a| a.version)
    }

    fn addresses(state: &ClusterState) -> Vec<(String, Option<String>, AdminState)> {
        state.spec.pools[0]
            .backends
            .iter()
            .map(|b| (b.address.clone(), b.discovered.clone(), b.admin_state))
            .collect()
    }

    #[test]
    fn a_change_of_the_set_is_one_version_and_the_same_set_none() {
        let mut state = state();
        assert_eq!(
            discover(&mut state, &["127.0.0.2:9000", "127.0.0.3:9000"]),
            Ok(2)
        );
        assert_eq!(
            discover(&mut state, &["127.0.0.2:9000", "127.0.0.3:9000"]),
            Ok(2)
        );
        assert_eq!(discover(&mut state, &["127.0.0.3:9000"]), Ok(3));
        let last = state.history.revisions().last().expect("revision").clone();
        assert_eq!(last.origin.caller, "dns web.test");
        assert_eq!(last.summary, "-1 backend");
        assert_eq!(last.command, "pool web from DNS web.test: 127.0.0.3:9000");
        assert_eq!(
            addresses(&state),
            vec![
                ("127.0.0.1:9001".into(), None, AdminState::Active),
                (
                    "127.0.0.3:9000".into(),
                    Some("web.test".into()),
                    AdminState::Active
                ),
            ]
        );
    }

    #[test]
    fn an_operators_drain_stands_and_a_written_address_stays_the_operators() {
        let mut state = state();
        discover(&mut state, &["127.0.0.2:9000"]).expect("found");
        state
            .dispatch(Command::SetAdminState {
                pool: "web".into(),
                address: "127.0.0.2:9000".into(),
                state: AdminState::Draining,
            })
            .expect("drains");
        discover(&mut state, &["127.0.0.2:9000", "127.0.0.1:9001"]).expect("found");
        assert_eq!(
            addresses(&state),
            vec![
                ("127.0.0.1:9001".into(), None, AdminState::Active),
                (
                    "127.0.0.2:9000".into(),
                    Some("web.test".into()),
                    AdminState::Draining
                ),
            ]
        );
    }

    #[test]
    fn an_applied_file_keeps_the_discovered_backends_unless_it_follows_other_records() {
        let mut state = state();
        discover(&mut state, &["127.0.0.2:9000"]).expect("found");
        let version = state.version;
        // The same file again (as `ctl get config` prints it, or without
        // the discovered backends): nothing changes.
        let mut same = ClusterSpec::clone(&state.spec);
        let apply = |spec: ClusterSpec| Command::ApplyConfig {
            spec,
            if_version: None,
            note: None,
        };
        assert_eq!(state.dispatch(apply(same.clone())), Ok(version));
        same.pools[0].backends.truncate(1);
        assert_eq!(state.dispatch(apply(same.clone())), Ok(version));
        // A rollback to before the lookup keeps them too.
        assert_eq!(
            state.dispatch(Command::Rollback { version: 1 }),
            Ok(version)
        );
        // Another port: other records, the old backends go.
        let mut other = same;
        other.pools[0].discovery.as_mut().expect("discovery").port = Some(9100);
        state.dispatch(apply(other)).expect("applies");
        assert_eq!(
            addresses(&state),
            vec![("127.0.0.1:9001".into(), None, AdminState::Active)]
        );
    }

    #[test]
    fn a_lookup_made_for_other_settings_or_on_another_set_is_refused() {
        let mut state = state();
        // Made before the port changed.
        let old_port = lookup(&state, &["127.0.0.2:9000"]);
        let mut spec = ClusterSpec::clone(&state.spec);
        spec.pools[0].discovery.as_mut().expect("discovery").port = Some(9100);
        state
            .dispatch(Command::ApplyConfig {
                spec,
                if_version: None,
                note: None,
            })
            .expect("applies");
        let refused = state.dispatch(old_port);
        assert!(
            matches!(refused, Err(StateError::Invalid { .. })),
            "{refused:?}"
        );
        // Computed on a set another commit (a former leader's) changed.
        let stale = lookup(&state, &["127.0.0.2:9100"]);
        discover(&mut state, &["127.0.0.3:9100"]).expect("found");
        let refused = state.dispatch(stale);
        assert!(
            matches!(refused, Err(StateError::Invalid { .. })),
            "{refused:?}"
        );
        assert_eq!(current_found(&state.spec.pools[0]).len(), 1);
    }

    #[test]
    fn an_answer_less_the_written_addresses_changes_nothing_twice() {
        let mut state = state();
        let pool = state.spec.pools[0].clone();
        let answer = without_written(&pool, found(&["127.0.0.1:9001", "127.0.0.2:9000"]));
        assert_eq!(answer, found(&["127.0.0.2:9000"]));
        let version = discover(&mut state, &["127.0.0.2:9000"]).expect("found");
        let pool = state.spec.pools[0].clone();
        let again = without_written(&pool, found(&["127.0.0.1:9001", "127.0.0.2:9000"]));
        assert_eq!(again, current_found(&pool), "nothing to commit");
        assert_eq!(discover(&mut state, &["127.0.0.2:9000"]), Ok(version));
    }

    #[test]
    fn a_backend_added_by_hand_goes_before_the_discovered_ones() {
        let mut state = state();
        discover(&mut state, &["127.0.0.2:9000"]).expect("found");
        state
            .dispatch(Command::AddBackend {
                pool: "web".into(),
                backend: BackendSpec {
                    address: "127.0.0.1:9002".into(),
                    weight: 1,
                    admin_state: AdminState::Active,
                    discovered: None,
                },
            })
            .expect("added");
        let version = state.version;
        // So the configuration as `ctl get config` prints it applies as
        // no change.
        let same = ClusterSpec::clone(&state.spec);
        assert_eq!(
            state.dispatch(Command::ApplyConfig {
                spec: same,
                if_version: None,
                note: None,
            }),
            Ok(version)
        );
    }
}
