//! The verbs: what each state-changing method asks of pluto, and how its answer is judged.
//!
//! whack's exit status cannot be trusted (pluto reports many failures with 0, and 4.x says
//! nothing at all for an unknown name), so every verb decides from pluto's words and, where it
//! matters, from reading pluto's state again afterwards.
//!
//! One verb runs at a time per connection; identical calls that arrive while one runs share
//! its pluto run and its result.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, Weak},
    time::Duration,
};

use futures_util::future::{BoxFuture, FutureExt, Shared};
use tokio::task::AbortHandle;
use tracing::{debug, info};

use crate::{
    bus,
    model::{Connection, TunnelState},
    parse::{
        InitiateEvent, Reply, ReplyProblem, SaKind, SaState, parse_initiate_line, parse_reply,
        split_showstates,
    },
    pluto::{Output, PlutoError, Progress, Request, Unavailable},
    service::Service,
    verb::Verb,
};

/// How often, and how far apart, the state is read again after Down before its effect is
/// judged missing. pluto finishes deleting SAs before whack returns; the re-reads only cover a
/// delete still on its way through pluto's event loop.
const VERIFY_ATTEMPTS: u32 = 3;
const VERIFY_PAUSE: Duration = Duration::from_millis(100);

/// Why a verb did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerbError {
    #[error(transparent)]
    Pluto(#[from] PlutoError),
    #[error("pluto has no connection named {0:?}")]
    UnknownConnection(String),
    #[error("pluto refused to {verb} {connection:?}: {words}")]
    Refused {
        verb: &'static str,
        connection: String,
        words: String,
    },
    /// Delete refused for an instance: pluto makes one per peer of a template, and 5.2
    /// crashes when asked to delete one by its serial (4.10 ignores the request).
    #[error(
        "{connection:?} is an instance of {template:?}, made for one peer: take it down with \
         Down(), or delete {template:?}"
    )]
    Instance {
        connection: String,
        template: String,
    },
    /// Unroute refused: `holder` has SAs, the connection itself or, for a template, an instance.
    #[error("{}", busy_words(connection, holder))]
    Busy { connection: String, holder: String },
}

fn busy_words(connection: &str, holder: &str) -> String {
    if connection == holder {
        format!("{connection:?} has SAs: bring it down first")
    } else {
        format!("{connection:?} has an instance with SAs ({holder:?}): bring it down first")
    }
}

type SharedRun = Shared<BoxFuture<'static, Result<(), VerbError>>>;

/// Book-keeping of the verbs in progress.
#[derive(Default)]
pub(crate) struct Verbs {
    /// One lock per connection; entries die with their last user.
    locks: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
    /// The run each (connection, verb) in progress is sharing.
    running: Mutex<HashMap<(String, Verb), SharedRun>>,
    /// The background readers of initiates in progress, by connection.
    attempts: Mutex<HashMap<String, AbortHandle>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; using it is still sound.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Verbs {
    fn lock_for(&self, connection: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = lock(&self.locks);
        if let Some(existing) = locks.get(connection).and_then(Weak::upgrade) {
            return existing;
        }
        locks.retain(|_, entry| entry.strong_count() > 0);
        let fresh = Arc::new(tokio::sync::Mutex::new(()));
        locks.insert(connection.to_owned(), Arc::downgrade(&fresh));
        fresh
    }

    /// Stops reading an initiate's progress; pluto's attempt itself is ended by the verb.
    fn forget_attempt(&self, connection: &str) {
        if let Some(attempt) = lock(&self.attempts).remove(connection) {
            attempt.abort();
        }
    }

    fn attempt_running(&self, connection: &str) -> bool {
        lock(&self.attempts)
            .get(connection)
            .is_some_and(|attempt| !attempt.is_finished())
    }
}

impl Service {
    /// Runs `verb` on `connection`, sharing the run of an identical call already in progress.
    pub async fn run_verb(self: &Arc<Self>, verb: Verb, connection: &str) -> Result<(), VerbError> {
        let key = (connection.to_owned(), verb);
        let run = lock(&self.verbs.running)
            .entry(key.clone())
            .or_insert_with(|| {
                let service = Arc::clone(self);
                let connection = connection.to_owned();
                async move { service.run_alone(verb, &connection).await }
                    .boxed()
                    .shared()
            })
            .clone();

        let result = run.clone().await;
        let mut running = lock(&self.verbs.running);
        if running
            .get(&key)
            .is_some_and(|current| current.ptr_eq(&run))
        {
            running.remove(&key);
        }
        result
    }

