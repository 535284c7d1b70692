//! Helpers for the integration tests of libreswan-dbus.
//!
//! The tests run the service the way it runs in production: on a system bus with the stock
//! policy plus ours, with the real polkitd deciding from our `.policy` file, and with callers
//! that are really other users. Only pluto is replaced, by `fake-whack`, for speed.
//!
//! - [`TestBus`]: a private system bus and polkitd (`tests/support/testbus`).
//! - [`FakeWhack`]: a scenario of whack answers in a temporary directory.
//! - [`Service`]: the service binary, started on a [`TestBus`] and stopped with SIGTERM.
//! - [`Caller`]: root, or a test user that polkit allows or refuses.
//!
//! These tests need root. Without it they fail with a message saying so, rather than pass
//! without testing anything.

// Each test binary declares `mod support;` and uses only part of it.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

/// The well-known name of the service under test.
pub const SERVICE_NAME: &str = "org.libreswan";

/// How long a daemon, the service or a test condition gets before the test gives up.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Test accounts, known to the bus and polkitd through `testbus`'s namespace only.
pub const ALLOWED_UID: u32 = 64101;
pub const DENIED_UID: u32 = 64102;
pub const CONTROL_GID: u32 = 64100;

/// Who makes a call. `Allowed` is in group `lswcontrol`, which the test rule of `testbus` lets
/// do every `org.libreswan.connection.*` action. `Denied` gets the defaults of our policy,
/// `auth_admin`: there is no authentication agent on the bus, so polkit answers "not
/// authorised, but a challenge could authorise" (is_challenge), with or without the
/// AllowUserInteraction flag. polkit authorises root before any rule runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    Root,
    Allowed,
    Denied,
}

impl Caller {
    pub fn uid(self) -> u32 {
        match self {
            Caller::Root => 0,
            Caller::Allowed => ALLOWED_UID,
            Caller::Denied => DENIED_UID,
        }
    }

    /// The user name polkit sees (and logs) for this caller.
    pub fn user(self) -> &'static str {
        match self {
            Caller::Root => "root",
            Caller::Allowed => "lswallowed",
            Caller::Denied => "lswdenied",
        }
    }

    /// A command that runs `program` as this caller. Test users are not in the host's user
    /// database, so `setpriv` is given numeric ids and groups instead of `--init-groups`.
    pub fn command(self, program: impl AsRef<OsStr>) -> Command {
        let user_args: &[String] = &match self {
            Caller::Root => return Command::new(program),
            Caller::Allowed => [
                format!("--reuid={ALLOWED_UID}"),
                format!("--regid={ALLOWED_UID}"),
                format!("--groups={CONTROL_GID}"),
            ],
            Caller::Denied => [
                format!("--reuid={DENIED_UID}"),
                format!("--regid={DENIED_UID}"),
                "--clear-groups".to_string(),
            ],
        };
        let mut command = Command::new("setpriv");
        command.args(user_args).arg("--").arg(program);
        command
    }
}

/// Fails the test, with the reason, unless it runs as root.
pub fn require_root() {
    if !nix::unistd::geteuid().is_root() {
        panic!(
            "these tests must run as root: they start a private system bus with the real \
             polkitd, bind-mount test accounts into a private mount namespace and make calls \
             as other users (try `sudo -E cargo test`)"
        );
    }
}

/// Polls `condition` until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// `tests/support`, where `testbus` and `fake-whack` live.
pub fn support_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support")
}

/// Runs `testbus VERB DIR`; see that script for what each verb does.
pub fn testbus(verb: &str, dir: &Path) -> Output {
    Command::new(support_dir().join("testbus"))
        .arg(verb)
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run tests/support/testbus")
}

/// A private directory under /tmp. Not under $CARGO_TARGET_TMPDIR: the bus socket's path must
/// fit in 108 bytes, and test users must be able to reach it.
fn private_dir(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .expect("cannot create a directory in /tmp")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The contents of a file, or "" when it does not exist (yet).
fn read_or_empty(path: &Path) -> String {
    match fs::read(path) {
        Ok(bytes) => text(&bytes),
        Err(err) if err.kind() == ErrorKind::NotFound => String::new(),
        Err(err) => panic!("cannot read {}: {err}", path.display()),
    }
}

/// Whether a process is alive; a zombie is not, since it no longer runs.
pub fn process_running(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which ends at the last ')'.
        Ok(stat) => match stat.rsplit_once(')') {
            Some((_, rest)) => !matches!(rest.trim_start().chars().next(), Some('Z' | 'X')),
            None => true,
        },
        Err(_) => false,
    }
}

