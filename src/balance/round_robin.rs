//! Plain round robin.

use std::sync::atomic::AtomicUsize;

use super::{Balancer, PickContext, next_in_rotation};

/// Each available backend in turn, ignoring weights.
#[derive(Debug)]
pub struct RoundRobin {
    len: usize,
    next: AtomicUsize,
}

impl RoundRobin {
    /// A rotation over `len` backends.
    pub fn new(len: usize) -> Self {
        RoundRobin {
            len,
            next: AtomicUsize::new(0),
        }
    }
}

impl Balancer for RoundRobin {
    fn pick(&self, ctx: &PickContext<'_>) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        next_in_rotation(&self.next, |turn| turn % self.len, self.len, self.len, ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::testing::*;

    #[test]
    fn shares_are_equal() {
        let counts = shares(&RoundRobin::new(4), 4, 100_000);
        assert_shares_follow_weights(&counts, &[1, 1, 1, 1]);
    }

    #[test]
    fn a_backend_out_of_the_middle_leaves_the_others_even() {
        let counts = shares_without(&RoundRobin::new(3), 3, &[1], 1000);
        assert_eq!(counts, vec![500, 0, 500]);
        let counts = shares_without(&RoundRobin::new(5), 5, &[1, 2], 30_000);
        assert_shares_follow_weights(&counts, &[1, 0, 0, 1, 1]);
    }

    #[test]
    fn unavailable_backends_are_skipped() {
        let rr = RoundRobin::new(3);
        let available = |i: usize| i != 1;
        let outstanding = |_: usize| 0;
        let ctx = PickContext {
            available: &available,
            outstanding: &outstanding,
            key: 0,
        };
        let picks: Vec<_> = (0..6).map(|_| rr.pick(&ctx)).collect();
        assert!(
            picks.iter().all(|p| matches!(p, Some(0) | Some(2))),
            "{picks:?}"
        );
        let none = |_: usize| false;
        let ctx = PickContext {
            available: &none,
            outstanding: &outstanding,
            key: 0,
        };
        assert_eq!(rr.pick(&ctx), None);
    }
}
