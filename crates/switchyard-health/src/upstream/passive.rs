//! Passive outlier detection: reports from proxied responses, ejection under the upstream's
//! cap, and the return of an ejected server after `ejection` when no active checks run.

use super::tracking::EntryState;
use super::*;

/// Passive settings, parsed once.
#[derive(Debug)]
pub(super) struct Passive {
    pub(super) statuses: StatusSet,
    pub(super) threshold: u32,
    pub(super) ejection_ms: u64,
    pub(super) max_percent: u32,
}

impl Inner {
    pub(super) fn record(
        self: &Arc<Self>,
        passive: &Passive,
        entry: &Arc<Entry>,
        event: PassiveEvent,
    ) {
        let failure = event.is_failure(&passive.statuses);
        if failure {
            entry.last_passive.store(event.encode(), Ordering::Relaxed);
        }
        if entry.passive.record(failure, passive.threshold) {
            self.eject(passive, entry);
        }
    }

    pub(super) fn eject(self: &Arc<Self>, passive: &Passive, entry: &Arc<Entry>) {
        let total = self.servers.load().by_id.len();
        if self.budget.ejected() >= crate::machine::max_ejections(total, passive.max_percent) {
            return; // at the cap: the next failure tries again
        }
        let report = {
            let mut st = lock(&entry.state);
            if entry.removed.load(Ordering::Acquire) || st.machine.ejected_since().is_some() {
                return;
            }
            if !self.budget.try_take(total, passive.max_percent) {
                return;
            }
            let before = st.machine.verdict();
            st.machine.eject(self.clock.now_nanos());
            let after = st.machine.verdict();
            let n = entry.passive.get();
            entry.passive.reset();
            let last = PassiveEvent::describe_code(entry.last_passive.load(Ordering::Relaxed));
            let reason = format!("ejected: {n} consecutive failures (last: {last})");
            self.passive_report(&mut st, entry, (before, after), reason, true)
        };
        self.publish(&entry.id, report);
        if self.probe.is_none() {
            self.schedule_return(passive, entry);
        }
    }

    pub(super) fn schedule_return(self: &Arc<Self>, passive: &Passive, entry: &Arc<Entry>) {
        let handle = lock(&self.runtime)
            .clone()
            .or_else(|| Handle::try_current().ok());
        let Some(handle) = handle else {
            return; // no runtime: tick() returns it
        };
        let weak = Arc::downgrade(self);
        let task_entry = Arc::clone(entry);
        let ejection_ns = passive.ejection_ms.saturating_mul(1_000_000);
        let task = handle.spawn(async move {
            // At most a few rounds: the first normally suffices; later ones cover a clock that
            // runs behind the timer.
            for _ in 0..4 {
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                let remaining = {
                    let st = lock(&task_entry.state);
                    match st.machine.ejection_deadline(ejection_ns) {
                        Some(deadline) => deadline.saturating_sub(inner.clock.now_nanos()),
                        None => return,
                    }
                };
                if remaining == 0 {
                    inner.poll_return(&task_entry);
                    return;
                }
                drop(inner);
                tokio::time::sleep(Duration::from_nanos(remaining)).await;
            }
        });
        if let Some(old) = lock(&entry.timer).replace(task) {
            old.abort();
        }
    }

    pub(super) fn poll_return(&self, entry: &Entry) {
        let Some(passive) = &self.passive else {
            return;
        };
        let report = {
            let mut st = lock(&entry.state);
            if entry.removed.load(Ordering::Acquire) {
                return;
            }
            let before = st.machine.verdict();
            if !st.machine.poll_ejection(
                self.clock.now_nanos(),
                passive.ejection_ms.saturating_mul(1_000_000),
            ) {
                return;
            }
            self.budget.release();
            entry.passive.reset();
            let after = st.machine.verdict();
            let reason = format!(
                "returned after ejection: ejection_ms ({} ms) elapsed",
                passive.ejection_ms
            );
            self.passive_report(&mut st, entry, (before, after), reason, false)
        };
        self.publish(&entry.id, report);
    }

    /// Records a passive change of `entry` (an ejection, or a return) from verdict `before` to
    /// `after` for `reason` in its state and stats, and says what to publish.
    fn passive_report(
        &self,
        st: &mut EntryState,
        entry: &Entry,
        (before, after): (bool, bool),
        reason: String,
        ejected: bool,
    ) -> Report {
        let refresh = entry.stats.set_healthy(after);
        st.reason = Some(reason.clone());
        let transition = (before != after).then(|| {
            st.last_change = Some((self.clock.now_nanos(), SystemTime::now()));
            (after, reason.clone())
        });
        Report {
            messages: vec![(!ejected, reason)],
            transition,
            ejected,
            refresh,
        }
    }
}
