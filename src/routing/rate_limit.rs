//! Per-client rate limits (`rate_limit` on a frontend): a token bucket per
//! client address, kept by each node for itself (a client spread over
//! three nodes by the VIP's failover or by DNS gets up to three times the
//! rate; HAProxy's and nginx's limits are per process the same way).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::RateLimit;

/// Addresses kept before full buckets are forgotten.
const KEPT: usize = 65_536;

/// The buckets of one frontend's clients.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<IpAddr, Bucket, foldhash::fast::RandomState>>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    filled: Instant,
}

impl RateLimiter {
    /// Takes a token for `client` under `limit`: `Ok`, or `Err` with how
    /// long until the next one.
    pub fn take(&self, client: IpAddr, limit: RateLimit) -> Result<(), Duration> {
        self.take_at(client, limit, Instant::now())
    }

    fn take_at(&self, client: IpAddr, limit: RateLimit, now: Instant) -> Result<(), Duration> {
        let rate = f64::from(limit.requests_per_second);
        let size = f64::from(limit.burst);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= KEPT && !buckets.contains_key(&client) {
            // Full buckets carry nothing a new one would not.
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.filled).as_secs_f64() * rate < size
            });
        }
        let bucket = buckets.entry(client).or_insert(Bucket {
            tokens: size,
            filled: now,
        });
        bucket.tokens = (bucket.tokens
            + now.saturating_duration_since(bucket.filled).as_secs_f64() * rate)
            .min(size);
        bucket.filled = bucket.filled.max(now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate_and_each_client_apart() {
        let limiter = RateLimiter::default();
        let limit = RateLimit {
            requests_per_second: 2,
            burst: 3,
        };
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.take_at(a, limit, start), Ok(()));
        }
        let wait = limiter
            .take_at(a, limit, start)
            .expect_err("over the burst");
        assert_eq!(wait, Duration::from_millis(500));
        assert_eq!(
            limiter.take_at(b, limit, start),
            Ok(()),
            "another client is apart"
        );
        let later = start + Duration::from_millis(500);
        assert_eq!(
            limiter.take_at(a, limit, later),
            Ok(()),
            "refilled at the rate"
        );
        assert!(limiter.take_at(a, limit, later).is_err());
    }
}
