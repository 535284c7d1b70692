//! Runs pluto's `whack` program: never through a shell, always with a timeout, a few at a time.

use std::{
    ffi::CStr,
    fs::File,
    io::{self, BufRead, Read, Seek},
    os::fd::{FromRawFd, OwnedFd},
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines},
    process::{Child, ChildStdout, Command},
    sync::Semaphore,
};
use tracing::debug;

use super::{BoxFuture, Output, Pluto, PlutoError, Progress, Request, Unavailable};
use crate::parse::{Status, StatusParser, WhackFailure, classify_whack_failure};

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

    fn args(request: &Request) -> Vec<String> {
        let named = |name: &str, verb: &str| vec!["--name".into(), name.into(), verb.into()];
        let then_states = |mut args: Vec<String>| {
            args.push("--showstates".into());
            args
        };
        match request {
            Request::Status => vec!["--status".into()],
            Request::ShowStates => vec!["--showstates".into()],
            Request::TrafficStatus => vec!["--trafficstatus".into()],
            Request::BriefConnectionStatus => vec!["--briefconnectionstatus".into()],
            Request::ConnectionStatus(name) => then_states(named(name, "--connectionstatus")),
            // 4.x has no --down; --terminate is the same operation in every version.
            Request::Terminate(name) => named(name, "--terminate"),
            Request::TerminateThenShowStates(name) => then_states(named(name, "--terminate")),
            Request::Initiate(name) => named(name, "--initiate"),
            Request::Route(name) => named(name, "--route"),
            Request::Unroute(name) => named(name, "--unroute"),
            Request::Delete(name) => named(name, "--delete"),
            Request::DeleteState(serial) => vec!["--deletestate".into(), serial.to_string()],
        }
    }

    /// whack for `request`, its output going to pipes to be read as it comes; one-shot runs
    /// point it at files instead.
    fn command(&self, request: &Request) -> Command {
        let mut command = Command::new(&self.program);
        command
            .arg("--ctlsocket")
            .arg(&self.ctlsocket)
            .args(Self::args(request))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Dropping the future (on timeout) or the follower kills whack.
            .kill_on_drop(true);
        command
    }

    async fn run_bounded(&self, request: &Request) -> Result<Output, PlutoError> {
        let (mut stdout, stderr, status) = self.run_into_memory(request).await?;
        let stdout = read_back(&mut stdout).map_err(|err| self.spawn_error(&err))?;
        debug!(
            ?request,
            ?status,
            stdout_bytes = stdout.len(),
            "whack finished"
        );
        check(
            &self.program,
            &self.ctlsocket,
            Output {
                stdout,
                stderr,
                status,
            },
        )
    }

    async fn listing_bounded(&self, request: &Request) -> Result<Status, PlutoError> {
        let (stdout, stderr, status) = self.run_into_memory(request).await?;
        let mut lines = io::BufReader::new(stdout);
        let mut line = Vec::new();
        let mut more = read_line(&mut lines, &mut line).map_err(|err| self.spawn_error(&err))?;
        // Only the first line is needed to tell whack's failures from pluto's answer; the rest
        // goes through the parser a line at a time, never held whole.
        let first = String::from_utf8_lossy(&line).trim_end().to_owned();
        debug!(?request, ?status, "whack finished");
        check(
            &self.program,
            &self.ctlsocket,
            Output {
                stdout: first,
                stderr,
                status,
            },
        )?;

        let mut parser = StatusParser::new();
        while more {
            parser.feed(&String::from_utf8_lossy(&line));
            more = read_line(&mut lines, &mut line).map_err(|err| self.spawn_error(&err))?;
        }
        Ok(parser.finish())
    }

    /// Runs whack for `request` and returns its stdout, rewound, its stderr and its status.
    async fn run_into_memory(
        &self,
        request: &Request,
    ) -> Result<(File, String, Option<i32>), PlutoError> {
        // The pool wait counts against the timeout: a caller behind a hung pluto gets an
        // answer in bounded time instead of queueing forever.
        let _permit = self.pool.acquire().await.expect("the pool is never closed");

        // whack writes every line with a write of its own. Into a pipe, each would wake this
        // service to read it: 170,000 wake-ups for a listing of 10,000 connections, which cost
        // more CPU than parsing it. Into a file in memory, whack's writes wake nobody and the
        // answer is read when whack has exited.
        let spawn_failed = |err: io::Error| self.spawn_error(&err);
        let mut stdout = memory_file(c"whack-stdout").map_err(spawn_failed)?;
        let mut stderr = memory_file(c"whack-stderr").map_err(spawn_failed)?;
        let status = self
            .command(request)
            .stdout(stdout.try_clone().map_err(spawn_failed)?)
            .stderr(stderr.try_clone().map_err(spawn_failed)?)
            .spawn()
            .map_err(spawn_failed)?
            .wait()
            .await
            .map_err(spawn_failed)?;
        stdout.rewind().map_err(spawn_failed)?;
        let stderr = read_back(&mut stderr).map_err(spawn_failed)?;
        Ok((stdout, stderr, status.code()))
    }

    fn spawn_error(&self, err: &io::Error) -> PlutoError {
        spawn_error(&self.program, err)
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

    fn listing<'a>(&'a self, request: &'a Request) -> BoxFuture<'a, Result<Status, PlutoError>> {
        Box::pin(async move {
            tokio::time::timeout(self.timeout, self.listing_bounded(request))
                .await
                .unwrap_or(Err(PlutoError::Timeout(self.timeout)))
        })
    }

    fn follow<'a>(
        &'a self,
        request: &'a Request,
    ) -> BoxFuture<'a, Result<Box<dyn Progress>, PlutoError>> {
        Box::pin(async move {
            let mut child = self
                .command(request)
                .spawn()
                .map_err(|err| spawn_error(&self.program, &err))?;
            let stdout = child.stdout.take().expect("stdout is piped");
            let follower = Follower {
                child,
                lines: BufReader::new(stdout).lines(),
                said: String::new(),
                program: self.program.clone(),
                ctlsocket: self.ctlsocket.clone(),
            };
            Ok(Box::new(follower) as Box<dyn Progress>)
        })
    }

    fn control_socket(&self) -> String {
        self.ctlsocket.display().to_string()
    }
}

