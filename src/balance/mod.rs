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

use std::sync::atomic::{AtomicUsize, Ordering};

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

/// Turns of a rotation tried before falling back to a scan.
const ROTATION_TRIES: usize = 64;

/// The backend of the next turn of a rotation that is available: an
/// unavailable backend's turn passes to the next turn, so its share is
/// spread over every other backend by their own shares, not handed to its
/// neighbour. `backend_at(turn)` is the backend of a turn, `cycle` the
/// turns in one round of the rotation, `backends` the number of backends.
/// After [`ROTATION_TRIES`] unavailable turns (almost every backend out),
/// the next turns are read without taking them, still in rotation order.
fn next_in_rotation(
    turns: &AtomicUsize,
    backend_at: impl Fn(usize) -> usize,
    cycle: usize,
    backends: usize,
    ctx: &PickContext<'_>,
) -> Option<usize> {
    let mut turn = 0;
    for _ in 0..ROTATION_TRIES {
        turn = turns.fetch_add(1, Ordering::Relaxed);
        let backend = backend_at(turn);
        if (ctx.available)(backend) {
            return Some(backend);
        }
    }
    // Nothing available at all: say so in O(backends), not O(cycle).
    if !(0..backends).any(|i| (ctx.available)(i)) {
        return None;
    }
    (1..=cycle)
        .map(|k| backend_at(turn.wrapping_add(k)))
        .find(|&backend| (ctx.available)(backend))
}

/// Draws tried before falling back to an exact draw over the available
/// backends.
const DRAWS: usize = 16;

/// A random available backend in proportion to `weight`: redraws while the
/// draw is unavailable (so the others keep their proportions), and after
/// [`DRAWS`] misses draws exactly among the available ones.
fn random_available(
    backends: usize,
    draw: impl Fn() -> usize,
    weight: impl Fn(usize) -> u64,
    ctx: &PickContext<'_>,
) -> Option<usize> {
    for _ in 0..DRAWS {
        let i = draw();
        if (ctx.available)(i) {
            return Some(i);
        }
    }
    let total: u64 = (0..backends)
        .filter(|&i| (ctx.available)(i))
        .map(&weight)
        .sum();
    if total == 0 {
        return None;
    }
    let mut left = fastrand::u64(..total);
    (0..backends).filter(|&i| (ctx.available)(i)).find(|&i| {
        let w = weight(i);
        if left < w {
            true
        } else {
            left -= w;
            false
        }
    })
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers to drive a balancer as a pool would.

    use super::*;

    /// Picks `rounds` times with every backend available and no load;
    /// returns how often each was chosen.
    pub fn shares(balancer: &dyn Balancer, n: usize, rounds: usize) -> Vec<usize> {
        shares_without(balancer, n, &[], rounds)
    }

    /// Picks `rounds` times with backend `out` unavailable; how often each
    /// was chosen.
    pub fn shares_without(
        balancer: &dyn Balancer,
        n: usize,
        out: &[usize],
        rounds: usize,
    ) -> Vec<usize> {
        let mut counts = vec![0; n];
        let available = |i: usize| !out.contains(&i);
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
