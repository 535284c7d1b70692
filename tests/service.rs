//! The service on a real system bus with the real polkitd; pluto replaced by a stand-in whack
//! that replays captured libreswan 4.10 output (`tests/support/fake-whack`).

mod support;

use std::{
    collections::HashMap,
    path::Path,
    process::Output,
    thread,
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use serde_json::{Value, json};
use support::{
    Caller, FakeWhack, Service, TestBus,
    calls::{
        CONNECTION, MANAGER, call, call_error, calls_with, connection_property, property, stderr,
        tree,
    },
    dbus_error_name, wait_until,
};

const WESTNET: &str = "/org/libreswan/Connection/westnet_2deastnet";
const SUBNET_A: &str = "/org/libreswan/Connection/subnet_2da";

/// Starts the service on `whack` with a short poll interval, so tests need not wait long.
fn start<'bus>(bus: &'bus TestBus, whack: &FakeWhack, extra: &[&str]) -> Service<'bus> {
    let mut args = whack.service_args();
    args.extend(["--poll-interval", "0.5"].map(String::from));
    args.extend(extra.iter().map(|arg| arg.to_string()));
    Service::start(bus, args)
}

fn state(bus: &TestBus, path: &str) -> Value {
    connection_property(bus, path, "State")
}

fn down(bus: &TestBus, caller: Caller, path: &str) -> Output {
    call(bus, caller, path, "Down")
}

fn down_error(bus: &TestBus, caller: Caller, path: &str) -> Option<String> {
    call_error(bus, caller, path, "Down")
}

/// The names the stand-in whack was asked to terminate, with the exact argv it got.
fn terminations(whack: &FakeWhack) -> Vec<Vec<String>> {
    calls_with(whack, "--terminate")
}

fn count_calls(whack: &FakeWhack, verb: &str) -> usize {
    calls_with(whack, verb).len()
}

/// `Manager.PlutoRunning` as any user reads it.
fn pluto_running(bus: &TestBus) -> Value {
    property(
        bus,
        Caller::Denied,
        "/org/libreswan",
        MANAGER,
        "PlutoRunning",
    )
}

/// `Manager.Refresh()` through dbus-send, which names the error of a failed call.
fn refresh(bus: &TestBus, caller: Caller) -> Output {
    bus.dbus_send_as(
        caller,
        &[
            "--dest=org.libreswan",
            "/org/libreswan",
            "org.libreswan.Manager.Refresh",
        ],
    )
}

#[test]
fn publishes_each_connection_with_what_pluto_says_and_anyone_may_read() {
    support::require_root();
    let bus = TestBus::start();
    let whack = FakeWhack::new("two-up");
    let _service = start(&bus, &whack, &[]);

    let paths = tree(&bus, Caller::Denied);
    for label in [
        "westnet_2deastnet",
        "subnet_2da",
        "never_2dup",
        "routed_2dondemand",
    ] {
        assert!(
            paths.contains(&format!("/org/libreswan/Connection/{label}")),
            "{paths}"
        );
    }

    let get = |path, name| property(&bus, Caller::Denied, path, CONNECTION, name);
    assert_eq!(get(WESTNET, "Name"), json!("westnet-eastnet"));
    assert_eq!(get(WESTNET, "State"), json!("up"));
    assert_eq!(get(WESTNET, "Routed"), json!(true));
    assert_eq!(get(WESTNET, "LocalAddress"), json!("192.0.2.1"));
    assert_eq!(get(WESTNET, "RemoteAddress"), json!("192.0.2.2"));
    assert_eq!(get(WESTNET, "LocalId"), json!("@west"));
    assert_eq!(get(WESTNET, "RemoteId"), json!("@east"));
    assert_eq!(get(WESTNET, "LocalSubnets"), json!([]));
    assert_eq!(get(WESTNET, "IkeVersion"), json!(2));
    assert_eq!(get(WESTNET, "BytesIn"), json!(0));
    assert_eq!(get(SUBNET_A, "LocalSubnets"), json!(["10.1.0.0/24"]));
    assert_eq!(get(SUBNET_A, "RemoteSubnets"), json!(["10.2.0.0/24"]));

    let routed_ondemand = "/org/libreswan/Connection/routed_2dondemand";
    assert_eq!(get(routed_ondemand, "State"), json!("down"));
    assert_eq!(get(routed_ondemand, "Routed"), json!(true));
    let never_up = "/org/libreswan/Connection/never_2dup";
    assert_eq!(get(never_up, "Routed"), json!(false));
    assert_eq!(get(never_up, "RemoteId"), json!("@ghost"));

    let manager = |name| property(&bus, Caller::Denied, "/org/libreswan", MANAGER, name);
    assert_eq!(manager("PlutoVersion"), json!("4.10"));
    assert_eq!(manager("PlutoRunning"), json!(true));
    assert_eq!(
        manager("ControlSocket"),
        json!(whack.ctlsocket().to_string_lossy())
    );
    assert_eq!(manager("Version"), json!(env!("CARGO_PKG_VERSION")));
}

