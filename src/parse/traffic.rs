//! pluto's `--trafficstatus`: one line per Child SA with its byte counts.
//!
//! ```text
//! 006 #2: "westnet-eastnet", type=ESP, add_time=1796301782, inBytes=0, outBytes=0, maxBytes=2^63B, id='@east'
//! #2: "east-any"[1] 192.1.3.33, username=xnorth, type=ESP, add_time=1234567890, inBytes=84, outBytes=84, ...
//! ```

use super::{
    NameSplit, Traffic, is_address_token, name_splits, parse_u64, split_digits, strip_code,
};

/// The Child SAs `--trafficstatus` lists, in pluto's order.
///
/// A line without both byte counters is skipped.
pub fn parse_trafficstatus(text: &str) -> Vec<Traffic> {
    text.lines()
        .filter_map(|line| parse_traffic_line(strip_code(line)))
        .collect()
}

fn parse_traffic_line(line: &str) -> Option<Traffic> {
    let rest = line.strip_prefix('#')?;
    let (serial, rest) = split_digits(rest);
    let serial = parse_u64(serial)?;
    let rest = rest.strip_prefix(": ")?;

    // The peer's id and XAUTH user name come after the connection's name and may hold
    // anything, so the name ends at the first quote whose remainder reads as the field list,
    // never at the last quote on the line.
    name_splits(rest).find_map(|split| {
        let (bytes_in, bytes_out) = counters(&split)?;
        Some(Traffic {
            serial,
            connection: split.full_name(),
            bytes_in,
            bytes_out,
        })
    })
}

