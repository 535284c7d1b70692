//! End to end: the service against real pluto, on a private system bus with the real polkitd,
//! called by processes that really run as other users. pluto is the lab's (`scripts/lab`): the
//! local pluto the service talks to, and a peer pluto that answers it.
//!
//! These tests need the lab, so a plain `cargo test` skips them. `scripts/test` runs them once
//! per pluto flavour:
//!
//! ```sh
//! scripts/lab up --pluto 5 --no-service
//! eval "$(scripts/lab env)"
//! cargo test --test e2e -- --ignored --test-threads=1
//! scripts/lab down
//! ```
//!
//! Each test starts its own bus, polkitd and service, and leaves pluto as it found it: it takes
//! down what it brought up and deletes what it loaded. They share one pluto, hence one thread.

mod support;

use std::{
    collections::HashMap,
    env,
    path::Path,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use serde_json::{Value, json};
use support::{
    Caller, Service, TIMEOUT, TestBus,
    calls::{
        CONNECTION, MANAGER, assert_refused, call, call_error, connection_property, property,
        stderr,
    },
    dbus_error_name, gdbus_error_name, process_running, wait_until,
};
use zbus::MessageStream;

/// Connections of `lab/conf/local.conf.in`, and their object paths.
const WESTNET: &str = "westnet-eastnet";
const WESTNET_PATH: &str = "/org/libreswan/Connection/westnet_2deastnet";
const SUBNET_A: &str = "subnet-a";
const SUBNET_A_PATH: &str = "/org/libreswan/Connection/subnet_2da";
const ROUTED: &str = "routed-ondemand";
const ROUTED_PATH: &str = "/org/libreswan/Connection/routed_2dondemand";
const ESCAPED_PATH: &str = "/org/libreswan/Connection/_2dlab_2etunnel_2d_c3_bc";
const SPARE_PATH: &str = "/org/libreswan/Connection/spare";

/// The subnets of routed-ondemand, whose trap policy pluto installs when it loads it.
const ROUTED_SRC: &str = "10.1.1.0/24";
const ROUTED_DST: &str = "10.2.1.0/24";

/// A change the service learns of from a full listing must show within this time when the
/// listing runs every second: a few listings, even on a loaded machine, and far less than the
/// minutes the listings may be apart by default with many connections.
const WITHIN_LISTINGS: Duration = Duration::from_secs(10);

/// The lab that `scripts/lab up` started, as `scripts/lab env` describes it.
struct Lab {
    dir: String,
    whack: String,
    ctl: String,
    peer_ctl: String,
    local_ns: String,
    pluto_version: String,
    connections: Vec<String>,
    escaped: String,
    spare: String,
}

impl Lab {
    /// Reads `LAB_*`; fails with what to do when they are missing or pluto is not running.
    fn from_env() -> Lab {
        support::require_root();
        let var = |name: &str| {
            env::var(name).unwrap_or_else(|_| {
                panic!(
                    "{name} is not set: these tests need the pluto lab. Run scripts/test, or \
                     scripts/lab up --no-service && eval \"$(scripts/lab env)\" && \
                     cargo test --test e2e -- --ignored --test-threads=1"
                )
            })
        };
        let lab = Lab {
            dir: var("LAB_DIR"),
            whack: var("LAB_WHACK"),
            ctl: var("LAB_CTL"),
            peer_ctl: var("LAB_PEER_CTL"),
            local_ns: var("LAB_LOCAL_NS"),
            pluto_version: var("LAB_PLUTO_VERSION"),
            connections: var("LAB_CONNS")
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            escaped: var("LAB_ESCAPED_CONN"),
            spare: var("LAB_SPARE_CONN"),
        };
        assert!(
            Path::new(&lab.ctl).exists(),
            "the lab's local pluto is not running: {} does not exist (scripts/lab status; \
             scripts/lab pluto-start starts it)",
            lab.ctl
        );
        lab
    }

    /// Starts the service against the lab's local pluto, reading its SAs every half second.
    fn start_service<'bus>(&self, bus: &'bus TestBus, extra: &[&str]) -> Service<'bus> {
        let mut args = vec![
            "--whack",
            &self.whack,
            "--ctlsocket",
            &self.ctl,
            "--poll-interval",
            "0.5",
        ];
        args.extend(extra);
        Service::start(bus, args)
    }

    /// `whack --ctlsocket LAB_CTL ARGS...`; `None` only when whack cannot be run at all.
    fn try_whack(&self, args: &[&str]) -> Option<Output> {
        Command::new(&self.whack)
            .arg("--ctlsocket")
            .arg(&self.ctl)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .ok()
    }

    /// `whack --ctlsocket LAB_PEER_CTL ARGS...`: the peer's pluto.
    fn peer_whack(&self, args: &[&str]) -> Output {
        Command::new(&self.whack)
            .arg("--ctlsocket")
            .arg(&self.peer_ctl)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|err| panic!("cannot run {}: {err}", self.whack))
    }

    fn whack(&self, args: &[&str]) -> Output {
        self.try_whack(args)
            .unwrap_or_else(|| panic!("cannot run {}", self.whack))
    }

    /// The lines of a whack listing (`--showstates`, `--trafficstatus`) about `connection`.
    fn lines_about(&self, listing: &str, connection: &str) -> Vec<String> {
        let output = self.whack(&[listing]);
        assert!(
            output.status.success(),
            "whack {listing} failed: {}",
            text(&output.stderr)
        );
        let quoted = format!("\"{connection}\"");
        text(&output.stdout)
            .lines()
            .filter(|line| line.contains(&quoted))
            .map(str::to_owned)
            .collect()
    }

    /// The serial numbers (`#N`) of `connection`'s established Child SAs.
    fn child_sas(&self, connection: &str) -> Vec<String> {
        self.lines_about("--showstates", connection)
            .iter()
            .filter(|line| line.contains("ESTABLISHED_CHILD_SA"))
            .filter_map(|line| {
                let line = line.strip_prefix("000 ").unwrap_or(line);
                Some(line.split(':').next()?.to_owned())
            })
            .collect()
    }

    /// Fails unless pluto lists no SA of `connection` at all.
    fn assert_no_sa(&self, connection: &str) {
        for listing in ["--showstates", "--trafficstatus"] {
            let left = self.lines_about(listing, connection);
            assert!(
                left.is_empty(),
                "whack {listing} still shows {connection}:\n{}",
                left.join("\n")
            );
        }
    }

    /// Whether pluto holds a kernel policy for `connection`: its routing in `whack --status`
    /// is anything but `unrouted`.
    fn routed_in_pluto(&self, connection: &str) -> bool {
        let Some(output) = self.try_whack(&["--status"]) else {
            return false;
        };
        let prefix = format!("\"{connection}\": ");
        text(&output.stdout)
            .lines()
            .map(|line| line.strip_prefix("000 ").unwrap_or(line))
            // The topology line: "NAME": LEFT...RIGHT; ROUTING; ...
            .find(|line| line.starts_with(&prefix) && line.contains("..."))
            .is_some_and(|line| !line.contains("; unrouted;"))
    }

    /// Brings `connection` up with whack, as `ipsec up` does: the service has no Up() yet.
    fn bring_up(&self, connection: &str) {
        let output = self.whack(&["--name", connection, "--initiate"]);
        let said = text(&output.stdout);
        assert!(
            said.contains("established Child SA"),
            "whack --initiate did not bring {connection} up ({}):\n{said}{}",
            output.status,
            text(&output.stderr)
        );
    }

    /// Brings `connection` up; the guard takes it down again.
    fn initiate(&self, connection: &str) -> Restore<'_> {
        let guard = self.restore_on_drop(connection);
        self.bring_up(connection);
        guard
    }

    /// A guard that leaves `connection` as it is now, SAs and route, when dropped.
    fn restore_on_drop(&self, connection: &str) -> Restore<'_> {
        Restore {
            lab: self,
            connection: connection.to_owned(),
            was_routed: self.routed_in_pluto(connection),
        }
    }

    /// Has the peer connect to the template `rw`, which makes an instance of it here. When the
    /// guard is dropped the peer takes its side down, so it cannot come back as another
    /// instance in a later test, and then `rw` is put back as it was here.
    fn peer_connects_to_rw(&self) -> PeerOnRw<'_> {
        let restore = self.restore_on_drop("rw");
        let output = self.peer_whack(&["--name", "rw", "--initiate"]);
        assert!(
            text(&output.stdout).contains("established Child SA"),
            "the peer did not connect to rw:\n{}",
            text(&output.stdout)
        );
        PeerOnRw {
            lab: self,
            _restore: restore,
        }
    }

    /// Runs `scripts/lab VERB [NAME] --dir LAB_DIR`.
    fn script(&self, verb: &str, name: Option<&str>) -> Output {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/lab");
        let mut command = Command::new(&script);
        command.arg(verb).arg("--dir").arg(&self.dir);
        if let Some(name) = name {
            command.arg("--").arg(name);
        }
        let output = command
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|err| panic!("cannot run {}: {err}", script.display()));
        assert!(
            output.status.success(),
            "scripts/lab {verb} failed ({}):\n{}{}",
            output.status,
            text(&output.stdout),
            text(&output.stderr)
        );
        output
    }

    /// The kernel's outbound policy from `src` to `dst` in the local namespace, as
    /// `ip xfrm policy` prints it.
    fn outbound_policy(&self, src: &str, dst: &str) -> Option<String> {
        let output = Command::new("ip")
            .args(["-n", &self.local_ns, "xfrm", "policy"])
            .output()
            .expect("cannot run ip");
        assert!(output.status.success(), "{}", text(&output.stderr));
        let head = format!("src {src} dst {dst}");
        // Each policy starts on an unindented line; its details follow, indented.
        let mut policies: Vec<String> = Vec::new();
        for line in text(&output.stdout).lines() {
            match policies.last_mut() {
                Some(policy) if line.starts_with(char::is_whitespace) => {
                    policy.push('\n');
                    policy.push_str(line);
                }
                _ => policies.push(line.to_owned()),
            }
        }
        policies
            .into_iter()
            .find(|policy| policy.starts_with(&head) && policy.contains("dir out"))
    }
}

