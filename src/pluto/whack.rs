//! Runs pluto's `whack` program: never through a shell, always with a timeout, a few at a time.

use std::{io, path::PathBuf, process::Stdio, time::Duration};

use tokio::{process::Command, sync::Semaphore};
use tracing::debug;

use super::{BoxFuture, Output, Pluto, PlutoError, Request, Unavailable};
use crate::parse::{WhackFailure, classify_whack_failure};

/// How many whack processes may run at once. pluto serves its socket one request at a time, so
/// more would only queue inside pluto while costing a process each.
const POOL_SIZE: usize = 4;

/// whack's exit status for its own failures (no socket, refused, not permitted).
const WHACK_FAILED: i32 = 33;

/// pluto's answer to a whack built for another pluto version; it may come with exit status 0.
const VERSION_MISMATCH: &str = "Mismatched versions of userland tools";

/// The whack backend.
pub struct Whack {
    program: PathBuf,
    ctlsocket: PathBuf,
    timeout: Duration,
    pool: Semaphore,
}

impl Whack {
    pub fn new(program: PathBuf, ctlsocket: PathBuf, timeout: Duration) -> Self {
        Self {
            program,
            ctlsocket,
            timeout,
            pool: Semaphore::new(POOL_SIZE),
        }
    }

    fn args(request: &Request) -> Vec<&str> {
        match request {
            Request::Status => vec!["--status"],
            Request::ShowStates => vec!["--showstates"],
            Request::TrafficStatus => vec!["--trafficstatus"],
            Request::BriefConnectionStatus => vec!["--briefconnectionstatus"],
            // 4.x has no --down; --terminate is the same operation in every version.
            Request::Terminate(name) => vec!["--name", name, "--terminate"],
        }
    }

    async fn run_bounded(&self, request: &Request) -> Result<Output, PlutoError> {
        // The pool wait counts against the timeout: a caller behind a hung pluto gets an
        // answer in bounded time instead of queueing forever.
        let _permit = self.pool.acquire().await.expect("the pool is never closed");

        let mut command = Command::new(&self.program);
        command
            .arg("--ctlsocket")
            .arg(&self.ctlsocket)
            .args(Self::args(request))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Dropping the future on timeout kills whack.
            .kill_on_drop(true);
        let output = command
            .output()
            .await
            .map_err(|err| self.spawn_error(&err))?;

        let output = Output {
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            status: output.status.code(),
        };
        debug!(
            ?request,
            status = ?output.status,
            stdout_bytes = output.stdout.len(),
            "whack finished"
        );
        self.check(output)
    }

    fn spawn_error(&self, err: &io::Error) -> PlutoError {
        let whack = self.program.display().to_string();
        PlutoError::Unavailable(match err.kind() {
            io::ErrorKind::NotFound => Unavailable::WhackMissing(whack),
            _ => Unavailable::WhackFailed(format!("cannot run {whack}: {err}")),
        })
    }

    /// Turns whack's own failures into [`PlutoError`]; pluto's answers pass through untouched.
    fn check(&self, output: Output) -> Result<Output, PlutoError> {
        let socket = self.ctlsocket.display().to_string();

        // The mismatch answer is a single line, so only the first is looked at: a listing of
        // thousands of connections is not scanned for it.
        let first_line = output.stdout.lines().next().unwrap_or_default();
        if first_line.contains(VERSION_MISMATCH) {
            let whack = self.program.display().to_string();
            return Err(PlutoError::Unavailable(Unavailable::VersionMismatch(whack)));
        }

        if output.status != Some(WHACK_FAILED) {
            return Ok(output);
        }
        let reason = match classify_whack_failure(&output.stderr) {
            WhackFailure::SocketMissing => Unavailable::SocketMissing(socket),
            WhackFailure::ConnectionRefused => Unavailable::ConnectionRefused(socket),
            WhackFailure::NotPermitted => Unavailable::NotPermitted(socket),
            // Exit 33 with words we do not know is still whack failing, not pluto answering.
            WhackFailure::Other => Unavailable::WhackFailed(output.stderr.trim().to_owned()),
        };
        Err(PlutoError::Unavailable(reason))
    }
}

impl Pluto for Whack {
    fn run<'a>(&'a self, request: &'a Request) -> BoxFuture<'a, Result<Output, PlutoError>> {
        Box::pin(async move {
            tokio::time::timeout(self.timeout, self.run_bounded(request))
                .await
                .unwrap_or(Err(PlutoError::Timeout(self.timeout)))
        })
    }

    fn control_socket(&self) -> String {
        self.ctlsocket.display().to_string()
    }
}
