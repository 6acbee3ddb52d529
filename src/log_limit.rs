//! Warnings whose cause can repeat many times a second (a peer that is
//! down, a stream of odd requests, a full file table) are logged once per
//! cause per [`INTERVAL`], saying how many were left out since, so an
//! operator sees every cause without a flood of lines.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a cause stays quiet after it was logged.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// Causes seen, each with when it was last logged and how many times it
/// was left out since.
fn causes() -> &'static Mutex<HashMap<String, (Instant, u64)>> {
    static CAUSES: OnceLock<Mutex<HashMap<String, (Instant, u64)>>> = OnceLock::new();
    CAUSES.get_or_init(Mutex::default)
}

/// Whether `cause` may be logged now: `Some(n)`, n being how many times it
/// was left out since it was last logged, or `None` to stay quiet.
pub fn allow(cause: &str) -> Option<u64> {
    allow_within(cause, INTERVAL)
}

/// As [`allow`], with a quiet time of `interval` for this cause (the
/// lease's warnings: a lapse seconds after another must still show why).
pub fn allow_within(cause: &str, interval: Duration) -> Option<u64> {
    let mut causes = causes().lock().unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    match causes.get_mut(cause) {
        Some((last, left_out)) if now.duration_since(*last) < interval => {
            *left_out += 1;
            None
        }
        Some((last, left_out)) => {
            let missed = *left_out;
            *last = now;
            *left_out = 0;
            Some(missed)
        }
        None => {
            // Bounded: causes are few (per peer, per kind).
            if causes.len() > 10_000 {
                causes.clear();
            }
            causes.insert(cause.to_string(), (now, 0));
            Some(0)
        }
    }
}

/// Logs a warning once per cause per second: for the lease's causes,
/// whose every occurrence near a lapse matters.
#[macro_export]
macro_rules! warn_each_second {
    ($cause:expr, $($arg:tt)+) => {
        if let Some(left_out) =
            $crate::log_limit::allow_within(&$cause, std::time::Duration::from_secs(1))
        {
            tracing::warn!(left_out, $($arg)+);
        }
    };
}

/// Logs a warning once per cause per [`INTERVAL`].
#[macro_export]
macro_rules! warn_limited {
    ($cause:expr, $($arg:tt)+) => {
        if let Some(left_out) = $crate::log_limit::allow(&$cause) {
            tracing::warn!(left_out, $($arg)+);
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_is_logged_once_per_interval_and_counts_what_it_left_out() {
        let cause = format!("test cause {}", std::process::id());
        assert_eq!(allow(&cause), Some(0));
        assert_eq!(allow(&cause), None);
        assert_eq!(allow(&cause), None);
        assert_eq!(allow(&format!("{cause} other")), Some(0));
        causes()
            .lock()
            .expect("causes")
            .get_mut(&cause)
            .expect("seen")
            .0 -= INTERVAL;
        assert_eq!(allow(&cause), Some(2));
    }
}
