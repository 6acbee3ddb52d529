//! Power of two random choices.

use super::{Balancer, PickContext};

/// Two random available backends; the one with fewer outstanding requests
/// wins. Nearly as good as least connections, with no full scan.
#[derive(Debug)]
pub struct PowerOfTwo {
    len: usize,
}

impl PowerOfTwo {
    /// A selector over `len` backends.
    pub fn new(len: usize) -> Self {
        PowerOfTwo { len }
    }

    fn random_available(&self, ctx: &PickContext<'_>) -> Option<usize> {
        super::random_available(self.len, || fastrand::usize(..self.len), |_| 1, ctx)
    }
}

impl Balancer for PowerOfTwo {
    fn pick(&self, ctx: &PickContext<'_>) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        let a = self.random_available(ctx)?;
        let b = self.random_available(ctx)?;
        if (ctx.outstanding)(b) < (ctx.outstanding)(a) {
            Some(b)
        } else {
            Some(a)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::testing::*;

    #[test]
    fn shares_are_equal_without_load() {
        let counts = shares(&PowerOfTwo::new(4), 4, 100_000);
        assert_shares_follow_weights(&counts, &[1, 1, 1, 1]);
    }

    #[test]
    fn backends_out_of_the_middle_leave_the_others_even() {
        let counts = shares_without(&PowerOfTwo::new(4), 4, &[1, 2], 100_000);
        assert_shares_follow_weights(&counts, &[1, 0, 0, 1]);
    }

    #[test]
    fn prefers_the_less_loaded_of_two() {
        let p2c = PowerOfTwo::new(2);
        let load = [100u64, 0];
        let available = |_: usize| true;
        let outstanding = |i: usize| load[i];
        let ctx = PickContext {
            available: &available,
            outstanding: &outstanding,
            key: 0,
        };
        let ones = (0..1000).filter(|_| p2c.pick(&ctx) == Some(1)).count();
        // Backend 0 wins only when both draws land on it: about a quarter.
        assert!((700..=800).contains(&ones), "{ones}");
    }
}