/// Puts a connection back as it was: takes down its SAs and, if it had no route before, the
/// route that pluto 4.10 leaves behind when it terminates a connection it initiated.
struct Restore<'lab> {
    lab: &'lab Lab,
    connection: String,
    was_routed: bool,
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        let name = self.connection.as_str();
        self.lab.try_whack(&["--name", name, "--terminate"]);
        if !self.was_routed && self.lab.routed_in_pluto(name) {
            self.lab.try_whack(&["--name", name, "--unroute"]);
        }
    }
}

/// The peer's side of `rw`, taken down when dropped; then `_restore` puts this side back.
struct PeerOnRw<'lab> {
    lab: &'lab Lab,
    _restore: Restore<'lab>,
}

impl Drop for PeerOnRw<'_> {
    fn drop(&mut self) {
        let _ = self.lab.peer_whack(&["--name", "rw", "--terminate"]);
    }
}

/// Deletes a connection from pluto when dropped; for connections a test loaded.
struct Unload<'lab> {
    lab: &'lab Lab,
    connection: String,
}

impl Drop for Unload<'_> {
    fn drop(&mut self) {
        self.lab
            .try_whack(&["--name", &self.connection, "--delete"]);
    }
}

/// Starts the local pluto again when dropped, unless it runs.
struct RestartPluto<'lab> {
    lab: &'lab Lab,
}