/// A private system bus with the real polkitd on it. Dropping it stops both.
pub struct TestBus {
    address: String,
    dir: TempDir,
}

impl TestBus {
    /// Starts dbus-daemon and polkitd in a fresh directory; returns once polkitd owns its name.
    pub fn start() -> TestBus {
        require_root();
        let dir = private_dir("lswdbus-bus.");
        let output = testbus("up", dir.path());
        if !output.status.success() {
            // testbus stops what it started when `up` fails; this covers an `up` cut short.
            testbus("down", dir.path());
            panic!(
                "testbus up failed ({}):\n{}{}",
                output.status,
                text(&output.stdout),
                text(&output.stderr)
            );
        }
        let address = text(&output.stdout).trim().to_string();
        assert!(
            address.starts_with("unix:path="),
            "testbus up printed {address:?}, not an address"
        );
        TestBus { address, dir }
    }

    /// `unix:path=DIR/system_bus_socket`
    pub fn address(&self) -> &str {
        &self.address
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops polkitd; returns once nobody owns `org.freedesktop.PolicyKit1`.
    pub fn stop_polkit(&self) {
        self.run_testbus("polkit-stop");
    }

    /// Starts polkitd again; returns once it owns `org.freedesktop.PolicyKit1`.
    pub fn start_polkit(&self) {
        self.run_testbus("polkit-start");
    }

    fn run_testbus(&self, verb: &str) {
        let output = testbus(verb, self.dir());
        assert!(
            output.status.success(),
            "testbus {verb} failed ({}): {}",
            output.status,
            text(&output.stderr)
        );
    }

    /// Everything polkitd printed, including the test rule's `libreswan-test: action=...
    /// user=... connection=... verb=... result=...` lines.
    pub fn polkit_log(&self) -> String {
        read_or_empty(&self.dir().join("polkitd.log"))
    }

    pub fn dbus_daemon_log(&self) -> String {
        read_or_empty(&self.dir().join("dbus-daemon.log"))
    }

    /// The pids `testbus` recorded; `None` once it stopped the daemon.
    pub fn dbus_daemon_pid(&self) -> Option<u32> {
        self.recorded_pid("dbus-daemon")
    }

    pub fn polkitd_pid(&self) -> Option<u32> {
        self.recorded_pid("polkitd")
    }

    fn recorded_pid(&self, name: &str) -> Option<u32> {
        let line = read_or_empty(&self.dir().join(format!("{name}.pid")));
        line.split_whitespace().next()?.parse().ok()
    }

    /// Runs `busctl --address=ADDR --json=short ARGS...` as `caller`.
    ///
    /// busctl reports a failed call as `Call failed: MESSAGE` without the error's name; use
    /// [`TestBus::dbus_send_as`] to check which error came back. busctl also sets the
    /// ALLOW_INTERACTIVE_AUTHORIZATION flag on calls unless given
    /// `--allow-interactive-authorization=no`.
    pub fn call_as(&self, caller: Caller, args: &[&str]) -> Output {
        caller
            .command("busctl")
            .arg(format!("--address={}", self.address))
            .arg("--json=short")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("cannot run busctl")
    }

    /// Runs `dbus-send --bus=ADDR --print-reply ARGS...` as `caller`. It names the error of a
    /// failed call (see [`dbus_error_name`]) and never asks for interactive authorisation.
    pub fn dbus_send_as(&self, caller: Caller, args: &[&str]) -> Output {
        caller
            .command("dbus-send")
            .arg(format!("--bus={}", self.address))
            .arg("--print-reply")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("cannot run dbus-send")
    }

    /// Runs `gdbus call --address ADDR --interactive --dest DEST --object-path PATH --method
    /// METHOD ARGS...` as `caller`. Like busctl it allows interactive authorisation, so polkit's
    /// "no" is final; unlike busctl it names the error of a failed call (see
    /// [`gdbus_error_name`]).
    pub fn gdbus_call_as(
        &self,
        caller: Caller,
        dest: &str,
        path: &str,
        method: &str,
        args: &[&str],
    ) -> Output {
        caller
            .command("gdbus")
            .args(["call", "--address", &self.address, "--interactive"])
            .args(["--dest", dest, "--object-path", path, "--method", method])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("cannot run gdbus (apt-get install libglib2.0-bin)")
    }

    /// Whether `name` has an owner on this bus.
    pub fn name_has_owner(&self, name: &str) -> bool {
        let output = self.call_as(
            Caller::Root,
            &[
                "call",
                "org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "NameHasOwner",
                "s",
                name,
            ],
        );
        json(&output)["data"][0]
            .as_bool()
            .expect("NameHasOwner returned no boolean")
    }

    /// The pid of the process that owns `name`, if anyone does.
    pub fn name_owner_pid(&self, name: &str) -> Option<u32> {
        let output = self.call_as(
            Caller::Root,
            &[
                "call",
                "org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "GetConnectionUnixProcessID",
                "s",
                name,
            ],
        );
        if !output.status.success() {
            return None;
        }
        let pid = json(&output)["data"][0].as_u64()?;
        u32::try_from(pid).ok()
    }

    /// The unique names of the connections that process `pid` has open.
    pub fn unique_names_of(&self, pid: u32) -> Vec<String> {
        let output = self.call_as(Caller::Root, &["list"]);
        let list = json(&output);
        list.as_array()
            .expect("busctl list returned no array")
            .iter()
            .filter(|entry| entry["pid"].as_u64() == Some(u64::from(pid)))
            .filter_map(|entry| entry["name"].as_str())
            .filter(|name| name.starts_with(':'))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for TestBus {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("--- dbus-daemon.log\n{}", self.dbus_daemon_log());
            eprintln!("--- polkitd.log\n{}", self.polkit_log());
        }
        let output = testbus("down", self.dir());
        if !output.status.success() {
            eprintln!("testbus down failed: {}", text(&output.stderr));
        }
    }
}

/// The JSON that `busctl --json=short` printed; fails the test if the call failed.
pub fn json(output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "busctl failed ({}): {}",
        output.status,
        text(&output.stderr)
    );
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|err| panic!("busctl printed no JSON ({err}): {}", text(&output.stdout)))
}

