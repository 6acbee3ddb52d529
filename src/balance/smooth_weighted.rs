//! Smooth weighted round robin, as nginx does it.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Balancer, PickContext};

/// nginx's smooth weighted round robin. The sequence nginx would produce is
/// computed once, when the backend set changes, so a pick is one atomic
/// increment and a read instead of nginx's per-pick pass under a lock.
#[derive(Debug)]
pub struct SmoothWeighted {
    schedule: Vec<u32>,
    next: AtomicUsize,
}

impl SmoothWeighted {
    /// The schedule for backends with these weights (each at least 1).
    pub fn new(weights: &[u32]) -> Self {
        let total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
        let mut current = vec![0i64; weights.len()];
        let mut schedule = Vec::with_capacity(total as usize);
        for _ in 0..total {
            let mut best = 0;
            for (i, &w) in weights.iter().enumerate() {
                current[i] += i64::from(w);
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= total;
            schedule.push(best as u32);
        }
        SmoothWeighted {
            schedule,
            next: AtomicUsize::new(0),
        }
    }
}

impl Balancer for SmoothWeighted {
    fn pick(&self, ctx: &PickContext<'_>) -> Option<usize> {
        let len = self.schedule.len();
        if len == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..len)
            .map(|k| self.schedule[(start + k) % len] as usize)
            .find(|&i| (ctx.available)(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::testing::*;

    #[test]
    fn shares_follow_weights() {
        let weights = [5, 1, 1, 3];
        let counts = shares(&SmoothWeighted::new(&weights), 4, 100_000);
        assert_shares_follow_weights(&counts, &weights);
    }

    #[test]
    fn is_smooth_like_nginx() {
        // nginx's documented sequence for weights 5, 1, 1.
        let wrr = SmoothWeighted::new(&[5, 1, 1]);
        assert_eq!(wrr.schedule, vec![0, 0, 1, 0, 2, 0, 0]);
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
}