impl Drop for RestartPluto<'_> {
    fn drop(&mut self) {
        if !Path::new(&self.lab.ctl).exists() {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/lab");
            let _ = Command::new(script)
                .args(["pluto-start", "--dir", &self.lab.dir])
                .stdin(Stdio::null())
                .output();
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn state(bus: &TestBus, path: &str) -> Value {
    connection_property(bus, path, "State")
}

fn pluto_running(bus: &TestBus) -> Value {
    property(bus, Caller::Root, "/org/libreswan", MANAGER, "PlutoRunning")
}

/// Waits until the connection at `path` shows `expected` as its State.
fn wait_for_state(bus: &TestBus, path: &str, expected: &str) {
    let mut last = Value::Null;
    let reached = wait_until(TIMEOUT, || {
        last = state(bus, path);
        last == expected
    });
    assert!(
        reached,
        "State of {path} stayed {last}, not {expected:?}, for {TIMEOUT:?}"
    );
}

/// The object paths the service serves. busctl introspects them one by one, so an object
/// removed during the walk makes it fail: that walk is tried again.
fn tree(bus: &TestBus) -> Vec<String> {
    let walk = || bus.call_as(Caller::Root, &["--list", "tree", "org.libreswan"]);
    let mut output = walk();
    for _ in 0..3 {
        if output.status.success() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        output = walk();
    }
    assert!(output.status.success(), "busctl tree: {}", stderr(&output));
    text(&output.stdout)
        .lines()
        .map(|line| line.trim().to_owned())
        .collect()
}

/// The path of an instance of `rw` once it is published, whichever number pluto gave it:
/// earlier tests may have used `rw[1]`.
fn wait_for_instance_of_rw(bus: &TestBus) -> String {
    let instance = || {
        tree(bus)
            .into_iter()
            .find(|path| path.starts_with(&format!("{RW_PATH}_5b")))
    };
    let published = wait_until(WITHIN_LISTINGS, || instance().is_some());
    assert!(
        published,
        "no object for an instance of rw: {:?}",
        tree(bus)
    );
    instance().unwrap()
}

/// The object path the service gives `connection`.
fn object_of(bus: &TestBus, connection: &str) -> String {
    let output = bus.call_as(
        Caller::Root,
        // "--": a name may start with "-".
        &[
            "--",
            "call",
            "org.libreswan",
            "/org/libreswan",
            MANAGER,
            "GetConnection",
            "s",
            connection,
        ],
    );
    support::json(&output)["data"][0]
        .as_str()
        .expect("GetConnection returned no path")
        .to_owned()
}

#[test]
#[ignore = "needs the lab: scripts/test runs them"]
fn down_by_an_allowed_user_deletes_the_sas_and_keeps_the_connection() {
    let lab = Lab::from_env();
    let bus = TestBus::start();
    let _service = lab.start_service(&bus, &[]);

    let _restore = lab.initiate(WESTNET);
    wait_for_state(&bus, WESTNET_PATH, "up");

    let output = call(&bus, Caller::Allowed, WESTNET_PATH, "Down");
    assert!(output.status.success(), "Down failed: {}", stderr(&output));

    // Down returns once pluto is done and State was read again: no waiting here.
    lab.assert_no_sa(WESTNET);
    assert_eq!(state(&bus, WESTNET_PATH), json!("down"));
    assert!(tree(&bus).iter().any(|path| path == WESTNET_PATH));
    // Routed already says what pluto did with the route: 4.10 leaves a trap, 5.x does not
    // for a connection that was only initiated.
    assert_eq!(
        connection_property(&bus, WESTNET_PATH, "Routed"),
        json!(lab.routed_in_pluto(WESTNET))
    );
    let log = bus.polkit_log();
    assert!(
        log.contains(
            "action=org.libreswan.connection.down user=lswallowed connection=westnet-eastnet \
             verb=down result=yes"
        ),
        "polkitd log:\n{log}"
    );

    // Still loaded in pluto: it comes up again.
    lab.bring_up(WESTNET);
    wait_for_state(&bus, WESTNET_PATH, "up");
}

#[test]
#[ignore = "needs the lab: scripts/test runs them"]
fn down_on_a_routed_connection_keeps_its_route() {
    let lab = Lab::from_env();
    let bus = TestBus::start();
    let _service = lab.start_service(&bus, &[]);
    assert_eq!(
        connection_property(&bus, ROUTED_PATH, "Routed"),
        json!(true)
    );
    assert!(
        lab.outbound_policy(ROUTED_SRC, ROUTED_DST).is_some(),
        "no trap for {ROUTED} after loading it"
    );

    let _restore = lab.initiate(ROUTED);
    wait_for_state(&bus, ROUTED_PATH, "up");
    let output = call(&bus, Caller::Allowed, ROUTED_PATH, "Down");
    assert!(output.status.success(), "Down failed: {}", stderr(&output));

    lab.assert_no_sa(ROUTED);
    assert_eq!(state(&bus, ROUTED_PATH), json!("down"));
    // The policy outlives the tunnel, as a trap with no tunnel behind it (no endpoints):
    // traffic between the subnets never goes out in clear.
    let policy = lab
        .outbound_policy(ROUTED_SRC, ROUTED_DST)
        .unwrap_or_else(|| panic!("Down removed the policy {ROUTED_SRC} -> {ROUTED_DST}"));
    assert!(
        policy.contains("tmpl src 0.0.0.0 dst 0.0.0.0"),
        "not a trap:\n{policy}"
    );
    // Routed stays true, also once a full listing has read pluto's connections again.
    let refresh = bus.call_as(
        Caller::Root,
        &[
            "call",
            "org.libreswan",
            "/org/libreswan",
            MANAGER,
            "Refresh",
        ],
    );
    assert!(refresh.status.success(), "Refresh: {}", stderr(&refresh));
    assert_eq!(
        connection_property(&bus, ROUTED_PATH, "Routed"),
        json!(true)
    );
}

#[test]
#[ignore = "needs the lab: scripts/test runs them"]
fn down_is_refused_to_a_user_polkit_does_not_allow_and_the_tunnel_stays() {
    let lab = Lab::from_env();
    let bus = TestBus::start();
    let _service = lab.start_service(&bus, &[]);
    let _restore = lab.initiate(WESTNET);
    wait_for_state(&bus, WESTNET_PATH, "up");
    let child_sas = lab.child_sas(WESTNET);
    assert!(!child_sas.is_empty());

    // Interaction allowed but no agent to ask: polkit's answer is a plain no.
    let output = call(&bus, Caller::Denied, WESTNET_PATH, "Down");
    assert!(!output.status.success(), "Down succeeded for lswdenied");
    assert!(
        stderr(&output).contains("not authorized"),
        "{}",
        stderr(&output)
    );
    let output = bus.gdbus_call_as(
        Caller::Denied,
        "org.libreswan",
        WESTNET_PATH,
        "org.libreswan.Connection.Down",
        &[],
    );
    assert_eq!(
        gdbus_error_name(&output).as_deref(),
        Some("org.libreswan.Error.NotAuthorized"),
        "{}",
        stderr(&output)
    );

    // pluto heard nothing: the very same Child SA still carries the tunnel.
    assert_eq!(lab.child_sas(WESTNET), child_sas);
    assert_eq!(state(&bus, WESTNET_PATH), json!("up"));
    let log = bus.polkit_log();
    assert!(
        log.contains("user=lswdenied connection=westnet-eastnet verb=down result=defaults"),
        "polkitd log:\n{log}"
    );
}

#[test]
#[ignore = "needs the lab: scripts/test runs them"]
fn down_by_root_works() {
    let lab = Lab::from_env();
    let bus = TestBus::start();
    let _service = lab.start_service(&bus, &[]);
    let _restore = lab.initiate(SUBNET_A);
    wait_for_state(&bus, SUBNET_A_PATH, "up");

    let output = call(&bus, Caller::Root, SUBNET_A_PATH, "Down");
    assert!(output.status.success(), "Down failed: {}", stderr(&output));
    lab.assert_no_sa(SUBNET_A);
    assert_eq!(state(&bus, SUBNET_A_PATH), json!("down"));
}

#[test]
#[ignore = "needs the lab: scripts/test runs them"]
fn down_on_a_connection_without_sas_succeeds() {
    // 4.x answers "terminating SAs using this connection", 5.x nothing: both are a success.
    let lab = Lab::from_env();
    let bus = TestBus::start();
    let _service = lab.start_service(&bus, &[]);
    let _restore = lab.restore_on_drop(SUBNET_A);
    lab.assert_no_sa(SUBNET_A);

    let output = call(&bus, Caller::Allowed, SUBNET_A_PATH, "Down");
    assert!(output.status.success(), "Down failed: {}", stderr(&output));
    assert_eq!(state(&bus, SUBNET_A_PATH), json!("down"));
    assert!(tree(&bus).iter().any(|path| path == SUBNET_A_PATH));
}

type Interfaces = HashMap<String, HashMap<String, zbus::OwnedVariant>>;

/// The next ObjectManager signal; fails on any other than `member` or after `TIMEOUT`.
async fn next_object_signal(signals: &mut MessageStream, member: &str) -> zbus::Message {
    let signal = tokio::time::timeout(TIMEOUT, signals.next())
        .await
        .unwrap_or_else(|_| panic!("no {member} within {TIMEOUT:?}"))
        .expect("the signal stream ended")
        .expect("cannot read a signal");
    let got = signal.header().member().map(|m| m.to_string());
    assert_eq!(got.as_deref(), Some(member), "unexpected signal");
    signal
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the lab: scripts/test runs them"]
async fn connections_loaded_and_deleted_in_pluto_appear_and_vanish() {
    let lab = Lab::from_env();
    let bus = TestBus::start();
    let _service = lab.start_service(&bus, &["--list-interval", "1"]);
    assert!(
        !tree(&bus).iter().any(|path| path == SPARE_PATH),
        "{} is loaded before the test loads it",
        lab.spare
    );

    let mut signals =
        support::service_signals(&bus, "org.freedesktop.DBus.ObjectManager", None).await;

    // As `ipsec add spare` would.
    let _unload = Unload {
        lab: &lab,
        connection: lab.spare.clone(),
    };
    tokio::task::block_in_place(|| lab.script("addconn", Some(&lab.spare)));
    let loaded = Instant::now();
    let signal = next_object_signal(&mut signals, "InterfacesAdded").await;
    let took = loaded.elapsed();
    let (path, interfaces): (zbus::OwnedObjectPath, Interfaces) =
        signal.body().deserialize().unwrap();
    assert_eq!(path.as_str(), SPARE_PATH);
    let name = interfaces[CONNECTION]["Name"]
        .downcast_ref::<String>()
        .unwrap();
    assert_eq!(name, lab.spare);
    assert!(
        took < WITHIN_LISTINGS,
        "InterfacesAdded came after {took:?}"
    );
    assert_eq!(
        tokio::task::block_in_place(|| object_of(&bus, &lab.spare)),
        SPARE_PATH
    );

    // As `ipsec delete spare` would.
    let output = tokio::task::block_in_place(|| lab.whack(&["--name", &lab.spare, "--delete"]));
    assert!(output.status.success(), "{}", stderr(&output));
    let deleted = Instant::now();
    let signal = next_object_signal(&mut signals, "InterfacesRemoved").await;
    let took = deleted.elapsed();
    let (path, names): (zbus::OwnedObjectPath, Vec<String>) = signal.body().deserialize().unwrap();
    assert_eq!(path.as_str(), SPARE_PATH);
    assert!(names.iter().any(|name| name == CONNECTION), "{names:?}");
    assert!(
        took < WITHIN_LISTINGS,
        "InterfacesRemoved came after {took:?}"
    );
}

#[test]
#[ignore = "needs the lab: scripts/test runs them"]
fn objects_stay_while_pluto_is_stopped_and_follow_it_when_it_is_back() {
    let lab = Lab::from_env();
    let bus = TestBus::start();
    // Listings every second: 4.x has no cheap count of loaded connections, so without them the
    // service may learn of reloaded connections only at the next listing, which may be far off.
    let service = lab.start_service(&bus, &["--list-interval", "1"]);
    let _restart = RestartPluto { lab: &lab };
    let _restore = lab.initiate(WESTNET);
    wait_for_state(&bus, WESTNET_PATH, "up");
    let published = tree(&bus);

    lab.script("pluto-stop", None);
    let stopped = wait_until(TIMEOUT, || pluto_running(&bus) == json!(false));
    assert!(stopped, "PlutoRunning stayed true after pluto stopped");
    assert_eq!(
        tree(&bus),
        published,
        "objects changed while pluto was away"
    );
    assert_eq!(
        call_error(&bus, Caller::Root, WESTNET_PATH, "Down").as_deref(),
        Some("org.libreswan.Error.PlutoUnavailable")
    );
    let output = call(&bus, Caller::Allowed, WESTNET_PATH, "Down");
    assert!(
        stderr(&output).contains(&lab.ctl),
        "the error does not name the control socket: {}",
        stderr(&output)
    );
    assert!(process_running(service.pid()), "the service exited");
    assert_eq!(bus.name_owner_pid("org.libreswan"), Some(service.pid()));

    // The new pluto starts with no connection and loads them one by one, so a listing on the
    // way may find only some: objects may go and come back. Once pluto has them all, the
    // objects are those of before, and westnet-eastnet has no SA.
    lab.script("pluto-start", None);
    let back = wait_until(TIMEOUT, || pluto_running(&bus) == json!(true));
    assert!(back, "PlutoRunning stayed false after pluto came back");
    let mut now = Vec::new();
    let all_back = wait_until(TIMEOUT, || {
        now = tree(&bus);
        now == published
    });
    assert!(
        all_back,
        "published once pluto is back:\n{}\nbefore it stopped:\n{}",
        now.join("\n"),
        published.join("\n")
    );
    wait_for_state(&bus, WESTNET_PATH, "down");
    assert_eq!(
        property(
            &bus,
            Caller::Root,
            "/org/libreswan",
            MANAGER,
            "PlutoVersion"
        ),
        json!(lab.pluto_version)
    );
    for connection in &lab.connections {
        assert_eq!(
            connection_property(&bus, &object_of(&bus, connection), "Name"),
            json!(connection)
        );
    }
    let routed = wait_until(TIMEOUT, || {
        connection_property(&bus, ROUTED_PATH, "Routed") == json!(true)
    });
    assert!(routed, "{ROUTED} is not routed again");

    // And it is pluto again to the service: Down works.
    lab.bring_up(WESTNET);
    wait_for_state(&bus, WESTNET_PATH, "up");
    let output = call(&bus, Caller::Allowed, WESTNET_PATH, "Down");
    assert!(output.status.success(), "Down failed: {}", stderr(&output));
    lab.assert_no_sa(WESTNET);
}

#[test]
#[ignore = "needs the lab: scripts/test runs them"]
fn a_name_that_needs_escaping_works_end_to_end() {
    let lab = Lab::from_env();
    let bus = TestBus::start();
    let _service = lab.start_service(&bus, &[]);

    assert_eq!(object_of(&bus, &lab.escaped), ESCAPED_PATH);
    assert_eq!(
        connection_property(&bus, ESCAPED_PATH, "Name"),
        json!(lab.escaped)
    );

    let _restore = lab.initiate(&lab.escaped);
    wait_for_state(&bus, ESCAPED_PATH, "up");
    let output = call(&bus, Caller::Allowed, ESCAPED_PATH, "Down");
    assert!(output.status.success(), "Down failed: {}", stderr(&output));
    assert_eq!(state(&bus, ESCAPED_PATH), json!("down"));
    lab.assert_no_sa(&lab.escaped);
}

#[test]
#[ignore = "needs the lab: scripts/test runs them"]
fn sigterm_stops_the_service_cleanly_and_leaves_the_tunnels_alone() {
    let lab = Lab::from_env();
    let bus = TestBus::start();
    let service = lab.start_service(&bus, &[]);
    let _restore = lab.initiate(WESTNET);
    wait_for_state(&bus, WESTNET_PATH, "up");
    let child_sas = lab.child_sas(WESTNET);

    let status = service.stop();
    assert!(status.success(), "exit status {status}");
    assert!(!bus.name_has_owner("org.libreswan"));
    assert_eq!(lab.child_sas(WESTNET), child_sas);
}

fn succeeds(bus: &TestBus, caller: Caller, path: &str, method: &str) {
    let output = call(bus, caller, path, method);
    assert!(output.status.success(), "{method}: {}", stderr(&output));
}

const DEAD_PEER: &str = "dead-peer";
const DEAD_PEER_PATH: &str = "/org/libreswan/Connection/dead_2dpeer";
const RW_PATH: &str = "/org/libreswan/Connection/rw";
const SUBNET_A_SRC: &str = "10.1.0.0/24";
const SUBNET_A_DST: &str = "10.2.0.0/24";

#[test]
#[ignore = "needs the lab: scripts/test runs them"]
fn up_brings_the_tunnel_up_and_up_again_changes_nothing() {
    let lab = Lab::from_env();
    let bus = TestBus::start();
    let _service = lab.start_service(&bus, &[]);
    let _restore = lab.restore_on_drop(WESTNET);

    succeeds(&bus, Caller::Allowed, WESTNET_PATH, "Up");
    wait_for_state(&bus, WESTNET_PATH, "up");
    assert_eq!(lab.child_sas(WESTNET).len(), 1);
    assert_eq!(
        connection_property(&bus, WESTNET_PATH, "LastError"),
        json!("")
    );
    assert_eq!(
        connection_property(&bus, WESTNET_PATH, "Routed"),
        json!(true)
    );

    // pluto would add a second Child SA if asked again.
    succeeds(&bus, Caller::Allowed, WESTNET_PATH, "Up");
    assert_eq!(lab.child_sas(WESTNET).len(), 1);
}

#[test]
#[ignore = "needs the lab: scripts/test runs them"]
fn up_to_a_peer_that_never_answers_says_why_and_ends_down() {
    let lab = Lab::from_env();
    let bus = TestBus::start();
    let _service = lab.start_service(&bus, &[]);
    let _restore = lab.restore_on_drop(DEAD_PEER);

    succeeds(&bus, Caller::Allowed, DEAD_PEER_PATH, "Up");
    let mut reason = Value::Null;
    let explained = wait_until(TIMEOUT, || {
        reason = connection_property(&bus, DEAD_PEER_PATH, "LastError");
        reason.as_str().is_some_and(|r| !r.is_empty())
    });
    assert!(explained, "LastError stayed empty");

    // The lab's dead-peer gives up after a few seconds (4.x: one try, 5.x: auto=keep).
    let mut last = Value::Null;
    let ended = wait_until(Duration::from_secs(60), || {
        last = state(&bus, DEAD_PEER_PATH);
        last == "down" && lab.lines_about("--showstates", DEAD_PEER).is_empty()
    });
    assert!(ended, "dead-peer did not end down (State {last})");
    let reason = connection_property(&bus, DEAD_PEER_PATH, "LastError");
    assert!(
        reason
            .as_str()
            .is_some_and(|r| r.contains("retransmi") || r.contains("timeout")),
        "LastError does not say the peer never answered: {reason}"
    );
}

#[test]
#[ignore = "needs the lab: scripts/test runs them"]
fn down_on_a_road_warrior_instance_takes_down_only_that_instance() {
    let lab = Lab::from_env();
    let bus = TestBus::start();
    let _service = lab.start_service(&bus, &["--list-interval", "1"]);

    // The peer connects to the template; pluto makes an instance of it, `rw[N]`.
    let _peer = lab.peer_connects_to_rw();
    let instance = wait_for_instance_of_rw(&bus);
    let name = connection_property(&bus, &instance, "Name");
    let name = name.as_str().unwrap();
    assert_eq!(
        connection_property(&bus, &instance, "Template"),
        json!("rw")
    );
    assert_eq!(connection_property(&bus, &instance, "State"), json!("up"));

    succeeds(&bus, Caller::Allowed, &instance, "Down");
    // Rules can allow a whole template: polkit was told which one.
    let log = bus.polkit_log();
    let asked = format!("user=lswallowed connection={name} verb=down result=yes template=rw");
    assert!(log.contains(&asked), "polkitd log:\n{log}");
    // No SA of this instance is left (a peer that revives comes back as another instance).
    // pluto prints rw[N] as "rw"[N].
    let listed = format!("\"rw\"{} ", name.strip_prefix("rw").unwrap());
    let states = text(&lab.whack(&["--showstates"]).stdout);
    assert!(!states.contains(&listed), "{name} still has SAs:\n{states}");
    let gone = wait_until(WITHIN_LISTINGS, || !tree(&bus).contains(&instance));
    assert!(gone, "{name} is still published");
    assert!(
        tree(&bus).iter().any(|path| path == RW_PATH),
        "the template vanished"
    );
}

#[test]
#[ignore = "needs the lab: scripts/test runs them"]
fn down_on_a_template_takes_down_its_instances_and_keeps_the_template() {
    let lab = Lab::from_env();
    let bus = TestBus::start();
    let _service = lab.start_service(&bus, &["--list-interval", "1"]);
    let _peer = lab.peer_connects_to_rw();
    let instance = wait_for_instance_of_rw(&bus);
    let before = lab.child_sas("rw");
    assert_eq!(before.len(), 1, "{before:?}");

    // As `ipsec down rw`: every instance goes. The peer may revive and come back as a new
    // instance with new SAs; the old Child SA must be gone.
    succeeds(&bus, Caller::Allowed, RW_PATH, "Down");
    let after = lab.child_sas("rw");
    assert!(
        !after.contains(&before[0]),
        "{before:?} still there: {after:?}"
    );
    let gone = wait_until(WITHIN_LISTINGS, || !tree(&bus).contains(&instance));
    assert!(gone, "{instance} is still published");
    assert!(
        tree(&bus).iter().any(|path| path == RW_PATH),
        "the template vanished"
    );
}

#[test]
#[ignore = "needs the lab: scripts/test runs them"]
fn route_then_down_keeps_the_policy_and_unroute_after_down_removes_it() {
    let lab = Lab::from_env();
    let bus = TestBus::start();
    let _service = lab.start_service(&bus, &[]);
    let _restore = lab.restore_on_drop(SUBNET_A);
    assert!(lab.outbound_policy(SUBNET_A_SRC, SUBNET_A_DST).is_none());

    succeeds(&bus, Caller::Allowed, SUBNET_A_PATH, "Route");
    assert_eq!(
        connection_property(&bus, SUBNET_A_PATH, "Routed"),
        json!(true)
    );
    assert!(lab.outbound_policy(SUBNET_A_SRC, SUBNET_A_DST).is_some());

    succeeds(&bus, Caller::Allowed, SUBNET_A_PATH, "Up");
    wait_for_state(&bus, SUBNET_A_PATH, "up");
    succeeds(&bus, Caller::Allowed, SUBNET_A_PATH, "Down");
    assert_eq!(state(&bus, SUBNET_A_PATH), json!("down"));
    lab.assert_no_sa(SUBNET_A);
    let policy = lab.outbound_policy(SUBNET_A_SRC, SUBNET_A_DST);
    assert!(
        policy
            .as_deref()
            .is_some_and(|p| p.contains("tmpl src 0.0.0.0")),
        "no trap left after Down: {policy:?}"
    );
    assert_eq!(
        connection_property(&bus, SUBNET_A_PATH, "Routed"),
        json!(true)
    );

    succeeds(&bus, Caller::Allowed, SUBNET_A_PATH, "Unroute");
    assert_eq!(
        connection_property(&bus, SUBNET_A_PATH, "Routed"),
        json!(false)
    );
    assert!(lab.outbound_policy(SUBNET_A_SRC, SUBNET_A_DST).is_none());
}

#[test]
#[ignore = "needs the lab: scripts/test runs them"]
fn unroute_while_up_is_busy_and_pluto_stays_alive() {
    let lab = Lab::from_env();
    let bus = TestBus::start();
    let _service = lab.start_service(&bus, &[]);
    let _restore = lab.initiate(WESTNET);
    wait_for_state(&bus, WESTNET_PATH, "up");

    let output = bus.dbus_send_as(
        Caller::Root,
        &[
            "--dest=org.libreswan",
            WESTNET_PATH,
            "org.libreswan.Connection.Unroute",
        ],
    );
    assert_eq!(
        dbus_error_name(&output).as_deref(),
        Some("org.libreswan.Error.Busy")
    );
    // pluto 4.10 crashes on --unroute of an established connection: it must never have seen it.
    assert!(lab.whack(&["--status"]).status.success(), "pluto is gone");
    assert_eq!(lab.child_sas(WESTNET).len(), 1);
    assert_eq!(pluto_running(&bus), json!(true));
}

#[test]
#[ignore = "needs the lab: scripts/test runs them"]
fn unroute_of_a_template_with_a_connected_instance_is_busy_and_the_instance_stays() {
    let lab = Lab::from_env();
    let bus = TestBus::start();
    let _service = lab.start_service(&bus, &["--list-interval", "1"]);
    // The peer connects to the template; pluto makes an instance of it.
    let _peer = lab.peer_connects_to_rw();
    let instance = wait_for_instance_of_rw(&bus);
    let name = connection_property(&bus, &instance, "Name");

    // 5.x's --unroute of a template deletes every instance, tunnel and all: never sent.
    let holder = format!("has an instance with SAs ({name})");
    assert_refused(
        &bus,
        Caller::Allowed,
        RW_PATH,
        "Unroute",
        "org.libreswan.Error.Busy",
        &holder,
    );
    // pluto prints the instance as "rw"[1]: the template's lines are the instance's.
    assert_eq!(lab.child_sas("rw").len(), 1, "the instance lost its tunnel");
    assert_eq!(connection_property(&bus, &instance, "State"), json!("up"));
}

#[test]
#[ignore = "needs the lab: scripts/test runs them"]
fn up_on_a_template_is_pluto_s_to_refuse_and_changes_nothing_once_an_instance_is_up() {
    let lab = Lab::from_env();
    let bus = TestBus::start();
    let _service = lab.start_service(&bus, &["--list-interval", "1"]);

    // Waiting for peers, a template has no peer to initiate to: pluto says so.
    assert_refused(
        &bus,
        Caller::Allowed,
        RW_PATH,
        "Up",
        "org.libreswan.Error.Failed",
        "without knowing peer IP address",
    );

    // With a peer connected, the instance is the template's tunnel: 4.x would add a second
    // Child SA to it.
    let _peer = lab.peer_connects_to_rw();
    succeeds(&bus, Caller::Allowed, RW_PATH, "Up");
    // A second Child SA would be there within milliseconds; give it two seconds. pluto prints
    // the instance as "rw"[N]: the template's lines are the instance's.
    let second = wait_until(Duration::from_secs(2), || lab.child_sas("rw").len() > 1);
    assert!(!second, "Up added a Child SA: {:?}", lab.child_sas("rw"));
}

#[test]
#[ignore = "needs the lab: scripts/test runs them"]
fn delete_of_an_instance_is_refused_and_pluto_and_the_tunnel_stay() {
    let lab = Lab::from_env();
    let bus = TestBus::start();
    let _service = lab.start_service(&bus, &["--list-interval", "1"]);
    let _peer = lab.peer_connects_to_rw();
    let instance = wait_for_instance_of_rw(&bus);

    // pluto 5.2 dies on --delete of an instance: it must never hear of it.
    assert_refused(
        &bus,
        Caller::Root,
        &instance,
        "Delete",
        "org.libreswan.Error.Failed",
        "is an instance of \"rw\"",
    );
    assert!(lab.whack(&["--status"]).status.success(), "pluto is gone");
    assert_eq!(lab.child_sas("rw").len(), 1, "the instance lost its tunnel");
    assert_eq!(connection_property(&bus, &instance, "State"), json!("up"));
}

#[test]
#[ignore = "needs the lab: scripts/test runs them"]
fn delete_removes_the_connection_and_its_object() {
    let lab = Lab::from_env();
    let bus = TestBus::start();
    let _service = lab.start_service(&bus, &["--list-interval", "1"]);
    lab.script("addconn", Some(&lab.spare));
    let _unload = Unload {
        lab: &lab,
        connection: lab.spare.clone(),
    };
    let published = wait_until(WITHIN_LISTINGS, || {
        tree(&bus).iter().any(|p| p == SPARE_PATH)
    });
    assert!(published, "spare never appeared");

    succeeds(&bus, Caller::Allowed, SPARE_PATH, "Delete");
    assert!(
        !tree(&bus).iter().any(|p| p == SPARE_PATH),
        "spare still published"
    );
    assert!(!lab.routed_in_pluto(&lab.spare));
    let listed = text(&lab.whack(&["--status"]).stdout);
    assert!(!listed.contains("\"spare\":"), "pluto still has spare");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the lab: scripts/test runs them"]
async fn a_change_made_with_whack_shows_as_properties_changed() {
    let lab = Lab::from_env();
    let bus = TestBus::start();
    let _service = lab.start_service(&bus, &[]);

    let mut signals =
        support::service_signals(&bus, "org.freedesktop.DBus.Properties", Some(WESTNET_PATH)).await;

    let _restore = tokio::task::block_in_place(|| lab.initiate(WESTNET));
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let signal = tokio::time::timeout(left, signals.next())
            .await
            .expect("no PropertiesChanged with State up")
            .unwrap()
            .unwrap();
        let (_interface, changed, _): (String, HashMap<String, zbus::OwnedVariant>, Vec<String>) =
            signal.body().deserialize().unwrap();
        if changed
            .get("State")
            .and_then(|state| state.downcast_ref::<String>().ok())
            .is_some_and(|state| state == "up")
        {
            break;
        }
    }
}

/// `libreswan-dbusctl --bus BUS ARGS...` as `caller`.
fn ctl(bus: &TestBus, caller: Caller, args: &[&str]) -> Output {
    caller
        .command(env!("CARGO_BIN_EXE_libreswan-dbusctl"))
        .arg("--bus")
        .arg(bus.address())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run libreswan-dbusctl")
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the lab: scripts/test runs them"]
async fn the_client_library_and_libreswan_dbusctl_drive_real_pluto() {
    use libreswan_dbus::{
        client::{Client, Interaction, State, Verb},
        options::BusChoice,
    };

    let lab = Lab::from_env();
    let bus = TestBus::start();
    let _service = lab.start_service(&bus, &[]);
    let _restore = lab.restore_on_drop(WESTNET);

    let client = Client::connect(&BusChoice::Address(bus.address().to_owned()))
        .await
        .unwrap();
    let names: Vec<String> = client
        .connections()
        .await
        .unwrap()
        .into_iter()
        .map(|info| info.name)
        .collect();
    for name in &lab.connections {
        assert!(names.contains(name), "{name} missing from {names:?}");
    }
    assert_eq!(
        client.service_info().await.unwrap().pluto_version,
        lab.pluto_version
    );

    client
        .run(Verb::Up, WESTNET, Interaction::Deny)
        .await
        .unwrap();
    let up =
        tokio::task::block_in_place(|| wait_until(TIMEOUT, || lab.child_sas(WESTNET).len() == 1));
    assert!(up, "westnet-eastnet did not come up");
    let mut info = client.connection_info(WESTNET).await.unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while info.state != State::Up && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        info = client.connection_info(WESTNET).await.unwrap();
    }
    assert_eq!(info.state, State::Up);

    // The command-line client, as the user polkit allows.
    tokio::task::block_in_place(|| {
        let listed = ctl(&bus, Caller::Allowed, &["list"]);
        assert!(listed.status.success(), "{}", stderr(&listed));
        let line = text(&listed.stdout)
            .lines()
            .find(|line| line.starts_with(WESTNET))
            .map(str::to_owned)
            .unwrap_or_default();
        assert!(line.contains("up"), "list shows: {line:?}");

        let down = ctl(&bus, Caller::Allowed, &["down", WESTNET]);
        assert!(down.status.success(), "{}", stderr(&down));
        lab.assert_no_sa(WESTNET);

        let refused = ctl(&bus, Caller::Denied, &["up", WESTNET]);
        assert_eq!(refused.status.code(), Some(3), "{}", stderr(&refused));
        assert!(lab.child_sas(WESTNET).is_empty());
    });
}
