//! Proves the test harness itself, without the service: the private system bus, the real
//! polkitd with the test accounts and rule, the stand-in for whack, and that nothing leaks onto
//! the host or outlives a test.

mod support;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use support::{
    Caller, FakeWhack, Peer, TIMEOUT, TestBus, dbus_error_name, json, process_running, testbus,
    wait_until,
};

const POLKIT: &str = "org.freedesktop.PolicyKit1";

/// Asks polkitd, as root (the only caller allowed to pass details), whether the owner of bus
/// name `subject` may do `action`; returns (is_authorized, is_challenge).
fn check_authorization(
    bus: &TestBus,
    subject: &str,
    action: &str,
    connection: &str,
    verb: &str,
) -> (bool, bool) {
    let output = bus.call_as(
        Caller::Root,
        &[
            "call",
            POLKIT,
            "/org/freedesktop/PolicyKit1/Authority",
            "org.freedesktop.PolicyKit1.Authority",
            "CheckAuthorization",
            "(sa{sv})sa{ss}us",
            "system-bus-name",
            "1",
            "name",
            "s",
            subject,
            action,
            "2",
            "connection",
            connection,
            "verb",
            verb,
            "0",
            "",
        ],
    );
    let result = &json(&output)["data"][0];
    (
        result[0].as_bool().expect("is_authorized"),
        result[1].as_bool().expect("is_challenge"),
    )
}

fn wait_for_log(bus: &TestBus, needle: &str) {
    assert!(
        wait_until(TIMEOUT, || bus.polkit_log().contains(needle)),
        "polkitd never logged {needle:?}; its log:\n{}",
        bus.polkit_log()
    );
}

#[test]
fn every_caller_reaches_the_private_bus() {
    let bus = TestBus::start();

    let socket = bus.dir().join("system_bus_socket");
    assert_eq!(bus.address(), format!("unix:path={}", socket.display()));
    for caller in [Caller::Root, Caller::Allowed, Caller::Denied] {
        let output = bus.call_as(
            caller,
            &[
                "call",
                "org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "GetConnectionUnixUser",
                "s",
                "org.freedesktop.DBus",
            ],
        );
        assert_eq!(json(&output)["data"][0], 0, "as {caller:?}");
    }
    assert!(bus.name_has_owner(POLKIT));
}

#[test]
fn polkitd_allows_lswcontrol_and_root_and_refuses_others() {
    let bus = TestBus::start();
    let allowed = Peer::connect(&bus, Caller::Allowed);
    let denied = Peer::connect(&bus, Caller::Denied);
    let root = Peer::connect(&bus, Caller::Root);
    let down = "org.libreswan.connection.down";

    assert_eq!(
        check_authorization(&bus, allowed.unique_name(), down, "westnet-eastnet", "down"),
        (true, false)
    );
    // auth_admin without an agent: not authorised, but an administrator could authorise it.
    assert_eq!(
        check_authorization(&bus, denied.unique_name(), down, "westnet-eastnet", "down"),
        (false, true)
    );
    assert_eq!(
        check_authorization(&bus, root.unique_name(), down, "westnet-eastnet", "down"),
        (true, false)
    );

    wait_for_log(
        &bus,
        "libreswan-test: action=org.libreswan.connection.down user=lswallowed \
         connection=westnet-eastnet verb=down result=yes",
    );
    wait_for_log(
        &bus,
        "libreswan-test: action=org.libreswan.connection.down user=lswdenied \
         connection=westnet-eastnet verb=down result=defaults",
    );
    // polkitd authorises root before any rule runs.
    assert!(!bus.polkit_log().contains("user=root"));
}

