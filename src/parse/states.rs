//! pluto's state list: `--showstates`, and the states part of `--status`.
//!
//! ```text
//! #1: "westnet-eastnet":500 STATE_V2_ESTABLISHED_IKE_SA (established IKE SA); REKEY in 28124s; ...
//! #2: "westnet-eastnet":500 STATE_V2_ESTABLISHED_CHILD_SA (established Child SA); ...; IKE SA #1; idle;
//! #2: "westnet-eastnet" esp.bcb1e29f@192.0.2.2 esp.3d94c88e@192.0.2.1 ... Traffic: ESPin=0B ...
//! #3: "rw"[1] 192.0.2.7:500 ESTABLISHED_IKE_SA (established IKE SA); ...
//! #8: pending CHILD SA for "never-up"
//! ```
//!
//! The third line is a detail line of the Child SA above it, not a state of its own.

use super::{
    SaKind, SaState, is_address_token, last_name_split, parse_u64, split_digits, strip_code,
};

/// The states `--showstates` lists, in pluto's order.
///
/// A Child SA's detail line (SPIs and traffic) is not a state and is skipped; a
/// `pending CHILD SA` line becomes a Child SA named `PENDING`, so a Child SA waiting for its
/// IKE SA shows up.
pub fn parse_showstates(text: &str) -> Vec<SaState> {
    text.lines()
        .filter_map(|line| parse_state_line(strip_code(line)))
        .collect()
}

/// Splits the answer to a verb asked together with `--showstates` in one whack run (4.x lists
/// the states once the verb is done) into the verb's own lines, as printed, and the states.
pub fn split_showstates(text: &str) -> (String, Vec<SaState>) {
    let mut said = String::new();
    let mut states = Vec::new();
    for line in text.lines() {
        let bare = strip_code(line);
        if is_state_listing_line(bare) {
            states.extend(parse_state_line(bare));
        } else {
            said.push_str(line);
            said.push('\n');
        }
    }
    (said, states)
}

/// Whether a line (code stripped) belongs to the state list: `#N: ...`, states and their
/// detail lines alike. A verb's own lines start with the connection's quoted name instead.
fn is_state_listing_line(line: &str) -> bool {
    line.strip_prefix('#').is_some_and(|rest| {
        let (serial, rest) = split_digits(rest);
        !serial.is_empty() && rest.starts_with(':')
    })
}

/// One line of the state list (code already stripped); `None` for anything else.
pub(super) fn parse_state_line(line: &str) -> Option<SaState> {
    let rest = line.strip_prefix('#')?;
    let (serial, rest) = split_digits(rest);
    let serial = parse_u64(serial)?;
    let rest = rest.strip_prefix(": ")?;

    if let Some(pending) = rest.strip_prefix("pending ") {
        return parse_pending(serial, pending);
    }

    // Nothing pluto prints after the name of a state can hold a double quote, so the
    // name ends at the last quote however many quotes the name itself holds.
    let split = last_name_split(rest)?;
    let after_port = skip_endpoint(split.rest)?;
    let (state, after_state) = split_state_name(after_port)?;
    let description = after_state
        .trim_start()
        .strip_prefix('(')
        .and_then(|text| text.split_once(')'))
        .map_or("", |(description, _)| description);

    Some(SaState {
        serial,
        connection: split.full_name(),
        kind: sa_kind(state, description),
        established: is_established(state, description),
        name: state.to_owned(),
    })
}

/// `#8: pending CHILD SA for "never-up"` (IKEv1: `pending Phase 2 for "name" replacing #2`).
fn parse_pending(serial: u64, pending: &str) -> Option<SaState> {
    let quote = pending.find('"')?;
    let split = last_name_split(&pending[quote..])?;
    Some(SaState {
        serial,
        connection: split.full_name(),
        kind: SaKind::Child,
        established: false,
        name: "PENDING".to_owned(),
    })
}

/// Skips what follows the name up to the state name: `:500 ` for an ordinary connection,
/// ` 192.0.2.7:500 ` for an instance. `None` when the line is not a state line (a Child SA's
/// detail line has no port there).
fn skip_endpoint(rest: &str) -> Option<&str> {
    let (port, after) = if let Some(instance) = rest.strip_prefix(' ') {
        let (endpoint, after) = instance.split_once(' ')?;
        let (address, port) = endpoint.rsplit_once(':')?;
        if !is_address_token(address) {
            return None;
        }
        (port, after)
    } else {
        let port = rest.strip_prefix(':')?;
        port.split_once(' ').unwrap_or((port, ""))
    };
    parse_u64(port)?;
    Some(after)
}

