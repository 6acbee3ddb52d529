//! The record of committed changes: who changed what and when, for the last
//! [`HISTORY_LEN`] versions. Each revision keeps only what its change
//! replaced (an [`Undo`]), not a copy of the whole configuration, so the
//! history of a 10,000-backend configuration costs what its changes cost,
//! and any kept version can still be rebuilt for a rollback.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::diff::Change;
use crate::config::{ClusterSpec, FrontendSpec, PoolSpec};

/// Versions kept in the history.
pub const HISTORY_LEN: usize = 50;

/// Where a change came from, stamped by the node that proposes it (so every
/// node applies the same values).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// Milliseconds since the Unix epoch when it was proposed.
    pub time_ms: u64,
    /// Token identity or peer address of the caller; `bootstrap` for the seed.
    pub caller: String,
}

/// One committed version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revision {
    /// The version this change produced.
    pub version: u64,
    /// When and by whom.
    pub origin: Origin,
    /// What the command was, in one line.
    pub command: String,
    /// What it changed, in one line.
    pub summary: String,
    /// What the change replaced: applied to this version's configuration it
    /// gives the previous version's.
    pub undo: Undo,
}

/// What one change replaced, pool by pool.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Undo {
    /// The frontends before, when the change touched any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    frontends: Option<Vec<FrontendSpec>>,
    /// Pools as they were before, for pools the change altered or removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pools: Vec<PoolSpec>,
    /// Names of pools the change added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    added: Vec<String>,
    /// Pool order before, when it changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    order: Option<Vec<String>>,
}

impl Undo {
    /// What turns `after` back into `before`.
    pub fn between(before: &ClusterSpec, after: &ClusterSpec) -> Undo {
        let after_pools: HashMap<&str, &PoolSpec> =
            after.pools.iter().map(|p| (p.name.as_str(), p)).collect();
        let before_names: Vec<&str> = before.pools.iter().map(|p| p.name.as_str()).collect();
        let after_names: Vec<&str> = after.pools.iter().map(|p| p.name.as_str()).collect();
        Undo {
            frontends: (before.frontends != after.frontends).then(|| before.frontends.clone()),
            pools: before
                .pools
                .iter()
                .filter(|p| after_pools.get(p.name.as_str()) != Some(p))
                .cloned()
                .collect(),
            added: after_names
                .iter()
                .filter(|name| !before_names.contains(name))
                .map(|name| name.to_string())
                .collect(),
            order: (before_names != after_names)
                .then(|| before_names.iter().map(|n| n.to_string()).collect()),
        }
    }

    /// The configuration before the change, from the one after it.
    pub fn revert(&self, after: &ClusterSpec) -> ClusterSpec {
        let order: Vec<String> = match &self.order {
            Some(order) => order.clone(),
            None => after.pools.iter().map(|p| p.name.clone()).collect(),
        };
        let mut pools: HashMap<&str, &PoolSpec> = after
            .pools
            .iter()
            .filter(|p| !self.added.contains(&p.name))
            .map(|p| (p.name.as_str(), p))
            .collect();
        for pool in &self.pools {
            pools.insert(pool.name.as_str(), pool);
        }
        ClusterSpec {
            frontends: self
                .frontends
                .clone()
                .unwrap_or_else(|| after.frontends.clone()),
            pools: order
                .iter()
                .filter_map(|name| pools.get(name.as_str()).map(|p| (*p).clone()))
                .collect(),
            certificates: Vec::new(),
        }
    }
}

impl FromIterator<Revision> for History {
    fn from_iter<I: IntoIterator<Item = Revision>>(revisions: I) -> Self {
        let mut history = History::default();
        for revision in revisions {
            history.record(revision);
        }
        history
    }
}

/// What applying a command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The version after the command (the current one when nothing changed).
    pub version: u64,
    /// The differences it made.
    pub changes: Vec<Change>,
    /// The command asked for what was already so: no new version.
    #[serde(default)]
    pub unchanged: bool,
    /// This request id had been applied before: this is that first result,
    /// and nothing was applied again.
    #[serde(default)]
    pub replayed: bool,
}

/// The last [`HISTORY_LEN`] revisions, oldest first. Revisions are shared,
/// so copying the history (every applied state holds one) copies pointers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    revisions: VecDeque<Arc<Revision>>,
}