#[test]
fn polkitd_knows_only_our_actions_with_our_defaults() {
    let bus = TestBus::start();

    let output = bus.call_as(
        Caller::Root,
        &[
            "call",
            POLKIT,
            "/org/freedesktop/PolicyKit1/Authority",
            "org.freedesktop.PolicyKit1.Authority",
            "EnumerateActions",
            "s",
            "",
        ],
    );
    let actions = json(&output)["data"][0]
        .as_array()
        .expect("an array of actions")
        .clone();

    // Implicit authorisations as polkit numbers them: 2 = auth_admin, 4 = auth_admin_keep.
    let mut found: Vec<(String, u64, u64, u64)> = actions
        .iter()
        .map(|action| {
            let field = |i: usize| action[i].as_str().expect("a string field");
            assert_eq!(field(3), "Libreswan", "vendor of {}", field(0));
            assert!(
                field(2).contains("$(connection)"),
                "the message of {} does not name the connection",
                field(0)
            );
            let default = |i: usize| action[i].as_u64().expect("an implicit authorisation");
            (field(0).to_string(), default(6), default(7), default(8))
        })
        .collect();
    found.sort();
    let expected = [
        ("org.libreswan.connection.delete", 2, 2, 2),
        ("org.libreswan.connection.down", 2, 2, 4),
        ("org.libreswan.connection.route", 2, 2, 2),
        ("org.libreswan.connection.up", 2, 2, 4),
    ]
    .map(|(id, any, inactive, active)| (id.to_string(), any, inactive, active));
    assert_eq!(found, expected);
}

#[test]
fn stopping_polkit_releases_its_name_until_it_starts_again() {
    let bus = TestBus::start();
    let allowed = Peer::connect(&bus, Caller::Allowed);
    let pid = bus.polkitd_pid().expect("polkitd's pid");

    bus.stop_polkit();
    assert!(!bus.name_has_owner(POLKIT));
    assert!(!process_running(pid));
    assert_eq!(bus.polkitd_pid(), None);
    // Stopping twice is harmless, and nothing starts polkitd behind the test's back.
    bus.stop_polkit();
    let output = bus.dbus_send_as(
        Caller::Root,
        &[
            &format!("--dest={POLKIT}"),
            "/org/freedesktop/PolicyKit1/Authority",
            "org.freedesktop.DBus.Peer.Ping",
        ],
    );
    assert_eq!(
        dbus_error_name(&output).as_deref(),
        Some("org.freedesktop.DBus.Error.ServiceUnknown")
    );

    bus.start_polkit();
    assert!(bus.name_has_owner(POLKIT));
    assert_eq!(
        check_authorization(
            &bus,
            allowed.unique_name(),
            "org.libreswan.connection.up",
            "subnet-a",
            "up"
        ),
        (true, false)
    );
}

fn host_view() -> (String, String, Vec<String>) {
    let listing = |dir: &str| -> Vec<String> {
        match fs::read_dir(dir) {
            Ok(entries) => entries
                .map(|entry| format!("{dir}/{}", entry.unwrap().file_name().to_string_lossy()))
                .collect(),
            Err(err) => vec![format!("{dir}: {err}")],
        }
    };
    let mut files = listing("/usr/share/polkit-1/actions");
    files.extend(listing("/usr/share/polkit-1/rules.d"));
    files.extend(listing("/etc/polkit-1/rules.d"));
    files.sort();
    (
        fs::read_to_string("/etc/passwd").unwrap(),
        fs::read_to_string("/etc/group").unwrap(),
        files,
    )
}

#[test]
fn the_host_is_untouched_while_the_bus_is_up() {
    let before = host_view();
    let bus = TestBus::start();

    assert_eq!(host_view(), before);
    assert!(!before.0.contains("lswallowed"));
    let dir = bus.dir().to_string_lossy().into_owned();
    let own_mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !own_mounts.contains(&dir),
        "a test mount is visible on the host"
    );

    // Inside the namespace the test accounts exist.
    let pid = bus.polkitd_pid().expect("polkitd's pid");
    let inside = fs::read_to_string(format!("/proc/{pid}/root/etc/passwd")).unwrap();
    assert!(
        inside.contains("lswallowed:x:64101:"),
        "polkitd sees:\n{inside}"
    );
}

/// Every mount whose source is under `dir`, in any process's namespace.
fn mounts_from(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy();
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(mounts) = fs::read_to_string(entry.path().join("mountinfo")) {
            found.extend(
                mounts
                    .lines()
                    .filter(|line| line.contains(dir.as_ref()))
                    .map(|line| format!("{}: {line}", name.to_string_lossy())),
            );
        }
    }
    found
}

