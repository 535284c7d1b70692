//! What the service knows of pluto: one [`Connection`] per loaded connection, and pluto itself.
//!
//! Pure data and the rules that derive it from pluto's listings; no I/O. The sync loop feeds it,
//! the D-Bus objects read it.

use std::collections::{BTreeMap, HashMap};

use crate::parse::{ConnectionInfo, SaKind, SaState};

/// What a person wants to know first about a connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TunnelState {
    /// No Child SA is established and no exchange is in flight.
    #[default]
    Down,
    /// An IKE or Child exchange of the connection is in flight.
    Negotiating,
    /// A Child SA of the connection is established.
    Up,
}

impl TunnelState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Down => "down",
            Self::Negotiating => "negotiating",
            Self::Up => "up",
        }
    }
}

/// One connection as published.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Connection {
    pub info: ConnectionInfo,
    pub state: TunnelState,
    /// Why the tunnel is not up, in pluto's words, from the last attempt to bring it up;
    /// empty once it is up.
    pub last_error: String,
    /// Whether `last_error` says the attempt failed, not merely that pluto keeps retrying.
    pub last_error_is_failure: bool,
}

impl Connection {
    /// Whether pluto holds a kernel policy for the connection: a trap, or the tunnel's own
    /// while it is up (which the routing field shows only at the next full listing).
    pub fn routed(&self) -> bool {
        self.info.routed() || self.state == TunnelState::Up
    }
}

/// Everything published, keyed by connection name.
#[derive(Debug, Default)]
pub struct Model {
    pub pluto_running: bool,
    /// Why pluto could not be asked last time, worded for a person; empty while it answers.
    pub pluto_problem: String,
    pub pluto_version: String,
    pub connections: BTreeMap<String, Connection>,
    /// The ticket of the newest SA listing applied; see [`crate::service::Service::ticket`].
    pub states_as_of: u64,
}

impl Model {
    /// pluto's major version, when known: it decides how some answers are read.
    pub fn pluto_major(&self) -> Option<u32> {
        self.pluto_version.split('.').next()?.parse().ok()
    }
}

/// Derives each connection's [`TunnelState`] from pluto's state list. Connections without any
/// state are absent from the map: they are down.
pub fn tunnel_states(states: &[SaState]) -> HashMap<&str, TunnelState> {
    let mut derived: HashMap<&str, TunnelState> = HashMap::new();
    for sa in states {
        let this = match (sa.kind, sa.established) {
            (SaKind::Child, true) => TunnelState::Up,
            (_, false) => TunnelState::Negotiating,
            // An established IKE SA alone carries no traffic: the tunnel is not up.
            (SaKind::Ike, true) => TunnelState::Down,
        };
        let entry = derived.entry(sa.connection.as_str()).or_default();
        *entry = (*entry).max_by_rank(this);
    }
    derived
}

impl TunnelState {
    /// Up outranks negotiating, which outranks down: a connection rekeying while its tunnel
    /// carries traffic is up.
    fn max_by_rank(self, other: Self) -> Self {
        let rank = |s: Self| match s {
            Self::Down => 0,
            Self::Negotiating => 1,
            Self::Up => 2,
        };
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(serial: u64, connection: &str, kind: SaKind, established: bool) -> SaState {
        SaState {
            serial,
            connection: connection.to_owned(),
            kind,
            established,
            name: String::new(),
        }
    }

    #[test]
    fn derives_tunnel_state_from_sas() {
        let states = [
            sa(1, "up", SaKind::Ike, true),
            sa(2, "up", SaKind::Child, true),
            sa(3, "rekeying", SaKind::Child, true),
            sa(4, "rekeying", SaKind::Child, false),
            sa(5, "starting", SaKind::Ike, false),
            sa(6, "ike-only", SaKind::Ike, true),
        ];
        let derived = tunnel_states(&states);
        assert_eq!(derived["up"], TunnelState::Up);
        assert_eq!(derived["rekeying"], TunnelState::Up);
        assert_eq!(derived["starting"], TunnelState::Negotiating);
        assert_eq!(derived["ike-only"], TunnelState::Down);
        assert!(!derived.contains_key("absent"));
    }

    #[test]
    fn reads_pluto_major_version() {
        let mut model = Model::default();
        assert_eq!(model.pluto_major(), None);
        model.pluto_version = "4.10".to_owned();
        assert_eq!(model.pluto_major(), Some(4));
        model.pluto_version = "5.2".to_owned();
        assert_eq!(model.pluto_major(), Some(5));
    }
}