    async fn run_alone(self: &Arc<Self>, verb: Verb, name: &str) -> Result<(), VerbError> {
        let connection_lock = self.verbs.lock_for(name);
        let _one_at_a_time = connection_lock.lock().await;

        let (known, major) = {
            let model = self.model();
            (model.connections.get(name).cloned(), model.pluto_major())
        };
        let known = known.ok_or_else(|| VerbError::UnknownConnection(name.to_owned()))?;
        let result = match verb {
            Verb::Up => self.up(&known, major).await,
            Verb::Down => self.down(&known, major).await,
            Verb::Route => self.route(&known, major).await,
            Verb::Unroute => self.unroute(&known, major).await,
            Verb::Delete => self.delete(&known, major).await,
        };
        // 5.x lists one connection cheaply: show its new routing before the call returns.
        // 4.x cannot; there the verbs set what pluto is known to do, and the full listing
        // requested here confirms it. Down re-reads as part of its check.
        if major.is_some_and(|m| m >= 5) && !matches!(verb, Verb::Delete | Verb::Down) {
            let _ = self.reread_connection(name, &address(&known, major)).await;
        }
        self.request_listing();
        result
    }

    /// Takes the connection's tunnel down as `ipsec down` does: pluto deletes its SAs, keeps
    /// the connection loaded and keeps its route. Succeeds without change when it has no SAs.
    async fn down(&self, known: &Connection, major: Option<u32>) -> Result<(), VerbError> {
        let name = known.info.name.as_str();
        self.verbs.forget_attempt(name);

        let (said, states) = if known.info.is_instance() && major == Some(4) {
            // 4.x knows an instance by no name it accepts (`rw[2]`, `$7` are ignored silently);
            // deleting its states by serial takes exactly that instance down. Limitation: the
            // peer gets no delete notification this way, so a peer set to revive reconnects at
            // once. 5.x addresses the instance by its connection serial and notifies the peer.
            for serial in self.states_of(name).await? {
                self.pluto.run(&Request::DeleteState(serial)).await?;
            }
            (Vec::new(), None)
        } else if major == Some(4) {
            // One whack run: 4.x lists the states once the terminate is done.
            let ticket = self.ticket();
            let request = Request::TerminateThenShowStates(address(known, major));
            let output = self.pluto.run(&request).await?;
            let (said, states) = split_showstates(&output.stdout);
            let reply = self.judge(
                Verb::Down,
                name,
                &Output {
                    stdout: said,
                    ..output
                },
            )?;
            // 4.x answers a known name with "terminating SAs using this connection" and an
            // unknown one with nothing at all (exit 0).
            if reply.lines.is_empty() {
                return Err(VerbError::UnknownConnection(name.to_owned()));
            }
            self.apply_states(&states, ticket).await;
            (reply.lines, Some(states))
        } else {
            let address = address(known, major);
            let output = self.pluto.run(&Request::Terminate(address.clone())).await?;
            // 5.x answers a known name without SAs with nothing.
            let reply = self.judge(Verb::Down, name, &output)?;
            // The connection's listing shows its routing after the terminate, and the states.
            let states = self.reread_connection(name, &address).await?;
            (reply.lines, states)
        };
        self.verify_down(name, &said, states).await?;

        // 4.x leaves a trap behind for a connection whose tunnel was up, routed before or not;
        // 5.x restores the routing it had before (read back with the states above).
        if major == Some(4) && known.state == TunnelState::Up && !known.info.is_instance() {
            self.set_routing(name, "prospective erouted").await;
        }
        Ok(())
    }

