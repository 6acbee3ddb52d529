//! The VIP role's script hooks (`script` mode): queued in the order of
//! the events and run one at a time by a task of their own, so a slow
//! `on_acquire` never holds up a release the lease demands.

use std::net::IpAddr;

use tokio::sync::oneshot;

use super::{Holder, VipRole};

impl VipRole {
    /// Queues a script hook for the hook task.
    pub(super) fn queue_hook(&self, event: &'static str, address: IpAddr) {
        if let Some(hooks) = &self.hooks {
            let _ = hooks.send(HookJob::Run(event, address));
        }
    }

    /// Runs the queued script hooks one at a time, in the order of the
    /// events, each bounded by its timeout, for as long as the process
    /// lives. Runs beside the role: a slow `on_acquire` never holds up a
    /// release that the lease demands (the release's own hook runs after
    /// it, in order).
    pub async fn run_hooks(&self) {
        let Holder::Script(hooks) = &self.holder else {
            return;
        };
        let Some(mut queue) = self
            .hook_queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return;
        };
        while let Some(job) = queue.recv().await {
            match job {
                HookJob::Run("acquire", address)
                    if self.held.borrow().is_none() || !self.leader_confirmed() =>
                {
                    // Queued behind a slow hook, and the VIP is gone since:
                    // announcing it now could put it on two nodes.
                    tracing::warn!(vip = %address, "acquire hook skipped: the VIP was released before it could run");
                }
                HookJob::Run(event, address) => {
                    // A failed script is logged; the role is unchanged.
                    hooks.run(event, address).await;
                }
                HookJob::Flushed(done) => {
                    let _ = done.send(());
                }
            }
        }
    }

    /// Waits until every hook queued so far has run (shutdown).
    pub(super) async fn flush_hooks(&self) {
        let Some(hooks) = &self.hooks else { return };
        let (done, flushed) = oneshot::channel();
        if hooks.send(HookJob::Flushed(done)).is_ok() {
            let _ = flushed.await;
        }
    }
}

/// A script hook for the hook task, or a marker that the queue up to it
/// has run.
pub(super) enum HookJob {
    Run(&'static str, IpAddr),
    Flushed(oneshot::Sender<()>),
}
