//! pluto's connection list: `--status` (4.x and 5.x) and `--connectionstatus` (5.x).
//!
//! Every line of one connection starts with the same prefix, the quoted name (plus the
//! instance number and peer address for a template instance), and the first line holds its
//! topology and routing:
//!
//! ```text
//! "subnet-a": 10.1.0.0/24===192.0.2.1[@west]...192.0.2.2[@east]===10.2.0.0/24; erouted; eroute owner: #6
//! "subnet-a":     oriented; my_ip=unset; their_ip=unset; my_updown=ipsec _updown;
//! "subnet-a":   policy: IKEv2+PSK+ENCRYPT+TUNNEL+PFS+UP+IKE_FRAG_ALLOW+ESN_NO+ESN_YES;
//! "subnet-a":   our idtype: ID_FQDN; our id=@west; their idtype: ID_FQDN; their id=@east
//! "never-up":   routing: unrouted;
//! ```
//!
//! The last line is 5.x only. Names are printed without escaping, so a name may hold `"`,
//! `: ` or anything else but a newline; see [`Entry::start`] for how its end is found.

use super::states::parse_state_line;
use super::{
    ConnectionInfo, NameSplit, Status, is_address_token, name_splits, parse_u64, split_digits,
    strip_code,
};

/// Where pluto numbers a connection in its detail lines; 5.x accepts `$N` as its name.
const CONN_SERIAL: &str = "conn serial: $";

/// The totals 5.x `--briefconnectionstatus` ends with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BriefTotals {
    /// Connections pluto has loaded.
    pub loaded: u64,
    /// Connections with established SAs.
    pub active: u64,
}

/// Reads `# Total IPsec connections: loaded 3, active 1` from 5.x `--briefconnectionstatus`.
///
/// `None` when no such line is present; the lines listing active connections are not read.
pub fn parse_brief_connection_status(text: &str) -> Option<BriefTotals> {
    text.lines().find_map(|line| {
        let counts = totals(strip_code(line))?;
        Some(BriefTotals {
            loaded: count_after(counts, "loaded ")?,
            active: count_after(counts, "active ")?,
        })
    })
}

/// Reads `--status` (4.x or 5.x) or 5.x `--connectionstatus`.
///
/// Lines that fit nothing known are skipped, so a listing cut short yields what it holds.
pub fn parse_status(text: &str) -> Status {
    let mut parser = StatusParser::new();
    for line in text.lines() {
        parser.feed(line);
    }
    parser.finish()
}

/// Reads `--status` (4.x or 5.x) or 5.x `--connectionstatus` one line at a time, as whack
/// prints it, so that a listing of many connections need not be held whole.
///
/// Feeding every line of a text and then finishing yields what [`parse_status`] yields for it.
#[derive(Debug, Default)]
pub struct StatusParser {
    /// What the lines read so far say, but for the connection still being read.
    status: Status,
    /// The connection whose lines are being read.
    current: Option<Entry>,
    /// A line that may start a connection, held until the next line shows where its name
    /// ends (see [`Entry::start`]); the buffer is kept for the next such line.
    pending: String,
    /// Whether `pending` holds a line not yet read.
    holding: bool,
}

impl StatusParser {
    /// A parser that has read nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads one line. A trailing `\n` or `\r\n` is dropped, as [`str::lines`] drops it; the
    /// line need not outlive the call.
    pub fn feed(&mut self, line: &str) {
        let line = match line.strip_suffix('\n') {
            Some(line) => line.strip_suffix('\r').unwrap_or(line),
            None => line,
        };
        let line = strip_code(line);
        self.start_pending(Some(line));

        if line.starts_with('"') {
            if let Some(entry) = self.current.as_mut()
                && let Some(detail) = entry.detail(line)
            {
                entry.read_detail(detail);
                return;
            }
            self.pending.clear();
            self.pending.push_str(line);
            self.holding = true;
            return;
        }

        if let Some(done) = self.current.take() {
            self.status.connections.push(done.finish());
        }
        if let Some(state) = parse_state_line(line) {
            self.status.states.push(state);
        } else if let Some(version) = line.strip_prefix("pluto_version=") {
            let end = version.find([',', ' ']).unwrap_or(version.len());
            self.status.pluto_version = version[..end].to_owned();
        } else if let Some(counts) = totals(line) {
            self.status.loaded = count_after(counts, "loaded ");
        }
    }

    /// What the lines fed so far say; a listing cut short yields what it holds.
    pub fn finish(mut self) -> Status {
        self.start_pending(None);
        if let Some(done) = self.current {
            self.status.connections.push(done.finish());
        }
        self.status
    }

    /// Reads the held line, now that the line after it (`None` at the end) is known. A line
    /// that starts no connection leaves the current one open, so its detail lines that
    /// follow are still read.
    fn start_pending(&mut self, next: Option<&str>) {
        if !std::mem::take(&mut self.holding) {
            return;
        }
        if let Some(entry) = Entry::start(&self.pending, next)
            && let Some(done) = self.current.replace(entry)
        {
            self.status.connections.push(done.finish());
        }
    }
}

/// The counts of a `Total IPsec connections:` line (5.x brief form starts with `# `).
fn totals(line: &str) -> Option<&str> {
    let line = line.strip_prefix('#').unwrap_or(line).trim_start();
    line.strip_prefix("Total IPsec connections:")
}

/// The number after `key` in `text` (`loaded 3, active 1`).
fn count_after(text: &str, key: &str) -> Option<u64> {
    let at = text.find(key)?;
    parse_u64(split_digits(&text[at + key.len()..]).0)
}

/// The most of a topology line [`is_plausible_topology`] reads; real ones, long
/// certificate names included, are far shorter.
const MAX_TOPOLOGY: usize = 8 << 10;

