//! The sync loop: keeps the published objects in step with pluto, cheaply.
//!
//! Two tiers. Every poll interval the cheap SA listing (`--showstates`: 2 ms on 4.10, 3 ms on
//! 5.2 at 10,000 connections) updates each connection's `State`. The full listing (`--status`,
//! O(connections)) runs
//! - at most every list interval: `--list-interval`, or by default 200 times what the last
//!   listing cost, clamped to [poll interval, 10 min]. The cost counts pluto's work (the
//!   listing's duration: pluto is busy writing it throughout) and the CPU this service and its
//!   whack used meanwhile, so listings take at most 0.5 % of one core in all;
//! - when a cheap signal says the set of connections changed: a state names a connection we do
//!   not know, or (5.x, every fifth poll: 9 ms at 10,000 connections) `--briefconnectionstatus`
//!   reports another number of loaded connections;
//! - when pluto comes back after being unreachable;
//! - after each verb, and for `Refresh()` — never more than once per poll interval however
//!   often it is asked for; callers waiting at the same time share one listing.
//!
//! Bounds, measured at 10,000 connections (BENCHMARKS.md): a listing costs 0.9–1.1 s of CPU
//! (pluto 0.45–0.5 s and whack 0.4–0.5 s, each making a system call per line of 16 MB, this
//! service 0.07–0.08 s), so listings come about 3 minutes apart and idle costs about 0.6 % of
//! a core, SA polls included. Below about 1,000 connections listings come every few seconds.
//! Past about 30,000 the 10 minute cap wins and listings cost more than 0.5 %.
//!
//! Limitation: what only a full listing shows waits for the next one — a connection routed,
//! unrouted or changed by someone else while it has no SAs, and on 4.x, which has no cheap
//! count of loaded connections, a connection added or deleted with no SA. At 10,000
//! connections that is up to 3 minutes; `Refresh()` shows it at once.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    sync::{Notify, watch},
    time::{Instant, sleep_until},
};
use tracing::{debug, info, warn};

use crate::{
    bus,
    model::{Connection, TunnelState, tunnel_states},
    parse::{SaState, Status, parse_brief_connection_status, parse_showstates},
    pluto::{PlutoError, Request, Unavailable},
    service::Service,
};

/// The longest gap between two full listings when the interval is chosen automatically.
const MAX_LIST_INTERVAL: Duration = Duration::from_secs(600);

/// The automatic list interval is this many times the last listing's cost: listings take at
/// most 1/200 (0.5 %) of one core.
const LIST_COST_FACTOR: u32 = 200;

/// On 5.x, the loaded count is read every this many polls: often enough to notice a new
/// connection within seconds, seldom enough to cost less than the SA listing.
const COUNT_EVERY: u64 = 5;

/// Requests for a full listing, and the count of listings started and finished.
#[derive(Default)]
pub(crate) struct Refresh {
    wanted: Notify,
    started: AtomicU64,
    finished: watch::Sender<u64>,
}

/// When the next full listing may and must run.
struct Schedule {
    poll_interval: Duration,
    list_interval: Option<Duration>,
    last_start: Instant,
    last_cost: Duration,
}

impl Schedule {
    fn interval(&self) -> Duration {
        self.list_interval.unwrap_or_else(|| {
            (self.last_cost * LIST_COST_FACTOR).clamp(self.poll_interval, MAX_LIST_INTERVAL)
        })
    }

    fn due(&self, now: Instant) -> bool {
        now >= self.last_start + self.interval()
    }

    /// Listings asked for by callers or cheap signals wait until this instant.
    fn earliest(&self) -> Instant {
        self.last_start + self.poll_interval
    }
}

impl Service {
    /// Asks for a full listing and waits until one that started after this call has finished.
    pub async fn refresh(&self) {
        let mut finished = self.refresh.finished.subscribe();
        let target = self.refresh.started.load(Ordering::SeqCst) + 1;
        self.refresh.wanted.notify_one();
        // The sender lives as long as the service.
        let _ = finished.wait_for(|&done| done >= target).await;
    }

    /// Asks for a full listing soon, without waiting for it.
    pub fn request_listing(&self) {
        self.refresh.wanted.notify_one();
    }

    /// Runs the first full listing, before the objects are published and the name is taken.
    /// A pluto that is down or hangs delays start-up by at most the whack timeout.
    /// Returns how long pluto took, for [`Service::run_sync`].
    pub async fn initial_listing(self: &Arc<Self>) -> Duration {
        self.list().await
    }