/// The D-Bus error name in a failed `dbus-send` call (`Error NAME: message` on stderr).
pub fn dbus_error_name(output: &Output) -> Option<String> {
    let stderr = text(&output.stderr);
    let rest = stderr
        .lines()
        .find_map(|line| line.strip_prefix("Error "))?;
    Some(rest.split(':').next()?.trim().to_string())
}

/// The D-Bus error name in a failed `gdbus call` (`Error: GDBus.Error:NAME: message`).
pub fn gdbus_error_name(output: &Output) -> Option<String> {
    let stderr = text(&output.stderr);
    let (_, rest) = stderr.split_once("GDBus.Error:")?;
    Some(rest.split(':').next()?.trim().to_string())
}

/// A bus connection held open by a long-lived process of `caller`, to serve as a polkit
/// subject. Dropping it ends the process.
pub struct Peer {
    child: Child,
    unique_name: String,
}

impl Peer {
    /// Starts `gdbus monitor` as `caller` and waits until its connection shows on the bus.
    /// (busctl and dbus-monitor do not do here: as root they become monitors, and monitors
    /// have no name that others can see.)
    pub fn connect(bus: &TestBus, caller: Caller) -> Peer {
        let child = caller
            .command("gdbus")
            .args(["monitor", "--address", bus.address()])
            .args(["--dest", "org.freedesktop.DBus"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run gdbus (apt-get install libglib2.0-bin)");
        let mut peer = Peer {
            child,
            unique_name: String::new(),
        };
        // setpriv execs gdbus, so the pid we spawned is the one on the bus.
        let pid = peer.child.id();
        let found = wait_until(TIMEOUT, || match bus.unique_names_of(pid).pop() {
            Some(name) => {
                peer.unique_name = name;
                true
            }
            None => false,
        });
        assert!(found, "gdbus (pid {pid}) as {caller:?} never connected");
        peer
    }

    pub fn unique_name(&self) -> &str {
        &self.unique_name
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Quotes `text` for a POSIX shell.
fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap_or_else(|err| panic!("cannot create {}: {err}", to.display()));
    let entries =
        fs::read_dir(from).unwrap_or_else(|err| panic!("cannot read {}: {err}", from.display()));
    for entry in entries {
        let entry = entry.expect("cannot read a directory entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target)
                .unwrap_or_else(|err| panic!("cannot copy {}: {err}", entry.path().display()));
        }
    }
}

/// The whack answers of one scenario of `tests/fixtures/fake-whack/`, copied into a temporary
/// directory that the test may change. See `tests/support/fake-whack` for the files.
pub struct FakeWhack {
    dir: TempDir,
}

impl FakeWhack {
    /// Copies `tests/fixtures/fake-whack/<scenario>/`, and creates `pluto.ctl` (pluto counts
    /// as running while it exists) and `whack`, which runs fake-whack on this directory.
    pub fn new(scenario: &str) -> FakeWhack {
        let dir = private_dir("lswdbus-whack.");
        let whack = FakeWhack { dir };
        whack.load_scenario(scenario);
        whack.set_pluto_running(true);

        let wrapper = format!(
            "#!/bin/sh\nFAKE_WHACK_DIR={} exec {} \"$@\"\n",
            sh_quote(&whack.dir().to_string_lossy()),
            sh_quote(&support_dir().join("fake-whack").to_string_lossy()),
        );
        fs::write(whack.whack(), wrapper).expect("cannot write the whack wrapper");
        fs::set_permissions(whack.whack(), fs::Permissions::from_mode(0o755))
            .expect("cannot make the whack wrapper executable");
        whack
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The program to give the service as `--whack`.
    pub fn whack(&self) -> PathBuf {
        self.dir().join("whack")
    }

    /// The path to give the service as `--ctlsocket`.
    pub fn ctlsocket(&self) -> PathBuf {
        self.dir().join("pluto.ctl")
    }

    /// `--whack PATH --ctlsocket PATH`, for [`Service::start`].
    pub fn service_args(&self) -> Vec<String> {
        vec![
            "--whack".to_string(),
            self.whack().to_string_lossy().into_owned(),
            "--ctlsocket".to_string(),
            self.ctlsocket().to_string_lossy().into_owned(),
        ]
    }

    /// Replaces the answers with those of another scenario, as if pluto's state changed.
    pub fn load_scenario(&self, scenario: &str) {
        let source = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/fake-whack")
            .join(scenario);
        assert!(
            source.is_dir(),
            "no fake-whack scenario {scenario:?} in {}",
            source.display()
        );
        // Answers the new scenario lacks must not linger from the old one.
        for entry in fs::read_dir(self.dir()).expect("cannot read the scenario directory") {
            let entry = entry.expect("cannot read a directory entry");
            let name = entry.file_name();
            if ["calls", "hang", "pluto.ctl", "whack"]
                .map(OsStr::new)
                .contains(&name.as_os_str())
            {
                continue;
            }
            let path = entry.path();
            let removed = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            removed.unwrap_or_else(|err| panic!("cannot remove {}: {err}", path.display()));
        }
        copy_dir(&source, self.dir());
    }

    /// Every call so far, one argument list per call, oldest first.
    pub fn calls(&self) -> Vec<Vec<String>> {
        let log = read_or_empty(&self.dir().join("calls"));
        log.lines()
            .map(|line| {
                let line = line.strip_suffix('\0').unwrap_or(line);
                line.split('\0').map(str::to_string).collect()
            })
            .collect()
    }

    /// Makes later calls hang until killed: only those with `verb` (e.g. "terminate",
    /// "status"), or every call when `verb` is `None`.
    pub fn set_hang(&self, verb: Option<&str>) {
        fs::write(self.dir().join("hang"), verb.unwrap_or("")).expect("cannot write the hang file");
    }

    pub fn clear_hang(&self) {
        match fs::remove_file(self.dir().join("hang")) {
            Ok(()) => {}
            Err(err) if err.kind() == ErrorKind::NotFound => {}
            Err(err) => panic!("cannot remove the hang file: {err}"),
        }
    }

    /// Whether whack finds pluto: without the control socket it answers like 4.10,
    /// `whack: Pluto is not running (no "PATH")` and exit status 33.
    pub fn set_pluto_running(&self, running: bool) {
        if running {
            File::create(self.ctlsocket()).expect("cannot create pluto.ctl");
        } else if let Err(err) = fs::remove_file(self.ctlsocket()) {
            assert_eq!(
                err.kind(),
                ErrorKind::NotFound,
                "cannot remove pluto.ctl: {err}"
            );
        }
    }
}

/// The service under test, running on a [`TestBus`]. Dropping it sends SIGTERM and waits.
pub struct Service<'bus> {
    bus: &'bus TestBus,
    child: Option<Child>,
    log: PathBuf,
}

impl<'bus> Service<'bus> {
    /// Starts `libreswan-dbus --bus ADDRESS ARGS...` and waits until it owns `org.libreswan`,
    /// which it does only once every object is published.
    pub fn start<I, S>(bus: &'bus TestBus, args: I) -> Service<'bus>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Self::start_with_env(bus, args, std::iter::empty::<(&str, &str)>())
    }

    /// Like [`Service::start`], with extra environment variables (e.g. `RUST_LOG`).
    pub fn start_with_env<I, S, E, K, V>(bus: &'bus TestBus, args: I, env: E) -> Service<'bus>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
        E: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let number = STARTED.fetch_add(1, Ordering::Relaxed);
        let log = bus.dir().join(format!("service-{number}.log"));
        let out = File::create(&log).expect("cannot create the service's log");
        let err = out.try_clone().expect("cannot share the service's log");

        let child = Command::new(env!("CARGO_BIN_EXE_libreswan-dbus"))
            .arg("--bus")
            .arg(bus.address())
            .args(args)
            // Anything that looks up "the system bus" must find the test bus, never the host's.
            .env("DBUS_SYSTEM_BUS_ADDRESS", bus.address())
            .envs(env)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("cannot start libreswan-dbus");
        let mut service = Service {
            bus,
            child: Some(child),
            log,
        };

        let pid = service.pid();
        let mut exited = None;
        let ready = wait_until(TIMEOUT, || {
            if let Ok(Some(status)) = service.child_mut().try_wait() {
                exited = Some(status);
                return true;
            }
            bus.name_owner_pid(SERVICE_NAME) == Some(pid)
        });
        if let Some(status) = exited {
            panic!("libreswan-dbus exited ({status}) before owning {SERVICE_NAME}");
        }
        assert!(
            ready,
            "libreswan-dbus did not own {SERVICE_NAME} within {TIMEOUT:?}"
        );
        service
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the service was stopped").id()
    }

    /// What the service wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        read_or_empty(&self.log)
    }

    /// Sends SIGTERM, waits for the service to exit and for the bus to release its name.
    pub fn stop(mut self) -> ExitStatus {
        self.terminate()
    }

    fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("the service was stopped")
    }

    fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the service was stopped");
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid out of range"));
        if let Ok(Some(status)) = child.try_wait() {
            return status;
        }
        kill(pid, Signal::SIGTERM).expect("cannot signal the service");

        let mut status = None;
        let exited = wait_until(TIMEOUT, || {
            status = child.try_wait().expect("cannot wait for the service");
            status.is_some()
        });
        if !exited {
            let _ = child.kill();
            let _ = child.wait();
            panic!("libreswan-dbus ignored SIGTERM for {TIMEOUT:?}; killed it");
        }
        // The bus notices the closed connection on its own time; a service started next must
        // not be mistaken for this one.
        let released = wait_until(TIMEOUT, || {
            self.bus.name_owner_pid(SERVICE_NAME) != Some(child.id())
        });
        assert!(
            released,
            "the bus still lists the stopped service as {SERVICE_NAME}"
        );
        status.expect("exit status")
    }
}

