//! What pluto answers to a verb (`--initiate`, `--terminate`/`--down`, `--route`,
//! `--unroute`, `--delete`), and what whack says when it cannot reach pluto at all.
//!
//! The exit status alone does not tell what happened: 4.x exits 0 after an authentication
//! failure, and a whack talking to a pluto of another version may exit 0 too. The text does.

use super::split_code;

/// pluto's answer to a verb.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    /// pluto's lines with the 4.x codes stripped; empty lines dropped.
    pub lines: Vec<String>,
    /// Why pluto did not do what was asked, when its words say so.
    pub problem: Option<ReplyProblem>,
}

/// Why pluto did not carry out a verb.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyProblem {
    /// No connection or alias has the name given.
    UnknownConnection,
    /// whack and pluto come from different libreswan versions and cannot talk.
    VersionMismatch,
    /// pluto refused, in its own words (the line, code stripped).
    Refused(String),
}

/// How whack failed before pluto could answer (whack exits 33 in both versions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhackFailure {
    /// The control socket does not exist: pluto is not running.
    SocketMissing,
    /// The socket exists but nothing listens on it (pluto died, or it is not a socket).
    ConnectionRefused,
    /// The caller may not use the socket.
    NotPermitted,
    /// Anything else, such as an option this whack does not know.
    Other,
}

/// How each libreswan version says that no connection has the name given.
const UNKNOWN_CONNECTION: [&str; 4] = [
    // 5.x, with a stray quote at the end.
    "no connection or alias named \"",
    // 4.x --route and --unroute.
    "no connection or alias '",
    // 4.x --initiate.
    "no connection named \"",
    // 4.x --rekey-ike and --rekey-ipsec.
    "no such connection or aliased connection named \"",
];

/// Reads pluto's answer to a verb from whack's standard output.
///
/// The problem, when there is one, is decided from pluto's words in this order:
/// 1. [`ReplyProblem::VersionMismatch`] when any line says `Mismatched versions of userland
///    tools` (both directions of a 4.x/5.x mix print it, with or without a code);
/// 2. [`ReplyProblem::UnknownConnection`] when a line starts with one of the wordings for
///    an unknown name (4.x uses codes 21 and 25 for them, 5.x none);
/// 3. [`ReplyProblem::Refused`] with the first line whose 4.x code is 20 to 99: whack's
///    failure codes (`036 ... encountered fatal error`), unlike the progress codes below 20
///    and the state-change codes from 100 on. Lines without a code (all of 5.x) never count
///    here, because 5.x prints failures and chatter alike without one; its exit status tells
///    the caller instead.
///
/// 4.x prints nothing at all for `--terminate` or `--delete` of an unknown name, so an
/// empty reply is not proof that the connection exists.
pub fn parse_reply(stdout: &str) -> Reply {
    let mut reply = Reply::default();
    let mut mismatch = false;
    let mut unknown = false;
    let mut refused = None;

    for line in stdout.lines() {
        let (code, text) = split_code(line);
        let text = text.trim_end();
        if text.trim_start().is_empty() {
            continue;
        }
        if text.contains("Mismatched versions of userland tools") {
            mismatch = true;
        } else if UNKNOWN_CONNECTION
            .iter()
            .any(|wording| text.starts_with(wording))
        {
            unknown = true;
        } else if refused.is_none() && code.is_some_and(|code| (20..=99).contains(&code)) {
            refused = Some(text.to_owned());
        }
        reply.lines.push(text.to_owned());
    }

    reply.problem = if mismatch {
        Some(ReplyProblem::VersionMismatch)
    } else if unknown {
        Some(ReplyProblem::UnknownConnection)
    } else {
        refused.map(ReplyProblem::Refused)
    };
    reply
}