    /// The serials of the IKE SAs of `name` (deleting one takes its Child SAs along), or of its
    /// Child SAs where it has no IKE SA of its own.
    async fn states_of(&self, name: &str) -> Result<Vec<u64>, VerbError> {
        let states = self.read_states().await?;
        let mine: Vec<_> = states.iter().filter(|sa| sa.connection == name).collect();
        let ike: Vec<u64> = mine
            .iter()
            .filter(|sa| sa.kind == SaKind::Ike)
            .map(|sa| sa.serial)
            .collect();
        Ok(if ike.is_empty() {
            mine.iter().map(|sa| sa.serial).collect()
        } else {
            ike
        })
    }

    /// Reads pluto's states until no established Child SA of `name` is left, updating `State`
    /// on the way, so the change shows before the call returns; the first look is at `states`
    /// when the verb's own run listed them. A new attempt pluto starts by itself (revival of an
    /// `auto=keep`/`start` connection) does not count: the tunnel is down.
    async fn verify_down(
        &self,
        name: &str,
        said: &[String],
        mut states: Option<Vec<SaState>>,
    ) -> Result<(), VerbError> {
        for attempt in 1..=VERIFY_ATTEMPTS {
            let states = match states.take() {
                Some(states) => states,
                None => self.read_states().await?,
            };
            let left = states
                .iter()
                .any(|sa| sa.connection == name && sa.kind == SaKind::Child && sa.established);
            if !left {
                return Ok(());
            }
            if attempt < VERIFY_ATTEMPTS {
                tokio::time::sleep(VERIFY_PAUSE).await;
            }
        }
        let mut words = "an established Child SA is still there".to_owned();
        if !said.is_empty() {
            words = format!("{words}; pluto said: {}", said.join(" / "));
        }
        Err(VerbError::Refused {
            verb: Verb::Down.as_str(),
            connection: name.to_owned(),
            words,
        })
    }

    /// Brings the tunnel up. Returns once pluto has accepted the attempt; its progress shows
    /// as `State` and, while it is not up, `LastError`. Does nothing for a tunnel that is up or
    /// on its way, or a template with an instance up: initiating again would create a second
    /// Child SA (4.x initiates a template's instances). A template without instances is
    /// pluto's to refuse: it does not know the peer.
    async fn up(self: &Arc<Self>, known: &Connection, major: Option<u32>) -> Result<(), VerbError> {
        let name = known.info.name.as_str();
        let states = self.read_states().await?;
        let state = self.connection(name).map(|c| c.state);
        let instance_up = states.iter().any(|sa| {
            sa.connection != name && sa.is_under(name) && sa.kind == SaKind::Child && sa.established
        });
        if state == Some(TunnelState::Up) || instance_up || self.verbs.attempt_running(name) {
            return Ok(());
        }

        // A synchronous initiate, read in the background: pluto reports why an attempt fails
        // only to the whack that asked (and to its log). An asynchronous one would answer at
        // once but say nothing of how the attempt ends.
        let mut progress = self
            .pluto
            .follow(&Request::Initiate(address(known, major)))
            .await?;
        let accepted = tokio::time::timeout(self.settings.whack_timeout, async {
            while let Some(line) = progress.next_line().await {
                match parse_initiate_line(&line) {
                    // A failure before any state is pluto refusing the request (4.x: "failed
                    // to initiate connection"); whack ends and its answer is judged below.
                    InitiateEvent::Other | InitiateEvent::Failed(_) => continue,
                    event => return Some(event),
                }
            }
            None
        })
        .await
        .map_err(|_| PlutoError::Timeout(self.settings.whack_timeout))?;

        let Some(first) = accepted else {
            // whack ended before pluto created a state: the answer says why.
            let output = progress.finish().await?;
            self.judge(Verb::Up, name, &output)?;
            return Err(VerbError::Refused {
                verb: Verb::Up.as_str(),
                connection: name.to_owned(),
                words: output.stdout.trim().to_owned(),
            });
        };
        info!(connection = name, "pluto accepted the initiate");
        self.note_attempt(name, &first).await;

        let service = Arc::clone(self);
        let connection = name.to_owned();
        let follower = tokio::spawn(async move { service.follow(&connection, progress).await });
        lock(&self.verbs.attempts).insert(name.to_owned(), follower.abort_handle());
        self.read_states().await?;
        Ok(())
    }