impl Drop for Service<'_> {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("--- libreswan-dbus log\n{}", self.log());
        }
        if self.child.is_some() {
            if thread::panicking() {
                // Clean up without a second panic, which would abort the test binary.
                if let Some(mut child) = self.child.take() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            } else {
                self.terminate();
            }
        }
    }
}

/// Calls on the service under test, as the tests of every file make them.
pub mod calls {
    use super::{Caller, FakeWhack, TestBus, dbus_error_name, json};
    use std::process::Output;

    pub const CONNECTION: &str = "org.libreswan.Connection";
    pub const MANAGER: &str = "org.libreswan.Manager";

    /// A property read with busctl as `caller`.
    pub fn property(
        bus: &TestBus,
        caller: Caller,
        path: &str,
        interface: &str,
        name: &str,
    ) -> serde_json::Value {
        let output = bus.call_as(
            caller,
            &["get-property", "org.libreswan", path, interface, name],
        );
        json(&output)["data"].clone()
    }

    /// A property of a connection, read as root.
    pub fn connection_property(bus: &TestBus, path: &str, name: &str) -> serde_json::Value {
        property(bus, Caller::Root, path, CONNECTION, name)
    }

    /// A method of a connection called through busctl, which allows interactive
    /// authorisation.
    pub fn call(bus: &TestBus, caller: Caller, path: &str, method: &str) -> Output {
        // A real pluto may take its time (a dead peer, a loaded machine): longer than busctl's
        // default 25 s, shorter than a test's patience.
        bus.call_as(
            caller,
            &[
                "--timeout=60",
                "call",
                "org.libreswan",
                path,
                CONNECTION,
                method,
            ],
        )
    }

