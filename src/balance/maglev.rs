//! Consistent hashing through a Maglev lookup table (Eisenbud et al.,
//! NSDI 2016).

use super::{Balancer, PickContext};

/// Smallest table size; a larger table evens out shares and lowers the
/// number of keys that move when the backend set changes.
const MIN_TABLE_SIZE: usize = 5_003;

/// A Maglev lookup table: each slot names a backend; a key's slot is its
/// hash modulo the table size. An unavailable backend is skipped by moving
/// to the next slot, so keys of backends that stay available never move.
#[derive(Debug)]
pub struct Maglev {
    table: Vec<u32>,
}

impl Maglev {
    /// Builds the table for backends named by `names` (their addresses, so
    /// every node builds the same table) with these weights.
    pub fn new(names: &[String], weights: &[u32]) -> Self {
        let n = names.len();
        if n == 0 {
            return Maglev { table: Vec::new() };
        }
        let size = next_prime((100 * n).max(MIN_TABLE_SIZE));
        let m = size as u64;
        let permutation: Vec<(u64, u64)> = names
            .iter()
            .map(|name| {
                let offset = hash_with_seed(name.as_bytes(), 0x6d61_676c) % m;
                let skip = hash_with_seed(name.as_bytes(), 0x6576_3031) % (m - 1) + 1;
                (offset, skip)
            })
            .collect();
        let mut next = vec![0u64; n];
        let mut table = vec![u32::MAX; size];
        let mut filled = 0;
        'fill: loop {
            for i in 0..n {
                for _ in 0..weights[i].max(1) {
                    let (offset, skip) = permutation[i];
                    let mut slot = ((offset + next[i] * skip) % m) as usize;
                    while table[slot] != u32::MAX {
                        next[i] += 1;
                        slot = ((offset + next[i] * skip) % m) as usize;
                    }
                    table[slot] = i as u32;
                    next[i] += 1;
                    filled += 1;
                    if filled == size {
                        break 'fill;
                    }
                }
            }
        }
        Maglev { table }
    }

    /// Number of slots.
    pub fn size(&self) -> usize {
        self.table.len()
    }
}

impl Balancer for Maglev {
    fn pick(&self, ctx: &PickContext<'_>) -> Option<usize> {
        let size = self.table.len();
        if size == 0 {
            return None;
        }
        let start = (ctx.key % size as u64) as usize;
        (0..size)
            .map(|k| self.table[(start + k) % size] as usize)
            .find(|&i| (ctx.available)(i))
    }
}

fn next_prime(from: usize) -> usize {
    (from..).find(|&n| is_prime(n)).unwrap_or(from)
}

fn is_prime(n: usize) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

/// A stable 64-bit hash of `bytes`: FNV-1a with a murmur3 finalizer. Stable
/// across nodes, builds and Rust versions, so every node maps a key alike.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    hash_with_seed(bytes, 0)
}

fn hash_with_seed(bytes: &[u8], seed: u64) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::testing::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{i}:80")).collect()
    }

    fn lookup(maglev: &Maglev, key: u64, down: Option<usize>) -> usize {
        let available = |i: usize| Some(i) != down;
        let outstanding = |_: usize| 0;
        let ctx = PickContext {
            available: &available,
            outstanding: &outstanding,
            key,
        };
        maglev.pick(&ctx).expect("a backend")
    }

    const KEYS: u64 = 100_000;

    #[test]
    fn table_size_is_a_prime_of_at_least_100_per_backend() {
        for n in [1, 10, 77, 300] {
            let maglev = Maglev::new(&names(n), &vec![1; n]);
            assert!(
                is_prime(maglev.size()) && maglev.size() >= 100 * n,
                "{}",
                maglev.size()
            );
        }
    }

    #[test]
    fn shares_follow_weights() {
        let weights = [1, 1, 1, 1];
        let counts = shares(&Maglev::new(&names(4), &weights), 4, 100_000);
        assert_shares_follow_weights(&counts, &weights);
    }

    #[test]
    fn losing_one_of_ten_moves_only_its_keys() {
        let maglev = Maglev::new(&names(10), &[1; 10]);
        let mut moved = 0;
        for k in 0..KEYS {
            let key = hash_bytes(&k.to_le_bytes());
            let before = lookup(&maglev, key, None);
            let after = lookup(&maglev, key, Some(3));
            if before != after {
                moved += 1;
                assert_eq!(before, 3, "key {k} moved off a surviving backend");
            }
        }
        let share = moved as f64 / KEYS as f64;
        assert!(share <= 0.12, "{share:.3} of keys moved");
    }

    #[test]
    fn removing_one_of_ten_from_the_set_moves_few_other_keys() {
        let before = Maglev::new(&names(10), &[1; 10]);
        let mut survivors = names(10);
        survivors.remove(3);
        let after = Maglev::new(&survivors, &[1; 9]);
        let mut moved = 0;
        for k in 0..KEYS {
            let key = hash_bytes(&k.to_le_bytes());
            let old = names(10)[lookup(&before, key, None)].clone();
            let new = survivors[lookup(&after, key, None)].clone();
            if old != new {
                moved += 1;
            }
        }
        let share = moved as f64 / KEYS as f64;
        assert!(share <= 0.12, "{share:.3} of keys moved");
    }

    #[test]
    fn backends_out_of_the_middle_leave_the_others_by_their_weights() {
        let names: Vec<String> = (0..5).map(|i| format!("10.0.0.{i}:80")).collect();
        let weights = [1, 1, 1, 1, 1];
        let maglev = Maglev::new(&names, &weights);
        let counts = crate::balance::testing::shares_without(&maglev, 5, &[1, 2], 200_000);
        let total: usize = counts.iter().sum();
        for i in [0, 3, 4] {
            let share = counts[i] as f64 / total as f64;
            // Consistent hashing is even within Maglev's table granularity.
            assert!(
                (share - 1.0 / 3.0).abs() < 0.03,
                "backend {i}: {share:.3} ({counts:?})"
            );
        }
    }
}
