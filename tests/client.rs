//! The client library (`libreswan_dbus::client`) and `libreswan-dbusctl` against the real
//! service on a private system bus with the real polkitd; pluto replaced by the stand-in whack.
//! The command-line tests run the tool as root, as a user polkit allows and as one it refuses.

mod support;

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    thread,
    time::Duration,
};

use futures_util::StreamExt;
use libreswan_dbus::{
    client::{Client, Error, Interaction, State, Verb},
    options::BusChoice,
};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use support::{Caller, FakeWhack, Service, TestBus, calls::calls_with};

const CTL: &str = env!("CARGO_BIN_EXE_libreswan-dbusctl");

fn start<'bus>(bus: &'bus TestBus, whack: &FakeWhack, extra: &[&str]) -> Service<'bus> {
    let mut args = whack.service_args();
    args.extend(["--poll-interval", "0.5"].map(String::from));
    args.extend(extra.iter().map(|arg| arg.to_string()));
    Service::start(bus, args)
}

/// `libreswan-dbusctl --bus ADDRESS ARGS...` as `caller`, with no terminal: no agent starts.
fn ctl_command(bus: &TestBus, caller: Caller, args: &[&str]) -> Command {
    let mut command = caller.command(CTL);
    command
        .arg("--bus")
        .arg(bus.address())
        .args(args)
        .stdin(Stdio::null());
    command
}

fn ctl(bus: &TestBus, caller: Caller, args: &[&str]) -> Output {
    ctl_command(bus, caller, args)
        .output()
        .expect("cannot run libreswan-dbusctl")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn code(output: &Output) -> Option<i32> {
    output.status.code()
}

fn succeeded(output: &Output) -> String {
    assert_eq!(
        code(output),
        Some(0),
        "libreswan-dbusctl failed: {}",
        stderr(output)
    );
    stdout(output)
}

/// The `Property=value` lines of `show`.
fn show(bus: &TestBus, caller: Caller, name: &str) -> Vec<(String, String)> {
    let output = ctl(bus, caller, &["show", name]);
    succeeded(&output)
        .lines()
        .map(|line| {
            let (key, value) = line.split_once('=').expect("a Property=value line");
            (key.to_owned(), value.to_owned())
        })
        .collect()
}

fn value<'a>(lines: &'a [(String, String)], key: &str) -> &'a str {
    lines
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {key}= in {lines:?}"))
}