/// A whack run read line by line.
struct Follower {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    /// Everything read so far, so [`check`] sees what a one-shot run would have seen.
    said: String,
    program: PathBuf,
    ctlsocket: PathBuf,
}

impl Progress for Follower {
    fn next_line(&mut self) -> BoxFuture<'_, Option<String>> {
        Box::pin(async move {
            let line = self.lines.next_line().await.ok().flatten()?;
            self.said.push_str(&line);
            self.said.push('\n');
            Some(line)
        })
    }

    fn finish(mut self: Box<Self>) -> BoxFuture<'static, Result<Output, PlutoError>> {
        Box::pin(async move {
            while self.next_line().await.is_some() {}
            let mut stderr = String::new();
            if let Some(mut pipe) = self.child.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr).await;
            }
            let status = self.child.wait().await.ok().and_then(|s| s.code());
            let output = Output {
                stdout: std::mem::take(&mut self.said),
                stderr,
                status,
            };
            check(&self.program, &self.ctlsocket, output)
        })
    }
}

/// An anonymous file in memory, gone when the last descriptor to it is closed.
fn memory_file(name: &CStr) -> io::Result<File> {
    // SAFETY: `name` is a valid C string; the call only creates a new descriptor.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned by nobody else.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Everything whack wrote into `file`, read in one go into a buffer of the right size.
fn read_back(file: &mut File) -> io::Result<String> {
    let size = file.seek(io::SeekFrom::End(0))?;
    file.rewind()?;
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or_default());
    file.read_to_end(&mut bytes)?;
    Ok(text(bytes))
}

/// The next line of `reader` into `line`, with its newline; false at the end.
fn read_line(reader: &mut impl BufRead, line: &mut Vec<u8>) -> io::Result<bool> {
    line.clear();
    Ok(reader.read_until(b'\n', line)? > 0)
}