    /// Reads an initiate's answer to its end, keeping `LastError` and `State` current.
    async fn follow(self: Arc<Self>, name: &str, mut progress: Box<dyn Progress>) {
        while let Some(line) = progress.next_line().await {
            let event = parse_initiate_line(&line);
            self.note_attempt(name, &event).await;
        }
        let ended = progress.finish().await;
        debug!(connection = name, ?ended, "initiate ended");
        // Forgotten before the last read, so an Up() from now on starts a new attempt.
        lock(&self.verbs.attempts).remove(name);
        let _ = self.read_states().await;
    }

    async fn note_attempt(&self, name: &str, event: &InitiateEvent) {
        match event {
            InitiateEvent::Established => {
                // apply_states clears LastError as the tunnel shows up.
                let _ = self.read_states().await;
            }
            InitiateEvent::Retrying(words) => {
                let reason = format!("no answer from the peer yet; pluto keeps trying: {words}");
                // A refusal says more than the retries that follow it.
                self.set_last_error(name, reason, false).await;
            }
            InitiateEvent::Failed(words) => self.set_last_error(name, words.clone(), true).await,
            InitiateEvent::Started | InitiateEvent::Other => {}
        }
    }

    /// Sets `LastError`; a retry note does not replace a failure.
    async fn set_last_error(&self, name: &str, reason: String, failure: bool) {
        let change = {
            let mut model = self.model();
            let Some(connection) = model.connections.get_mut(name) else {
                return;
            };
            let keep = !failure && connection.last_error_is_failure;
            if keep || connection.last_error == reason {
                return;
            }
            let old = connection.clone();
            connection.last_error = reason;
            connection.last_error_is_failure = failure;
            (old, connection.clone())
        };
        bus::connection_changed(&self.bus, &change.0, &change.1).await;
    }

    /// Installs (`route`) the connection's trap policy. `Routed` shows it before the call
    /// returns; the next full listing confirms it in pluto's own words.
    async fn route(&self, known: &Connection, major: Option<u32>) -> Result<(), VerbError> {
        let name = known.info.name.as_str();
        let output = self
            .pluto
            .run(&Request::Route(address(known, major)))
            .await?;
        self.judge_status(Verb::Route, name, &output, major)?;
        self.set_routing(name, "routed").await;
        Ok(())
    }

    /// Removes the trap policy of a connection without SAs.
    async fn unroute(&self, known: &Connection, major: Option<u32>) -> Result<(), VerbError> {
        let name = known.info.name.as_str();

        // pluto 4.10 crashes on --unroute of an established connection, taking every tunnel
        // down, and 5.x's --unroute of a template deletes its instances, tunnels and all. So
        // it is never sent while the connection, or an instance of it, has any SA. The check
        // is a fresh listing taken under the connection's lock, so no verb of ours can race it.
        // Limitation: between this listing and pluto receiving --unroute (a few ms) the peer
        // or a trap could still bring the tunnel up; pluto offers no atomic "unroute if down".
        let states = self.read_states().await?;
        if let Some(sa) = states.iter().find(|sa| sa.is_under(name)) {
            return Err(VerbError::Busy {
                connection: name.to_owned(),
                holder: sa.connection.clone(),
            });
        }

        let output = self
            .pluto
            .run(&Request::Unroute(address(known, major)))
            .await?;
        self.judge_status(Verb::Unroute, name, &output, major)?;
        self.set_routing(name, "unrouted").await;
        Ok(())
    }