/// The words of the `list` row of connection `name`.
fn list_row(list: &str, name: &str) -> Vec<String> {
    list.lines()
        .find(|line| line.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row for {name} in:\n{list}"))
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

async fn client(bus: &TestBus) -> Client {
    Client::connect(&BusChoice::Address(bus.address().to_owned()))
        .await
        .expect("cannot connect the client")
}

#[test]
fn list_and_show_read_what_pluto_says_for_every_user() {
    support::require_root();
    let bus = TestBus::start();
    let whack = FakeWhack::new("two-up");
    let _service = start(&bus, &whack, &[]);

    for caller in [Caller::Root, Caller::Allowed, Caller::Denied] {
        let list = succeeded(&ctl(&bus, caller, &["list"]));
        let header: Vec<&str> = list.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(header, ["NAME", "STATE", "ROUTED", "PEER", "IN", "OUT"]);
        assert_eq!(
            list_row(&list, "westnet-eastnet"),
            [
                "westnet-eastnet",
                "up",
                "yes",
                "192.0.2.2",
                "0",
                "B",
                "0",
                "B"
            ]
        );
        assert_eq!(list_row(&list, "never-up")[1..3], ["down", "no"]);
        assert_eq!(list_row(&list, "routed-ondemand")[1..3], ["down", "yes"]);
        assert_eq!(list.lines().count(), 5, "{list}");

        let lines = show(&bus, caller, "subnet-a");
        assert_eq!(value(&lines, "Name"), "subnet-a");
        assert_eq!(
            value(&lines, "Path"),
            "/org/libreswan/Connection/subnet_2da"
        );
        assert_eq!(value(&lines, "State"), "up");
        assert_eq!(value(&lines, "LocalSubnets"), "10.1.0.0/24");
        assert_eq!(value(&lines, "RemoteSubnets"), "10.2.0.0/24");
        assert_eq!(value(&lines, "IkeVersion"), "2");
        assert_eq!(value(&lines, "BytesIn"), "0");
    }

    // Without --bus, the system bus is the one DBUS_SYSTEM_BUS_ADDRESS names.
    let output = Caller::Denied
        .command(CTL)
        .arg("list")
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus.address())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(succeeded(&output).contains("westnet-eastnet"));

    let status = succeeded(&ctl(&bus, Caller::Denied, &["status"]));
    assert!(status.contains("PlutoVersion=4.10\n"), "{status}");
    assert!(status.contains("PlutoRunning=yes\n"), "{status}");
    assert!(
        status.contains(&format!("Version={}\n", env!("CARGO_PKG_VERSION"))),
        "{status}"
    );
}

#[test]
fn down_by_root_and_by_an_allowed_user_takes_the_tunnel_down_and_keeps_it() {
    support::require_root();
    let bus = TestBus::start();
    let whack = FakeWhack::new("two-up");
    let _service = start(&bus, &whack, &[]);

    let output = ctl(&bus, Caller::Allowed, &["down", "westnet-eastnet"]);
    assert_eq!(succeeded(&output), "");
    assert_eq!(stderr(&output), "");
    let lines = show(&bus, Caller::Allowed, "westnet-eastnet");
    assert_eq!(value(&lines, "State"), "down");
    assert_eq!(value(&lines, "Routed"), "yes", "Down keeps the route");
    assert!(
        bus.polkit_log().contains(
            "action=org.libreswan.connection.down user=lswallowed connection=westnet-eastnet \
             verb=down"
        ),
        "{}",
        bus.polkit_log()
    );

    let terminated: Vec<String> = calls_with(&whack, "--terminate")
        .into_iter()
        .map(|call| call[3].clone())
        .collect();
    assert_eq!(terminated, ["westnet-eastnet"]);

    // Root needs no rule; a connection without SAs stays as it was.
    succeeded(&ctl(&bus, Caller::Root, &["down", "never-up"]));
    assert_eq!(
        value(&show(&bus, Caller::Root, "never-up"), "State"),
        "down"
    );
}

#[test]
fn a_refused_user_gets_the_services_words_and_status_3() {
    support::require_root();
    let bus = TestBus::start();
    let whack = FakeWhack::new("two-up");
    let _service = start(&bus, &whack, &[]);

    // The call allows interaction, but no agent can ask: polkit's answer is a plain no.
    let output = ctl(&bus, Caller::Denied, &["down", "westnet-eastnet"]);
    assert_eq!(code(&output), Some(3), "{}", stderr(&output));
    assert_eq!(
        stderr(&output),
        "libreswan-dbusctl: not authorized to down westnet-eastnet\n"
    );

    // Without the flag, the service says a password could have helped.
    let output = ctl(
        &bus,
        Caller::Denied,
        &["--no-ask-password", "down", "westnet-eastnet"],
    );
    assert_eq!(code(&output), Some(3), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("authentication is required to down westnet-eastnet"),
        "{}",
        stderr(&output)
    );

    for verb in ["up", "route", "unroute", "delete"] {
        let output = ctl(&bus, Caller::Denied, &[verb, "never-up"]);
        assert_eq!(code(&output), Some(3), "{verb}: {}", stderr(&output));
    }
    assert!(calls_with(&whack, "--name").is_empty(), "pluto was asked");
}

#[test]
fn an_unknown_name_is_status_4_with_the_services_words() {
    support::require_root();
    let bus = TestBus::start();
    let whack = FakeWhack::new("two-up");
    let _service = start(&bus, &whack, &[]);

    for args in [["show", "no-such-conn"], ["down", "no-such-conn"]] {
        let output = ctl(&bus, Caller::Allowed, &args);
        assert_eq!(code(&output), Some(4), "{args:?}: {}", stderr(&output));
        assert_eq!(
            stderr(&output),
            "libreswan-dbusctl: pluto has no connection named \"no-such-conn\"\n"
        );
    }
}

#[test]
fn failures_of_pluto_or_the_service_have_their_own_statuses() {
    support::require_root();
    let bus = TestBus::start();

    // No service on the bus, and no way to start it there.
    let output = ctl(&bus, Caller::Root, &["list"]);
    assert_eq!(code(&output), Some(5), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("org.libreswan"),
        "{}",
        stderr(&output)
    );

    let whack = FakeWhack::new("two-up");
    let _service = start(&bus, &whack, &[]);

    // Failed: pluto's own words. (In this scenario subnet-a's SA survives a terminate.)
    let output = ctl(&bus, Caller::Root, &["down", "subnet-a"]);
    assert_eq!(code(&output), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).starts_with("libreswan-dbusctl: pluto refused to down \"subnet-a\""),
        "{}",
        stderr(&output)
    );

    // Busy: unroute is refused while the tunnel has SAs.
    let output = ctl(&bus, Caller::Root, &["unroute", "westnet-eastnet"]);
    assert_eq!(code(&output), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("bring it down first"),
        "{}",
        stderr(&output)
    );

    whack.set_pluto_running(false);
    let output = ctl(&bus, Caller::Root, &["down", "westnet-eastnet"]);
    assert_eq!(code(&output), Some(5), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("pluto is not running"),
        "{}",
        stderr(&output)
    );

    // No bus at all.
    let output = Command::new(CTL)
        .args(["--bus", "unix:path=/nonexistent/bus", "list"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&output), Some(5), "{}", stderr(&output));
}