/// One connection of the list while its lines are read.
#[derive(Debug)]
struct Entry {
    /// `"NAME":` or `"rw"[1] 192.0.2.7:`; every line of this connection starts with it.
    prefix: String,
    info: ConnectionInfo,
    /// The ids in brackets on the topology line, for when there is no id line.
    topology_ids: (String, String),
    has_id_line: bool,
    /// The routing from the topology line; 5.x's `routing:` line replaces it.
    topology_routing: String,
    routing_line: Option<String>,
    /// From `IKEv2 algorithm newest:`, for when the policy names no IKE version.
    algorithm_ike_version: u32,
    /// 5.x `host:` line addresses, for when the topology could not be read.
    host_line: (String, String),
}

impl Entry {
    /// Starts a connection from its first line, or `None` if `line` is not one.
    ///
    /// The name ends at a quote followed by the prefix's end (`:`, or ` ADDRESS:` for an
    /// instance) and a space. When a name holds such a sequence itself, several readings fit;
    /// the one kept is, in order of preference:
    /// 1. the reading whose prefix the next line continues (`PREFIX` and two spaces), which
    ///    is how every connection of a whole listing is printed;
    /// 2. the first reading after which a plausible topology follows (`...` between the
    ///    ends, no space or quote outside the ids), for a lone topology line;
    /// 3. the shortest reading.
    fn start(line: &str, next: Option<&str>) -> Option<Self> {
        let shared = next.map_or(0, |next| common_prefix_len(line, next));
        let continued_at = |at: usize| {
            shared >= at
                && next.and_then(|next| next.as_bytes().get(at..at + 2)) == Some(&b"  "[..])
        };

        let mut plausible = None;
        let mut shortest = None;
        for split in name_splits(line) {
            let Some(prefix_len) = prefix_len(line, &split) else {
                continue;
            };
            let Some(topology) = line[prefix_len..].strip_prefix(' ') else {
                continue;
            };
            if topology.is_empty() || topology.starts_with(' ') {
                continue;
            }
            if continued_at(prefix_len) {
                return Some(Self::new(line, split, prefix_len));
            }
            if plausible.is_none() && is_plausible_topology(topology) {
                plausible = Some((split, prefix_len));
            }
            shortest.get_or_insert((split, prefix_len));
        }
        let (split, prefix_len) = plausible.or(shortest)?;
        Some(Self::new(line, split, prefix_len))
    }

    fn new(line: &str, split: NameSplit<'_>, prefix_len: usize) -> Self {
        // The topology starts after the prefix and one space.
        let topology = read_topology(&line[prefix_len + 1..]);
        Entry {
            prefix: line[..prefix_len].to_owned(),
            info: ConnectionInfo {
                name: split.full_name(),
                template: split.template(),
                local_address: topology.local.host,
                remote_address: topology.remote.host,
                local_subnets: topology.local.subnets,
                remote_subnets: topology.remote.subnets,
                ..ConnectionInfo::default()
            },
            topology_ids: (topology.local.id, topology.remote.id),
            has_id_line: false,
            topology_routing: topology.routing,
            routing_line: None,
            algorithm_ike_version: 0,
            host_line: (String::new(), String::new()),
        }
    }

    /// The text of `line` after this connection's prefix, if `line` is one of its detail
    /// lines (they indent by at least two spaces; the topology line by one).
    fn detail<'l>(&self, line: &'l str) -> Option<&'l str> {
        let rest = line.strip_prefix(self.prefix.as_str())?;
        rest.starts_with("  ").then(|| rest.trim_start())
    }

    fn read_detail(&mut self, detail: &str) {
        if let Some(ids) = detail.strip_prefix("our idtype:") {
            let (local, remote) = read_ids(ids);
            self.info.local_id = local.to_owned();
            self.info.remote_id = remote.to_owned();
            self.has_id_line = true;
        } else if let Some(policy) = detail.strip_prefix("policy:") {
            self.info.ike_version = policy_ike_version(policy);
        } else if let Some(routing) = detail.strip_prefix("routing:") {
            let routing = routing.split(';').next().unwrap_or("").trim();
            self.routing_line = Some(routing.to_owned());
        } else if detail.starts_with("IKEv2 algorithm") {
            self.algorithm_ike_version = 2;
        } else if detail.starts_with("IKEv1 algorithm") {
            self.algorithm_ike_version = 1;
        } else if let Some(host) = detail.strip_prefix("host:") {
            for field in host.split(';').map(str::trim) {
                if let Some(local) = field.strip_prefix("local: ") {
                    self.host_line.0 = local.to_owned();
                } else if let Some(remote) = field.strip_prefix("remote: ") {
                    self.host_line.1 = remote.to_owned();
                }
            }
        } else if let Some(at) = detail.find(CONN_SERIAL) {
            // 4.x: `newest IKE SA: #1; newest IPsec SA: #2; conn serial: $1;`
            // 5.x: `conn serial: $7, instantiated from: $6;`
            let digits = &detail[at + CONN_SERIAL.len()..];
            let end = digits
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(digits.len());
            self.info.serial = digits[..end].parse().unwrap_or(0);
        }
    }

    fn finish(self) -> ConnectionInfo {
        let mut info = self.info;
        if !self.has_id_line {
            (info.local_id, info.remote_id) = self.topology_ids;
        }
        if info.local_address.is_empty() {
            info.local_address = self.host_line.0;
        }
        if info.remote_address.is_empty() {
            info.remote_address = self.host_line.1;
        }
        if info.ike_version == 0 {
            info.ike_version = self.algorithm_ike_version;
        }
        info.routing = self.routing_line.unwrap_or(self.topology_routing);
        info
    }
}

