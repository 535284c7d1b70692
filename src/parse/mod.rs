//! Pure parsers of the text pluto sends back through whack.
//!
//! Every function here takes `&str` and returns typed data; none of them can fail or panic on
//! any input. Lines pluto did not understand are skipped. libreswan 4.x prefixes every line with a
//! three-digit code (`000 `); 5.x prints none. Both are accepted everywhere.

mod listing;
mod reply;
mod states;
mod traffic;

pub use listing::{BriefTotals, parse_brief_connection_status, parse_status};
pub use reply::{Reply, ReplyProblem, WhackFailure, classify_whack_failure, parse_reply};
pub use states::parse_showstates;
pub use traffic::parse_trafficstatus;

/// One connection as pluto's connection list describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The name as pluto prints it; a template instance is `rw[3]`.
    pub name: String,
    /// For a template instance, the template's name (`rw`); empty otherwise.
    pub template: String,
    pub local_address: String,
    pub remote_address: String,
    pub local_id: String,
    pub remote_id: String,
    pub local_subnets: Vec<String>,
    pub remote_subnets: Vec<String>,
    /// 1 or 2, from the connection's policy; 0 when pluto does not say.
    pub ike_version: u32,
    /// pluto's routing field as printed: `unrouted`, `prospective erouted`, `erouted`,
    /// `routed-ondemand`, `routed-tunnel`, ...; empty when absent.
    pub routing: String,
}

impl ConnectionInfo {
    /// Whether pluto holds a kernel policy for the connection: a trap, or the tunnel's own.
    pub fn routed(&self) -> bool {
        !self.routing.is_empty() && !self.routing.contains("unrouted")
    }
}

/// Whether an SA is the IKE SA or a Child (IPsec) SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaKind {
    Ike,
    Child,
}

/// One state (SA) from pluto's state list (`--showstates`, or the states part of `--status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaState {
    /// pluto's serial number, `#N`.
    pub serial: u64,
    /// The connection's name as in [`ConnectionInfo::name`] (`rw[3]` for an instance).
    pub connection: String,
    pub kind: SaKind,
    /// True once the exchange that creates the SA has completed.
    pub established: bool,
    /// pluto's state name, e.g. `STATE_V2_ESTABLISHED_CHILD_SA` (4.x) or
    /// `ESTABLISHED_CHILD_SA` (5.x); `PENDING` for a "pending CHILD SA" line.
    pub name: String,
}

/// Byte counts of one Child SA from `--trafficstatus`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Traffic {
    pub serial: u64,
    pub connection: String,
    pub bytes_in: u64,
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