#[test]
fn usage_errors_are_status_2() {
    for args in [
        &[][..],
        &["down"][..],
        &["frob", "x"][..],
        &["list", "--bogus"][..],
    ] {
        let output = Command::new(CTL).args(args).output().unwrap();
        assert_eq!(code(&output), Some(2), "{args:?}: {}", stderr(&output));
    }
    let help = Command::new(CTL).arg("--help").output().unwrap();
    assert!(succeeded(&help).contains("Exit status:"));
}

/// `libreswan-dbusctl watch` as `caller`, its lines sent to the returned channel.
struct Watch {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Watch {
    fn start(bus: &TestBus, caller: Caller) -> Watch {
        let mut child = ctl_command(bus, caller, &["watch"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot run libreswan-dbusctl watch");
        // It says so on stderr once its match rules are in place.
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut first = String::new();
        stderr.read_line(&mut first).unwrap();
        assert!(first.contains("watching org.libreswan"), "{first}");

        let (sender, lines) = mpsc::channel();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Watch { child, lines }
    }

    /// The first line containing every one of `words`, skipping others.
    fn line_with(&self, words: &[&str]) -> String {
        let deadline = std::time::Instant::now() + support::TIMEOUT;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if words.iter().all(|word| line.contains(word)) => return line,
                Ok(line) => seen.push(line),
                Err(_) => break,
            }
        }
        panic!("watch printed no line with {words:?}; it printed {seen:?}");
    }

