//! Weighted random.

use super::{Balancer, PickContext};

/// A random backend, in proportion to weight; an unavailable draw is drawn
/// again, so the others keep their proportions.
#[derive(Debug)]
pub struct WeightedRandom {
    /// Running sums of the weights; a draw below `cumulative[i]` lands on `i`.
    cumulative: Vec<u64>,
}

impl WeightedRandom {
    /// A selector over backends with these weights (each at least 1).
    pub fn new(weights: &[u32]) -> Self {
        let cumulative = weights
            .iter()
            .scan(0u64, |sum, &w| {
                *sum += u64::from(w);
                Some(*sum)
            })
            .collect();
        WeightedRandom { cumulative }
    }
}

impl Balancer for WeightedRandom {
    fn pick(&self, ctx: &PickContext<'_>) -> Option<usize> {
        let total = *self.cumulative.last()?;
        if total == 0 {
            return None;
        }
        let draw = || {
            let at = fastrand::u64(..total);
            self.cumulative.partition_point(|&sum| sum <= at)
        };
        let weight =
            |i: usize| self.cumulative[i] - if i == 0 { 0 } else { self.cumulative[i - 1] };
        super::random_available(self.cumulative.len(), draw, weight, ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::testing::*;

    #[test]
    fn shares_follow_weights() {
        let weights = [1, 2, 3, 4];
        let counts = shares(&WeightedRandom::new(&weights), 4, 100_000);
        assert_shares_follow_weights(&counts, &weights);
    }

    #[test]
    fn backends_out_of_the_middle_leave_the_others_by_their_weights() {
        let weights = [1, 2, 3, 4];
        let counts = shares_without(&WeightedRandom::new(&weights), 4, &[1, 2], 100_000);
        assert_shares_follow_weights(&counts, &[1, 0, 0, 4]);
    }
}