/// The state name at the start of `text` (`STATE_V2_ESTABLISHED_IKE_SA`, `IKE_SA_INIT_I`) and
/// what follows it.
fn split_state_name(text: &str) -> Option<(&str, &str)> {
    let end = text
        .bytes()
        .position(|b| !(b.is_ascii_alphanumeric() || b == b'_'))
        .unwrap_or(text.len());
    let (state, after) = text.split_at(end);
    if state.is_empty() || !(after.is_empty() || after.starts_with(' ')) {
        return None;
    }
    Some((state, after))
}

/// Whether a state belongs to a Child (IPsec) SA or to the IKE SA.
///
/// The state name decides when it names the SA: `CHILD`, `QUICK` (IKEv1 phase 2) and `IPSEC`
/// (3.x) mark Child SA states, `IKE`, `PARENT`, `MAIN` and `AGGR` mark IKE SA states. Only
/// names that say neither fall back to the description (`Child SA`, `IPsec SA`), because
/// descriptions also talk about the other SA: an IKE SA rekey is `sent CREATE_CHILD_SA
/// request to rekey IKE SA`.
fn sa_kind(state: &str, description: &str) -> SaKind {
    let has = |word: &str| state.contains(word);
    if has("CHILD") || has("QUICK") || has("IPSEC") {
        return SaKind::Child;
    }
    if has("IKE") || has("PARENT") || has("MAIN") || has("AGGR") {
        return SaKind::Ike;
    }
    if description.contains("Child SA")
        || description.contains("CHILD SA")
        || description.contains("IPsec SA")
    {
        return SaKind::Child;
    }
    SaKind::Ike
}

/// Whether the exchange that creates the SA has completed.
///
/// IKEv2 state names say `ESTABLISHED`; IKEv1 ones are numbered, so the final states of
/// main, aggressive and quick mode are listed. The description (`established IKE SA`,
/// `ISAKMP SA established`, `IPsec SA established`) covers the rest.
fn is_established(state: &str, description: &str) -> bool {
    const IKEV1_FINAL: [&str; 6] = [
        "MAIN_I4", "MAIN_R3", "AGGR_I2", "AGGR_R2", "QUICK_I2", "QUICK_R2",
    ];
    let bare = state.strip_prefix("STATE_").unwrap_or(state);
    state.contains("ESTABLISHED")
        || IKEV1_FINAL.contains(&bare)
        || description.contains("established")
}

#[cfg(test)]
mod tests {
    use super::*;

    const UP_4_10: &str =
        include_str!("../../tests/fixtures/pluto/4.10/10-up-1conn-showstates.txt");
    const TWO_UP_4_10: &str =
        include_str!("../../tests/fixtures/pluto/4.10/40-4conns-2up-showstates.txt");
    const AFTER_DOWN_4_10: &str =
        include_str!("../../tests/fixtures/pluto/4.10/42-4conns-after-down-showstates.txt");
    const PENDING_4_10: &str =
        include_str!("../../tests/fixtures/pluto/4.10/51-initiate-unreachable-peer.showstates.txt");
    const TERMINATE_WITH_SHOWSTATES_4_10: &str =
        include_str!("../../tests/fixtures/pluto/4.10/23-terminate-with-showstates.txt");
    const UP_5_2: &str = include_str!(
        "../../tests/fixtures/pluto/5.2/uml-real-esp/03-tunnel-up.w5.showstates.stdout"
    );
    const ONDEMAND_RESPONDER_5_2: &str = include_str!(
        "../../tests/fixtures/pluto/5.2/uml-real-esp/12-ondemand-triggered.e5.showstates.stdout"
    );
    const CHILD_NEGOTIATING_5_2: &str = include_str!(
        "../../tests/fixtures/pluto/5.2/host-kernel-childless/02b-after-initiate-child-install-failed.w5.showstates.stdout"
    );
    const CHILDLESS_5_2: &str = include_str!(
        "../../tests/fixtures/pluto/5.2/host-kernel-childless/11-one-up-one-routed-one-never.w5.showstates.stdout"
    );

    fn state(
        serial: u64,
        connection: &str,
        kind: SaKind,
        established: bool,
        name: &str,
    ) -> SaState {
        SaState {
            serial,
            connection: connection.to_owned(),
            kind,
            established,
            name: name.to_owned(),
        }
    }