    /// SIGTERM, as a service manager or `timeout` would send; watch exits 0.
    fn stop(mut self) {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        kill(pid, Signal::SIGTERM).unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "watch exited with {status}");
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `2026-12-03T14:30:01.123+00:00`
fn is_timestamp(word: &str) -> bool {
    let shape = "dddd-dd-ddTdd:dd:dd.ddd+dd:dd";
    word.len() == shape.len()
        && word.chars().zip(shape.chars()).all(|(c, s)| match s {
            'd' => c.is_ascii_digit(),
            '+' => c == '+' || c == '-',
            other => c == other,
        })
}

#[test]
fn watch_prints_each_change_with_a_timestamp() {
    support::require_root();
    let bus = TestBus::start();
    let whack = FakeWhack::new("two-up");
    let _service = start(&bus, &whack, &["--list-interval", "1"]);
    let watch = Watch::start(&bus, Caller::Denied);

    succeeded(&ctl(&bus, Caller::Allowed, &["down", "westnet-eastnet"]));
    let line = watch.line_with(&["connection westnet-eastnet changed", "State=down"]);
    let words: Vec<&str> = line.split_whitespace().collect();
    assert!(is_timestamp(words[0]), "{line}");
    assert_eq!(
        words[1..],
        ["connection", "westnet-eastnet", "changed", "State=down"]
    );

    // In this scenario westnet-eastnet is gone and a connection with an odd name came.
    whack.load_scenario("escaped-name");
    watch.line_with(&["connection westnet-eastnet removed"]);
    watch.line_with(&["added", "State="]);
    watch.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_library_reads_typed_connections_and_names_each_error() {
    support::require_root();
    let bus = TestBus::start();
    let whack = FakeWhack::new("two-up");
    let _service = start(&bus, &whack, &[]);
    let client = client(&bus).await;

    let connections = client.connections().await.unwrap();
    let names: Vec<&str> = connections.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["never-up", "routed-ondemand", "subnet-a", "westnet-eastnet"]
    );
    let westnet = &connections[3];
    assert_eq!(westnet.state, State::Up);
    assert!(westnet.routed);
    assert_eq!(westnet.local_id, "@west");
    assert_eq!(westnet.remote_address, "192.0.2.2");
    assert_eq!(westnet.ike_version, 2);
    assert_eq!(
        westnet.path.as_str(),
        "/org/libreswan/Connection/westnet_2deastnet"
    );
    assert_eq!(
        client.connection_info("westnet-eastnet").await.unwrap(),
        *westnet
    );

    let service = client.service_info().await.unwrap();
    assert_eq!(service.pluto_version, "4.10");
    assert!(service.pluto_running);
    assert_eq!(service.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(service.control_socket, whack.ctlsocket().to_string_lossy());

    // A typed proxy follows a property; the counters are read each time.
    let tunnel = client.connection("westnet-eastnet").await.unwrap();
    assert_eq!(tunnel.state().await.unwrap(), "up");
    assert_eq!(tunnel.bytes_in().await.unwrap(), 0);
    let mut states = tunnel.receive_state_changed().await;
    // The first item is the value when the stream starts.
    let _ = tokio::time::timeout(Duration::from_millis(500), states.next()).await;
    client
        .run(Verb::Down, "westnet-eastnet", Interaction::Deny)
        .await
        .unwrap();
    let changed = tokio::time::timeout(support::TIMEOUT, async {
        while let Some(change) = states.next().await {
            if change.get().await.unwrap() == "down" {
                return;
            }
        }
    })
    .await;
    assert!(changed.is_ok(), "no State change to down");

    match client
        .run(Verb::Down, "no-such-conn", Interaction::Deny)
        .await
    {
        Err(Error::UnknownConnection(message)) => {
            assert_eq!(message, "pluto has no connection named \"no-such-conn\"")
        }
        other => panic!("{other:?}"),
    }
    match client
        .run(Verb::Unroute, "subnet-a", Interaction::Deny)
        .await
    {
        Err(err @ Error::Busy(_)) => {
            assert_eq!(err.name(), Some("org.libreswan.Error.Busy"));
            assert!(err.to_string().contains("bring it down first"), "{err}");
        }
        other => panic!("{other:?}"),
    }
}

/// `libreswan-dbusctl --bus ADDRESS ARGS...` as `caller` on a terminal of its own (`script`
/// gives it one), with the terminal's input and output piped to the test.
struct OnTerminal {
    child: Child,
    output: mpsc::Receiver<u8>,
    seen: String,
}

impl OnTerminal {
    fn start(bus: &TestBus, caller: Caller, args: &[&str]) -> OnTerminal {
        let mut line = format!("exec {CTL} --bus {}", bus.address());
        for arg in args {
            line.push(' ');
            line.push_str(arg);
        }
        let mut child = caller
            .command("script")
            .args(["--quiet", "--return", "--command", &line, "/dev/null"])
            .env("SHELL", "/bin/sh")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run script (apt-get install bsdutils)");
        let (sender, output) = mpsc::channel();
        let mut stdout = child.stdout.take().unwrap();
        thread::spawn(move || {
            let mut byte = [0];
            while let Ok(1) = std::io::Read::read(&mut stdout, &mut byte) {
                if sender.send(byte[0]).is_err() {
                    break;
                }
            }
        });
        OnTerminal {
            child,
            output,
            seen: String::new(),
        }
    }

    /// Waits until the terminal shows `text`; returns everything shown so far.
    fn wait_for(&mut self, text: &str) -> &str {
        let deadline = std::time::Instant::now() + support::TIMEOUT;
        while !self.seen.contains(text) {
            let left = deadline
                .checked_duration_since(std::time::Instant::now())
                .unwrap_or_else(|| panic!("the terminal never showed {text:?}:\n{}", self.seen));
            match self.output.recv_timeout(left) {
                Ok(byte) => self.seen.push(char::from(byte)),
                Err(_) => panic!("the terminal never showed {text:?}:\n{}", self.seen),
            }
        }
        &self.seen
    }

    /// Ends the terminal's input, waits for the command, and returns its exit status and
    /// everything the terminal showed.
    fn finish(mut self) -> (Option<i32>, String) {
        drop(self.child.stdin.take());
        let status = self.child.wait().unwrap();
        while let Ok(byte) = self.output.recv_timeout(Duration::from_secs(1)) {
            self.seen.push(char::from(byte));
        }
        (status.code(), std::mem::take(&mut self.seen))
    }
}

impl Drop for OnTerminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn on_a_terminal_polkit_asks_for_a_password_there() {
    support::require_root();
    let bus = TestBus::start();
    let whack = FakeWhack::new("two-up");
    let _service = start(&bus, &whack, &[]);

    // polkit asks pkttyagent, which libreswan-dbusctl started for itself on the terminal.
    let mut terminal = OnTerminal::start(&bus, Caller::Denied, &["down", "westnet-eastnet"]);
    let shown = terminal.wait_for("Password:");
    assert!(
        shown.contains("AUTHENTICATING FOR org.libreswan.connection.down"),
        "{shown}"
    );
    assert!(
        shown
            .contains("Authentication is required to take down the VPN connection westnet-eastnet"),
        "{shown}"
    );

    // No password: polkit's answer is no, and the tool says so as the service did.
    let (status, shown) = terminal.finish();
    assert_eq!(status, Some(3), "{shown}");
    assert!(
        shown.contains("libreswan-dbusctl: not authorized to down westnet-eastnet"),
        "{shown}"
    );
    assert!(calls_with(&whack, "--terminate").is_empty());

    // Told not to ask, it starts no agent and fails at once.
    let terminal = OnTerminal::start(
        &bus,
        Caller::Denied,
        &["--no-ask-password", "down", "westnet-eastnet"],
    );
    let (status, shown) = terminal.finish();
    assert_eq!(status, Some(3), "{shown}");
    assert!(!shown.contains("AUTHENTICATING"), "{shown}");
    assert!(
        shown.contains("authentication is required to down westnet-eastnet"),
        "{shown}"
    );
}
