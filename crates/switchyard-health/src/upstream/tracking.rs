//! Which servers are tracked: one entry per identity, following the pool's server list.

use super::*;

/// The per-server state, shared by the checker task, the passive path and the views.
pub(super) struct Entry {
    pub(super) id: ServerId,
    pub(super) target: Option<Target>,
    pub(super) stats: Arc<ServerStats>,
    pub(super) passive: PassiveCounter,
    /// The last passive failure, encoded by [`PassiveEvent::encode`].
    pub(super) last_passive: AtomicU32,
    pub(super) removed: AtomicBool,
    pub(super) state: Mutex<EntryState>,
    pub(super) checker: Mutex<Option<JoinHandle<()>>>,
    pub(super) timer: Mutex<Option<JoinHandle<()>>>,
}

pub(super) struct EntryState {
    pub(super) machine: Machine,
    pub(super) last_change: Option<(u64, SystemTime)>,
    pub(super) reason: Option<String>,
    pub(super) last_check: Option<CheckResult>,
}

impl Entry {
    pub(super) fn stop_tasks(&self) {
        if let Some(t) = lock(&self.checker).take() {
            t.abort();
        }
        if let Some(t) = lock(&self.timer).take() {
            t.abort();
        }
    }
}

/// The servers being tracked, published as one immutable map so that the passive path reads it
/// without a lock.
#[derive(Default)]
pub(super) struct Tracked {
    pub(super) by_id: HashMap<ServerId, Arc<Entry>>,
    /// Keyed by `Arc::as_ptr` of the server's stats: the entry holds a clone of that `Arc`, so the
    /// address cannot be reused while it is in the map.
    pub(super) by_ptr: HashMap<usize, Arc<Entry>>,
}

pub(super) fn stats_key(stats: &Arc<ServerStats>) -> usize {
    Arc::as_ptr(stats) as usize
}

impl Inner {
    pub(super) fn new_entry(&self, server: &Server, fresh: bool) -> (Arc<Entry>, bool) {
        let machine = match self.thresholds {
            Some(t) => Machine::new(Some(t), !fresh && server.stats.is_healthy()),
            None => Machine::new(None, true),
        };
        let flipped = server.stats.set_healthy(machine.verdict());
        let entry = Entry {
            id: server.spec.id.clone(),
            target: self
                .probe
                .as_ref()
                .map(|p| p.target(&server.spec.id, server.spec.addr)),
            stats: Arc::clone(&server.stats),
            passive: PassiveCounter::default(),
            last_passive: AtomicU32::new(0),
            removed: AtomicBool::new(false),
            state: Mutex::new(EntryState {
                machine,
                last_change: None,
                reason: None,
                last_check: None,
            }),
            checker: Mutex::new(None),
            timer: Mutex::new(None),
        };
        (Arc::new(entry), flipped)
    }

    /// Follows the pool's server list. `fresh`: identities seen now for the first time are new
    /// servers (out until checked); at construction they adopt their stats' verdict instead.
    pub(super) fn sync(self: &Arc<Self>, fresh: bool) {
        let _writer = lock(&self.writer);
        let snapshot = self.pool.snapshot();
        let old = self.servers.load_full();
        let mut next = Tracked::default();
        let mut added = Vec::new();
        let mut refresh = false;
        for server in snapshot.servers() {
            if next.by_id.contains_key(&server.spec.id) {
                continue;
            }
            let entry = match old.by_id.get(&server.spec.id) {
                Some(e) if Arc::ptr_eq(&e.stats, &server.stats) => Arc::clone(e),
                _ => {
                    let (e, flipped) = self.new_entry(server, fresh);
                    refresh |= flipped;
                    added.push(Arc::clone(&e));
                    e
                }
            };
            next.by_ptr
                .insert(stats_key(&entry.stats), Arc::clone(&entry));
            next.by_id.insert(server.spec.id.clone(), entry);
        }
        for (id, entry) in &old.by_id {
            let kept = next.by_id.get(id).is_some_and(|n| Arc::ptr_eq(n, entry));
            if !kept {
                entry.removed.store(true, Ordering::Release);
                entry.stop_tasks();
                if lock(&entry.state).machine.clear_ejection() {
                    self.budget.release();
                }
                log::info!("{} removed: health checks stopped", self.prefix(id));
            }
        }
        self.servers.store(Arc::new(next));
        drop(_writer);
        if refresh {
            self.pool.refresh();
        }
        if self.started.load(Ordering::Acquire) {
            let handle = lock(&self.runtime).clone();
            if let Some(handle) = handle {
                for entry in &added {
                    self.spawn_checker(&handle, entry);
                }
            }
        }
    }
}
