//! Flap damping: a backend leaves a pool only after `remove_after`
//! successful answers in a row without it. A record missing from one
//! answer (a round-robin name server that gives a subset, a pod that
//! restarts) moves no traffic; a backend that comes back counts anew.

use std::collections::{BTreeMap, HashMap};

use crate::state::discovery::Found;

/// Answers in a row each backend of the current set was missing from,
/// by address (the leader's memory; a new leader starts from none, which
/// can only delay a removal).
pub type Absences = HashMap<String, u32>;

/// The set to commit after a successful answer: everything the answer
/// holds (with its weights), and the backends of `current` missing from
/// fewer than `remove_after` answers in a row (with theirs). Sorted.
pub fn next_set(
    current: &[Found],
    answer: &[Found],
    absences: &mut Absences,
    remove_after: u32,
) -> Vec<Found> {
    let mut next: BTreeMap<&str, u32> = answer
        .iter()
        .map(|f| (f.address.as_str(), f.weight))
        .collect();
    let mut still_missing = Absences::new();
    for backend in current {
        if next.contains_key(backend.address.as_str()) {
            continue;
        }
        let missed = absences.get(&backend.address).copied().unwrap_or(0) + 1;
        if missed < remove_after {
            still_missing.insert(backend.address.clone(), missed);
            next.insert(&backend.address, backend.weight);
        }
    }
    *absences = still_missing;
    next.into_iter()
        .map(|(address, weight)| Found {
            address: address.to_string(),
            weight,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(addresses: &[&str]) -> Vec<Found> {
        addresses
            .iter()
            .map(|a| Found {
                address: a.to_string(),
                weight: 1,
            })
            .collect()
    }

    #[test]
    fn a_backend_leaves_after_remove_after_answers_in_a_row_without_it() {
        let mut absences = Absences::new();
        let current = set(&["a", "b"]);
        let first = next_set(&current, &set(&["a"]), &mut absences, 3);
        assert_eq!(first, set(&["a", "b"]));
        let second = next_set(&first, &set(&["a"]), &mut absences, 3);
        assert_eq!(second, set(&["a", "b"]));
        let third = next_set(&second, &set(&["a"]), &mut absences, 3);
        assert_eq!(third, set(&["a"]));
        assert!(absences.is_empty());
    }

    #[test]
    fn a_backend_that_comes_back_counts_anew() {
        let mut absences = Absences::new();
        let current = set(&["a", "b"]);
        let kept = next_set(&current, &set(&["a"]), &mut absences, 2);
        assert_eq!(kept, set(&["a", "b"]));
        let back = next_set(&kept, &set(&["a", "b"]), &mut absences, 2);
        assert_eq!(back, set(&["a", "b"]));
        let kept_again = next_set(&back, &set(&["a"]), &mut absences, 2);
        assert_eq!(kept_again, set(&["a", "b"]), "the count started over");
    }

    #[test]
    fn remove_after_one_follows_every_answer_and_new_ones_join_at_once() {
        let mut absences = Absences::new();
        let next = next_set(&set(&["a", "b"]), &set(&["b", "c"]), &mut absences, 1);
        assert_eq!(next, set(&["b", "c"]));
    }

    #[test]
    fn the_answer_sets_the_weights() {
        let mut absences = Absences::new();
        let answer = vec![Found {
            address: "a".into(),
            weight: 7,
        }];
        assert_eq!(next_set(&set(&["a"]), &answer, &mut absences, 3), answer);
    }
}