/// Reads `inBytes` and `outBytes` from the fields after the name.
///
/// The fields are walked in order and the walk stops at `id=`, the last one, which holds
/// the peer's id; `username=` (XAUTH) is skipped to the `type=` field that follows it.
/// `None` when the fields do not read, which tells [`parse_traffic_line`] that the name
/// does not end at this quote.
fn counters(split: &NameSplit<'_>) -> Option<(u64, u64)> {
    let mut fields = split.rest;
    if let Some(instance) = fields.strip_prefix(' ') {
        let comma = instance.find(',')?;
        if !is_address_token(&instance[..comma]) {
            return None;
        }
        fields = &instance[comma..];
    }
    let mut fields = fields.strip_prefix(", ")?;
    if fields.starts_with("username=") {
        let at = fields.find(", type=")?;
        fields = &fields[at + 2..];
    }
    if !fields.starts_with("type=") {
        return None;
    }

    let mut bytes_in = None;
    let mut bytes_out = None;
    for field in fields.split(", ") {
        if field.starts_with("id=") {
            break;
        }
        // No field before the id holds a quote; one here belongs to a name read too short.
        if field.contains('"') {
            return None;
        }
        if let Some(value) = field.strip_prefix("inBytes=") {
            bytes_in = Some(parse_u64(value)?);
        } else if let Some(value) = field.strip_prefix("outBytes=") {
            bytes_out = Some(parse_u64(value)?);
        }
        if let (Some(bytes_in), Some(bytes_out)) = (bytes_in, bytes_out) {
            return Some((bytes_in, bytes_out));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const UP_4_10: &str =
        include_str!("../../tests/fixtures/pluto/4.10/10-up-1conn-trafficstatus.txt");
    const TWO_UP_4_10: &str =
        include_str!("../../tests/fixtures/pluto/4.10/40-4conns-2up-trafficstatus.txt");
    const TWO_CHILDREN_4_10: &str =
        include_str!("../../tests/fixtures/pluto/4.10/54-delete-up-connection.trafficstatus.txt");
    const DOWN_4_10: &str =
        include_str!("../../tests/fixtures/pluto/4.10/42-4conns-after-down-trafficstatus.txt");
    const UP_5_2: &str = include_str!(
        "../../tests/fixtures/pluto/5.2/uml-real-esp/03-tunnel-up.w5.trafficstatus.stdout"
    );
    const ONDEMAND_5_2: &str = include_str!(
        "../../tests/fixtures/pluto/5.2/uml-real-esp/12-ondemand-triggered.w5.trafficstatus.stdout"
    );
    const ONDEMAND_RESPONDER_5_2: &str = include_str!(
        "../../tests/fixtures/pluto/5.2/uml-real-esp/12-ondemand-triggered.e5.trafficstatus.stdout"
    );
    const CHILDLESS_5_2: &str = include_str!(
        "../../tests/fixtures/pluto/5.2/host-kernel-childless/11-one-up-one-routed-one-never.w5.trafficstatus.stdout"
    );

    fn traffic(serial: u64, connection: &str, bytes_in: u64, bytes_out: u64) -> Traffic {
        Traffic {
            serial,
            connection: connection.to_owned(),
            bytes_in,
            bytes_out,
        }
    }

    #[test]
    fn one_child_sa_on_4_10() {
        assert_eq!(
            parse_trafficstatus(UP_4_10),
            [traffic(2, "westnet-eastnet", 0, 0)]
        );
    }

    #[test]
    fn two_connections_up_on_4_10() {
        assert_eq!(
            parse_trafficstatus(TWO_UP_4_10),
            [
                traffic(6, "subnet-a", 0, 0),
                traffic(5, "westnet-eastnet", 0, 0),
            ]
        );
    }

    #[test]
    fn second_initiate_adds_a_second_child_sa_on_4_10() {
        assert_eq!(
            parse_trafficstatus(TWO_CHILDREN_4_10),
            [
                traffic(6, "westnet-eastnet", 0, 0),
                traffic(14, "westnet-eastnet", 0, 0),
            ]
        );
    }

    #[test]
    fn nothing_up_lists_nothing() {
        assert!(parse_trafficstatus(DOWN_4_10).is_empty());
        assert!(parse_trafficstatus(CHILDLESS_5_2).is_empty());
    }

    #[test]
    fn pings_through_the_tunnel_count_on_5_2() {
        assert_eq!(
            parse_trafficstatus(UP_5_2),
            [traffic(2, "westnet-eastnet", 252, 252)]
        );
        assert_eq!(
            parse_trafficstatus(ONDEMAND_5_2),
            [traffic(6, "routed-ondemand", 0, 168)]
        );
        assert_eq!(
            parse_trafficstatus(ONDEMAND_RESPONDER_5_2),
            [traffic(6, "routed-ondemand", 168, 0)]
        );
    }

    #[test]
    fn instances_with_xauth_users_and_leases() {
        let text = "\
006 #2: \"east-any\"[1] 192.1.3.33, username=xnorth, type=ESP, add_time=1234567890, inBytes=336, outBytes=336, lease=192.0.2.101/32
006 #4: \"east-any\"[2] 192.1.3.209, username=a, type=b, type=ESP, add_time=1, inBytes=84, outBytes=42, maxBytes=2^63B, lease=192.0.2.100/32
#7: \"clear-or-private#192.1.3.0/24\"[1] ...192.1.3.209, type=ESP, add_time=1, inBytes=1, outBytes=2, maxBytes=2^63B, id='ID_NULL'
";
        assert_eq!(
            parse_trafficstatus(text),
            [
                traffic(2, "east-any[1]", 336, 336),
                traffic(4, "east-any[2]", 84, 42),
                traffic(7, "clear-or-private#192.1.3.0/24[1]", 1, 2),
            ]
        );
    }

    #[test]
    fn the_peer_id_cannot_fake_the_name_or_the_counters() {
        let text = "#2: \"a\", type=ESP, add_time=1, inBytes=5, outBytes=6, maxBytes=2^63B, id='x\", type=ESP, inBytes=7, outBytes=8'";
        assert_eq!(parse_trafficstatus(text), [traffic(2, "a", 5, 6)]);
    }

    #[test]
    fn names_with_quotes_and_commas_survive() {
        for name in [
            "-my.vpn/ü",
            "a\"b",
            "a\", b",
            "a\", type=ESP",
            "rw\"[1] x",
            "\"",
        ] {
            let text = UP_5_2.replace("\"westnet-eastnet\"", &format!("\"{name}\""));
            assert_eq!(
                parse_trafficstatus(&text),
                [traffic(2, name, 252, 252)],
                "{name}"
            );
        }
    }

    #[test]
    fn lines_without_both_counters_are_skipped() {
        for line in [
            "#2: \"a\", type=ESP, add_time=1, inBytes=5, maxBytes=2^63B, id='@east'",
            "#2: \"a\", type=ESP, add_time=1, outBytes=5",
            "#2: \"a\", type=ESP, add_time=1, inBytes=, outBytes=5",
            "#2: \"a\", type=ESP, inBytes=99999999999999999999999, outBytes=5",
            "#2: \"a\", type=ESP, add_time=1, inBytes=-1, outBytes=5",
            "#2: \"a\", add_time=1, inBytes=1, outBytes=5",
            "#2: \"a\", type=ESP, add_time=1, id='inBytes=1, outBytes=5'",
            "#x: \"a\", type=ESP, inBytes=1, outBytes=5",
            "\"a\", type=ESP, inBytes=1, outBytes=5",
        ] {
            assert_eq!(parse_trafficstatus(line), [], "{line}");
        }
    }

    #[test]
    fn largest_counters_are_read_exactly() {
        let line = "#2: \"a\", type=ESP, add_time=1, inBytes=18446744073709551615, outBytes=0";
        assert_eq!(parse_trafficstatus(line), [traffic(2, "a", u64::MAX, 0)]);
    }
}