    /// A method of a connection called through dbus-send, which names the error and does
    /// not allow interactive authorisation. Returns the error's name, or `None` on success.
    pub fn call_error(bus: &TestBus, caller: Caller, path: &str, method: &str) -> Option<String> {
        let member = format!("{CONNECTION}.{method}");
        let output = bus.dbus_send_as(caller, &["--dest=org.libreswan", path, &member]);
        dbus_error_name(&output)
    }

    /// Calls a method of a connection as [`call_error`] does and fails unless the service
    /// answered with the error `name` and a message containing `words`.
    pub fn assert_refused(
        bus: &TestBus,
        caller: Caller,
        path: &str,
        method: &str,
        name: &str,
        words: &str,
    ) {
        let member = format!("{CONNECTION}.{method}");
        let output = bus.dbus_send_as(caller, &["--dest=org.libreswan", path, &member]);
        assert_eq!(dbus_error_name(&output).as_deref(), Some(name), "{method}");
        let said = stderr(&output);
        assert!(said.contains(words), "{method}: {said}");
    }

    pub fn stderr(output: &Output) -> String {
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    /// The calls the stand-in whack got with `option` (e.g. `--terminate`), full argv each.
    pub fn calls_with(whack: &FakeWhack, option: &str) -> Vec<Vec<String>> {
        whack
            .calls()
            .into_iter()
            .filter(|call| call.iter().any(|arg| arg == option))
            .collect()
    }

    /// The object paths below /org/libreswan, one per line, as busctl prints them.
    pub fn tree(bus: &TestBus, caller: Caller) -> String {
        let output = bus.call_as(caller, &["--list", "tree", "org.libreswan"]);
        assert!(output.status.success(), "busctl tree: {}", stderr(&output));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

/// Signals the service sends on `interface`, from a bus connection of the test's own: the
/// `PropertiesChanged` of one object (`path`), or every ObjectManager signal (`path` `None`).
pub async fn service_signals(
    bus: &TestBus,
    interface: &str,
    path: Option<&str>,
) -> zbus::MessageStream {
    let client = zbus::connection::Builder::address(bus.address())
        .build()
        .await
        .expect("cannot connect to the test bus");
    let mut rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .sender(SERVICE_NAME)
        .interface(interface);
    if let Some(path) = path {
        rule = rule.path(path);
    }
    let rule = rule.build().expect("invalid match rule");
    zbus::MessageStream::for_match_rule(rule, &client, None)
        .await
        .expect("cannot subscribe to the service's signals")
}