#[test]
fn get_connection_returns_the_path_or_unknown_connection() {
    support::require_root();
    let bus = TestBus::start();
    let whack = FakeWhack::new("two-up");
    let _service = start(&bus, &whack, &[]);

    let found = bus.call_as(
        Caller::Denied,
        &[
            "call",
            "org.libreswan",
            "/org/libreswan",
            MANAGER,
            "GetConnection",
            "s",
            "westnet-eastnet",
        ],
    );
    assert_eq!(support::json(&found)["data"][0], json!(WESTNET));

    let missing = bus.dbus_send_as(
        Caller::Denied,
        &[
            "--dest=org.libreswan",
            "/org/libreswan",
            "org.libreswan.Manager.GetConnection",
            "string:no-such-conn",
        ],
    );
    assert_eq!(
        dbus_error_name(&missing).as_deref(),
        Some("org.libreswan.Error.UnknownConnection")
    );
}

#[test]
fn down_by_root_terminates_exactly_that_connection_and_keeps_it() {
    support::require_root();
    let bus = TestBus::start();
    let whack = FakeWhack::new("two-up");
    let _service = start(&bus, &whack, &[]);

    let output = down(&bus, Caller::Root, WESTNET);
    assert!(output.status.success(), "Down failed: {}", stderr(&output));

    let ctl = whack.ctlsocket().to_string_lossy().into_owned();
    assert_eq!(
        terminations(&whack),
        [vec![
            "--ctlsocket",
            ctl.as_str(),
            "--name",
            "westnet-eastnet",
            "--terminate",
            "--showstates"
        ]]
    );
    // The change shows before the call returns, and the connection stays published.
    assert_eq!(state(&bus, WESTNET), json!("down"));
    assert_eq!(state(&bus, SUBNET_A), json!("up"));
    assert!(tree(&bus, Caller::Root).contains(WESTNET));
    // 4.10 leaves a trap behind: the connection stays routed.
    assert_eq!(
        property(&bus, Caller::Root, WESTNET, CONNECTION, "Routed"),
        json!(true)
    );
}

#[test]
fn down_by_a_user_polkit_allows_works_and_polkit_saw_the_details() {
    support::require_root();
    let bus = TestBus::start();
    let whack = FakeWhack::new("two-up");
    let _service = start(&bus, &whack, &[]);

    let output = down(&bus, Caller::Allowed, WESTNET);
    assert!(output.status.success(), "Down failed: {}", stderr(&output));
    assert_eq!(terminations(&whack).len(), 1);
    assert_eq!(state(&bus, WESTNET), json!("down"));

    let log = bus.polkit_log();
    assert!(
        log.contains("action=org.libreswan.connection.down user=lswallowed connection=westnet-eastnet verb=down"),
        "polkitd log:\n{log}"
    );
}

#[test]
fn down_by_a_user_polkit_refuses_leaves_pluto_untouched() {
    support::require_root();
    let bus = TestBus::start();
    let whack = FakeWhack::new("two-up");
    let _service = start(&bus, &whack, &[]);

    // With interaction allowed but no agent to ask, polkit's answer is no.
    let output = down(&bus, Caller::Denied, WESTNET);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("not authorized"),
        "{}",
        stderr(&output)
    );

    // Without interaction allowed, the caller learns that authenticating could help.
    assert_eq!(
        down_error(&bus, Caller::Denied, WESTNET).as_deref(),
        Some("org.freedesktop.DBus.Error.InteractiveAuthorizationRequired")
    );

    assert!(terminations(&whack).is_empty(), "{:?}", whack.calls());
    assert_eq!(state(&bus, WESTNET), json!("up"));
}

