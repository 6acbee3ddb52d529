//! Client sessions for exactly-once writes (Raft thesis §6.3, with request
//! ids instead of per-client sequence numbers): the state remembers the
//! result of each recent request id, so an entry proposed again after a lost
//! reply (a leader that died after committing, a client that retried on
//! another node) is answered with its first result instead of applied twice.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Applied, StateError};

/// Request ids remembered; older ones are forgotten first. A client retries
/// within seconds, and this covers far more writes than a cluster takes in
/// that time.
pub const REMEMBERED_REQUESTS: usize = 10_000;
/// Changes kept across all remembered results, so a run of large
/// configurations cannot make the state grow without bound (the oldest
/// results are forgotten first).
const REMEMBERED_CHANGES: usize = 100_000;
/// Longest request id accepted.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// The first result of one request id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answered {
    /// The client's request id (shared with the index, so copying the
    /// table, as every write does while readers hold the old one, copies
    /// no strings).
    pub id: Arc<str>,
    /// Order of recording, the same on every node (it names the record in
    /// storage and decides which id is forgotten first).
    pub seq: u64,
    /// What applying it gave, refusals included.
    pub result: Result<Applied, StateError>,
}

/// The results of the last [`REMEMBERED_REQUESTS`] request ids, in the order
/// they were applied. Part of the replicated state, so every node answers a
/// repeated id alike, and shared, so copies of the state cost pointers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Vec<Arc<Answered>>", into = "Vec<Arc<Answered>>")]
pub struct RecentRequests {
    order: VecDeque<Arc<Answered>>,
    by_id: HashMap<Arc<str>, Arc<Answered>>,
    changes: usize,
}

impl RecentRequests {
    /// The first result of `id`, if it is still remembered.
    pub fn get(&self, id: &str) -> Option<&Answered> {
        self.by_id.get(id).map(Arc::as_ref)
    }

    /// Remembers the first result of a request id.
    pub fn record(&mut self, id: &str, result: Result<Applied, StateError>) {
        if self.by_id.contains_key(id) {
            return;
        }
        let seq = self.order.back().map_or(1, |last| last.seq + 1);
        self.push(Answered {
            id: id.into(),
            seq,
            result,
        });
    }

    fn push(&mut self, answered: Answered) {
        let answered = Arc::new(answered);
        self.changes += change_count(&answered);
        self.by_id.insert(answered.id.clone(), answered.clone());
        self.order.push_back(answered);
        while self.order.len() > REMEMBERED_REQUESTS
            || (self.changes > REMEMBERED_CHANGES && self.order.len() > 1)
        {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.changes -= change_count(&oldest);
            self.by_id.remove(&oldest.id);
        }
    }

    /// Every remembered id, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Answered> {
        self.order.iter().map(Arc::as_ref)
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

fn change_count(answered: &Answered) -> usize {
    answered
        .result
        .as_ref()
        .map_or(1, |a| a.changes.len().max(1))
}

impl From<Vec<Arc<Answered>>> for RecentRequests {
    fn from(list: Vec<Arc<Answered>>) -> Self {
        let mut requests = RecentRequests::default();
        for answered in list {
            if !requests.by_id.contains_key(&answered.id) {
                requests.push(Arc::unwrap_or_clone(answered));
            }
        }
        requests
    }
}

impl From<RecentRequests> for Vec<Arc<Answered>> {
    fn from(requests: RecentRequests) -> Self {
        requests.order.into_iter().collect()
    }
}

/// Checks a client-chosen request id: 1 to [`MAX_REQUEST_ID_LEN`] printable
/// ASCII characters.
pub fn check_request_id(id: &str) -> Result<(), StateError> {
    if id.is_empty() || id.len() > MAX_REQUEST_ID_LEN || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(StateError::invalid(
            "request_id",
            id,
            format!("must be 1 to {MAX_REQUEST_ID_LEN} printable ASCII characters"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(version: u64) -> Result<Applied, StateError> {
        Ok(Applied {
            version,
            changes: Vec::new(),
            unchanged: false,
            replayed: false,
        })
    }

    #[test]
    fn the_first_result_is_kept_and_the_oldest_forgotten() {
        let mut requests = RecentRequests::default();
        requests.record("a", applied(1));
        requests.record("a", applied(2));
        assert_eq!(
            requests.get("a").map(|a| a.result.clone()),
            Some(applied(1))
        );
        for i in 0..REMEMBERED_REQUESTS {
            requests.record(&format!("id-{i}"), applied(i as u64));
        }
        assert_eq!(requests.len(), REMEMBERED_REQUESTS);
        assert!(requests.get("a").is_none());
        assert!(requests.get("id-0").is_some());
    }

    #[test]
    fn survives_serialization_in_order() {
        let mut requests = RecentRequests::default();
        for i in 0..5 {
            requests.record(&format!("id-{i}"), applied(i));
        }
        let json = serde_json::to_vec(&requests).expect("json");
        let back: RecentRequests = serde_json::from_slice(&json).expect("back");
        assert_eq!(back, requests);
        assert_eq!(back.iter().next().map(|a| &*a.id), Some("id-0"));
    }

    #[test]
    fn request_ids_are_checked() {
        assert!(check_request_id("ctl-3f2a-17").is_ok());
        assert!(check_request_id("").is_err());
        assert!(check_request_id("with space").is_err());
        assert!(check_request_id(&"x".repeat(MAX_REQUEST_ID_LEN + 1)).is_err());
    }
}