    #[test]
    fn one_tunnel_up_on_4_10_is_an_ike_sa_and_a_child_sa() {
        assert_eq!(
            parse_showstates(UP_4_10),
            [
                state(
                    1,
                    "westnet-eastnet",
                    SaKind::Ike,
                    true,
                    "STATE_V2_ESTABLISHED_IKE_SA"
                ),
                state(
                    2,
                    "westnet-eastnet",
                    SaKind::Child,
                    true,
                    "STATE_V2_ESTABLISHED_CHILD_SA"
                ),
            ]
        );
    }

    #[test]
    fn two_connections_sharing_one_ike_sa_on_4_10() {
        let states = parse_showstates(TWO_UP_4_10);
        let summary: Vec<_> = states
            .iter()
            .map(|s| (s.serial, s.connection.as_str(), s.kind))
            .collect();
        assert_eq!(
            summary,
            [
                (6, "subnet-a", SaKind::Child),
                (4, "westnet-eastnet", SaKind::Ike),
                (5, "westnet-eastnet", SaKind::Child),
            ]
        );
        assert!(states.iter().all(|s| s.established));
    }

    #[test]
    fn orphan_ike_sa_after_terminate_on_4_10() {
        assert_eq!(
            parse_showstates(AFTER_DOWN_4_10),
            [state(
                4,
                "westnet-eastnet",
                SaKind::Ike,
                true,
                "STATE_V2_ESTABLISHED_IKE_SA"
            )]
        );
    }

    #[test]
    fn unanswered_initiate_shows_a_half_open_ike_sa_and_a_pending_child_sa() {
        let states = parse_showstates(PENDING_4_10);
        assert_eq!(
            states[..2],
            [
                state(8, "never-up", SaKind::Ike, false, "STATE_V2_PARENT_I1"),
                state(8, "never-up", SaKind::Child, false, "PENDING"),
            ]
        );
        assert_eq!(states.len(), 5);
    }

    #[test]
    fn one_tunnel_up_on_5_2() {
        assert_eq!(
            parse_showstates(UP_5_2),
            [
                state(
                    1,
                    "westnet-eastnet",
                    SaKind::Ike,
                    true,
                    "ESTABLISHED_IKE_SA"
                ),
                state(
                    2,
                    "westnet-eastnet",
                    SaKind::Child,
                    true,
                    "ESTABLISHED_CHILD_SA"
                ),
            ]
        );
    }

    #[test]
    fn responder_of_an_ondemand_tunnel_on_5_2() {
        assert_eq!(
            parse_showstates(ONDEMAND_RESPONDER_5_2),
            [
                state(
                    6,
                    "routed-ondemand",
                    SaKind::Child,
                    true,
                    "ESTABLISHED_CHILD_SA"
                ),
                state(
                    5,
                    "westnet-eastnet",
                    SaKind::Ike,
                    true,
                    "ESTABLISHED_IKE_SA"
                ),
            ]
        );
    }

    #[test]
    fn child_sa_being_negotiated_on_5_2_is_not_established() {
        assert_eq!(
            parse_showstates(CHILD_NEGOTIATING_5_2),
            [
                state(
                    3,
                    "westnet-eastnet",
                    SaKind::Ike,
                    true,
                    "ESTABLISHED_IKE_SA"
                ),
                state(4, "westnet-eastnet", SaKind::Child, false, "NEW_CHILD_I1"),
            ]
        );
    }

    #[test]
    fn childless_ike_sa_on_5_2() {
        assert_eq!(
            parse_showstates(CHILDLESS_5_2),
            [state(
                6,
                "westnet-eastnet",
                SaKind::Ike,
                true,
                "ESTABLISHED_IKE_SA"
            )]
        );
    }

    #[test]
    fn nothing_up_is_an_empty_list() {
        assert!(parse_showstates("").is_empty());
        assert!(parse_showstates("000  \n").is_empty());
    }

    #[test]
    fn instance_states_name_the_instance() {
        let text = "\
#3: \"rw\"[1] 192.0.2.7:500 ESTABLISHED_IKE_SA (established IKE SA); newest; idle;
#4: \"rw\"[1] 192.0.2.7:500 ESTABLISHED_CHILD_SA (established Child SA); IKE SA #3; idle;
#4: \"rw\"[1] 192.0.2.7 esp.1@192.0.2.7 esp.2@192.0.2.1 Traffic: ESPin=0B ESPout=0B ESPmax=2^63B
#5: \"v6\"[2] 2001:db8::7:500 ESTABLISHED_IKE_SA (established IKE SA); idle;
#5: \"v6\"[2] 2001:db8::7 esp.1@2001:db8::7 Traffic: ESPin=0B ESPout=0B ESPmax=2^63B
#6: \"private#10.0.0.0/8\"[1] ...192.0.2.9:500 STATE_PARENT_I3 (PARENT SA established); idle;
";
        let states = parse_showstates(text);
        let summary: Vec<_> = states
            .iter()
            .map(|s| (s.serial, s.connection.as_str(), s.kind, s.established))
            .collect();
        assert_eq!(
            summary,
            [
                (3, "rw[1]", SaKind::Ike, true),
                (4, "rw[1]", SaKind::Child, true),
                (5, "v6[2]", SaKind::Ike, true),
                (6, "private#10.0.0.0/8[1]", SaKind::Ike, true),
            ]
        );
    }