#[test]
fn without_polkitd_every_down_is_refused() {
    support::require_root();
    let bus = TestBus::start();
    let whack = FakeWhack::new("two-up");
    let _service = start(&bus, &whack, &[]);
    bus.stop_polkit();

    for caller in [Caller::Allowed, Caller::Root] {
        assert_eq!(
            down_error(&bus, caller, WESTNET).as_deref(),
            Some("org.libreswan.Error.NotAuthorized"),
            "{caller:?}"
        );
    }
    assert!(terminations(&whack).is_empty(), "{:?}", whack.calls());
}

#[test]
fn down_on_a_connection_without_sas_succeeds_and_changes_nothing() {
    support::require_root();
    let bus = TestBus::start();
    let whack = FakeWhack::new("all-down");
    let _service = start(&bus, &whack, &[]);

    let output = down(&bus, Caller::Root, WESTNET);
    assert!(output.status.success(), "Down failed: {}", stderr(&output));
    assert_eq!(state(&bus, WESTNET), json!("down"));
    assert!(tree(&bus, Caller::Root).contains(WESTNET));
}

#[test]
fn pluto_gone_keeps_the_objects_and_says_why_until_it_is_back() {
    support::require_root();
    let bus = TestBus::start();
    let whack = FakeWhack::new("two-up");
    let _service = start(&bus, &whack, &[]);

    whack.set_pluto_running(false);
    let refresh = refresh(&bus, Caller::Denied);
    assert_eq!(
        dbus_error_name(&refresh).as_deref(),
        Some("org.libreswan.Error.PlutoUnavailable")
    );
    assert!(
        stderr(&refresh).contains("does not exist"),
        "{}",
        stderr(&refresh)
    );
    assert_eq!(pluto_running(&bus), json!(false));
    assert!(tree(&bus, Caller::Root).contains(WESTNET));

    let output = down(&bus, Caller::Root, WESTNET);
    assert!(
        stderr(&output).contains("pluto is not running"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        down_error(&bus, Caller::Root, WESTNET).as_deref(),
        Some("org.libreswan.Error.PlutoUnavailable")
    );

    whack.set_pluto_running(true);
    let back = wait_until(support::TIMEOUT, || pluto_running(&bus) == json!(true));
    assert!(back, "PlutoRunning stayed false after pluto came back");
}

#[test]
fn a_missing_whack_is_pluto_unavailable_and_the_service_still_starts() {
    support::require_root();
    let bus = TestBus::start();
    let whack = FakeWhack::new("two-up");
    let service = Service::start(
        &bus,
        [
            "--whack",
            "/nonexistent/whack",
            "--ctlsocket",
            &whack.ctlsocket().to_string_lossy(),
        ],
    );

    assert_eq!(pluto_running(&bus), json!(false));
    let refresh = refresh(&bus, Caller::Root);
    assert_eq!(
        dbus_error_name(&refresh).as_deref(),
        Some("org.libreswan.Error.PlutoUnavailable")
    );
    assert!(
        stderr(&refresh).contains("/nonexistent/whack"),
        "{}",
        stderr(&refresh)
    );
    drop(service);
}

#[test]
fn a_hanging_whack_times_out_while_other_calls_are_answered() {
    support::require_root();
    let bus = TestBus::start();
    let whack = FakeWhack::new("two-up");
    let _service = start(&bus, &whack, &["--whack-timeout", "3"]);
    whack.set_hang(Some("terminate"));

    thread::scope(|scope| {
        let started = Instant::now();
        let hung = scope.spawn(|| down_error(&bus, Caller::Root, WESTNET));

        // While the Down hangs, reads and other lookups are answered at once.
        wait_until(support::TIMEOUT, || {
            terminations(&whack).len() == 1 || started.elapsed() > Duration::from_secs(10)
        });
        let asked = Instant::now();
        assert_eq!(state(&bus, SUBNET_A), json!("up"));
        assert_eq!(pluto_running(&bus), json!(true));
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "reads waited for the hung Down"
        );

        assert_eq!(
            hung.join().unwrap().as_deref(),
            Some("org.libreswan.Error.Timeout")
        );
        assert!(started.elapsed() >= Duration::from_secs(3));
    });
}

