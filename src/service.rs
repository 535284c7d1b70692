//! The shared core: pluto, the model of what pluto holds, and the bus the objects live on.
//!
//! One [`Service`] exists per process. The D-Bus objects hold an `Arc` of it and read the model
//! through a short-lived lock; the sync loop ([`crate::sync`]) and the verbs
//! ([`crate::control`]) change it. No lock here is ever held across an await on pluto or polkit.

use std::{
    collections::HashMap,
    sync::{
        Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use crate::{
    control::Verbs,
    model::{Connection, Model, TunnelState},
    parse::parse_trafficstatus,
    pluto::{Pluto, Request},
    sync::Refresh,
};

/// How the service keeps in step with pluto.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How often the cheap SA listing runs.
    pub poll_interval: Duration,
    /// How often the full connection listing runs at most; `None` chooses from its cost.
    pub list_interval: Option<Duration>,
    /// How long pluto may take to accept a request.
    pub whack_timeout: Duration,
}

pub struct Service {
    pub(crate) bus: zbus::Connection,
    pub(crate) pluto: Box<dyn Pluto>,
    pub(crate) settings: Settings,
    model: Mutex<Model>,
    pub(crate) verbs: Verbs,
    pub(crate) refresh: Refresh,
    traffic: tokio::sync::Mutex<TrafficCache>,
    /// Each method call holds a read guard; shutdown takes the write side to wait for them.
    pub(crate) calls_in_flight: tokio::sync::RwLock<()>,
    tickets: AtomicU64,
}

/// Byte counters from the last `--trafficstatus`, summed per connection.
#[derive(Default)]
struct TrafficCache {
    read_at: Option<Instant>,
    bytes: HashMap<String, (u64, u64)>,
}

impl Service {
    pub fn new(bus: zbus::Connection, pluto: Box<dyn Pluto>, settings: Settings) -> Self {
        Self {
            bus,
            pluto,
            settings,
            model: Mutex::default(),
            verbs: Verbs::default(),
            refresh: Refresh::default(),
            traffic: tokio::sync::Mutex::default(),
            calls_in_flight: tokio::sync::RwLock::new(()),
            tickets: AtomicU64::new(1),
        }
    }

    /// A ticket taken just before asking pluto for its SAs. The sync loop and the verbs read
    /// SAs concurrently; an answer is applied only if no answer to a later question was
    /// applied first, so a slow poll cannot undo what a verb has just shown.
    pub(crate) fn ticket(&self) -> u64 {
        self.tickets.fetch_add(1, Ordering::SeqCst)
    }

    /// The model, locked. Callers copy out what they need and drop the guard at once.
    pub(crate) fn model(&self) -> MutexGuard<'_, Model> {
        // A panic while holding the lock leaves plain data behind; reading it is still sound.
        self.model
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A copy of one connection, if pluto still has it.
    pub fn connection(&self, name: &str) -> Option<Connection> {
        self.model().connections.get(name).cloned()
    }

    /// Bytes received and sent by the connection's Child SAs, as of at most one poll interval
    /// ago. Read on demand rather than polled: the counters change all the time, are never
    /// signalled, and only matter while someone looks at them.
    pub async fn bytes(&self, name: &str) -> (u64, u64) {
        let up = self
            .connection(name)
            .is_some_and(|c| c.state == TunnelState::Up);
        if !up {
            return (0, 0);
        }

        // One reader refreshes while the others wait for its result, so a burst of reads
        // (GetManagedObjects of many tunnels) costs pluto a single listing.
        let mut cache = self.traffic.lock().await;
        let fresh = cache
            .read_at
            .is_some_and(|at| at.elapsed() < self.settings.poll_interval);
        if !fresh {
            cache.bytes.clear();
            if let Ok(output) = self.pluto.run(&Request::TrafficStatus).await {
                for sa in parse_trafficstatus(&output.stdout) {
                    let total = cache.bytes.entry(sa.connection).or_default();
                    total.0 = total.0.saturating_add(sa.bytes_in);
                    total.1 = total.1.saturating_add(sa.bytes_out);
                }
            }
            cache.read_at = Some(Instant::now());
        }
        cache.bytes.get(name).copied().unwrap_or_default()
    }
}
