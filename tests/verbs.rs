//! Up, Route, Unroute and Delete on a real system bus with the real polkitd; pluto replaced by
//! a stand-in whack that replays captured libreswan 4.10 output.

mod support;

use std::thread;

use serde_json::json;
use support::{
    Caller, FakeWhack, Service, TestBus,
    calls::{assert_refused, call, call_error, calls_with, connection_property, stderr, tree},
    wait_until,
};

const WESTNET: &str = "/org/libreswan/Connection/westnet_2deastnet";
const NEVER_UP: &str = "/org/libreswan/Connection/never_2dup";

fn start<'bus>(bus: &'bus TestBus, whack: &FakeWhack, extra: &[&str]) -> Service<'bus> {
    let mut args = whack.service_args();
    args.extend(["--poll-interval", "0.5"].map(String::from));
    args.extend(extra.iter().map(|arg| arg.to_string()));
    Service::start(bus, args)
}

fn succeeds(bus: &TestBus, caller: Caller, path: &str, method: &str) {
    let output = call(bus, caller, path, method);
    assert!(
        output.status.success(),
        "{method} failed: {}",
        stderr(&output)
    );
}

#[test]
fn up_returns_once_pluto_accepts_and_state_follows_to_up() {
    support::require_root();
    let bus = TestBus::start();
    let whack = FakeWhack::new("up-down");
    let _service = start(&bus, &whack, &[]);
    assert_eq!(connection_property(&bus, WESTNET, "State"), json!("down"));

    succeeds(&bus, Caller::Allowed, WESTNET, "Up");
    let initiates = calls_with(&whack, "--initiate");
    assert_eq!(initiates.len(), 1);
    assert_eq!(
        initiates[0][2..],
        ["--name", "westnet-eastnet", "--initiate"]
    );
    let up = wait_until(support::TIMEOUT, || {
        connection_property(&bus, WESTNET, "State") == json!("up")
    });
    assert!(up, "State never became up");
    assert_eq!(connection_property(&bus, WESTNET, "LastError"), json!(""));

    // Initiating an established connection again would add a second Child SA.
    succeeds(&bus, Caller::Allowed, WESTNET, "Up");
    assert_eq!(calls_with(&whack, "--initiate").len(), 1);

    succeeds(&bus, Caller::Allowed, WESTNET, "Down");
    assert_eq!(connection_property(&bus, WESTNET, "State"), json!("down"));
}

#[test]
fn up_to_a_dead_peer_says_why_and_ends_down() {
    support::require_root();
    let bus = TestBus::start();
    let whack = FakeWhack::new("dead-peer");
    let _service = start(&bus, &whack, &[]);

    succeeds(&bus, Caller::Root, NEVER_UP, "Up");
    let explained = wait_until(support::TIMEOUT, || {
        connection_property(&bus, NEVER_UP, "LastError")
            .as_str()
            .is_some_and(|reason| reason.contains("timeout exceeded after 3 retransmits"))
    });
    assert!(
        explained,
        "LastError: {}",
        connection_property(&bus, NEVER_UP, "LastError")
    );
    assert_eq!(connection_property(&bus, NEVER_UP, "State"), json!("down"));
}

#[test]
fn up_that_pluto_refuses_outright_fails_with_pluto_s_words() {
    support::require_root();
    let bus = TestBus::start();
    // 4.10's answer to initiating a template that waits for peers: no state is ever created.
    let whack = FakeWhack::new("refused-initiate");
    let _service = start(&bus, &whack, &[]);

    assert_refused(
        &bus,
        Caller::Root,
        NEVER_UP,
        "Up",
        "org.libreswan.Error.Failed",
        "without knowing peer IP address",
    );
    assert_eq!(connection_property(&bus, NEVER_UP, "State"), json!("down"));
}