impl History {
    /// Records a revision, dropping the oldest beyond [`HISTORY_LEN`].
    pub fn record(&mut self, revision: Revision) {
        self.revisions.push_back(Arc::new(revision));
        while self.revisions.len() > HISTORY_LEN {
            self.revisions.pop_front();
        }
    }

    /// The revision that produced `version`, if still kept.
    pub fn get(&self, version: u64) -> Option<&Revision> {
        let oldest = self.oldest()?;
        let index = usize::try_from(version.checked_sub(oldest)?).ok()?;
        self.revisions
            .get(index)
            .map(|r| r.as_ref())
            .filter(|r| r.version == version)
    }

    /// Every kept revision, oldest first.
    pub fn revisions(&self) -> impl DoubleEndedIterator<Item = &Revision> {
        self.revisions.iter().map(|r| r.as_ref())
    }

    /// The kept revisions newer than `version`, oldest first.
    pub fn after(&self, version: u64) -> impl Iterator<Item = &Revision> {
        self.revisions().filter(move |r| r.version > version)
    }

    /// The oldest version still kept.
    pub fn oldest(&self) -> Option<u64> {
        self.revisions.front().map(|r| r.version)
    }

    /// The configuration at `version`, rebuilt from `current` (the
    /// configuration of the newest revision) by undoing every newer change;
    /// `None` if that version is no longer kept.
    pub fn spec_at(&self, current: &ClusterSpec, version: u64) -> Option<ClusterSpec> {
        self.get(version)?;
        let mut spec = current.clone();
        for revision in self.revisions().rev().take_while(|r| r.version > version) {
            spec = revision.undo.revert(&spec);
        }
        Some(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> ClusterSpec {
        toml::from_str(text).expect("spec")
    }

    const A: &str = r#"
[[frontend]]
name = "web"
port = 8080
protocol = "http"
pool = "web"
[[pool]]
name = "web"
  [[pool.backend]]
  address = "127.0.0.1:9001"
[[pool]]
name = "api"
  [[pool.backend]]
  address = "127.0.0.1:9101"
"#;

    #[test]
    fn undo_reverts_added_removed_changed_and_reordered_pools() {
        let before = spec(A);
        let after = spec(
            r#"
[[frontend]]
name = "web"
port = 8081
protocol = "tcp"
pool = "new"
[[pool]]
name = "new"
[[pool]]
name = "web"
  [[pool.backend]]
  address = "127.0.0.1:9001"
  weight = 9
"#,
        );
        let undo = Undo::between(&before, &after);
        assert_eq!(undo.revert(&after), before);
        assert_eq!(Undo::between(&after, &before).revert(&before), after);
    }

    #[test]
    fn an_unchanged_pool_is_not_kept_in_the_undo() {
        let before = spec(A);
        let mut after = before.clone();
        after.pools[1].backends[0].weight = 4;
        let undo = Undo::between(&before, &after);
        assert_eq!(undo.pools.len(), 1);
        assert_eq!(undo.pools[0].name, "api");
        assert!(undo.frontends.is_none() && undo.order.is_none());
        assert_eq!(undo.revert(&after), before);
    }

    #[test]
    fn every_kept_version_can_be_rebuilt() {
        let mut history = History::default();
        let mut specs = vec![ClusterSpec::default()];
        let mut current = ClusterSpec::default();
        for version in 1..=(HISTORY_LEN as u64 + 10) {
            let mut next = spec(A);
            next.pools[0].backends[0].weight = (version % 7 + 1) as u32;
            if version % 3 == 0 {
                next.pools.reverse();
            }
            history.record(Revision {
                version,
                origin: Origin::default(),
                command: String::new(),
                summary: String::new(),
                undo: Undo::between(&current, &next),
            });
            specs.push(next.clone());
            current = next;
        }
        let oldest = history.oldest().expect("kept");
        assert_eq!(oldest, 11);
        for version in oldest..=HISTORY_LEN as u64 + 10 {
            assert_eq!(
                history.spec_at(&current, version).as_ref(),
                Some(&specs[version as usize]),
                "version {version}"
            );
        }
        assert_eq!(history.spec_at(&current, oldest - 1), None);
    }
}
