//! The pluto client: how the service asks pluto for state and for changes.
//!
//! pluto's control socket speaks a binary format tied to the exact pluto build, so the stable
//! door is the `whack` program shipped with it ([`Whack`]). [`Pluto`] keeps that choice behind a
//! small trait so another backend could replace it.

mod whack;

pub use whack::Whack;

use std::{fmt, future::Future, pin::Pin, time::Duration};

use crate::parse::Status;

/// One request to pluto.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Request {
    /// The full status: every loaded connection and every state. O(connections).
    Status,
    /// The state (SA) list only; cheap at any number of connections.
    ShowStates,
    /// Byte counters of established Child SAs; cheap.
    TrafficStatus,
    /// 5.x only: active connections plus the loaded/active totals; cheap.
    BriefConnectionStatus,
    /// 5.x only: one connection's part of the connection list, then the state list; cheap.
    ConnectionStatus(String),
    /// Delete the connection's SAs, keeping the connection and its route (`ipsec down`).
    Terminate(String),
    /// [`Request::Terminate`], then the state list in the same run. Only 4.x lists the states
    /// after the terminate is done; 5.x lists them while its deletes are still on their way.
    TerminateThenShowStates(String),
    /// Start negotiating the connection; pluto reports progress until it is up or gives up.
    Initiate(String),
    /// Install the connection's trap policy, so traffic brings the tunnel up.
    Route(String),
    /// Remove the connection's trap policy.
    Unroute(String),
    /// Forget the connection, taking its SAs down first.
    Delete(String),
    /// Delete one state (SA) by its serial number, with its Child SAs when it is an IKE SA.
    DeleteState(u64),
}

/// What pluto answered, as whack printed it.
#[derive(Debug, Clone, Default)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
    /// whack's exit status; pluto reports many failures with 0, so it is never enough alone.
    pub status: Option<i32>,
}

/// Why pluto could not be asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlutoError {
    #[error("{0}")]
    Unavailable(Unavailable),
    #[error("pluto did not answer within {} s", .0.as_secs_f32())]
    Timeout(Duration),
}

/// The reasons pluto is out of reach, each worded for the person who has to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    SocketMissing(String),
    ConnectionRefused(String),
    NotPermitted(String),
    VersionMismatch(String),
    WhackMissing(String),
    WhackFailed(String),
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SocketMissing(socket) => {
                write!(
                    f,
                    "pluto is not running: its control socket {socket} does not exist"
                )
            }
            Self::ConnectionRefused(socket) => write!(
                f,
                "pluto is not running: nothing accepts connections on {socket} (stale socket?)"
            ),
            Self::NotPermitted(socket) => {
                write!(f, "not permitted to talk to pluto through {socket}")
            }
            Self::VersionMismatch(whack) => write!(
                f,
                "{whack} does not match the running pluto's version (Mismatched versions of \
                 userland tools); point --whack at the whack shipped with this pluto"
            ),
            Self::WhackMissing(whack) => write!(f, "cannot run {whack}: no such file"),
            Self::WhackFailed(detail) => write!(f, "whack failed: {detail}"),
        }
    }
}

/// A boxed future, so [`Pluto`] stays object safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Something that can carry requests to pluto.
pub trait Pluto: Send + Sync {
    /// Sends one request and returns pluto's answer. Implementations bound the time it may take.
    fn run<'a>(&'a self, request: &'a Request) -> BoxFuture<'a, Result<Output, PlutoError>>;

    /// Sends one request answered with a connection listing ([`Request::Status`],
    /// [`Request::ConnectionStatus`]) and returns it parsed. The answer, 16 MB at 10,000
    /// connections, goes through the parser a line at a time and is never held whole.
    fn listing<'a>(&'a self, request: &'a Request) -> BoxFuture<'a, Result<Status, PlutoError>>;

    /// Sends one request whose answer is read line by line as pluto writes it, for as long as
    /// pluto takes (a synchronous initiate to a dead peer may never end). Outside the bounded
    /// pool and without a timeout: the caller decides how long to follow.
    fn follow<'a>(
        &'a self,
        request: &'a Request,
    ) -> BoxFuture<'a, Result<Box<dyn Progress>, PlutoError>>;

    /// The control socket this backend talks to, for display.
    fn control_socket(&self) -> String;
}

/// A request in flight, read as pluto answers. Dropping it stops reading (and ends whack);
/// what pluto was asked to do goes on.
pub trait Progress: Send {
    /// The next line of pluto's answer, or `None` once whack has exited.
    fn next_line(&mut self) -> BoxFuture<'_, Option<String>>;

    /// Waits for whack to exit; whack's own failures become [`PlutoError`].
    fn finish(self: Box<Self>) -> BoxFuture<'static, Result<Output, PlutoError>>;
}
