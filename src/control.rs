//! The verbs: what each state-changing method asks of pluto, and how its answer is judged.
//!
//! whack's exit status cannot be trusted (pluto reports many failures with 0, and 4.x says
//! nothing at all for an unknown name), so every verb decides from pluto's words and from
//! reading pluto's state again afterwards.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, Weak},
    time::Duration,
};

use tracing::debug;

use crate::{
    parse::{ReplyProblem, SaKind, parse_reply},
    pluto::{PlutoError, Request, Unavailable},
    service::Service,
};

/// How often, and how far apart, the state is read again after a verb before its effect is
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
    #[error("pluto did not take {connection:?} down: {words}")]
    Refused { connection: String, words: String },
}

/// One lock per connection, so verbs on one connection run one at a time while verbs on
/// different connections run side by side. Entries die with their last user.
#[derive(Default)]
pub(crate) struct VerbLocks(Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>);

impl VerbLocks {
    fn get(&self, connection: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(lock) = locks.get(connection).and_then(Weak::upgrade) {
            return lock;
        }
        locks.retain(|_, lock| lock.strong_count() > 0);
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        locks.insert(connection.to_owned(), Arc::downgrade(&lock));
        lock
    }
}

impl Service {
    /// Takes the connection's tunnel down as `ipsec down` does: pluto deletes its SAs, keeps
    /// the connection loaded and keeps its route. Succeeds without change when it has no SAs.
    pub async fn down(&self, connection: &str) -> Result<(), VerbError> {
        let lock = self.verbs.get(connection);
        let _one_at_a_time = lock.lock().await;

        let major = {
            let model = self.model();
            if !model.connections.contains_key(connection) {
                return Err(VerbError::UnknownConnection(connection.to_owned()));
            }
            model.pluto_major()
        };

        let output = self
            .pluto
            .run(&Request::Terminate(connection.to_owned()))
            .await?;
        let reply = parse_reply(&output.stdout);
        debug!(connection, lines = ?reply.lines, status = ?output.status, "terminate answered");
        match reply.problem {
            Some(ReplyProblem::UnknownConnection) => {
                self.request_listing();
                return Err(VerbError::UnknownConnection(connection.to_owned()));
            }
            Some(ReplyProblem::VersionMismatch) => {
                return Err(PlutoError::Unavailable(Unavailable::VersionMismatch(
                    "whack".to_owned(),
                ))
                .into());
            }
            Some(ReplyProblem::Refused(words)) => {
                return Err(VerbError::Refused {
                    connection: connection.to_owned(),
                    words,
                });
            }
            None => {}
        }
        // 4.x answers a known name with "terminating SAs using this connection" and an unknown
        // one with nothing at all (exit 0); 5.x answers a known name without SAs with nothing.
        if major == Some(4) && reply.lines.is_empty() {
            self.request_listing();
            return Err(VerbError::UnknownConnection(connection.to_owned()));
        }

        let result = self.verify_no_child_sa(connection, &reply.lines).await;
        self.request_listing();
        result
    }

    /// Reads pluto's states until no Child SA of `connection` is left, updating `State` on
    /// the way, so the change shows before the call returns.
    async fn verify_no_child_sa(&self, connection: &str, said: &[String]) -> Result<(), VerbError> {
        for attempt in 1..=VERIFY_ATTEMPTS {
            let states = self.read_states().await?;

            let left = states
                .iter()
                .any(|sa| sa.connection == connection && sa.kind == SaKind::Child);
            if !left {
                return Ok(());
            }
            if attempt < VERIFY_ATTEMPTS {
                tokio::time::sleep(VERIFY_PAUSE).await;
            }
        }
        let words = if said.is_empty() {
            "its Child SAs are still there".to_owned()
        } else {
            format!(
                "its Child SAs are still there; pluto said: {}",
                said.join(" / ")
            )
        };
        Err(VerbError::Refused {
            connection: connection.to_owned(),
            words,
        })
    }
}
