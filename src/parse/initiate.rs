//! The lines pluto writes while a synchronous initiate runs: how the attempt goes, and in
//! pluto's own words why a tunnel is not up.

use super::split_code;

/// What one line of an initiate's answer says about the attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitiateEvent {
    /// pluto created a state for the attempt: the request is accepted.
    Started,
    /// A Child SA is established: the tunnel is up.
    Established,
    /// No answer yet, or the network refuses; pluto keeps trying. pluto's words.
    Retrying(String),
    /// The peer refused, or pluto gave up on this try. pluto's words.
    Failed(String),
    /// Anything else: progress a person need not see.
    Other,
}

/// Words that mean this try failed, whatever pluto does next (4.x and 5.x alike).
const FAILURE_WORDS: [&str; 11] = [
    "rejected",
    "AUTHENTICATION_FAILED",
    "NO_PROPOSAL_CHOSEN",
    "TS_UNACCEPTABLE",
    "INVALID_",
    "timeout exceeded",
    "fatal error",
    "not attempting",
    "no acceptable response",
    "failed",
    "ERROR",
];

/// Classifies one line of `whack --name N --initiate` output.
pub fn parse_initiate_line(line: &str) -> InitiateEvent {
    let (_code, text) = split_code(line);
    let words = state_words(text);

    if text.contains("established Child SA") || text.contains("IPsec SA established") {
        InitiateEvent::Established
    } else if text.contains("retransmission") || text.contains("asynchronous network error") {
        InitiateEvent::Retrying(words.to_owned())
    } else if FAILURE_WORDS.iter().any(|word| text.contains(word)) {
        InitiateEvent::Failed(words.to_owned())
    } else if words.starts_with("initiating") && words.len() < text.len() {
        InitiateEvent::Started
    } else {
        InitiateEvent::Other
    }
}

/// The text after pluto's `"NAME" #N: ` prefix, or the whole line when it has none.
fn state_words(text: &str) -> &str {
    let mut rest = text;
    while let Some(at) = rest.find('#') {
        let after = &rest[at + 1..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && after[digits..].starts_with(": ") {
            return after[digits + 2..].trim();
        }
        rest = after;
    }
    text.trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_an_attempt_that_succeeds_on_4_10() {
        let lines = [
            "181 \"never-up\" #8: initiating IKEv2 connection",
            "181 \"never-up\" #8: sent IKE_SA_INIT request to 192.0.2.99:500",
            "004 \"westnet-eastnet\" #2: initiator established Child SA using #1; IPsec tunnel",
        ];
        let events: Vec<_> = lines.iter().map(|l| parse_initiate_line(l)).collect();
        assert_eq!(
            events,
            [
                InitiateEvent::Started,
                InitiateEvent::Other,
                InitiateEvent::Established
            ]
        );
    }

    #[test]
    fn says_why_a_dead_peer_is_not_up() {
        let retry = parse_initiate_line(
            "010 \"never-up\" #8: STATE_V2_PARENT_I1: retransmission; will wait 0.5 seconds \
             for response",
        );
        assert_eq!(
            retry,
            InitiateEvent::Retrying(
                "STATE_V2_PARENT_I1: retransmission; will wait 0.5 seconds for response".into()
            )
        );
        let unreachable = parse_initiate_line(
            "000 \"never-up\" #8: ERROR: asynchronous network error report on vw \
             (192.0.2.1:500), complainant 192.0.2.1: No route to host",
        );
        assert!(
            matches!(unreachable, InitiateEvent::Retrying(w) if w.contains("No route to host"))
        );
        let five = parse_initiate_line(
            "\"westnet-eastnet\" #1: IKE_AUTH_I: retransmission; will wait 1 seconds for response",
        );
        assert!(matches!(five, InitiateEvent::Retrying(w) if w.starts_with("IKE_AUTH_I")));
    }

    #[test]
    fn says_why_the_peer_refused() {
        let refused = parse_initiate_line(
            "003 \"authfail\" #10: IKE SA authentication request rejected by peer: \
             AUTHENTICATION_FAILED",
        );
        assert_eq!(
            refused,
            InitiateEvent::Failed(
                "IKE SA authentication request rejected by peer: AUTHENTICATION_FAILED".into()
            )
        );
        let child = parse_initiate_line(
            "\"westnet-eastnet\" #1: IKE SA established but initiator rejected Child SA response",
        );
        assert!(matches!(child, InitiateEvent::Failed(_)));
    }

    #[test]
    fn an_unknown_name_is_not_a_start() {
        assert_eq!(
            parse_initiate_line("000 initiating all conns with alias='no-such-conn'"),
            InitiateEvent::Other
        );
    }

    #[test]
    fn never_panics_on_odd_lines() {
        for line in [
            "",
            "#",
            "#:",
            "#1:",
            "\"x\" #1: ",
            "000",
            "é#1: x",
            "# 1: initiating",
        ] {
            let _ = parse_initiate_line(line);
        }
    }
}
