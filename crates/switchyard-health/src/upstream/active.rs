//! Active checks: one checker task per server, and what a check's result does to its state.

use super::*;

impl Inner {
    pub(super) fn spawn_checker(self: &Arc<Self>, handle: &Handle, entry: &Arc<Entry>) {
        let (Some(probe), Some(target)) = (self.probe.clone(), entry.target.clone()) else {
            return;
        };
        let mut slot = lock(&entry.checker);
        if slot.is_some() || entry.removed.load(Ordering::Acquire) {
            return;
        }
        let delay_first = lock(&entry.state).last_check.is_some();
        let weak: Weak<Inner> = Arc::downgrade(self);
        let entry_task = Arc::clone(entry);
        *slot = Some(handle.spawn(async move {
            if delay_first {
                tokio::time::sleep(jittered(probe.interval)).await;
            }
            // Runs until the server is removed or the health instance dropped (both also abort
            // the task, so this loop ends at its next await at the latest).
            loop {
                if entry_task.removed.load(Ordering::Acquire) {
                    break;
                }
                let result = probe.check(&target).await;
                let Some(inner) = weak.upgrade() else {
                    break;
                };
                inner.apply_check(&entry_task, result);
                drop(inner);
                tokio::time::sleep(jittered(probe.interval)).await;
            }
        }));
    }

    pub(super) fn apply_check(&self, entry: &Entry, result: CheckResult) {
        if entry.removed.load(Ordering::Acquire) {
            return;
        }
        self.observer.on_check(&self.name, &entry.id, &result);
        let pass = result.is_pass();
        let path = self.probe.as_ref().and_then(|p| p.path());
        let detail = match (&result, path) {
            (
                CheckResult::Status(_)
                | CheckResult::NotServing(_)
                | CheckResult::Pass { status: Some(_) },
                Some(path),
            ) => {
                format!("{result} from {path}")
            }
            _ => result.to_string(),
        };
        let report = {
            let mut st = lock(&entry.state);
            st.last_check = Some(result);
            let before = st.machine.verdict();
            let step = st.machine.on_check(pass);
            let after = st.machine.verdict();
            let mut messages = Vec::new();
            match step.active {
                Some(true) if step.first => {
                    messages.push((true, format!("healthy: first check passed ({detail})")))
                }
                Some(false) if step.first => {
                    messages.push((false, format!("unhealthy: first check failed ({detail})")))
                }
                Some(true) => messages.push((
                    true,
                    format!("healthy: {} consecutive passes", st.machine.successes()),
                )),
                Some(false) => messages.push((
                    false,
                    format!(
                        "unhealthy: {} consecutive failed checks (last: {detail})",
                        st.machine.failures()
                    ),
                )),
                None => {}
            }
            if step.returned {
                self.budget.release();
                entry.passive.reset();
                let n = self.thresholds.map(|t| t.healthy).unwrap_or(1);
                messages.push((
                    true,
                    format!("returned after ejection: {n} consecutive passes"),
                ));
            }
            let refresh = entry.stats.set_healthy(after);
            let transition = if before != after || step.first {
                let reason = messages
                    .iter()
                    .map(|(_, m)| m.as_str())
                    .collect::<Vec<_>>()
                    .join("; ");
                st.last_change = Some((self.clock.now_nanos(), SystemTime::now()));
                st.reason = Some(reason.clone());
                Some((after, reason))
            } else {
                if let Some((_, m)) = messages.last() {
                    st.reason = Some(m.clone());
                }
                None
            };
            Report {
                messages,
                transition,
                ejected: false,
                refresh,
            }
        };
        self.publish(&entry.id, report);
    }
}

/// `interval` ± 10%.
fn jittered(interval: Duration) -> Duration {
    let factor: f64 = rand::rng().random_range(0.9..=1.1);
    interval.mul_f64(factor)
}