    /// Runs forever; the caller drops it at shutdown.
    pub async fn run_sync(self: Arc<Self>, first_listing_cost: Duration) {
        let poll_interval = self.settings.poll_interval;
        let mut schedule = Schedule {
            poll_interval,
            list_interval: self.settings.list_interval,
            last_start: Instant::now(),
            last_cost: first_listing_cost,
        };
        let mut next_poll = Instant::now() + poll_interval;
        let mut polls: u64 = 0;

        loop {
            let listing_wanted = tokio::select! {
                () = sleep_until(next_poll) => {
                    next_poll = Instant::now() + poll_interval;
                    polls += 1;
                    schedule.due(Instant::now()) || self.poll(polls.is_multiple_of(COUNT_EVERY)).await
                }
                () = self.refresh.wanted.notified() => true,
            };
            if listing_wanted {
                sleep_until(schedule.earliest()).await;
                schedule.last_start = Instant::now();
                schedule.last_cost = self.list().await;
                debug!(
                    cost_ms = schedule.last_cost.as_millis(),
                    next_in_s = schedule.interval().as_secs_f32(),
                    "full listing done"
                );
            }
        }
    }

    /// One full listing, applied. Returns what it cost: how long pluto took, plus the CPU
    /// this process and its whack used meanwhile.
    async fn list(self: &Arc<Self>) -> Duration {
        let generation = self.refresh.started.fetch_add(1, Ordering::SeqCst) + 1;
        let started = Instant::now();
        let cpu_before = cpu_used();
        let ticket = self.ticket();
        let result = self.pluto.listing(&Request::Status).await;
        // pluto is busy writing the listing from the start of the run to its end.
        let pluto_time = started.elapsed();

        match result {
            Ok(status) => self.apply_listing(status, ticket).await,
            Err(err) => self.pluto_lost(&err).await,
        }
        self.refresh.finished.send_replace(generation);
        release_freed_memory();
        pluto_time + cpu_used().saturating_sub(cpu_before)
    }

    /// Reads one connection's part of the listing and the state list (5.x, one whack run) and
    /// applies both, so that after a verb `Routed` and `State` show pluto's new view before
    /// the call returns. Returns the states; `None` when pluto did not list the connection,
    /// since its answer then says nothing reliable about the states either.
    pub(crate) async fn reread_connection(
        &self,
        name: &str,
        address: &str,
    ) -> Result<Option<Vec<SaState>>, PlutoError> {
        let ticket = self.ticket();
        let status = self
            .pluto
            .listing(&Request::ConnectionStatus(address.to_owned()))
            .await?;
        let Some(info) = status
            .connections
            .into_iter()
            .find(|info| info.name == name)
        else {
            return Ok(None);
        };
        self.apply_states(&status.states, ticket).await;
        let change = {
            let mut model = self.model();
            match model.connections.get_mut(name) {
                Some(connection) if connection.info != info => {
                    let old = connection.clone();
                    connection.info = info;
                    Some((old, connection.clone()))
                }
                _ => None,
            }
        };
        if let Some((old, new)) = change {
            bus::connection_changed(&self.bus, &old, &new).await;
        }
        Ok(Some(status.states))
    }

    /// Reads pluto's SAs and brings every connection's `State` in line with them.
    pub(crate) async fn read_states(&self) -> Result<Vec<SaState>, PlutoError> {
        let ticket = self.ticket();
        let output = self.pluto.run(&Request::ShowStates).await?;
        let states = parse_showstates(&output.stdout);
        self.apply_states(&states, ticket).await;
        Ok(states)
    }

    /// The cheap tier; `count` also reads 5.x's count of loaded connections. Returns whether a
    /// full listing is needed now.
    async fn poll(self: &Arc<Self>, count: bool) -> bool {
        let running = self.model().pluto_running;
        let states = match self.read_states().await {
            Ok(states) => states,
            Err(err) => {
                self.pluto_lost(&err).await;
                return false;
            }
        };

        let (known, major) = {
            let model = self.model();
            (model.connections.len() as u64, model.pluto_major())
        };
        if !running {
            info!("pluto answers again; reading its connections anew");
            return true;
        }

        let stranger = {
            let model = self.model();
            states
                .iter()
                .any(|sa| !model.connections.contains_key(&sa.connection))
        };
        let count_changed =
            count && major.is_some_and(|m| m >= 5) && self.loaded_count().await != known;
        stranger || count_changed
    }

    /// 5.x's cheap count of loaded connections; the known count when it cannot be read, so a
    /// failure does not trigger listings.
    async fn loaded_count(&self) -> u64 {
        let known = self.model().connections.len() as u64;
        match self.pluto.run(&Request::BriefConnectionStatus).await {
            Ok(output) => parse_brief_connection_status(&output.stdout).map_or(known, |t| t.loaded),
            Err(_) => known,
        }
    }

    /// Brings every connection's `State` in line with pluto's state list, unless a newer list
    /// was applied already.
    pub(crate) async fn apply_states(&self, states: &[SaState], ticket: u64) {
        let derived = tunnel_states(states);
        let mut changes = Vec::new();
        {
            let mut model = self.model();
            if ticket < model.states_as_of {
                return;
            }
            model.states_as_of = ticket;
            for (name, connection) in &mut model.connections {
                let state = derived
                    .get(name.as_str())
                    .copied()
                    .unwrap_or(TunnelState::Down);
                if connection.state != state {
                    let old = connection.clone();
                    connection.state = state;
                    if state == TunnelState::Up {
                        connection.last_error.clear();
                        connection.last_error_is_failure = false;
                    }
                    changes.push((old, connection.clone()));
                }
            }
        }
        for (old, new) in changes {
            bus::connection_changed(&self.bus, &old, &new).await;
        }
    }