#[test]
fn down_leaves_nothing_running_and_repeats_harmlessly() {
    let bus = TestBus::start();
    let dir = bus.dir().to_path_buf();
    let dbus_pid = bus.dbus_daemon_pid().expect("dbus-daemon's pid");
    let polkitd_pid = bus.polkitd_pid().expect("polkitd's pid");
    assert!(
        !mounts_from(&dir).is_empty(),
        "the daemons' namespace has no test mounts"
    );

    // `up` on a running bus changes nothing.
    let output = testbus("up", &dir);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        bus.address()
    );
    assert_eq!(bus.dbus_daemon_pid(), Some(dbus_pid));
    assert_eq!(bus.polkitd_pid(), Some(polkitd_pid));

    let output = testbus("down", &dir);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !process_running(dbus_pid),
        "dbus-daemon {dbus_pid} still runs"
    );
    assert!(
        !process_running(polkitd_pid),
        "polkitd {polkitd_pid} still runs"
    );
    assert!(!dir.join("system_bus_socket").exists());
    assert_eq!(mounts_from(&dir), Vec::<String>::new());

    // Dropping the bus runs `down` a second time.
    drop(bus);
    assert!(!dir.exists());
}

#[test]
fn only_root_may_own_the_service_name() {
    let bus = TestBus::start();
    let request = [
        "--dest=org.freedesktop.DBus",
        "/org/freedesktop/DBus",
        "org.freedesktop.DBus.RequestName",
        "string:org.libreswan",
        "uint32:0",
    ];

    for caller in [Caller::Allowed, Caller::Denied] {
        let output = bus.dbus_send_as(caller, &request);
        assert_eq!(
            dbus_error_name(&output).as_deref(),
            Some("org.freedesktop.DBus.Error.AccessDenied"),
            "as {caller:?}: {}",
            String::from_utf8_lossy(&output.stdout)
        );
    }
    // 1 = DBUS_REQUEST_NAME_REPLY_PRIMARY_OWNER; the name goes when dbus-send exits.
    let output = bus.dbus_send_as(Caller::Root, &request);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("uint32 1"));
}

#[test]
fn the_example_rules_work_in_polkitd() {
    let bus = TestBus::start();
    let denied = Peer::connect(&bus, Caller::Denied);
    let route = "org.libreswan.connection.route";
    assert_eq!(
        check_authorization(&bus, denied.unique_name(), route, "subnet-a", "route"),
        (false, true)
    );
    wait_for_log(&bus, "executing 1 rules");

    // The example with lswdenied's own group for "netadmin". Renamed into place whole, since
    // polkitd reloads as soon as the directory changes.
    let example = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("polkit/examples/50-libreswan-dbus.rules"),
    )
    .unwrap();
    assert!(example.contains("\"netadmin\""));
    let rules = bus.dir().join("polkit/rules.d");
    fs::write(
        rules.join("example.tmp"),
        example.replace("\"netadmin\"", "\"lswdenied\""),
    )
    .unwrap();
    fs::rename(rules.join("example.tmp"), rules.join("40-example.rules")).unwrap();
    wait_for_log(&bus, "executing 2 rules");
    assert!(!bus.polkit_log().contains("Error"), "{}", bus.polkit_log());

    assert_eq!(
        check_authorization(&bus, denied.unique_name(), route, "subnet-a", "route"),
        (true, false)
    );
}

