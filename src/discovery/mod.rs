//! Backends from DNS (`[pool.discovery]`): the leader looks each name up
//! on its interval (sooner when a record's TTL is shorter, never sooner
//! than [`crate::config::TTL_FLOOR_MS`]) and commits a change of the set
//! as one Raft entry, with the name as its caller; every node serves the
//! committed set, so no two nodes disagree about a pool's backends.
//!
//! - A backend missing from DNS leaves the pool after `remove_after`
//!   answers in a row without it ([`damping`]). Leaving is a drain: no new
//!   connection or request goes to it, and those open finish, as after
//!   `ctl backend remove`.
//! - A lookup that fails (a timeout, SERVFAIL, NXDOMAIN, an empty answer)
//!   changes no backend. The leader records the pool as stale (since
//!   when, and why) in the cluster state, for `ctl status`, `/status` and
//!   `raftlb_discovery_stale` on every node, and clears it at the next
//!   answer.
//! - A new leader looks every name up at once: resolution goes on within
//!   one interval of an election.

mod damping;
pub mod lookup;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use tokio::task::{Id, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{DiscoverySpec, TTL_FLOOR_MS};
use crate::control::{ClusterControl, ControlError, unix_millis};
use crate::metrics::LookupLabels;
use crate::state::Command;
use crate::state::discovery::{Stale, current_found, discovered_pools, without_written};
use damping::Absences;
use lookup::{Answer, Failure, Lookup};

/// How often the loop looks at the schedule and the Raft role.
const TICK: Duration = Duration::from_millis(50);
/// After a commit the state refused (the set or the settings changed
/// meanwhile), the next lookup comes this soon.
const RETRY: Duration = Duration::from_millis(100);
/// Commits refused in a row before the pool shows stale (an answer the
/// state cannot take, such as more backends than a pool holds).
const REFUSALS: u32 = 3;

/// One pool followed by this node while it leads.
struct Watch {
    spec: DiscoverySpec,
    /// The resolver, or why none could be made.
    lookup: Result<Arc<Lookup>, String>,
    due: Instant,
    running: bool,
    absences: Absences,
    refusals: u32,
}

impl Watch {
    fn new(spec: &DiscoverySpec) -> Watch {
        Watch {
            spec: spec.clone(),
            lookup: Lookup::new(spec).map(Arc::new),
            due: Instant::now(),
            running: false,
            absences: Absences::new(),
            refusals: 0,
        }
    }
}

/// A lookup's result, with the settings it was made for.
type Done = (String, DiscoverySpec, Result<Answer, Failure>);

/// Runs until `stop`.
pub async fn run(control: Arc<ClusterControl>, stop: CancellationToken) {
    let mut watches: HashMap<String, Watch> = HashMap::new();
    let mut lookups: JoinSet<Done> = JoinSet::new();
    let mut running: HashMap<Id, String> = HashMap::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let done = tokio::select! {
            _ = tick.tick() => None,
            Some(joined) = lookups.join_next_with_id(), if !lookups.is_empty() => Some(joined),
            () = stop.cancelled() => return,
        };
        if control.raft.metrics().borrow().state != ServerState::Leader {
            watches.clear();
            lookups.abort_all();
            running.clear();
            continue;
        }
        match done {
            Some(Ok((id, (pool, spec, result)))) => {
                running.remove(&id);
                let Some(watch) = watches.get_mut(&pool).filter(|w| w.spec == spec) else {
                    continue; // the pool changed meanwhile: its new watch looks again
                };
                watch.running = false;
                watch.due = Instant::now() + next_lookup(&spec, result.as_ref().ok());
                settle(&control, &pool, watch, result).await;
                continue;
            }
            Some(Err(error)) => {
                // A lookup that panicked: the pool is looked up again.
                let pool = running.remove(&error.id());
                if let Some(watch) = pool.and_then(|pool| watches.get_mut(&pool)) {
                    watch.running = false;
                    watch.due = Instant::now() + Duration::from_millis(watch.spec.interval_ms);
                }
                continue;
            }
            None => {}
        }
        follow_the_configuration(&control, &mut watches);
        for (pool, watch) in &mut watches {
            if watch.running || watch.due > Instant::now() {
                continue;
            }
            watch.running = true;
            let (pool_name, spec, lookup) =
                (pool.clone(), watch.spec.clone(), watch.lookup.clone());
            let handle = lookups.spawn(async move {
                let result = match lookup {
                    Ok(lookup) => lookup.run_within().await,
                    Err(detail) => Err(Failure {
                        reason: "error",
                        detail,
                    }),
                };
                (pool_name, spec, result)
            });
            running.insert(handle.id(), pool.clone());
        }
    }
}

/// One watch per pool with `[pool.discovery]`, made anew when its
/// settings change (and so looked up at once).
fn follow_the_configuration(control: &ClusterControl, watches: &mut HashMap<String, Watch>) {
    let state = control.served.state();
    let wanted: HashMap<&str, &DiscoverySpec> = discovered_pools(&state.spec)
        .map(|(pool, spec)| (pool.name.as_str(), spec))
        .collect();
    watches.retain(|pool, watch| wanted.get(pool.as_str()) == Some(&&watch.spec));
    for (pool, spec) in wanted {
        watches
            .entry(pool.to_string())
            .or_insert_with(|| Watch::new(spec));
    }
}