/// Classifies whack's own complaint (standard error) when it could not talk to pluto.
///
/// 4.x: `whack: Pluto is not running (no "/run/pluto/pluto.ctl")`,
/// `whack: is Pluto running?  connect() for "..." failed (111 Connection refused)`,
/// `whack: no right to communicate with pluto (access("..."))`.
/// 5.x: `ERROR: ipsec whack: Pluto is not running (no "..."): No such file or directory
/// (errno 2)`, `ERROR: ipsec whack: connect(pluto_ctl) failed: Connection refused (errno 111)`,
/// and `Permission denied (errno 13)` for a caller without access.
pub fn classify_whack_failure(stderr: &str) -> WhackFailure {
    let says = |words: &str| stderr.contains(words);
    if says("Pluto is not running") || says("(errno 2)") {
        WhackFailure::SocketMissing
    } else if says("no right to communicate") || says("Permission denied") || says("(errno 13)") {
        WhackFailure::NotPermitted
    } else if says("Connection refused") || says("(errno 111)") {
        WhackFailure::ConnectionRefused
    } else {
        WhackFailure::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! fixture {
        ($path:literal) => {
            include_str!(concat!("../../tests/fixtures/pluto/", $path))
        };
    }

    #[test]
    fn successful_initiate_on_4_10_has_no_problem() {
        let reply = parse_reply(fixture!("4.10/01-initiate-fakesa.txt"));
        assert_eq!(reply.problem, None);
        assert_eq!(reply.lines.len(), 7);
        assert_eq!(
            reply.lines[0],
            "\"westnet-eastnet\" #1: initiating IKEv2 connection"
        );
        assert!(
            reply.lines[6].starts_with("\"westnet-eastnet\" #2: initiator established Child SA")
        );
    }

    #[test]
    fn terminate_on_4_10_has_no_problem() {
        for text in [
            fixture!("4.10/20-terminate-fakesa.txt"),
            fixture!("4.10/22-terminate-again-when-down.txt"),
            fixture!("4.10/54-delete-up-connection.whack-delete.txt"),
            fixture!("4.10/55-route-unroute-known-conns.whack-delete-while-up.txt"),
            fixture!("4.10/53-initiate-when-already-up.whack-initiate.txt"),
            fixture!("4.10/51-initiate-unreachable-peer.whack-initiate.txt"),
        ] {
            assert_eq!(parse_reply(text).problem, None, "{text}");
        }
        let reply = parse_reply(fixture!("4.10/20-terminate-fakesa.txt"));
        assert_eq!(
            reply.lines,
            [
                "\"westnet-eastnet\": terminating SAs using this connection",
                "\"westnet-eastnet\" #1: deleting state (STATE_V2_ESTABLISHED_IKE_SA) aged 7.870624s and sending notification",
                "\"westnet-eastnet\" #2: ESP traffic information: in=0B out=0B",
            ]
        );
    }

    #[test]
    fn unknown_names_in_every_4_10_wording() {
        for text in [
            fixture!("4.10/50-unknown-connection-name.whack-unroute.txt"),
            fixture!("4.10/50-unknown-connection-name.whack-initiate.txt"),
            fixture!("4.10/50-unknown-connection-name.whack-rekey-ike.txt"),
            fixture!("4.10/54-delete-up-connection.whack-initiate-deleted.txt"),
        ] {
            assert_eq!(
                parse_reply(text).problem,
                Some(ReplyProblem::UnknownConnection),
                "{text}"
            );
        }
    }

    #[test]
    fn terminate_of_an_unknown_name_on_4_10_says_nothing() {
        let reply = parse_reply(fixture!(
            "4.10/50-unknown-connection-name.whack-terminate.txt"
        ));
        assert_eq!(reply, Reply::default());
    }

    #[test]
    fn unknown_names_on_5_2() {
        for text in [
            fixture!("5.2/host-kernel-childless/07-unknown-name.w5.name_no-such-conn_down.stdout"),
            fixture!(
                "5.2/host-kernel-childless/07-unknown-name.w5.name_no-such-conn_trafficstatus.stdout"
            ),
            fixture!("5.2/uml-real-esp/15-unknown-name.w5.name_no-such-conn_down.stdout"),
            fixture!("5.2/uml-real-esp/15-unknown-name.w5.name_no-such-conn_route.stdout"),
        ] {
            let reply = parse_reply(text);
            assert_eq!(reply.problem, Some(ReplyProblem::UnknownConnection));
            assert_eq!(
                reply.lines,
                ["no connection or alias named \"no-such-conn\"'"]
            );
        }
    }

    #[test]
    fn authentication_failure_on_4_10_is_refused_though_whack_exits_0() {
        let reply = parse_reply(fixture!("4.10/52-initiate-psk-mismatch.whack-initiate.txt"));
        assert_eq!(
            reply.problem,
            Some(ReplyProblem::Refused(
                "\"authfail\" #10: encountered fatal error in state STATE_V2_PARENT_I2".into()
            ))
        );
        assert!(
            reply
                .lines
                .iter()
                .any(|line| line.ends_with("rejected by peer: AUTHENTICATION_FAILED"))
        );
    }

    #[test]
    fn version_mismatch_in_both_directions() {
        for text in [
            fixture!(
                "5.2/host-kernel-childless/12-host-whack-4.10-to-pluto-5.2.w5.name_westnet-eastnet_terminate.stdout"
            ),
            fixture!("5.2/host-kernel-childless/12-host-whack-4.10-to-pluto-5.2.w5.status.stdout"),
            fixture!(
                "5.2/host-kernel-childless/13-trixie-whack-5.2-to-pluto-4.10.x5.name_westnet-eastnet_down.stdout"
            ),
        ] {
            assert_eq!(
                parse_reply(text).problem,
                Some(ReplyProblem::VersionMismatch),
                "{text}"
            );
        }
    }

    #[test]
    fn replies_on_5_2_without_a_problem() {
        for text in [
            fixture!("5.2/uml-real-esp/02-initiate.w5.name_westnet-eastnet_initiate.stdout"),
            fixture!("5.2/uml-real-esp/04-down.w5.name_westnet-eastnet_down.stdout"),
            fixture!("5.2/uml-real-esp/06-route-after-down.w5.name_westnet-eastnet_route.stdout"),
            fixture!("5.2/uml-real-esp/16-delete-while-up.w5.name_westnet-eastnet_delete.stdout"),
            fixture!(
                "5.2/host-kernel-childless/09-known-inactive.w5.name_routed-ondemand_route.stdout"
            ),
            fixture!(
                "5.2/host-kernel-childless/15-delete-while-up.w5.name_westnet-eastnet_delete.stdout"
            ),
            // whack exits 52 here; without codes, 5.x's text does not say it failed.
            fixture!(
                "5.2/host-kernel-childless/03-down-while-child-failing.w5.name_westnet-eastnet_down.stdout"
            ),
        ] {
            assert_eq!(parse_reply(text).problem, None, "{text}");
        }
        let reply = parse_reply(fixture!(
            "5.2/uml-real-esp/04-down.w5.name_westnet-eastnet_down.stdout"
        ));
        assert_eq!(
            reply.lines[2],
            "\"westnet-eastnet\" #2: ESP traffic information: in=252B out=252B"
        );
    }

    #[test]
    fn only_failure_codes_count_as_refusals() {
        let reply = parse_reply("010 \"c\" #1: retransmission\n181 \"c\" #1: sent\n000 note\n");
        assert_eq!(reply.problem, None);
        let reply = parse_reply("026 cannot unroute: route busy\n036 later\n");
        assert_eq!(
            reply.problem,
            Some(ReplyProblem::Refused("cannot unroute: route busy".into()))
        );
        assert_eq!(reply.lines, ["cannot unroute: route busy", "later"]);
    }

    #[test]
    fn a_connection_named_like_an_error_is_not_one() {
        let reply =
            parse_reply(r#""no connection named "x"": terminating SAs using this connection"#);
        assert_eq!(reply.problem, None);
    }

    #[test]
    fn whack_failures_in_both_versions() {
        let cases = [
            (
                fixture!("4.10/60-whack-socket-errors.no-socket.stderr.txt"),
                WhackFailure::SocketMissing,
            ),
            (
                fixture!("4.10/60-whack-socket-errors.stale-socket.stderr.txt"),
                WhackFailure::ConnectionRefused,
            ),
            (
                fixture!("4.10/60-whack-socket-errors.not-a-socket.stderr.txt"),
                WhackFailure::ConnectionRefused,
            ),
            (
                fixture!("4.10/60-whack-socket-errors.nobody.stderr.txt"),
                WhackFailure::NotPermitted,
            ),
            (
                fixture!("5.2/host-kernel-childless/08-no-ctlsocket.w5.status.stderr"),
                WhackFailure::SocketMissing,
            ),
            (
                fixture!(
                    "5.2/host-kernel-childless/08-no-ctlsocket.w5.name_westnet-eastnet_down.stderr"
                ),
                WhackFailure::SocketMissing,
            ),
            (
                fixture!(
                    "5.2/host-kernel-childless/08-stale-ctlsocket-no-listener.w5.status.stderr"
                ),
                WhackFailure::ConnectionRefused,
            ),
            (
                fixture!("5.2/host-kernel-childless/08-ctlsocket-is-regular-file.w5.status.stderr"),
                WhackFailure::ConnectionRefused,
            ),
            (
                "ERROR: ipsec whack: connect(pluto_ctl) failed: Permission denied (errno 13)\n",
                WhackFailure::NotPermitted,
            ),
            (
                fixture!(
                    "5.2/host-kernel-childless/12-host-whack-4.10-to-pluto-5.2.w5.name_westnet-eastnet_down.stderr"
                ),
                WhackFailure::Other,
            ),
            ("", WhackFailure::Other),
        ];
        for (stderr, expected) in cases {
            assert_eq!(classify_whack_failure(stderr), expected, "{stderr}");
        }
    }
}
