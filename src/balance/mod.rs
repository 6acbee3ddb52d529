//! Balancing algorithms. Each is a small type behind [`Balancer`], built
//! when a pool's backend set changes; picking is a read of prebuilt data and
//! a few atomics, with no allocation and no lock.

mod least_connections;
mod maglev;
mod power_of_two;
mod random;
mod round_robin;
mod smooth_weighted;

pub use maglev::{Maglev, hash_bytes};

use crate::config::Algorithm;

/// What an algorithm may ask about the backends of a pool, by index.
pub struct PickContext<'a> {
    /// Whether the backend may take new traffic now (admin state, health,
    /// and not already tried for this request).
    pub available: &'a dyn Fn(usize) -> bool,
    /// Connections or requests in flight to the backend.
    pub outstanding: &'a dyn Fn(usize) -> u64,
    /// Affinity key hash, for the hashing algorithms.
    pub key: u64,
}

/// Chooses one backend of a pool.
pub trait Balancer: Send + Sync + std::fmt::Debug {
    /// The index of the chosen backend, or `None` when none is available.
    fn pick(&self, ctx: &PickContext<'_>) -> Option<usize>;
}

/// Builds the balancer of `algorithm` for backends with these weights.
pub fn build(algorithm: Algorithm, names: &[String], weights: &[u32]) -> Box<dyn Balancer> {
    match algorithm {
        Algorithm::RoundRobin => Box::new(round_robin::RoundRobin::new(weights.len())),
        Algorithm::WeightedRoundRobin => Box::new(smooth_weighted::SmoothWeighted::new(weights)),
        Algorithm::LeastConnections => Box::new(least_connections::LeastConnections::new(weights)),
        Algorithm::P2c => Box::new(power_of_two::PowerOfTwo::new(weights.len())),
        Algorithm::Random => Box::new(random::WeightedRandom::new(weights)),
        Algorithm::Maglev => Box::new(Maglev::new(names, weights)),
    }
}

/// The first available index at or after `start`, wrapping around `n`.
fn first_available(start: usize, n: usize, ctx: &PickContext<'_>) -> Option<usize> {
    (0..n)
        .map(|k| (start + k) % n)
        .find(|&i| (ctx.available)(i))
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers to drive a balancer as a pool would.

    use super::*;

    /// Picks `rounds` times with every backend available and no load;
    /// returns how often each was chosen.
    pub fn shares(balancer: &dyn Balancer, n: usize, rounds: usize) -> Vec<usize> {
        let mut counts = vec![0; n];
        let available = |_: usize| true;
        let outstanding = |_: usize| 0;
        for i in 0..rounds {
            let ctx = PickContext {
                available: &available,
                outstanding: &outstanding,
                key: hash_bytes(&(i as u64).to_le_bytes()),
            };
            counts[balancer.pick(&ctx).expect("a backend")] += 1;
        }
        counts
    }

    /// Asserts every share is within one percentage point of its weight's.
    pub fn assert_shares_follow_weights(counts: &[usize], weights: &[u32]) {
        let total: usize = counts.iter().sum();
        let weight_total: u32 = weights.iter().sum();
        for (i, (&count, &weight)) in counts.iter().zip(weights).enumerate() {
            let share = count as f64 / total as f64;
            let expected = f64::from(weight) / f64::from(weight_total);
            assert!(
                (share - expected).abs() < 0.01,
                "backend {i}: share {share:.4}, expected {expected:.4} ({counts:?})"
            );
        }
    }
}