#[test]
fn names_that_need_escaping_work_end_to_end() {
    support::require_root();
    let bus = TestBus::start();
    let whack = FakeWhack::new("escaped-name");
    let _service = start(&bus, &whack, &[]);

    let path = "/org/libreswan/Connection/_2dmy_2evpn_2f_c3_bc";
    assert_eq!(
        property(&bus, Caller::Denied, path, CONNECTION, "Name"),
        json!("-my.vpn/ü")
    );
    let found = bus.call_as(
        Caller::Denied,
        &[
            // The name starts with "-": keep busctl from reading it as an option.
            "--",
            "call",
            "org.libreswan",
            "/org/libreswan",
            MANAGER,
            "GetConnection",
            "s",
            "-my.vpn/ü",
        ],
    );
    assert_eq!(support::json(&found)["data"][0], json!(path));

    let output = down(&bus, Caller::Allowed, path);
    assert!(output.status.success(), "Down failed: {}", stderr(&output));
    let terminated = terminations(&whack);
    assert_eq!(terminated.len(), 1);
    assert_eq!(
        terminated[0][2..],
        ["--name", "-my.vpn/ü", "--terminate", "--showstates"]
    );
    assert_eq!(state(&bus, path), json!("down"));
}

#[test]
fn interface_xml_files_match_what_the_service_serves() {
    support::require_root();
    let bus = TestBus::start();
    let whack = FakeWhack::new("two-up");
    let _service = start(&bus, &whack, &[]);

    for (interface, path) in [(CONNECTION, WESTNET), (MANAGER, "/org/libreswan")] {
        let output = bus.call_as(
            Caller::Root,
            &["introspect", "--xml-interface", "org.libreswan", path],
        );
        assert!(output.status.success(), "{}", stderr(&output));
        let served = interface_block(&String::from_utf8_lossy(&output.stdout), interface);

        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("dbus/{interface}.xml"));
        if std::env::var_os("UPDATE_INTERFACE_XML").is_some() {
            std::fs::write(&file, interface_document(&served)).unwrap();
        }
        let shipped = std::fs::read_to_string(&file).unwrap();
        assert_eq!(
            interface_block(&shipped, interface),
            served,
            "{} differs from what the service serves; the served interface is:\n{}",
            file.display(),
            served.join("\n")
        );
    }
}

/// An introspection document holding one interface, as `dbus/*.xml` ship it.
fn interface_document(block: &[String]) -> String {
    let mut document = String::from(
        "<!DOCTYPE node PUBLIC \"-//freedesktop//DTD D-BUS Object Introspection 1.0//EN\"\n \
         \"http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd\">\n<node>\n",
    );
    let mut depth = 1;
    for line in block {
        if line.starts_with("</") {
            depth -= 1;
        }
        document.push_str(&"  ".repeat(depth));
        document.push_str(line);
        document.push('\n');
        let opens = line.starts_with('<') && !line.starts_with("</") && !line.starts_with("<!--");
        if opens && !line.ends_with("/>") && !line.contains("</") {
            depth += 1;
        }
    }
    document.push_str("</node>\n");
    document
}

/// The `<interface name="...">` element of an introspection document, one trimmed line each.
/// Set UPDATE_INTERFACE_XML=1 to write what the service serves into `dbus/*.xml`.
fn interface_block(xml: &str, interface: &str) -> Vec<String> {
    let start = format!("<interface name=\"{interface}\">");
    xml.lines()
        .map(str::trim)
        .skip_while(|line| *line != start)
        .scan(false, |done, line| {
            if *done {
                return None;
            }
            *done = line == "</interface>";
            Some(line.to_owned())
        })
        .collect()
}

