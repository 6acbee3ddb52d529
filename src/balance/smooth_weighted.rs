//! Smooth weighted round robin by stride scheduling over weight groups.
//!
//! Every backend of weight `w` is given `w` picks per period, evenly spaced
//! in time, and the schedule is all those picks in time order. This is not
//! nginx's exact sequence, but it is as smooth or smoother for typical
//! weights (for 5, 1, 1 nginx runs the heavy backend four times across a
//! period boundary, this runs it at most three), and, unlike nginx's
//! O(Σweights × backends) construction, it can be built for a large pool
//! without stalling the node that builds it.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::AtomicUsize;

use super::{Balancer, PickContext, next_in_rotation};

/// Weighted round robin whose picks of each backend are evenly spread.
///
/// The schedule is computed once, when the backend set changes, so a pick
/// is one atomic increment and a read, with no lock and no allocation.
/// Building costs O(Σweights · log G), G being the number of distinct
/// weights (at most 256), and Σweights is at most 256 × backends.
#[derive(Debug)]
pub struct SmoothWeighted {
    schedule: Vec<u32>,
    backends: usize,
    next: AtomicUsize,
}

/// Backends sharing one weight. Grouping them is what keeps the build
/// independent of the number of backends: the merge only ever compares
/// groups, and inside a group the members simply take turns.
struct Group {
    /// Backend indices, in configuration order.
    members: Vec<u32>,
    /// Slots per period: members × weight.
    slots: u64,
}

/// The next slot of a group still to be placed: slot `m` of a group with
/// `slots` slots falls at time (m + 1/2) / slots within the period. The half
/// keeps groups from all starting together at time 0.
struct Slot {
    m: u64,
    slots: u64,
    group: usize,
}

impl Ord for Slot {
    fn cmp(&self, other: &Self) -> Ordering {
        // (2m+1)/(2N) < (2m'+1)/(2N') ⟺ (2m+1)·N' < (2m'+1)·N, exactly, so
        // every node orders ties and near-ties alike; u128 cannot overflow.
        let mine = u128::from(2 * self.m + 1) * u128::from(other.slots);
        let theirs = u128::from(2 * other.m + 1) * u128::from(self.slots);
        // Reversed (and ties to the group that appeared first) so the
        // max-heap yields the earliest slot.
        theirs.cmp(&mine).then_with(|| other.group.cmp(&self.group))
    }
}