/// Where the prefix of a topology line read as `split` ends (just after its `:`).
fn prefix_len(line: &str, split: &NameSplit<'_>) -> Option<usize> {
    let after = if let Some(after) = split.rest.strip_prefix(':') {
        after
    } else if split.instance.is_empty() {
        return None;
    } else {
        // An instance names its peer: `"rw"[1] 192.0.2.7: ...`.
        let address = split.rest.strip_prefix(' ')?;
        let end = address.bytes().take(66).position(|b| b == b' ')?;
        let token = address[..end].strip_suffix(':')?;
        if !is_address_token(token) {
            return None;
        }
        &address[end..]
    };
    Some(line.len() - after.len())
}

fn common_prefix_len(a: &str, b: &str) -> usize {
    a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count()
}

/// `our idtype: ID_FQDN; our id=@west; their idtype: ID_FQDN; their id=@east`, after the
/// first `our idtype:`.
///
/// Their id is last on the line and is read to its end, so whatever it holds (an instance
/// shows the id the peer presented) cannot shift our id.
fn read_ids(ids: &str) -> (&str, &str) {
    let Some(at) = ids.find("our id=") else {
        return ("", "");
    };
    let ours = &ids[at + "our id=".len()..];
    let Some(end) = ours.find("; their idtype:") else {
        return (ours.trim_end(), "");
    };
    let theirs = &ours[end..];
    let theirs = theirs
        .find("their id=")
        .map_or("", |at| &theirs[at + "their id=".len()..]);
    let theirs = theirs.trim_end();
    (&ours[..end], theirs.strip_suffix(';').unwrap_or(theirs))
}

/// The IKE version a `policy:` line names: `IKEv2+PSK+...` (4.x, 5.x) or
/// `...+IKEV2_ALLOW+...` (3.x); 0 when it names both or neither.
fn policy_ike_version(policy: &str) -> u32 {
    let policy = policy.split(';').next().unwrap_or("");
    let (mut v1, mut v2) = (false, false);
    for word in policy.trim().split('+') {
        match word {
            "IKEv1" | "IKEV1_ALLOW" => v1 = true,
            "IKEv2" | "IKEV2_ALLOW" => v2 = true,
            _ => {}
        }
    }
    match (v1, v2) {
        (true, false) => 1,
        (false, true) => 2,
        _ => 0,
    }
}

#[derive(Debug, Default)]
struct Topology {
    local: End,
    remote: End,
    routing: String,
}

#[derive(Debug, Default)]
struct End {
    host: String,
    id: String,
    subnets: Vec<String>,
}

/// Reads `LOCAL...REMOTE; ROUTING; ...`; parts that do not read stay empty.
fn read_topology(text: &str) -> Topology {
    let (topology, rest) = match find_top_level(text.as_bytes(), b";") {
        Some(at) => (&text[..at], &text[at + 1..]),
        None => (text, ""),
    };
    // 4.x routing can hold a comma (`keyed, unrouted`) but never a semicolon.
    let routing = rest.split(';').next().unwrap_or("").trim().to_owned();
    let Some(at) = find_top_level(topology.as_bytes(), b"...") else {
        return Topology {
            routing,
            ..Topology::default()
        };
    };
    Topology {
        local: read_end(&topology[..at], true),
        remote: read_end(&topology[at + 3..], false),
        routing,
    }
}

/// Whether `text` starts like a topology: `...` between the ends, and no space or quote
/// outside the bracketed ids before the first `;`.
///
/// Only the first [`MAX_TOPOLOGY`] bytes are looked at, which bounds the work when a line
/// offers many readings of the name.
fn is_plausible_topology(text: &str) -> bool {
    let bytes = &text.as_bytes()[..text.len().min(MAX_TOPOLOGY)];
    let end = match find_top_level(bytes, b";") {
        Some(end) => end,
        None if text.len() <= MAX_TOPOLOGY => bytes.len(),
        None => return false,
    };
    let topology = &bytes[..end];
    find_top_level(topology, b"...").is_some()
        && top_level(topology).all(|(_, b)| b != b' ' && b != b'"')
}

/// Reads one end: `client===host<name>[id]---nexthop` on the local side, and the mirror
/// image `nexthop---host<name>[id]===client` on the remote side.
fn read_end(side: &str, local: bool) -> End {
    let (client, host_part) = match find_top_level(side.as_bytes(), b"===") {
        Some(at) if local => (&side[..at], &side[at + 3..]),
        Some(at) => (&side[at + 3..], &side[..at]),
        None => ("", side),
    };
    let host_part = match find_top_level(host_part.as_bytes(), b"---") {
        Some(at) if local => &host_part[..at],
        Some(at) => &host_part[at + 3..],
        None => host_part,
    };
    let host_end = host_part.find(['[', '<']).unwrap_or(host_part.len());
    let mut decorations = &host_part[host_end..];
    if decorations.starts_with('<') {
        decorations = decorations
            .find('>')
            .map_or("", |at| &decorations[at + 1..]);
    }

    End {
        host: host_part[..host_end].to_owned(),
        id: bracketed_id(decorations).to_owned(),
        subnets: client
            .trim_start_matches('{')
            .trim_end_matches('}')
            .split(',')
            .map(str::trim)
            .filter(|subnet| !subnet.is_empty())
            .map(str::to_owned)
            .collect(),
    }
}

/// The id in `[@west]` or `[@west,+MC+XC+S=C]`, without the flags pluto appends.
fn bracketed_id(text: &str) -> &str {
    let Some(inner) = text.strip_prefix('[') else {
        return "";
    };
    let mut depth = 1usize;
    let Some(end) = inner.bytes().position(|b| {
        match b {
            b'[' => depth += 1,
            b']' => depth -= 1,
            _ => {}
        }
        depth == 0
    }) else {
        return "";
    };
    let id = &inner[..end];
    // Flags are capitals and `+=?!` right after a comma; a DN's next part follows ", ".
    match id.rsplit_once(',') {
        Some((id, flags))
            if !flags.is_empty()
                && flags
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || matches!(b, b'+' | b'=' | b'?' | b'!')) =>
        {
            id
        }
        _ => id,
    }
}