/// The wait before the next lookup: the interval, or the answer's TTL
/// when shorter, but not under the floor.
fn next_lookup(spec: &DiscoverySpec, answer: Option<&Answer>) -> Duration {
    let interval = Duration::from_millis(spec.interval_ms);
    match answer {
        Some(answer) => interval.min(answer.ttl.max(Duration::from_millis(TTL_FLOOR_MS))),
        None => interval,
    }
}

/// Commits what a lookup changed: the set after damping, and the pool's
/// stale mark.
async fn settle(
    control: &ClusterControl,
    pool: &str,
    watch: &mut Watch,
    result: Result<Answer, Failure>,
) {
    let result_label = match &result {
        Ok(_) => "ok",
        Err(failure) => failure.reason,
    };
    control
        .served
        .metrics()
        .discovery_lookups
        .get_or_create(&LookupLabels {
            pool: pool.to_string(),
            result: result_label.to_string(),
        })
        .inc();
    let state = control.served.state();
    let Some(current) = state
        .spec
        .pools
        .iter()
        .find(|p| p.name == pool && p.discovery.as_ref() == Some(&watch.spec))
    else {
        return; // the settings changed since the lookup began
    };
    let stale_now = state.stale_discoveries.get(pool);
    let name = &watch.spec.name;
    let caller = format!("dns {name}");
    let answer = match result {
        Ok(answer) => answer,
        Err(failure) => {
            crate::warn_limited!(
                format!("discovery lookup {pool}"), pool, name = %name,
                reason = failure.reason, detail = %failure.detail,
                "DNS lookup failed: the last set is kept"
            );
            mark_stale(
                control,
                pool,
                watch,
                stale_now,
                Some(failure.reason),
                caller,
            )
            .await;
            return;
        }
    };
    let before = current_found(current);
    let counted = watch.absences.clone();
    let next = damping::next_set(
        &before,
        &without_written(current, answer.found),
        &mut watch.absences,
        watch.spec.remove_after,
    );
    if next != before {
        let command = Command::SetDiscovered {
            pool: pool.to_string(),
            discovery: watch.spec.clone(),
            expected: before,
            found: next,
        };
        match control.write(command, caller.clone(), None).await {
            Ok(applied) => {
                watch.refusals = 0;
                tracing::info!(
                    pool, name = %name, version = applied.version,
                    "discovered backends changed"
                );
            }
            Err(error) => {
                // This answer did not count: the next one counts instead.
                watch.absences = counted;
                watch.refusals += 1;
                crate::warn_limited!(
                    format!("discovery commit {pool}"), pool, %error,
                    "could not commit the discovered backends; looking up again"
                );
                if matches!(error, ControlError::Refused(_)) && watch.refusals >= REFUSALS {
                    mark_stale(control, pool, watch, stale_now, Some("refused"), caller).await;
                } else {
                    watch.due = Instant::now() + RETRY;
                }
                return;
            }
        }
    }
    mark_stale(control, pool, watch, stale_now, None, caller).await;
}

/// Records that the pool's lookups fail for `reason` (kept since the
/// first failure), or answer again (`None`); writes only a change.
async fn mark_stale(
    control: &ClusterControl,
    pool: &str,
    watch: &Watch,
    stale_now: Option<&Stale>,
    reason: Option<&str>,
    caller: String,
) {
    let name = &watch.spec.name;
    let stale = reason.map(|reason| Stale {
        name: name.clone(),
        since_ms: stale_now
            .filter(|s| s.name == *name)
            .map_or_else(unix_millis, |s| s.since_ms),
        reason: reason.to_string(),
    });
    if stale.as_ref() == stale_now {
        return;
    }
    let command = Command::SetDiscoveryStale {
        pool: pool.to_string(),
        stale,
    };
    if let Err(error) = control.write(command, caller, None).await {
        crate::warn_limited!(
            format!("discovery stale {pool}"), pool, %error,
            "could not record the pool's lookup state"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RecordType;

    #[test]
    fn a_short_ttl_brings_the_lookup_forward_down_to_the_floor() {
        let spec = DiscoverySpec {
            name: "web.test".into(),
            record_type: RecordType::A,
            port: Some(80),
            resolvers: Vec::new(),
            interval_ms: 5_000,
            weight: None,
            remove_after: 3,
        };
        let answer = |ttl_s| Answer {
            found: Vec::new(),
            ttl: Duration::from_secs(ttl_s),
        };
        assert_eq!(next_lookup(&spec, None), Duration::from_secs(5));
        assert_eq!(
            next_lookup(&spec, Some(&answer(300))),
            Duration::from_secs(5)
        );
        assert_eq!(next_lookup(&spec, Some(&answer(2))), Duration::from_secs(2));
        assert_eq!(next_lookup(&spec, Some(&answer(0))), Duration::from_secs(1));
    }
}