#[test]
fn refresh_is_shared_and_rate_limited() {
    support::require_root();
    let bus = TestBus::start();
    let whack = FakeWhack::new("two-up");
    // A long poll interval: a second listing within it would be a breach, not a tick.
    let mut args = whack.service_args();
    args.extend(["--poll-interval", "30", "--list-interval", "600"].map(String::from));
    let _service = Service::start(&bus, args);
    let before = count_calls(&whack, "--status");

    thread::scope(|scope| {
        let callers: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    bus.call_as(
                        Caller::Denied,
                        &[
                            "--timeout=60",
                            "call",
                            "org.libreswan",
                            "/org/libreswan",
                            MANAGER,
                            "Refresh",
                        ],
                    )
                })
            })
            .collect();
        for caller in callers {
            let output = caller.join().unwrap();
            assert!(output.status.success(), "Refresh: {}", stderr(&output));
        }
    });
    // The first listing at start-up counts against the interval: eight callers at once cost
    // pluto at most one more listing.
    let listings = count_calls(&whack, "--status") - before;
    assert_eq!(listings, 1, "{:?}", whack.calls());
}

#[test]
fn sigterm_releases_the_name_and_exits_cleanly() {
    support::require_root();
    let bus = TestBus::start();
    let whack = FakeWhack::new("two-up");
    let service = start(&bus, &whack, &[]);

    let status = service.stop();
    assert!(status.success(), "exit status {status}");
    assert!(!bus.name_has_owner("org.libreswan"));
}

#[tokio::test(flavor = "multi_thread")]
async fn changes_are_signalled_once_with_only_what_changed() {
    support::require_root();
    let bus = TestBus::start();
    let whack = FakeWhack::new("two-up");
    let _service = start(&bus, &whack, &[]);

    let mut signals =
        support::service_signals(&bus, "org.freedesktop.DBus.Properties", Some(WESTNET)).await;

    let output = tokio::task::block_in_place(|| down(&bus, Caller::Root, WESTNET));
    assert!(output.status.success(), "Down failed: {}", stderr(&output));

    let first = tokio::time::timeout(support::TIMEOUT, signals.next())
        .await
        .expect("no PropertiesChanged after Down")
        .unwrap()
        .unwrap();
    let (interface, changed, _invalidated): (
        String,
        HashMap<String, zbus::OwnedVariant>,
        Vec<String>,
    ) = first.body().deserialize().unwrap();
    assert_eq!(interface, CONNECTION);
    let keys: Vec<&str> = changed.keys().map(String::as_str).collect();
    assert_eq!(keys, ["State"]);
    assert_eq!(changed["State"].downcast_ref::<String>().unwrap(), "down");

    // Nothing else changed for this connection: later listings send nothing more.
    let later = tokio::time::timeout(Duration::from_secs(2), signals.next()).await;
    assert!(later.is_err(), "unexpected signal: {later:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_appear_and_vanish_with_object_manager_signals() {
    support::require_root();
    let bus = TestBus::start();
    let whack = FakeWhack::new("two-up");
    let _service = start(&bus, &whack, &["--list-interval", "1"]);

    let mut signals =
        support::service_signals(&bus, "org.freedesktop.DBus.ObjectManager", None).await;

    // westnet-eastnet is renamed in this scenario: one object goes, another comes.
    whack.load_scenario("escaped-name");
    let mut added = Vec::new();
    let mut removed = Vec::new();
    while added.is_empty() || removed.is_empty() {
        let signal = tokio::time::timeout(support::TIMEOUT, signals.next())
            .await
            .expect("no InterfacesAdded/Removed within the list interval")
            .unwrap()
            .unwrap();
        let body = signal.body();
        match signal.header().member().map(|m| m.as_str()) {
            Some("InterfacesAdded") => {
                let (path, _interfaces): (zbus::OwnedObjectPath, Interfaces) =
                    body.deserialize().unwrap();
                added.push(path.to_string());
            }
            Some("InterfacesRemoved") => {
                let (path, _names): (zbus::OwnedObjectPath, Vec<String>) =
                    body.deserialize().unwrap();
                removed.push(path.to_string());
            }
            other => panic!("unexpected signal {other:?}"),
        }
    }
    assert_eq!(added, ["/org/libreswan/Connection/_2dmy_2evpn_2f_c3_bc"]);
    assert_eq!(removed, [WESTNET]);
}

type Interfaces = HashMap<String, HashMap<String, zbus::OwnedVariant>>;