    #[test]
    fn ikev1_states_are_classified_by_mode() {
        let text = "\
000 #1: \"v1\":500 STATE_MAIN_I4 (ISAKMP SA established); EVENT_SA_REPLACE in 2601s; newest ISAKMP; lastdpd=-1s(seq in:0 out:0); idle;
000 #2: \"v1\":500 STATE_QUICK_I2 (sent QI2, IPsec SA established); EVENT_SA_REPLACE in 27950s; newest IPSEC; eroute owner; isakmp#1; idle;
000 #3: \"v1\":500 STATE_MAIN_I2 (sent MI2, expecting MR2); EVENT_RETRANSMIT in 1s; idle;
000 #4: \"v1\":500 STATE_QUICK_R1 (sent QR1, inbound IPsec SA installed, expecting QI2); idle;
000 #5: pending Phase 2 for \"v1\" replacing #2
";
        let summary: Vec<_> = parse_showstates(text)
            .into_iter()
            .map(|s| (s.serial, s.kind, s.established))
            .collect();
        assert_eq!(
            summary,
            [
                (1, SaKind::Ike, true),
                (2, SaKind::Child, true),
                (3, SaKind::Ike, false),
                (4, SaKind::Child, false),
                (5, SaKind::Child, false),
            ]
        );
    }

    #[test]
    fn ike_sa_rekey_is_not_a_child_sa_despite_its_description() {
        let text = "#7: \"c\":500 STATE_V2_REKEY_IKE_I1 (sent CREATE_CHILD_SA request to rekey IKE SA); idle;";
        let states = parse_showstates(text);
        assert_eq!(states[0].kind, SaKind::Ike);
        assert!(!states[0].established);
    }

    #[test]
    fn names_with_quotes_colons_and_brackets_survive() {
        for name in [
            "-my.vpn/ü",
            "a\"b",
            "x\":500 STATE_FAKE (y",
            "rw\"[1] 192.0.2.7",
            "name with spaces",
            "\"",
        ] {
            let text = UP_5_2.replace("\"westnet-eastnet\"", &format!("\"{name}\""));
            let states = parse_showstates(&text);
            assert_eq!(states.len(), 2, "{name}");
            assert!(
                states.iter().all(|s| s.connection == name),
                "{name}: {states:?}"
            );
        }
    }

    #[test]
    fn junk_is_not_a_state() {
        for line in [
            "#",
            "#: \"x\":500 S (d)",
            "#99999999999999999999999: \"x\":500 ESTABLISHED_IKE_SA (established IKE SA)",
            "#1: x:500 S",
            "#1: \"x\"",
            "#1: \"x\":port S",
            "#1: \"x\":500",
            "#1 \"x\":500 S",
            "#1: pending CHILD SA for never-up",
        ] {
            assert_eq!(parse_showstates(line), [], "{line}");
        }
    }

    #[test]
    fn splits_a_verb_from_the_states_listed_after_it() {
        let (said, states) = split_showstates(TERMINATE_WITH_SHOWSTATES_4_10);
        assert_eq!(
            said.lines().collect::<Vec<_>>(),
            [
                "002 \"westnet-eastnet\": terminating SAs using this connection",
                "002 \"westnet-eastnet\" #3: deleting state (STATE_V2_ESTABLISHED_IKE_SA) aged \
                 0.06659s and sending notification",
                "005 \"westnet-eastnet\" #4: ESP traffic information: in=0B out=0B",
            ]
        );
        let left: Vec<_> = states
            .iter()
            .map(|sa| (sa.serial, sa.connection.as_str(), sa.kind))
            .collect();
        assert_eq!(
            left,
            [(5, "subnet-a", SaKind::Ike), (6, "subnet-a", SaKind::Child)]
        );

        let (said, states) = split_showstates("");
        assert!(said.is_empty() && states.is_empty());
    }
}