impl PartialOrd for Slot {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Slot {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Slot {}

impl SmoothWeighted {
    /// The schedule for backends with these weights (each at least 1; a
    /// backend of weight 0 is never picked).
    pub fn new(weights: &[u32]) -> Self {
        SmoothWeighted {
            schedule: schedule(weights),
            backends: weights.len(),
            next: AtomicUsize::new(0),
        }
    }
}

/// Merges the groups' evenly spaced slots in time order. A member of a group
/// of n takes every n-th slot of it, and slots are spaced 1 / (n·w) apart, so
/// each backend's picks are exactly 1 / w apart, across period boundaries
/// too (n·w slots per period is a whole number of turns).
fn schedule(weights: &[u32]) -> Vec<u32> {
    // Groups in order of first appearance, so the schedule depends only on
    // the configuration, never on hashing.
    let mut groups: Vec<Group> = Vec::new();
    let mut group_of: HashMap<u32, usize> = HashMap::new();
    for (i, &w) in weights.iter().enumerate() {
        if w == 0 {
            continue;
        }
        let g = *group_of.entry(w).or_insert_with(|| {
            groups.push(Group {
                members: Vec::new(),
                slots: 0,
            });
            groups.len() - 1
        });
        groups[g].members.push(i as u32);
        groups[g].slots += u64::from(w);
    }
    let total: u64 = groups.iter().map(|g| g.slots).sum();
    let mut schedule = Vec::with_capacity(total as usize);
    let mut heap: BinaryHeap<Slot> = groups
        .iter()
        .enumerate()
        .map(|(group, g)| Slot {
            m: 0,
            slots: g.slots,
            group,
        })
        .collect();
    while let Some(mut slot) = heap.pop() {
        let members = &groups[slot.group].members;
        schedule.push(members[(slot.m % members.len() as u64) as usize]);
        slot.m += 1;
        if slot.m < slot.slots {
            heap.push(slot);
        }
    }
    schedule
}

impl Balancer for SmoothWeighted {
    fn pick(&self, ctx: &PickContext<'_>) -> Option<usize> {
        let len = self.schedule.len();
        if len == 0 {
            return None;
        }
        next_in_rotation(
            &self.next,
            |turn| self.schedule[turn % len] as usize,
            len,
            self.backends,
            ctx,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::testing::*;

    /// Positions of backend `i` in the schedule, in order.
    fn positions(schedule: &[u32], i: usize) -> Vec<usize> {
        schedule
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b as usize == i)
            .map(|(k, _)| k)
            .collect()
    }

    fn distinct(weights: &[u32]) -> usize {
        let mut seen = weights.to_vec();
        seen.sort_unstable();
        seen.dedup();
        seen.len()
    }

    #[test]
    fn shares_follow_weights() {
        let weights = [5, 1, 1, 3];
        let counts = shares(&SmoothWeighted::new(&weights), 4, 100_000);
        assert_shares_follow_weights(&counts, &weights);
    }

    #[test]
    fn light_backends_are_spread_between_heavy_picks() {
        // Weight 5 slots at 1/10, 3/10, 5/10, 7/10, 9/10; the weight-1 pair
        // shares slots at 1/4 (backend 1) and 3/4 (backend 2). Backend 0
        // runs at most three times, across period boundaries too (nginx's
        // 0 0 1 0 2 0 0 runs it four times there).
        let wrr = SmoothWeighted::new(&[5, 1, 1]);
        assert_eq!(wrr.schedule, vec![0, 1, 0, 0, 0, 2, 0]);
    }

    #[test]
    fn never_more_consecutive_picks_than_weight_allows() {
        let weights = [4, 3, 2, 1, 7];
        let wrr = SmoothWeighted::new(&weights);
        let total: u32 = weights.iter().sum();
        let seq: Vec<u32> = (0..3 * total as usize)
            .map(|k| wrr.schedule[k % wrr.schedule.len()])
            .collect();
        for (i, &w) in weights.iter().enumerate() {
            // Smooth: picks of the others are spread between a backend's
            // picks, so its longest run (across periods too) is about
            // w / others, far below the run of `w` plain weighted round
            // robin gives.
            let allowed = w.div_ceil(total - w) + 1;
            assert!(allowed <= w.max(2));
            let longest = seq
                .chunk_by(|a, b| a == b)
                .filter(|run| run[0] == i as u32)
                .map(|run| run.len() as u32)
                .max()
                .unwrap_or(0);
            assert!(longest <= allowed, "backend {i}: run {longest} > {allowed}");
        }
    }

    #[test]
    fn every_backends_picks_are_evenly_spread() {
        // Between two picks of a backend of weight w lie, from each other
        // group h, ceil or floor of N_h / w slots (its slots are evenly
        // spaced), and n - 1 of its own group's; so the gap differs from
        // W / w by less than the number of distinct weights G.
        for weights in [
            vec![3, 1, 2, 2, 8],
            vec![4, 3, 2, 1, 7],
            vec![5, 1, 1],
            vec![256, 1, 1, 1, 17, 17, 100, 3],
            (1..=40).collect(),
        ] {
            let wrr = SmoothWeighted::new(&weights);
            let total: usize = weights.iter().map(|&w| w as usize).sum();
            assert_eq!(wrr.schedule.len(), total);
            let g = distinct(&weights);
            for (i, &w) in weights.iter().enumerate() {
                let w = w as usize;
                let at = positions(&wrr.schedule, i);
                assert_eq!(at.len(), w, "{weights:?}: backend {i}");
                let most = total / w + g - 1;
                let least = total.div_ceil(w).saturating_sub(g - 1).max(1);
                // Cyclically: the last pick's successor is the first pick of
                // the next period.
                let next = at.iter().skip(1).copied().chain([at[0] + total]);
                for gap in at.iter().zip(next).map(|(&a, b)| b - a) {
                    assert!(
                        (least..=most).contains(&gap),
                        "{weights:?}: backend {i}: gap {gap} outside {least}..={most}"
                    );
                }
            }
        }
    }

    #[test]
    fn builds_for_a_large_pool() {
        let wrr = SmoothWeighted::new(&[256; 10_000]);
        assert_eq!(wrr.schedule.len(), 2_560_000);
        let mut counts = vec![0u32; 10_000];
        for &i in &wrr.schedule {
            counts[i as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c == 256));
    }

    #[test]
    fn backends_out_of_the_middle_leave_the_others_by_their_weights() {
        let weights = [3, 5, 1, 2, 4];
        let wrr = SmoothWeighted::new(&weights);
        let counts = shares_without(&wrr, 5, &[1, 3], 60_000);
        assert_shares_follow_weights(&counts, &[3, 0, 1, 0, 4]);
    }

    #[test]
    fn with_almost_every_turn_out_the_rest_still_follow_their_weights() {
        // Backend 0 holds 200 of 202 turns and is out: the rotation falls
        // back to reading the schedule, which must keep 1 and 2 even.
        let wrr = SmoothWeighted::new(&[200, 1, 1]);
        let counts = shares_without(&wrr, 3, &[0], 10_000);
        assert_shares_follow_weights(&counts, &[0, 1, 1]);
    }

    #[test]
    fn unavailable_backends_are_skipped() {
        let wrr = SmoothWeighted::new(&[5, 1, 1]);
        let available = |i: usize| i != 0;
        let outstanding = |_: usize| 0;
        let ctx = PickContext {
            available: &available,
            outstanding: &outstanding,
            key: 0,
        };
        assert!((0..20).all(|_| matches!(wrr.pick(&ctx), Some(1 | 2))));
        let none = |_: usize| false;
        let ctx = PickContext {
            available: &none,
            outstanding: &outstanding,
            key: 0,
        };
        assert_eq!(wrr.pick(&ctx), None);
    }
}
