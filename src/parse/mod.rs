//! Pure parsers of the text pluto sends back through whack.
//!
//! Every function here takes `&str` and returns typed data; none of them can fail or panic on
//! any input, and each reads its input in time proportional to its length. Lines that fit
//! nothing known are skipped. libreswan 4.x prefixes every line with a three-digit code
//! (`000 `); 5.x prints none. Both are accepted everywhere.
//!
//! pluto prints connection names between double quotes without escaping them, and a name
//! may hold anything but a newline, quotes included. Each parser therefore decides where a
//! name ends from what must follow it on that kind of line, as its module explains.

mod initiate;
mod listing;
mod reply;
mod states;
mod traffic;

pub use initiate::{InitiateEvent, parse_initiate_line};
pub use listing::{BriefTotals, StatusParser, parse_brief_connection_status, parse_status};
pub use reply::{Reply, ReplyProblem, WhackFailure, classify_whack_failure, parse_reply};
pub use states::{parse_showstates, split_showstates};
pub use traffic::parse_trafficstatus;

/// One connection as pluto's connection list describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The name as pluto prints it; a template instance is `rw[3]`.
    pub name: String,
    /// For a template instance, the template's name (`rw`); empty otherwise.
    pub template: String,
    /// This host's address in the connection (`192.0.2.1`, `2001:db8::1`, `%defaultroute`);
    /// empty when the topology could not be read.
    pub local_address: String,
    /// The peer's address (`192.0.2.2`, `%any` for a template waiting for peers).
    pub remote_address: String,
    /// This host's IKE identity (`@west`, `198.51.100.1`, a certificate's DN).
    pub local_id: String,
    /// The peer's IKE identity (`@east`, `%fromcert`, ...).
    pub remote_id: String,
    /// The networks behind this host (`10.1.0.0/24`); empty for host-to-host.
    pub local_subnets: Vec<String>,
    /// The networks behind the peer; empty for host-to-host.
    pub remote_subnets: Vec<String>,
    /// 1 or 2, from the connection's policy; 0 when pluto does not say.
    pub ike_version: u32,
    /// pluto's number for the connection (`conn serial: $7`); 0 when pluto does not say. 5.x
    /// accepts `$7` wherever it takes a name, the one way to address a template's instance.
    pub serial: u64,
    /// pluto's routing field as printed: `unrouted`, `prospective erouted`, `erouted`,
    /// `routed-ondemand`, `routed-tunnel`, ...; empty when absent.
    pub routing: String,
}

impl ConnectionInfo {
    /// Whether pluto holds a kernel policy for the connection: a trap, or the tunnel's own.
    pub fn routed(&self) -> bool {
        !self.routing.is_empty() && !self.routing.contains("unrouted")
    }

    /// Whether this is an instance of a template (a road-warrior peer's connection).
    pub fn is_instance(&self) -> bool {
        !self.template.is_empty()
    }
}

/// Whether an SA is the IKE SA or a Child (IPsec) SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaKind {
    /// The IKE SA (IKEv1: ISAKMP SA) that authenticates the peers and carries control traffic.
    Ike,
    /// A Child SA (IKEv1: IPsec SA) that carries the tunnelled traffic.
    Child,
}

/// One state (SA) from pluto's state list (`--showstates`, or the states part of `--status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaState {
    /// pluto's serial number, `#N`.
    pub serial: u64,
    /// The connection's name as in [`ConnectionInfo::name`] (`rw[3]` for an instance).
    pub connection: String,
    /// Whether this is the IKE SA or a Child SA.
    pub kind: SaKind,
    /// True once the exchange that creates the SA has completed.
    pub established: bool,
    /// pluto's state name, e.g. `STATE_V2_ESTABLISHED_CHILD_SA` (4.x) or
    /// `ESTABLISHED_CHILD_SA` (5.x); `PENDING` for a "pending CHILD SA" line.
    pub name: String,
}

impl SaState {
    /// Whether the SA is `connection`'s own or, when `connection` is a template, one of its
    /// instances' (`rw[3]` for `rw`). Read from the name alone, so an instance the model has
    /// not seen yet counts too.
    pub fn is_under(&self, connection: &str) -> bool {
        match self.connection.strip_prefix(connection) {
            Some("") => true,
            Some(rest) => rest
                .strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
                .is_some_and(|number| parse_u64(number).is_some()),
            None => false,
        }
    }
}