    /// Replaces the model with a full listing: objects appear, vanish and change to match.
    async fn apply_listing(self: &Arc<Self>, status: Status, ticket: u64) {
        let derived = tunnel_states(&status.states);
        let (added, removed, changed, came_back, version_changed) = {
            let mut model = self.model();
            // The listing's SAs are older than some applied since: keep the newer states.
            let states_fresh = ticket >= model.states_as_of;
            if states_fresh {
                model.states_as_of = ticket;
            }
            let mut fresh: BTreeMap<String, Connection> = BTreeMap::new();
            for info in status.connections {
                let known = model.connections.get(&info.name);
                let state = match known {
                    Some(known) if !states_fresh => known.state,
                    _ => derived.get(info.name.as_str()).copied().unwrap_or_default(),
                };
                // LastError comes from initiates, not from listings: it stays until the tunnel is up.
                let (last_error, last_error_is_failure) = match known {
                    Some(known) if state != TunnelState::Up => {
                        (known.last_error.clone(), known.last_error_is_failure)
                    }
                    _ => (String::new(), false),
                };
                let connection = Connection {
                    info,
                    state,
                    last_error,
                    last_error_is_failure,
                };
                fresh.insert(connection.info.name.clone(), connection);
            }
            let added: Vec<String> = fresh
                .keys()
                .filter(|name| !model.connections.contains_key(*name))
                .cloned()
                .collect();
            let came_back = !model.pluto_running;
            let mut removed: Vec<String> = model
                .connections
                .keys()
                .filter(|name| !fresh.contains_key(*name))
                .cloned()
                .collect();
            if came_back && !removed.is_empty() {
                // A pluto that has just started loads its connections one by one: what this
                // listing lacks may come next. Removals wait for a second listing.
                for name in removed.drain(..) {
                    if let Some(known) = model.connections.get(&name) {
                        fresh.insert(name, known.clone());
                    }
                }
                self.request_listing();
            }
            let changed: Vec<(Connection, Connection)> = fresh
                .iter()
                .filter_map(|(name, new)| {
                    let old = model.connections.get(name)?;
                    (old != new).then(|| (old.clone(), new.clone()))
                })
                .collect();
            let version_changed = model.pluto_version != status.pluto_version;
            model.connections = fresh;
            model.pluto_running = true;
            model.pluto_problem.clear();
            model.pluto_version = status.pluto_version;
            (added, removed, changed, came_back, version_changed)
        };

        if came_back || version_changed {
            bus::manager_changed(self).await;
        }
        for name in &removed {
            info!(connection = %name, "connection gone from pluto");
            bus::unpublish(&self.bus, name).await;
        }
        for name in &added {
            debug!(connection = %name, "connection loaded in pluto");
            bus::publish(self, name).await;
        }
        for (old, new) in &changed {
            bus::connection_changed(&self.bus, old, new).await;
        }
    }

    /// pluto could not be asked: keep every object, say pluto is not running.
    async fn pluto_lost(self: &Arc<Self>, err: &PlutoError) {
        // A pluto that is not running holds no SAs (they go when it exits); one that is slow
        // or out of reach for another reason may still hold them.
        let stopped = matches!(
            err,
            PlutoError::Unavailable(
                Unavailable::SocketMissing(_) | Unavailable::ConnectionRefused(_)
            )
        );
        if stopped {
            self.apply_states(&[], self.ticket()).await;
        }
        let was_running = {
            let mut model = self.model();
            model.pluto_problem = err.to_string();
            std::mem::replace(&mut model.pluto_running, false)
        };
        if was_running {
            warn!(reason = %err, "pluto is unreachable; keeping the objects until it answers");
            bus::manager_changed(self).await;
        } else {
            debug!(reason = %err, "pluto still unreachable");
        }
    }
}

/// The CPU time this process and its waited-for children (whack) have used so far.
fn cpu_used() -> Duration {
    let used = |who| {
        // SAFETY: rusage is plain integers, for which all zeroes is a valid value; getrusage
        // only writes the struct it is given.
        let (usage, failed) = unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            let failed = libc::getrusage(who, &raw mut usage) != 0;
            (usage, failed)
        };
        if failed {
            return Duration::ZERO;
        }
        let time = |t: libc::timeval| {
            Duration::new(
                u64::try_from(t.tv_sec).unwrap_or_default(),
                u32::try_from(t.tv_usec).unwrap_or_default() * 1_000,
            )
        };
        time(usage.ru_utime) + time(usage.ru_stime)
    };
    used(libc::RUSAGE_SELF) + used(libc::RUSAGE_CHILDREN)
}

/// Hands the memory a full listing used back to the system. A listing of 10,000 connections is
/// 16 MB of text parsed into as many small allocations; glibc keeps freed memory in per-thread
/// arenas, so without this the resident size ratchets up to the largest listing ever seen.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the kernel; it touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}
