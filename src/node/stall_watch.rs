//! Watches this process's own scheduling: a short timer that fires much
//! later than asked means no thread of the process ran meanwhile (the
//! machine's CPUs were busy with others, the process was frozen, or a
//! thread of its runtime was stuck in a system call). Such a stall is what
//! lapses a live leader's lease, so it is logged with its length: the line
//! an operator finds next to "VIP released … lease expired" (etcd warns of
//! a late heartbeat the same way).

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often the timer is set.
const TICK: Duration = Duration::from_millis(10);

/// Sets a timer every [`TICK`] until `stop`; warns (at most once a
/// second, with the worst stall left out since) when one fires more than
/// `threshold` late.
pub async fn run(threshold: Duration, stop: CancellationToken) {
    // The longest stall left out of the log since its last line.
    let mut worst_left_out = Duration::ZERO;
    loop {
        let asked = Instant::now();
        tokio::select! {
            () = tokio::time::sleep(TICK) => {}
            () = stop.cancelled() => return,
        }
        let late = asked.elapsed().saturating_sub(TICK);
        if late <= threshold {
            continue;
        }
        match crate::log_limit::allow_within("runtime stalled", Duration::from_secs(1)) {
            Some(left_out) => {
                tracing::warn!(
                    late_ms = late.as_millis() as u64,
                    left_out,
                    worst_left_out_ms = worst_left_out.as_millis() as u64,
                    "runtime stalled: a timer of this process fired late_ms late (the machine's CPUs busy with other work, the process frozen, or a runtime thread stuck in the kernel); leases and heartbeats waited with it"
                );
                worst_left_out = Duration::ZERO;
            }
            None => worst_left_out = worst_left_out.max(late),
        }
    }
}