/// Byte counts of one Child SA from `--trafficstatus`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Traffic {
    /// The Child SA's serial number, `#N`.
    pub serial: u64,
    /// The connection's name as in [`ConnectionInfo::name`].
    pub connection: String,
    /// Bytes received through the SA (`inBytes=`).
    pub bytes_in: u64,
    /// Bytes sent through the SA (`outBytes=`).
    pub bytes_out: u64,
}

/// What `--status` (or 5.x `--connectionstatus`) says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// `pluto_version=` from the status header, e.g. `4.10`; empty when absent.
    pub pluto_version: String,
    /// Every connection of the connection list, in pluto's order.
    pub connections: Vec<ConnectionInfo>,
    /// The states part (empty for `--connectionstatus`).
    pub states: Vec<SaState>,
    /// `Total IPsec connections: loaded N` when present.
    pub loaded: Option<u64>,
}

/// Most double quotes a parser tries as the end of one connection name.
///
/// Bounds the work on a line full of quotes. Limitation: in the connection list and the
/// traffic list, a name holding more quotes than this is skipped or misread; real names hold
/// a few at most, and the state list, which reads names from the right, has no such limit.
const MAX_NAME_QUOTES: usize = 64;

/// Splits the three-digit code pluto 4.x puts before every line (`000 `, `021 `) off a line.
///
/// A line without one (every 5.x line) comes back whole with no code.
fn split_code(line: &str) -> (Option<u16>, &str) {
    let bytes = line.as_bytes();
    let Some(digits) = bytes.get(..3) else {
        return (None, line);
    };
    if !digits.iter().all(u8::is_ascii_digit) {
        return (None, line);
    }
    let rest = match bytes.get(3) {
        None => "",
        Some(b' ') => &line[4..],
        Some(_) => return (None, line),
    };
    let code = digits
        .iter()
        .fold(0u16, |code, digit| code * 10 + u16::from(digit - b'0'));
    (Some(code), rest)
}

/// A line without pluto 4.x's three-digit code.
fn strip_code(line: &str) -> &str {
    split_code(line).1
}

/// Parses a run of ASCII digits; `None` when empty, not all digits, or too large for `u64`.
fn parse_u64(digits: &str) -> Option<u64> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The leading ASCII digits of `text`, and what follows them.
fn split_digits(text: &str) -> (&str, &str) {
    let end = text
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(text.len());
    text.split_at(end)
}

/// One reading of a line that starts with a double-quoted connection name.
///
/// pluto prints names without escaping, so a name holding `"` makes the closing quote
/// ambiguous; each parser tries the readings and keeps the one whose remainder fits.
#[derive(Debug, Clone, Copy)]
struct NameSplit<'a> {
    /// The text between the opening quote and the chosen closing quote.
    name: &'a str,
    /// The instance numbers pluto prints right after the name of a template instance
    /// (`[3]`, or `[3][1]`); empty for an ordinary connection.
    instance: &'a str,
    /// Everything after the instance numbers.
    rest: &'a str,
}

impl NameSplit<'_> {
    /// The name as the rest of the crate knows it: `rw[3]` for an instance.
    fn full_name(&self) -> String {
        let mut full = String::with_capacity(self.name.len() + self.instance.len());
        full.push_str(self.name);
        full.push_str(self.instance);
        full
    }

    /// The template's name for an instance; empty otherwise.
    fn template(&self) -> String {
        if self.instance.is_empty() {
            String::new()
        } else {
            self.name.to_owned()
        }
    }
}

/// Every reading of `text` as `"NAME"` followed by more, shortest name first.
///
/// Empty when `text` does not start with a quote. Only the first [`MAX_NAME_QUOTES`]
/// quotes are tried.
fn name_splits(text: &str) -> impl Iterator<Item = NameSplit<'_>> {
    let body = text.strip_prefix('"').unwrap_or("");
    body.match_indices('"')
        .take(MAX_NAME_QUOTES)
        .map(move |(at, _)| name_split_at(body, at))
}

/// The reading of `text` as `"NAME"` that ends the name at the last quote on the line.
fn last_name_split(text: &str) -> Option<NameSplit<'_>> {
    let body = text.strip_prefix('"')?;
    let at = body.rfind('"')?;
    Some(name_split_at(body, at))
}