    /// Makes pluto forget the connection (and a template's instances); the objects are gone
    /// before the call returns. An instance is refused: see [`VerbError::Instance`].
    async fn delete(&self, known: &Connection, major: Option<u32>) -> Result<(), VerbError> {
        let name = known.info.name.as_str();
        if known.info.is_instance() {
            return Err(VerbError::Instance {
                connection: name.to_owned(),
                template: known.info.template.clone(),
            });
        }
        self.verbs.forget_attempt(name);
        let output = self
            .pluto
            .run(&Request::Delete(address(known, major)))
            .await?;
        let reply = self.judge_status(Verb::Delete, name, &output, major)?;
        // As with --terminate, 4.x answers a known name and stays silent for an unknown one.
        if major == Some(4) && reply.lines.is_empty() {
            return Err(VerbError::UnknownConnection(name.to_owned()));
        }

        let gone: Vec<String> = {
            let mut model = self.model();
            let gone: Vec<String> = model
                .connections
                .values()
                .filter(|c| c.info.name == name || c.info.template == name)
                .map(|c| c.info.name.clone())
                .collect();
            for each in &gone {
                model.connections.remove(each);
            }
            gone
        };
        for each in &gone {
            bus::unpublish(&self.bus, each).await;
        }
        Ok(())
    }

    async fn set_routing(&self, name: &str, routing: &str) {
        let change = {
            let mut model = self.model();
            let Some(connection) = model.connections.get_mut(name) else {
                return;
            };
            let old = connection.clone();
            let routed_now = routing != "unrouted";
            if old.info.routed() == routed_now {
                return;
            }
            connection.info.routing = routing.to_owned();
            (old, connection.clone())
        };
        bus::connection_changed(&self.bus, &change.0, &change.1).await;
    }

    /// Judges pluto's words; the problems every verb shares.
    fn judge(&self, verb: Verb, name: &str, output: &Output) -> Result<Reply, VerbError> {
        let reply = parse_reply(&output.stdout);
        debug!(connection = name, verb = verb.as_str(), lines = ?reply.lines, status = ?output.status, "pluto answered");
        match &reply.problem {
            None => Ok(reply),
            Some(ReplyProblem::UnknownConnection) => {
                Err(VerbError::UnknownConnection(name.to_owned()))
            }
            Some(ReplyProblem::VersionMismatch) => Err(PlutoError::Unavailable(
                Unavailable::VersionMismatch("whack".to_owned()),
            )
            .into()),
            Some(ReplyProblem::Refused(words)) => Err(VerbError::Refused {
                verb: verb.as_str(),
                connection: name.to_owned(),
                words: words.clone(),
            }),
        }
    }

    /// [`Service::judge`], and on 5.x, which prints failures without a code, the exit status.
    fn judge_status(
        &self,
        verb: Verb,
        name: &str,
        output: &Output,
        major: Option<u32>,
    ) -> Result<Reply, VerbError> {
        let reply = self.judge(verb, name, output)?;
        let failed = major.is_some_and(|m| m >= 5) && output.status.is_some_and(|s| s != 0);
        if failed {
            return Err(VerbError::Refused {
                verb: verb.as_str(),
                connection: name.to_owned(),
                words: reply.lines.join(" / "),
            });
        }
        Ok(reply)
    }
}

/// How pluto is told which connection is meant: its name, or on 5.x for an instance of a
/// template its connection serial (`$7`), since 5.x accepts no name for an instance.
fn address(known: &Connection, major: Option<u32>) -> String {
    let info = &known.info;
    if info.is_instance() && info.serial != 0 && major.is_some_and(|m| m >= 5) {
        format!("${}", info.serial)
    } else {
        info.name.clone()
    }
}