#[test]
fn every_verb_is_refused_for_a_user_polkit_does_not_allow() {
    support::require_root();
    let bus = TestBus::start();
    let whack = FakeWhack::new("two-up");
    let _service = start(&bus, &whack, &[]);

    for method in ["Up", "Down", "Route", "Unroute", "Delete"] {
        let output = call(&bus, Caller::Denied, NEVER_UP, method);
        assert!(!output.status.success(), "{method} was allowed");
        assert!(
            stderr(&output).contains("not authorized"),
            "{method}: {}",
            stderr(&output)
        );
    }
    let verbs: Vec<_> = whack
        .calls()
        .into_iter()
        .filter(|call| call.iter().any(|arg| arg == "--name"))
        .collect();
    assert!(verbs.is_empty(), "pluto was asked: {verbs:?}");
}

#[test]
fn route_and_unroute_show_in_routed_before_the_call_returns() {
    support::require_root();
    let bus = TestBus::start();
    let whack = FakeWhack::new("all-down");
    let _service = start(&bus, &whack, &[]);
    assert_eq!(connection_property(&bus, NEVER_UP, "Routed"), json!(false));

    succeeds(&bus, Caller::Allowed, NEVER_UP, "Route");
    assert_eq!(connection_property(&bus, NEVER_UP, "Routed"), json!(true));
    succeeds(&bus, Caller::Allowed, NEVER_UP, "Unroute");
    assert_eq!(connection_property(&bus, NEVER_UP, "Routed"), json!(false));

    assert_eq!(calls_with(&whack, "--route").len(), 1);
    assert_eq!(calls_with(&whack, "--unroute").len(), 1);
    let log = bus.polkit_log();
    for verb in ["route", "unroute"] {
        let line = format!(
            "action=org.libreswan.connection.route user=lswallowed connection=never-up verb={verb}"
        );
        assert!(log.contains(&line), "no {line:?} in polkitd's log:\n{log}");
    }
}

#[test]
fn unroute_of_a_connection_with_sas_is_busy_and_never_reaches_pluto() {
    support::require_root();
    let bus = TestBus::start();
    let whack = FakeWhack::new("two-up");
    let _service = start(&bus, &whack, &[]);

    assert_refused(
        &bus,
        Caller::Root,
        WESTNET,
        "Unroute",
        "org.libreswan.Error.Busy",
        "bring it down first",
    );
    assert!(calls_with(&whack, "--unroute").is_empty());
}

#[test]
fn delete_removes_the_object_before_the_call_returns() {
    support::require_root();
    let bus = TestBus::start();
    let whack = FakeWhack::new("deletable");
    let _service = start(&bus, &whack, &[]);
    assert!(tree(&bus, Caller::Root).contains(NEVER_UP));

    succeeds(&bus, Caller::Root, NEVER_UP, "Delete");
    assert!(!tree(&bus, Caller::Root).contains(NEVER_UP));
    assert!(tree(&bus, Caller::Root).contains(WESTNET));
    assert_eq!(calls_with(&whack, "--delete").len(), 1);
}

#[test]
fn identical_concurrent_calls_share_one_pluto_run() {
    support::require_root();
    let bus = TestBus::start();
    let whack = FakeWhack::new("two-up");
    let _service = start(&bus, &whack, &["--whack-timeout", "3"]);
    // A terminate that hangs keeps the first call in progress while the others arrive.
    whack.set_hang(Some("terminate"));

    let errors: Vec<Option<String>> = thread::scope(|scope| {
        let callers: Vec<_> = (0..3)
            .map(|_| scope.spawn(|| call_error(&bus, Caller::Root, WESTNET, "Down")))
            .collect();
        callers.into_iter().map(|c| c.join().unwrap()).collect()
    });
    for error in &errors {
        assert_eq!(error.as_deref(), Some("org.libreswan.Error.Timeout"));
    }
    assert_eq!(
        calls_with(&whack, "--terminate").len(),
        1,
        "{:?}",
        whack.calls()
    );
}