/// The bytes outside bracketed ids (`[...]`) and host names (`<...>`), with their
/// offsets; what those hold must not be taken for separators.
fn top_level(bytes: &[u8]) -> impl Iterator<Item = (usize, u8)> + '_ {
    let mut depth = 0usize;
    let mut in_name = false;
    bytes
        .iter()
        .copied()
        .enumerate()
        .filter(move |&(_, b)| match b {
            b'[' => {
                depth += 1;
                false
            }
            b']' if depth > 0 => {
                depth -= 1;
                false
            }
            b'<' if depth == 0 => {
                in_name = true;
                false
            }
            b'>' if depth == 0 && in_name => {
                in_name = false;
                false
            }
            _ => depth == 0 && !in_name,
        })
}

/// The first offset of `pattern` (ASCII, so the offset is a character boundary of any `str`
/// that `bytes` came from) outside ids and host names.
fn find_top_level(bytes: &[u8], pattern: &[u8]) -> Option<usize> {
    top_level(bytes)
        .map(|(at, _)| at)
        .find(|&at| bytes[at..].starts_with(pattern))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::parse::SaKind;

    const UP_4_10: &str = include_str!("../../tests/fixtures/pluto/4.10/10-up-1conn-status.txt");
    const DOWN_4_10: &str =
        include_str!("../../tests/fixtures/pluto/4.10/21-down-1conn-status.txt");
    const TWO_UP_4_10: &str =
        include_str!("../../tests/fixtures/pluto/4.10/40-4conns-2up-status.txt");
    const AFTER_DOWN_4_10: &str =
        include_str!("../../tests/fixtures/pluto/4.10/42-4conns-after-down-status.txt");
    const TOPOLOGY_LINES_4_10: &str = include_str!(
        "../../tests/fixtures/pluto/4.10/55-route-unroute-known-conns.status-grep.txt"
    );
    const MANY_4_10: &str = include_str!("../../tests/fixtures/pluto/4.10/80-status-501conns.txt");
    const LOADED_5_2: &str = include_str!(
        "../../tests/fixtures/pluto/5.2/uml-real-esp/01-three-conns-loaded.w5.status.stdout"
    );
    const UP_5_2: &str =
        include_str!("../../tests/fixtures/pluto/5.2/uml-real-esp/03-tunnel-up.w5.status.stdout");
    const UP_RESPONDER_5_2: &str =
        include_str!("../../tests/fixtures/pluto/5.2/uml-real-esp/03-tunnel-up.e5.status.stdout");
    const UP_CONNECTIONSTATUS_5_2: &str = include_str!(
        "../../tests/fixtures/pluto/5.2/uml-real-esp/03-tunnel-up.w5.connectionstatus.stdout"
    );
    const UP_BRIEF_5_2: &str = include_str!(
        "../../tests/fixtures/pluto/5.2/uml-real-esp/03-tunnel-up.w5.briefconnectionstatus.stdout"
    );
    const LOADED_BRIEF_5_2: &str = include_str!(
        "../../tests/fixtures/pluto/5.2/uml-real-esp/01-three-conns-loaded.w5.briefconnectionstatus.stdout"
    );
    const DOWN_5_2: &str =
        include_str!("../../tests/fixtures/pluto/5.2/uml-real-esp/05-after-down.w5.status.stdout");
    const DOWN_ROUTED_5_2: &str = include_str!(
        "../../tests/fixtures/pluto/5.2/uml-real-esp/10-after-down-when-routed.w5.status.stdout"
    );
    const ONDEMAND_DOWN_5_2: &str = include_str!(
        "../../tests/fixtures/pluto/5.2/uml-real-esp/14-after-down-ondemand.w5.status.stdout"
    );
    const CHILDLESS_5_2: &str = include_str!(
        "../../tests/fixtures/pluto/5.2/host-kernel-childless/11-one-up-one-routed-one-never.w5.status.stdout"
    );
    const WHACK_5_2_PLUTO_4_10: &str = include_str!(
        "../../tests/fixtures/pluto/5.2/host-kernel-childless/13-trixie-whack-5.2-to-pluto-4.10.x5.status.stdout"
    );
    const WHACK_4_10_PLUTO_5_2: &str = include_str!(
        "../../tests/fixtures/pluto/5.2/host-kernel-childless/12-host-whack-4.10-to-pluto-5.2.w5.status.stdout"
    );

    fn find<'s>(status: &'s Status, name: &str) -> &'s ConnectionInfo {
        status
            .connections
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no connection {name} in {status:#?}"))
    }

    fn names(status: &Status) -> Vec<&str> {
        status.connections.iter().map(|c| c.name.as_str()).collect()
    }

    fn routings(status: &Status) -> Vec<(&str, &str, bool)> {
        status
            .connections
            .iter()
            .map(|c| (c.name.as_str(), c.routing.as_str(), c.routed()))
            .collect()
    }

    #[test]
    fn reads_the_connection_serial_that_5_x_accepts_as_a_name() {
        let listing = "000 Connection list:\n000  \n\
            000 \"rw\"[1] 192.0.2.2: 10.1.9.0/24===192.0.2.1[@west-rw]...192.0.2.2[@rw-client]; erouted; eroute owner: #2\n\
            000 \"rw\"[1] 192.0.2.2:   newest IKE SA: #1; newest IPsec SA: #2; conn serial: $7, instantiated from: $6;\n";
        let status = parse_status(listing);
        assert_eq!(status.connections.len(), 1, "{status:?}");
        assert_eq!(status.connections[0].name, "rw[1]");
        assert_eq!(status.connections[0].template, "rw");
        assert_eq!(status.connections[0].serial, 7);
    }

    #[test]
    fn one_tunnel_up_on_4_10() {
        let status = parse_status(UP_4_10);
        assert_eq!(status.pluto_version, "4.10");
        assert_eq!(status.loaded, Some(1));
        assert_eq!(
            status.connections,
            [ConnectionInfo {
                name: "westnet-eastnet".into(),
                template: String::new(),
                local_address: "192.0.2.1".into(),
                remote_address: "192.0.2.2".into(),
                local_id: "@west".into(),
                remote_id: "@east".into(),
                local_subnets: vec![],
                remote_subnets: vec![],
                ike_version: 2,
                serial: 1,
                routing: "erouted".into(),
            }]
        );
        assert!(status.connections[0].routed());
        let states: Vec<_> = status.states.iter().map(|s| (s.serial, s.kind)).collect();
        assert_eq!(states, [(1, SaKind::Ike), (2, SaKind::Child)]);
    }

    #[test]
    fn terminate_on_4_10_leaves_the_trap_policy() {
        let status = parse_status(DOWN_4_10);
        assert_eq!(
            routings(&status),
            [("westnet-eastnet", "prospective erouted", true)]
        );
        assert!(status.states.is_empty());
    }

    #[test]
    fn four_connections_two_up_on_4_10() {
        let status = parse_status(TWO_UP_4_10);
        assert_eq!(status.loaded, Some(4));
        assert_eq!(
            routings(&status),
            [
                ("never-up", "unrouted", false),
                ("routed-ondemand", "prospective erouted", true),
                ("subnet-a", "erouted", true),
                ("westnet-eastnet", "erouted", true),
            ]
        );

        let never_up = find(&status, "never-up");
        assert_eq!(never_up.remote_address, "192.0.2.99");
        assert_eq!(never_up.remote_id, "@ghost");
        assert!(never_up.local_subnets.is_empty());

        let subnet_a = find(&status, "subnet-a");
        assert_eq!(subnet_a.local_subnets, ["10.1.0.0/24"]);
        assert_eq!(subnet_a.remote_subnets, ["10.2.0.0/24"]);
        assert_eq!(subnet_a.local_address, "192.0.2.1");
        assert_eq!(subnet_a.remote_address, "192.0.2.2");
        assert_eq!(subnet_a.ike_version, 2);

        let ondemand = find(&status, "routed-ondemand");
        assert_eq!(ondemand.remote_subnets, ["10.2.1.0/24"]);

        let states: Vec<_> = status
            .states
            .iter()
            .map(|s| (s.serial, s.connection.as_str()))
            .collect();
        assert_eq!(
            states,
            [
                (6, "subnet-a"),
                (4, "westnet-eastnet"),
                (5, "westnet-eastnet")
            ]
        );
    }

    #[test]
    fn after_terminating_both_tunnels_on_4_10() {
        let status = parse_status(AFTER_DOWN_4_10);
        assert_eq!(
            routings(&status),
            [
                ("never-up", "unrouted", false),
                ("routed-ondemand", "prospective erouted", true),
                ("subnet-a", "prospective erouted", true),
                ("westnet-eastnet", "prospective erouted", true),
            ]
        );
        assert_eq!(status.states.len(), 1);
        assert_eq!(status.states[0].kind, SaKind::Ike);
    }

    #[test]
    fn lone_topology_lines_still_read() {
        let status = parse_status(TOPOLOGY_LINES_4_10);
        assert_eq!(
            routings(&status),
            [
                ("subnet-a", "prospective erouted", true),
                ("westnet-eastnet", "erouted", true),
            ]
        );
        let subnet_a = find(&status, "subnet-a");
        assert_eq!(subnet_a.local_id, "@west");
        assert_eq!(subnet_a.remote_id, "@east");
        assert_eq!(subnet_a.remote_subnets, ["10.2.0.0/24"]);
        assert_eq!(subnet_a.ike_version, 0);
        assert_eq!(status.loaded, None);
    }

    #[test]
    fn five_hundred_and_one_connections_on_4_10() {
        let status = parse_status(MANY_4_10);
        assert_eq!(status.connections.len(), 501);
        assert_eq!(status.loaded, Some(501));
        assert_eq!(status.connections[0].name, "bulk-000");

        let bulk = find(&status, "bulk-250");
        assert_eq!(bulk.local_subnets, ["10.101.0.0/24"]);
        assert_eq!(bulk.remote_subnets, ["10.201.0.0/24"]);
        assert_eq!(bulk.remote_address, "192.0.2.60");
        assert_eq!(bulk.remote_id, "@peer250");
        assert_eq!(bulk.routing, "unrouted");

        let routed: Vec<_> = status
            .connections
            .iter()
            .filter(|c| c.routed())
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(routed, ["westnet-eastnet"]);
        let states: Vec<_> = status.states.iter().map(|s| s.serial).collect();
        assert_eq!(states, [121, 122]);
    }

    #[test]
    fn three_connections_loaded_on_5_2() {
        let status = parse_status(LOADED_5_2);
        assert_eq!(status.pluto_version, "5.2");
        assert_eq!(status.loaded, Some(3));
        assert!(status.states.is_empty());
        assert_eq!(
            routings(&status),
            [
                ("never-up", "unrouted", false),
                ("routed-ondemand", "routed-ondemand", true),
                ("westnet-eastnet", "unrouted", false),
            ]
        );
        assert_eq!(
            *find(&status, "never-up"),
            ConnectionInfo {
                name: "never-up".into(),
                template: String::new(),
                local_address: "198.51.100.1".into(),
                remote_address: "198.51.100.2".into(),
                local_id: "198.51.100.1".into(),
                remote_id: "198.51.100.2".into(),
                local_subnets: vec!["192.0.1.0/24".into()],
                remote_subnets: vec!["192.0.3.0/24".into()],
                ike_version: 2,
                serial: 2,
                routing: "unrouted".into(),
            }
        );
    }

    #[test]
    fn tunnel_up_on_5_2_from_both_ends() {
        let west = parse_status(UP_5_2);
        let tunnel = find(&west, "westnet-eastnet");
        assert_eq!(tunnel.routing, "routed-tunnel");
        assert!(tunnel.routed());
        assert_eq!(tunnel.local_subnets, ["192.0.1.0/24"]);
        assert_eq!(tunnel.remote_subnets, ["192.0.2.0/24"]);
        let states: Vec<_> = west
            .states
            .iter()
            .map(|s| (s.serial, s.kind, s.established))
            .collect();
        assert_eq!(states, [(1, SaKind::Ike, true), (2, SaKind::Child, true)]);

        let east = parse_status(UP_RESPONDER_5_2);
        let tunnel = find(&east, "westnet-eastnet");
        assert_eq!(tunnel.local_address, "198.51.100.2");
        assert_eq!(tunnel.remote_address, "198.51.100.1");
        assert_eq!(tunnel.local_subnets, ["192.0.2.0/24"]);
        assert_eq!(tunnel.remote_id, "198.51.100.1");
        assert_eq!(tunnel.routing, "routed-tunnel");
    }

    #[test]
    fn connectionstatus_lists_what_status_lists_without_states() {
        let full = parse_status(UP_5_2);
        let connections = parse_status(UP_CONNECTIONSTATUS_5_2);
        assert_eq!(connections.connections, full.connections);
        assert_eq!(connections.loaded, Some(3));
        assert!(connections.states.is_empty());
        assert_eq!(connections.pluto_version, "");
    }

    #[test]
    fn down_on_5_2_unroutes_unless_the_connection_was_routed() {
        assert_eq!(
            find(&parse_status(DOWN_5_2), "westnet-eastnet").routing,
            "unrouted"
        );
        let routed = parse_status(DOWN_ROUTED_5_2);
        assert_eq!(
            routings(&routed),
            [
                ("never-up", "unrouted", false),
                ("routed-ondemand", "routed-ondemand", true),
                ("westnet-eastnet", "routed-ondemand", true),
            ]
        );
        assert!(routed.states.is_empty());
        assert_eq!(
            find(&parse_status(ONDEMAND_DOWN_5_2), "routed-ondemand").routing,
            "routed-ondemand"
        );
    }

    #[test]
    fn childless_ike_sa_on_5_2_is_not_routed() {
        let status = parse_status(CHILDLESS_5_2);
        let tunnel = find(&status, "westnet-eastnet");
        assert_eq!(tunnel.routing, "unrouted-bare-negotiation");
        assert!(!tunnel.routed());
        assert_eq!(status.states.len(), 1);
        assert_eq!(status.states[0].kind, SaKind::Ike);
    }

    #[test]
    fn status_of_a_4_10_pluto_through_a_5_2_whack() {
        let status = parse_status(WHACK_5_2_PLUTO_4_10);
        assert_eq!(status.pluto_version, "4.10");
        assert_eq!(status.loaded, Some(0));
        assert!(status.connections.is_empty());
    }

    #[test]
    fn version_mismatch_lists_nothing() {
        assert_eq!(parse_status(WHACK_4_10_PLUTO_5_2), Status::default());
    }

    #[test]
    fn brief_totals_on_5_2() {
        assert_eq!(
            parse_brief_connection_status(UP_BRIEF_5_2),
            Some(BriefTotals {
                loaded: 3,
                active: 1
            })
        );
        assert_eq!(
            parse_brief_connection_status(LOADED_BRIEF_5_2),
            Some(BriefTotals {
                loaded: 3,
                active: 0
            })
        );
        assert_eq!(
            parse_brief_connection_status(
                "# Total IPsec connections: loaded 9, routed 5, active 2"
            ),
            Some(BriefTotals {
                loaded: 9,
                active: 2
            })
        );
        assert_eq!(parse_brief_connection_status(""), None);
        assert_eq!(
            parse_brief_connection_status(
                "# Total IPsec connections: loaded 99999999999999999999, active 0"
            ),
            None
        );
    }

    /// Every fixture the tests here and in the parent module give [`parse_status`].
    const LISTINGS: [&str; 22] = [
        UP_4_10,
        DOWN_4_10,
        TWO_UP_4_10,
        AFTER_DOWN_4_10,
        TOPOLOGY_LINES_4_10,
        MANY_4_10,
        LOADED_5_2,
        UP_5_2,
        UP_RESPONDER_5_2,
        UP_CONNECTIONSTATUS_5_2,
        UP_BRIEF_5_2,
        DOWN_5_2,
        DOWN_ROUTED_5_2,
        ONDEMAND_DOWN_5_2,
        CHILDLESS_5_2,
        WHACK_5_2_PLUTO_4_10,
        WHACK_4_10_PLUTO_5_2,
        include_str!("../../tests/fixtures/pluto/4.10/40-4conns-2up-trafficstatus.txt"),
        include_str!("../../tests/fixtures/pluto/4.10/51-initiate-unreachable-peer.showstates.txt"),
        include_str!("../../tests/fixtures/pluto/4.10/52-initiate-psk-mismatch.whack-initiate.txt"),
        include_str!(
            "../../tests/fixtures/pluto/5.2/uml-real-esp/12-ondemand-triggered.w5.trafficstatus.stdout"
        ),
        include_str!(
            "../../tests/fixtures/pluto/5.2/host-kernel-childless/07-unknown-name.w5.name_no-such-conn_down.stdout"
        ),
    ];

    /// Feeds `pieces` to a parser, each from a string of its own that is dropped right after.
    fn feed_one_by_one<'t>(pieces: impl Iterator<Item = &'t str>) -> Status {
        let mut parser = StatusParser::new();
        for piece in pieces {
            let line = piece.to_owned();
            parser.feed(&line);
        }
        parser.finish()
    }

    #[test]
    fn a_listing_fed_line_by_line_reads_as_the_whole_text() {
        for text in LISTINGS {
            let whole = parse_status(text);
            assert_eq!(feed_one_by_one(text.lines()), whole);
            // As `BufRead::read_line` hands them over, line ends included.
            assert_eq!(feed_one_by_one(text.split_inclusive('\n')), whole);
        }
        assert_eq!(feed_one_by_one(MANY_4_10.lines()).connections.len(), 501);
    }

    /// Puts `names` in place of the connections of a real listing, in order.
    fn rename(text: &str, old: &[&str], new: &[String]) -> String {
        old.iter()
            .zip(new)
            .fold(text.to_owned(), |text, (old, new)| {
                text.replace(&format!("\"{old}\""), &format!("\"{new}\""))
            })
    }

    const FOUR_4_10: [&str; 4] = ["never-up", "routed-ondemand", "subnet-a", "westnet-eastnet"];
    const THREE_5_2: [&str; 3] = ["never-up", "routed-ondemand", "westnet-eastnet"];

    #[test]
    fn names_pluto_accepts_are_read_back_exactly() {
        let odd = [
            "-my.vpn/ü",
            "a\"b",
            "x\": 192.0.2.1[@west]...192.0.2.2[@east]; erouted; y",
            "rw\"[1] 192.0.2.7",
            "a\":  b",
            "\"",
            "name with spaces: and colons",
            "x[1]",
        ];
        for chosen in odd.windows(4) {
            let new: Vec<String> = chosen.iter().map(|&n| n.to_owned()).collect();
            let status = parse_status(&rename(TWO_UP_4_10, &FOUR_4_10, &new));
            assert_eq!(names(&status), chosen, "{chosen:?}");
            assert_eq!(status.connections[2].remote_subnets, ["10.2.0.0/24"]);
            assert_eq!(status.connections[0].remote_id, "@ghost");
            assert_eq!(status.states[0].connection, chosen[2]);

            let status = parse_status(&rename(UP_5_2, &THREE_5_2, &new[..3]));
            assert_eq!(names(&status), chosen[..3], "{chosen:?}");
            assert_eq!(status.connections[2].routing, "routed-tunnel");
            assert!(status.connections.iter().all(|c| c.template.is_empty()));
        }
    }

    #[test]
    fn template_instances_are_named_with_their_number() {
        let text = r#""rw": 192.0.2.1[@west]...%any[@road]; unrouted; eroute owner: #0
"rw":     oriented; my_ip=unset; their_ip=unset;
"rw":   our idtype: ID_FQDN; our id=@west; their idtype: ID_FQDN; their id=@road
"rw"[1] 192.0.2.7: 10.0.0.0/24===192.0.2.1[@west]...192.0.2.7[@road]===10.9.0.1/32; erouted; eroute owner: #4
"rw"[1] 192.0.2.7:     oriented; my_ip=unset; their_ip=unset;
"rw"[1] 192.0.2.7:   policy: IKEv2+RSASIG+ENCRYPT+TUNNEL;
"rw"[1] 192.0.2.7:   our idtype: ID_FQDN; our id=@west; their idtype: ID_FQDN; their id=@road
"private#172.31.0.0/16"[1]: 172.31.24.146[CN=west, O=Test]---172.31.16.1...172.31.22.162[CN=east, O=Test]; erouted; eroute owner: #2
"private#172.31.0.0/16"[1]:     oriented; my_ip=unset; their_ip=unset;
"private#172.31.0.0/16"[1]:   policy: RSASIG+ENCRYPT+PFS+OPPORTUNISTIC+IKEV2_ALLOW+IKEV2_PROPOSE;
"v6"[2] 2001:db8::7: 2001:db8:1::/64===2001:db8::1[@west]...2001:db8::7[@road]===2001:db8:7::/64; erouted; eroute owner: #9
"v6"[2] 2001:db8::7:   routing: routed-tunnel;
"#;
        let status = parse_status(text);
        let summary: Vec<_> = status
            .connections
            .iter()
            .map(|c| {
                (
                    c.name.as_str(),
                    c.template.as_str(),
                    c.remote_address.as_str(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("rw", "", "%any"),
                ("rw[1]", "rw", "192.0.2.7"),
                (
                    "private#172.31.0.0/16[1]",
                    "private#172.31.0.0/16",
                    "172.31.22.162"
                ),
                ("v6[2]", "v6", "2001:db8::7"),
            ]
        );
        assert_eq!(status.connections[1].remote_subnets, ["10.9.0.1/32"]);
        assert_eq!(status.connections[1].ike_version, 2);
        let opportunistic = &status.connections[2];
        assert_eq!(opportunistic.local_address, "172.31.24.146");
        assert_eq!(opportunistic.local_id, "CN=west, O=Test");
        assert_eq!(opportunistic.remote_id, "CN=east, O=Test");
        assert_eq!(opportunistic.ike_version, 2);
        assert_eq!(status.connections[3].local_subnets, ["2001:db8:1::/64"]);
        assert_eq!(status.connections[3].routing, "routed-tunnel");
    }

    #[test]
    fn topology_variants() {
        let text = r#"000 "hop": 10.1.0.0/24===192.0.2.1<west.example>[@west,+MC+XC+S=C]---192.0.2.254...192.0.2.253---192.0.2.2[@east,MS+S=C]===10.2.0.0/24:6/80; keyed, unrouted; eroute owner: #0
000 "pool": 192.1.2.23[C=CA, CN=east.testing.libreswan.org, E=user-east@testing.libreswan.org]...%any[%fromcert]==={192.0.2.1-192.0.2.200}; unrouted; my_ip=unset; their_ip=unset;
000 "v1": 192.0.2.1[@west]...%defaultroute; erouted HOLD; eroute owner: #0
000 "v1":   policy: IKEv1+PSK+ENCRYPT+TUNNEL;
000 "broken": nonsense; fail erouted; eroute owner: #0
"#;
        let status = parse_status(text);
        let hop = find(&status, "hop");
        assert_eq!(hop.local_address, "192.0.2.1");
        assert_eq!(hop.local_id, "@west");
        assert_eq!(hop.remote_address, "192.0.2.2");
        assert_eq!(hop.remote_id, "@east");
        assert_eq!(hop.remote_subnets, ["10.2.0.0/24:6/80"]);
        assert_eq!(hop.routing, "keyed, unrouted");
        assert!(!hop.routed());

        let pool = find(&status, "pool");
        assert_eq!(
            pool.local_id,
            "C=CA, CN=east.testing.libreswan.org, E=user-east@testing.libreswan.org"
        );
        assert_eq!(pool.remote_id, "%fromcert");
        assert_eq!(pool.remote_subnets, ["192.0.2.1-192.0.2.200"]);

        let v1 = find(&status, "v1");
        assert_eq!(v1.remote_address, "%defaultroute");
        assert_eq!(v1.ike_version, 1);
        assert_eq!(v1.routing, "erouted HOLD");
        assert!(v1.routed());

        let broken = find(&status, "broken");
        assert_eq!(broken.local_address, "");
        assert_eq!(broken.routing, "fail erouted");
    }

    #[test]
    fn empty_and_junk_listings() {
        assert_eq!(parse_status(""), Status::default());
        assert_eq!(
            parse_status("\"\n\"\"\n\"a\":\n\"a\": \n"),
            Status::default()
        );
        let status = parse_status("\"a\": x\n");
        assert_eq!(names(&status), ["a"]);
        assert_eq!(status.connections[0].routing, "");
    }

    /// Names as `whack --name` may give them: anything but a newline.
    fn any_name() -> impl Strategy<Value = String> {
        let special = prop_oneof![
            Just('"'),
            Just(':'),
            Just('['),
            Just(']'),
            Just(' '),
            Just('-'),
            Just(';'),
            Just('.'),
            Just('ü'),
            Just('\r'),
            any::<char>().prop_filter("no newline", |c| *c != '\n'),
        ];
        prop::collection::vec(special, 1..24).prop_map(|chars| chars.into_iter().collect())
    }

    /// Whether one name begins like another's detail lines (`NAME":` and two spaces), the
    /// one layout in which a listing is ambiguous.
    fn looks_like_details_of(name: &str, earlier: &str) -> bool {
        name.starts_with(&format!("{earlier}\":  "))
    }

    proptest! {
        #[test]
        fn any_names_are_read_back(new in prop::collection::vec(any_name(), 4)) {
            prop_assume!(new.iter().enumerate().all(|(i, name)| {
                new[..i].iter().all(|earlier| earlier != name && !looks_like_details_of(name, earlier))
            }));

            let status = parse_status(&rename(TWO_UP_4_10, &FOUR_4_10, &new));
            prop_assert_eq!(names(&status), new.iter().map(String::as_str).collect::<Vec<_>>());
            prop_assert_eq!(&status.connections[2].local_subnets, &["10.1.0.0/24"]);
            prop_assert_eq!(&status.connections[3].remote_id, "@east");
            prop_assert_eq!(&status.connections[1].routing, "prospective erouted");
            let states: Vec<_> = status.states.iter().map(|s| s.connection.as_str()).collect();
            prop_assert_eq!(states, [new[2].as_str(), new[3].as_str(), new[3].as_str()]);

            let status = parse_status(&rename(UP_5_2, &THREE_5_2, &new[..3]));
            prop_assert_eq!(names(&status), new[..3].iter().map(String::as_str).collect::<Vec<_>>());
            prop_assert_eq!(&status.connections[2].routing, "routed-tunnel");
            prop_assert_eq!(&status.connections[2].remote_address, "198.51.100.2");
        }
    }

    proptest! {
        #[test]
        fn lines_fed_with_their_ends_read_as_the_whole_text(
            lines in prop::collection::vec(
                ("(000 )?\"[a-z\":\\[\\]0-9\r ]{0,8}\"(\\[[0-9]\\])?[: ]{0,3}.{0,24}", "\r{0,2}\n?"),
                0..12,
            )
        ) {
            let text: String = lines.iter().map(|(line, end)| format!("{line}{end}")).collect();
            prop_assert_eq!(
                feed_one_by_one(text.split_inclusive('\n')),
                parse_status(&text)
            );
        }
    }

    /// A listing as large as pluto prints for 10,000 connections (about 16 MB).
    fn ten_thousand_connections() -> String {
        let block: String = UP_4_10
            .lines()
            .filter(|line| line.starts_with("000 \"westnet-eastnet\":"))
            .map(|line| format!("{line}\n"))
            .collect();
        let mut text = String::with_capacity(17 << 20);
        text.push_str("000 Connection list:\n000  \n");
        for i in 0..10_000 {
            text.push_str(&block.replace("westnet-eastnet", &format!("bulk-connection-{i:05}")));
        }
        text.push_str("000  \n000 Total IPsec connections: loaded 10000, active 1\n");
        text
    }

    #[test]
    #[ignore = "measures time; run by hand with --ignored --nocapture in release mode"]
    fn ten_thousand_connections_parse_quickly() {
        let text = ten_thousand_connections();
        let started = std::time::Instant::now();
        let status = parse_status(&text);
        let took = started.elapsed();
        println!(
            "parse_status: {} connections, {:.1} MB in {took:?}",
            status.connections.len(),
            text.len() as f64 / 1e6
        );
        assert_eq!(status.connections.len(), 10_000);
    }
}