/// Splits `body` (the text after an opening quote) at the closing quote at byte `at`.
fn name_split_at(body: &str, at: usize) -> NameSplit<'_> {
    let name = &body[..at];
    let after = &body[at + 1..];
    let mut instance_len = 0;
    while let Some(group) = after[instance_len..].strip_prefix('[') {
        let (digits, tail) = split_digits(group);
        if digits.is_empty() || !tail.starts_with(']') {
            break;
        }
        instance_len += digits.len() + 2;
    }
    let (instance, rest) = after.split_at(instance_len);
    NameSplit {
        name,
        instance,
        rest,
    }
}

/// Whether `token` can be the peer address pluto prints after an instance's name
/// (`192.0.2.7`, `2001:db8::7`, `...192.0.2.7` for opportunistic instances).
///
/// Used to tell that address from the rest of a name that happens to contain `"[1] `.
fn is_address_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 64
        && token.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b'%' | b'/' | b'-' | b'_')
        })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn an_sa_is_under_its_connection_and_an_instance_under_its_template() {
        let sa = |connection: &str| SaState {
            serial: 1,
            connection: connection.to_owned(),
            kind: SaKind::Child,
            established: true,
            name: "ESTABLISHED_CHILD_SA".to_owned(),
        };
        assert!(sa("rw").is_under("rw"));
        assert!(sa("rw[12]").is_under("rw"));
        assert!(sa("rw[12]").is_under("rw[12]"));
        assert!(!sa("rw[12]").is_under("rw[1]"));
        assert!(!sa("rw").is_under("rw[12]"));
        assert!(!sa("rw2").is_under("rw"));
        assert!(!sa("rw[]").is_under("rw"));
        assert!(!sa("rw[x]").is_under("rw"));
        assert!(!sa("west").is_under("rw"));
    }

    #[test]
    fn codes_are_split_off_4_x_lines_only() {
        assert_eq!(
            split_code("000 Connection list:"),
            (Some(0), "Connection list:")
        );
        assert_eq!(split_code("021 no connection"), (Some(21), "no connection"));
        assert_eq!(split_code("000  "), (Some(0), " "));
        assert_eq!(split_code("000"), (Some(0), ""));
        assert_eq!(split_code("\"a\": x"), (None, "\"a\": x"));
        assert_eq!(
            split_code("192.0.1.0/24 <==> x"),
            (None, "192.0.1.0/24 <==> x")
        );
        assert_eq!(split_code("12"), (None, "12"));
        assert_eq!(split_code("1234 x"), (None, "1234 x"));
        assert_eq!(split_code("00ü x"), (None, "00ü x"));
    }

    #[test]
    fn every_quote_is_a_possible_end_of_the_name() {
        let readings: Vec<_> = name_splits("\"a\"b\"[3][1] x: y")
            .map(|split| (split.full_name(), split.template(), split.rest))
            .collect();
        assert_eq!(
            readings,
            [
                ("a".to_owned(), String::new(), "b\"[3][1] x: y"),
                ("a\"b[3][1]".to_owned(), "a\"b".to_owned(), " x: y"),
            ]
        );
        assert_eq!(name_splits("a\"b\"").count(), 0);
        assert_eq!(
            last_name_split("\"a\"b\"[x]").map(|split| split.name),
            Some("a\"b")
        );
        assert!(last_name_split("\"a").is_none());
    }

    /// Every parser at once; none may panic.
    fn parse_everything(text: &str) {
        let status = parse_status(text);
        let _ = status
            .connections
            .iter()
            .map(ConnectionInfo::routed)
            .count();
        parse_showstates(text);
        parse_trafficstatus(text);
        parse_brief_connection_status(text);
        parse_reply(text);
        classify_whack_failure(text);
    }

    const FIXTURES: [&str; 8] = [
        include_str!("../../tests/fixtures/pluto/4.10/40-4conns-2up-status.txt"),
        include_str!("../../tests/fixtures/pluto/4.10/40-4conns-2up-trafficstatus.txt"),
        include_str!("../../tests/fixtures/pluto/4.10/51-initiate-unreachable-peer.showstates.txt"),
        include_str!("../../tests/fixtures/pluto/4.10/52-initiate-psk-mismatch.whack-initiate.txt"),
        include_str!("../../tests/fixtures/pluto/5.2/uml-real-esp/03-tunnel-up.w5.status.stdout"),
        include_str!(
            "../../tests/fixtures/pluto/5.2/uml-real-esp/03-tunnel-up.w5.briefconnectionstatus.stdout"
        ),
        include_str!(
            "../../tests/fixtures/pluto/5.2/uml-real-esp/12-ondemand-triggered.w5.trafficstatus.stdout"
        ),
        include_str!(
            "../../tests/fixtures/pluto/5.2/host-kernel-childless/07-unknown-name.w5.name_no-such-conn_down.stdout"
        ),
    ];

    /// One edit of a fixture: at a position (as a fraction of its length), delete some
    /// characters, insert a string, or cut the text there.
    #[derive(Debug, Clone)]
    enum Edit {
        Delete(f64, usize),
        Insert(f64, String),
        Truncate(f64),
    }

    fn edit() -> impl Strategy<Value = Edit> {
        let fragment = prop_oneof![
            Just("\"".to_owned()),
            Just("\n".to_owned()),
            Just(": ".to_owned()),
            Just("...".to_owned()),
            Just("===".to_owned()),
            Just("[".to_owned()),
            Just("]".to_owned()),
            Just("#".to_owned()),
            Just("000 ".to_owned()),
            Just(";".to_owned()),
            Just("99999999999999999999999".to_owned()),
            ".{0,8}",
        ];
        prop_oneof![
            (0.0..1.0, 1..16usize).prop_map(|(at, len)| Edit::Delete(at, len)),
            (0.0..1.0, fragment).prop_map(|(at, text)| Edit::Insert(at, text)),
            (0.0..1.0).prop_map(Edit::Truncate),
        ]
    }

    /// Applies `edits` on character boundaries.
    fn apply(text: &str, edits: &[Edit]) -> String {
        let mut chars: Vec<char> = text.chars().collect();
        for edit in edits {
            let at = |fraction: f64| ((chars.len() as f64) * fraction) as usize;
            match edit {
                Edit::Delete(fraction, len) => {
                    let start = at(*fraction).min(chars.len());
                    let end = (start + len).min(chars.len());
                    chars.drain(start..end);
                }
                Edit::Insert(fraction, insert) => {
                    let start = at(*fraction).min(chars.len());
                    chars.splice(start..start, insert.chars());
                }
                Edit::Truncate(fraction) => chars.truncate(at(*fraction)),
            }
        }
        chars.into_iter().collect()
    }

    #[test]
    #[ignore = "measures time; run by hand with --ignored --nocapture in release mode"]
    fn hostile_inputs_take_time_in_proportion_to_their_size() {
        const SIZE: usize = 16 << 20;
        let repeat = |unit: &str| unit.repeat(SIZE / unit.len());
        let inputs = [
            ("quotes", repeat("\"")),
            ("one line of name-like prefixes", repeat("\"a\": x[")),
            ("one line of instance prefixes", repeat("\"a\"[1] 1:")),
            (
                "lines of quoted prefixes",
                repeat("\"a\": \"b\": \"c\": 1...2; x\n"),
            ),
            (
                "one traffic line",
                format!("#1: \"{}", repeat("\", type=ESP")),
            ),
            (
                "one state line",
                format!("#1: \"{}", repeat("\"[1] 1:500 X")),
            ),
            ("brackets", repeat("[[[<<")),
        ];
        for (what, text) in inputs {
            let started = std::time::Instant::now();
            parse_everything(&text);
            println!("{what}: {} MB in {:?}", text.len() >> 20, started.elapsed());
        }
    }

    proptest! {
        #[test]
        fn no_parser_panics_on_any_text(text in any::<String>()) {
            parse_everything(&text);
        }

        #[test]
        fn no_parser_panics_on_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            parse_everything(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn no_parser_panics_on_pluto_like_lines(
            lines in prop::collection::vec(
                "(000 |021 )?(#[0-9]{1,3}: )?\"[a-z\":\\[\\]0-9 ]{0,12}\"(\\[[0-9]\\])?[:, ]{0,2}.{0,40}",
                0..12,
            )
        ) {
            parse_everything(&lines.join("\n"));
        }

        #[test]
        fn no_parser_panics_on_edited_fixtures(
            which in 0..FIXTURES.len(),
            edits in prop::collection::vec(edit(), 1..8),
        ) {
            parse_everything(&apply(FIXTURES[which], &edits));
        }
    }
}
