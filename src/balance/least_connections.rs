//! Weighted least connections.

use std::sync::atomic::AtomicUsize;

use super::{Balancer, PickContext};

/// The available backend with the fewest outstanding connections relative
/// to its weight; ties rotate so equal backends share evenly.
#[derive(Debug)]
pub struct LeastConnections {
    weights: Vec<u32>,
    next: AtomicUsize,
}

impl LeastConnections {
    /// A selector over backends with these weights (each at least 1).
    pub fn new(weights: &[u32]) -> Self {
        LeastConnections {
            weights: weights.to_vec(),
            next: AtomicUsize::new(0),
        }
    }
}

impl Balancer for LeastConnections {
    fn pick(&self, ctx: &PickContext<'_>) -> Option<usize> {
        let n = self.weights.len();
        if n == 0 {
            return None;
        }
        // Ties go to the next available backend of a rotation, so equal
        // backends share evenly also when one of them is out.
        let start = super::next_in_rotation(&self.next, |turn| turn % n, n, n, ctx)?;
        let mut best: Option<(usize, u64)> = None;
        for k in 0..n {
            let i = (start + k) % n;
            if !(ctx.available)(i) {
                continue;
            }
            let load = (ctx.outstanding)(i);
            // Compare load_i / w_i < load_b / w_b without division; counting
            // the new connection (+1) lets weight break ties at zero load.
            let better = match best {
                None => true,
                Some((b, load_b)) => {
                    (load + 1) * u64::from(self.weights[b])
                        < (load_b + 1) * u64::from(self.weights[i])
                }
            };
            if better {
                best = Some((i, load));
            }
        }
        best.map(|(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A workload where each pick opens a connection and a random open one
    /// closes once 64 are open: backends finish work in proportion to load.
    fn simulate(weights: &[u32], rounds: usize) -> Vec<usize> {
        let lc = LeastConnections::new(weights);
        let active = RefCell::new(vec![0u64; weights.len()]);
        let mut open: Vec<usize> = Vec::new();
        let mut counts = vec![0; weights.len()];
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..rounds {
            let pick = {
                let available = |_: usize| true;
                let outstanding = |i: usize| active.borrow()[i];
                let ctx = PickContext {
                    available: &available,
                    outstanding: &outstanding,
                    key: 0,
                };
                lc.pick(&ctx).expect("a backend")
            };
            counts[pick] += 1;
            active.borrow_mut()[pick] += 1;
            open.push(pick);
            if open.len() > 64 {
                let done = open.swap_remove(rng.usize(..open.len()));
                active.borrow_mut()[done] -= 1;
            }
        }
        counts
    }

    #[test]
    fn equal_weights_share_equally() {
        let counts = simulate(&[1, 1, 1], 100_000);
        crate::balance::testing::assert_shares_follow_weights(&counts, &[1, 1, 1]);
    }

    #[test]
    fn load_follows_weights() {
        let weights = [3, 1, 2];
        let counts = simulate(&weights, 100_000);
        crate::balance::testing::assert_shares_follow_weights(&counts, &weights);
    }

    #[test]
    fn backends_out_of_the_middle_leave_the_others_even() {
        let lc = LeastConnections::new(&[1, 1, 1, 1]);
        let counts = crate::balance::testing::shares_without(&lc, 4, &[1, 2], 10_000);
        crate::balance::testing::assert_shares_follow_weights(&counts, &[1, 0, 0, 1]);
    }

    #[test]
    fn picks_the_least_loaded() {
        let lc = LeastConnections::new(&[1, 1, 1]);
        let load = [5u64, 1, 3];
        let available = |_: usize| true;
        let outstanding = |i: usize| load[i];
        let ctx = PickContext {
            available: &available,
            outstanding: &outstanding,
            key: 0,
        };
        assert_eq!(lc.pick(&ctx), Some(1));
    }
}