fn run_whack(whack: &FakeWhack, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(whack.whack())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run fake-whack");
    (
        output.status.code().expect("an exit code"),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn fake_whack_answers_like_pluto_4_10() {
    let whack = FakeWhack::new("two-up");
    let ctl = whack.ctlsocket().to_string_lossy().into_owned();

    let (code, status, _) = run_whack(&whack, &["--ctlsocket", &ctl, "--status"]);
    assert_eq!(code, 0);
    assert!(
        status.contains("000 \"westnet-eastnet\": 192.0.2.1[@west]...192.0.2.2[@east]; erouted;")
    );
    assert!(status.contains("000 Total IPsec connections: loaded 4, active 2"));
    let (_, traffic, _) = run_whack(&whack, &["--ctlsocket", &ctl, "--trafficstatus"]);
    assert_eq!(traffic.lines().count(), 2);

    // An unknown name: nothing, exit 0, and the scenario stays as it was.
    let unknown = run_whack(
        &whack,
        &["--ctlsocket", &ctl, "--name", "no such", "--terminate"],
    );
    assert_eq!(unknown, (0, String::new(), String::new()));
    let (_, traffic, _) = run_whack(&whack, &["--ctlsocket", &ctl, "--trafficstatus"]);
    assert_eq!(traffic.lines().count(), 2);

    let (code, out, _) = run_whack(
        &whack,
        &[
            "--ctlsocket",
            &ctl,
            "--name",
            "westnet-eastnet",
            "--terminate",
        ],
    );
    assert_eq!(code, 0);
    assert!(out.starts_with("002 \"westnet-eastnet\": terminating SAs using this connection\n"));
    let (_, traffic, _) = run_whack(&whack, &["--ctlsocket", &ctl, "--trafficstatus"]);
    assert!(!traffic.contains("westnet-eastnet"));
    assert!(traffic.contains("\"subnet-a\""));

    // 4.10 has no --down.
    let (code, _, err) = run_whack(&whack, &["--ctlsocket", &ctl, "--name", "x", "--down"]);
    assert_eq!(code, 33);
    assert!(err.contains("unrecognized option '--down'"));

    whack.set_pluto_running(false);
    let (code, out, err) = run_whack(&whack, &["--ctlsocket", &ctl, "--status"]);
    assert_eq!((code, out.as_str()), (33, ""));
    assert_eq!(err, format!("whack: Pluto is not running (no \"{ctl}\")\n"));

    let calls = whack.calls();
    assert_eq!(calls.len(), 8);
    assert_eq!(
        calls[2],
        ["--ctlsocket", &ctl, "--name", "no such", "--terminate"]
    );
}

#[test]
fn fake_whack_knows_names_that_need_escaping() {
    let whack = FakeWhack::new("escaped-name");
    let ctl = whack.ctlsocket().to_string_lossy().into_owned();

    let (_, traffic, _) = run_whack(&whack, &["--ctlsocket", &ctl, "--trafficstatus"]);
    assert!(traffic.contains("#5: \"-my.vpn/ü\", type=ESP"));
    let (code, out, _) = run_whack(
        &whack,
        &["--ctlsocket", &ctl, "--name", "-my.vpn/ü", "--terminate"],
    );
    assert_eq!(code, 0);
    assert!(out.contains("\"-my.vpn/ü\" #5: ESP traffic information"));
    let (_, states, _) = run_whack(&whack, &["--ctlsocket", &ctl, "--showstates"]);
    assert!(!states.contains("#5:"));
    assert_eq!(whack.calls()[1][3], "-my.vpn/ü");
}

#[test]
fn fake_whack_hangs_on_the_verb_it_is_told() {
    let whack = FakeWhack::new("two-up");
    let ctl = whack.ctlsocket().to_string_lossy().into_owned();
    whack.set_hang(Some("terminate"));

    // Other verbs still answer.
    let (code, _, _) = run_whack(&whack, &["--ctlsocket", &ctl, "--showstates"]);
    assert_eq!(code, 0);

    let mut hung = Command::new(whack.whack())
        .args(["--ctlsocket", &ctl, "--name", "subnet-a", "--terminate"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = hung.id();
    // fake-whack becomes `sleep` when it hangs.
    let comm = format!("/proc/{pid}/comm");
    assert!(wait_until(TIMEOUT, || {
        fs::read_to_string(&comm).is_ok_and(|name| name == "sleep\n")
    }));
    assert!(hung.try_wait().unwrap().is_none());
    assert_eq!(whack.calls().len(), 2);

    // Killing it ends the call: the sleep is the process itself, not a child left behind.
    hung.kill().unwrap();
    hung.wait().unwrap();
    assert!(!process_running(pid));

    whack.clear_hang();
    let (code, _, _) = run_whack(
        &whack,
        &["--ctlsocket", &ctl, "--name", "subnet-a", "--terminate"],
    );
    assert_eq!(code, 0);
}
