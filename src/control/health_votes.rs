//! The leader's tally of the nodes' health views. A backend's cluster-wide
//! health is committed when a majority of voters agree, at most once per
//! damping interval per backend, so a flapping backend cannot flood the log.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::raft::NodeId;

/// Least time between two commits for one backend.
pub const MIN_DAMPING: Duration = Duration::from_secs(1);

type Key = (String, SocketAddr);

/// What the tally says to do about one backend.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing: no majority, or the majority matches the committed view.
    Nothing,
    /// Commit this view now.
    Commit(bool),
    /// A majority differs, but the last commit was too recent: look again
    /// after this long.
    Later(Duration),
}

#[derive(Default)]
struct Tally {
    term: u64,
    views: HashMap<Key, HashMap<NodeId, bool>>,
    last_commit: HashMap<Key, Instant>,
    deferred: std::collections::HashSet<Key>,
}

/// Per-leader-term tally of health reports.
#[derive(Default)]
pub struct HealthVotes {
    tally: Mutex<Tally>,
}

impl HealthVotes {
    /// Records `node`'s view of a backend (forgetting every view of an
    /// earlier term: a new leader starts afresh and nodes report again).
    pub fn record(&self, term: u64, node: NodeId, key: &Key, up: bool) {
        let mut tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        if tally.term != term {
            *tally = Tally {
                term,
                ..Tally::default()
            };
        }
        tally.views.entry(key.clone()).or_default().insert(node, up);
    }

    /// Decides about a backend whose committed view is `committed`.
    pub fn verdict(
        &self,
        key: &Key,
        voters: &BTreeSet<NodeId>,
        committed: Option<bool>,
        damping: Duration,
    ) -> Verdict {
        let tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        let Some(views) = tally.views.get(key) else {
            return Verdict::Nothing;
        };
        let count = |up: bool| voters.iter().filter(|v| views.get(v) == Some(&up)).count();
        let majority = voters.len() / 2 + 1;
        let decided = if count(false) >= majority {
            Some(false)
        } else if count(true) >= majority {
            Some(true)
        } else {
            None
        };
        match decided {
            Some(up) if Some(up) != committed => match tally.last_commit.get(key) {
                Some(at) if at.elapsed() < damping => Verdict::Later(damping - at.elapsed()),
                _ => Verdict::Commit(up),
            },
            _ => Verdict::Nothing,
        }
    }

    /// Remembers a backend whose verdict damping delayed.
    pub fn defer(&self, key: Key) {
        let mut tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        tally.deferred.insert(key);
    }

    /// The delayed backends, to judge again.
    pub fn take_deferred(&self) -> Vec<Key> {
        let mut tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        tally.deferred.drain().collect()
    }

    /// Notes a commit for a backend, starting its damping interval.
    pub fn committed(&self, key: &Key) {
        let mut tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        tally.last_commit.insert(key.clone(), Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        ("web".into(), "127.0.0.1:9001".parse().expect("address"))
    }

    #[test]
    fn a_minority_changes_nothing_and_a_majority_commits() {
        let votes = HealthVotes::default();
        let voters = BTreeSet::from([1, 2, 3]);
        votes.record(1, 1, &key(), false);
        assert_eq!(
            votes.verdict(&key(), &voters, Some(true), MIN_DAMPING),
            Verdict::Nothing
        );
        votes.record(1, 2, &key(), false);
        assert_eq!(
            votes.verdict(&key(), &voters, Some(true), MIN_DAMPING),
            Verdict::Commit(false)
        );
        assert_eq!(
            votes.verdict(&key(), &voters, Some(false), MIN_DAMPING),
            Verdict::Nothing
        );
    }

    #[test]
    fn commits_are_damped() {
        let votes = HealthVotes::default();
        let voters = BTreeSet::from([1]);
        votes.record(1, 1, &key(), false);
        votes.committed(&key());
        assert!(matches!(
            votes.verdict(&key(), &voters, Some(true), MIN_DAMPING),
            Verdict::Later(_)
        ));
    }

    #[test]
    fn a_new_term_starts_afresh() {
        let votes = HealthVotes::default();
        let voters = BTreeSet::from([1, 2, 3]);
        votes.record(1, 1, &key(), false);
        votes.record(2, 2, &key(), false);
        assert_eq!(
            votes.verdict(&key(), &voters, Some(true), MIN_DAMPING),
            Verdict::Nothing
        );
    }
}