/// whack's bytes as text, without a copy when they are UTF-8 (a full listing can be 16 MB).
fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes)
        .unwrap_or_else(|err| String::from_utf8_lossy(err.as_bytes()).into_owned())
}

fn spawn_error(program: &Path, err: &io::Error) -> PlutoError {
    let whack = program.display().to_string();
    PlutoError::Unavailable(match err.kind() {
        io::ErrorKind::NotFound => Unavailable::WhackMissing(whack),
        _ => Unavailable::WhackFailed(format!("cannot run {whack}: {err}")),
    })
}

/// Turns whack's own failures into [`PlutoError`]; pluto's answers pass through untouched.
fn check(program: &Path, ctlsocket: &Path, output: Output) -> Result<Output, PlutoError> {
    let socket = ctlsocket.display().to_string();

    // The mismatch answer is a single line, so only the first is looked at: a listing of
    // thousands of connections is not scanned for it.
    let first_line = output.stdout.lines().next().unwrap_or_default();
    if first_line.contains(VERSION_MISMATCH) {
        let whack = program.display().to_string();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn output(stdout: &str, stderr: &str, status: i32) -> Output {
        Output {
            stdout: stdout.into(),
            stderr: stderr.into(),
            status: Some(status),
        }
    }

    fn checked(stdout: &str, stderr: &str, status: i32) -> Result<Output, PlutoError> {
        check(
            Path::new("/usr/libexec/ipsec/whack"),
            Path::new("/run/pluto/pluto.ctl"),
            output(stdout, stderr, status),
        )
    }

    #[test]
    fn maps_whack_failures_to_the_reason_pluto_is_unavailable() {
        let missing = checked(
            "",
            "whack: Pluto is not running (no \"/run/pluto/pluto.ctl\")",
            33,
        );
        assert_eq!(
            missing.unwrap_err(),
            PlutoError::Unavailable(Unavailable::SocketMissing("/run/pluto/pluto.ctl".into()))
        );
        let refused = checked(
            "",
            "ERROR: ipsec whack: connect(pluto_ctl) failed: Connection refused (errno 111)",
            33,
        );
        assert!(matches!(
            refused,
            Err(PlutoError::Unavailable(Unavailable::ConnectionRefused(_)))
        ));
        let denied = checked(
            "",
            "whack: no right to communicate with pluto (access(\"x\"))",
            33,
        );
        assert!(matches!(
            denied,
            Err(PlutoError::Unavailable(Unavailable::NotPermitted(_)))
        ));
        let unknown_option = checked("", "whack: unrecognized option '--down'", 33);
        assert!(matches!(
            unknown_option,
            Err(PlutoError::Unavailable(Unavailable::WhackFailed(_)))
        ));
    }

    #[test]
    fn a_version_mismatch_is_unavailable_even_with_exit_status_0() {
        let mismatch = checked(
            "050 ignoring message from whack with bad magic 1869114161; should be 3654091882; \
             Mismatched versions of userland tools.\n",
            "",
            0,
        );
        assert!(matches!(
            mismatch,
            Err(PlutoError::Unavailable(Unavailable::VersionMismatch(_)))
        ));
    }

    #[test]
    fn pluto_answers_pass_through_whatever_the_status() {
        let answer = checked("021 no connection named \"x\"\n", "", 21).unwrap();
        assert_eq!(answer.status, Some(21));
        assert!(answer.stdout.contains("no connection named"));
    }

    #[test]
    fn builds_one_argv_element_per_argument() {
        let args = Whack::args(&Request::Terminate("a name; rm -rf /".into()));
        assert_eq!(args, ["--name", "a name; rm -rf /", "--terminate"]);
        assert_eq!(
            Whack::args(&Request::DeleteState(7)),
            ["--deletestate", "7"]
        );
        assert_eq!(
            Whack::args(&Request::TerminateThenShowStates("a".into())),
            ["--name", "a", "--terminate", "--showstates"]
        );
    }
}
