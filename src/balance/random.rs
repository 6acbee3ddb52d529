//! Weighted random.

use super::{Balancer, PickContext};

/// A random backend, in proportion to weight; if the drawn one is not
/// available, the next available one after it.
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
        let draw = fastrand::u64(..total);
        let start = self.cumulative.partition_point(|&sum| sum <= draw);
        super::first_available(start, self.cumulative.len(), ctx)
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
}
