//! `org.libreswan.Connection`: one object per connection pluto has loaded.

use std::sync::Arc;

use zbus::{Variant, interface, message::Header};

use super::{Error, audit};
use crate::{model::Connection, service::Service, verb::Verb};

/// The D-Bus object of one connection. It holds only the name: every property is read from
/// the service's model, so there is one copy of the truth.
pub struct ConnectionObject {
    name: String,
    service: Arc<Service>,
}

impl ConnectionObject {
    pub fn new(name: String, service: Arc<Service>) -> Self {
        Self { name, service }
    }

    fn snapshot(&self) -> Connection {
        self.service.connection(&self.name).unwrap_or_default()
    }
}

/// The properties that PropertiesChanged announces, with their values for `connection`; the
/// same values the getters below return.
pub(crate) fn signalled_properties(
    connection: &Connection,
) -> [(&'static str, Variant<'static>); 11] {
    let info = &connection.info;
    [
        ("State", Variant::from(connection.state.as_str())),
        ("Routed", Variant::from(connection.routed())),
        ("LocalAddress", Variant::from(info.local_address.clone())),
        ("RemoteAddress", Variant::from(info.remote_address.clone())),
        ("LocalId", Variant::from(info.local_id.clone())),
        ("RemoteId", Variant::from(info.remote_id.clone())),
        ("LocalSubnets", Variant::from(info.local_subnets.clone())),
        ("RemoteSubnets", Variant::from(info.remote_subnets.clone())),
        ("IkeVersion", Variant::from(info.ike_version)),
        ("Template", Variant::from(info.template.clone())),
        ("LastError", Variant::from(connection.last_error.clone())),
    ]
}

/// One IPsec connection loaded in pluto (a `conn` of ipsec.conf, or an instance of a
/// template). Reading is open to every local user; changing anything is authorised by polkit.
#[interface(name = "org.libreswan.Connection")]
impl ConnectionObject {
    /// Brings the tunnel up. Returns as soon as pluto has accepted the attempt; watch State
    /// go to `negotiating`, then `up` — or back to `down`, with LastError saying why. Does
    /// nothing for a tunnel that is up or on its way up, or a template with an instance up.
    /// polkit action: org.libreswan.connection.up.
    async fn up(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] bus: &zbus::Connection,
    ) -> Result<(), Error> {
        audit::guarded(&self.service, bus, &header, Verb::Up, &self.name).await
    }

    /// Takes the tunnel down as `ipsec down` does: pluto deletes the connection's Child SAs,
    /// and its IKE SA unless another connection still uses it. The connection stays loaded and
    /// keeps its route, so a routed connection's traffic never takes another path; bring it up
    /// again later. Returns once pluto has finished. On a connection with no SAs it succeeds
    /// and changes nothing. On a template, takes down every instance; on an instance, only
    /// that one. polkit action: org.libreswan.connection.down.
    async fn down(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] bus: &zbus::Connection,
    ) -> Result<(), Error> {
        audit::guarded(&self.service, bus, &header, Verb::Down, &self.name).await
    }

    /// Installs the connection's trap policy, as `ipsec route` does: matching traffic brings
    /// the tunnel up, and never takes another path meanwhile. polkit action:
    /// org.libreswan.connection.route (detail verb=route).
    async fn route(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] bus: &zbus::Connection,
    ) -> Result<(), Error> {
        audit::guarded(&self.service, bus, &header, Verb::Route, &self.name).await
    }

    /// Removes the connection's trap policy, as `ipsec unroute` does, so it stays down for
    /// good. Refused with org.libreswan.Error.Busy while the connection (or, for a template,
    /// an instance) has SAs: bring it down first. polkit action:
    /// org.libreswan.connection.route (detail verb=unroute).
    async fn unroute(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] bus: &zbus::Connection,
    ) -> Result<(), Error> {
        audit::guarded(&self.service, bus, &header, Verb::Unroute, &self.name).await
    }

    /// Makes pluto forget the connection, as `ipsec delete` does, taking its SAs down first;
    /// for a template, its instances too. The object is gone (InterfacesRemoved) when the call
    /// returns. Refused with org.libreswan.Error.Failed for an instance, which pluto makes for
    /// one peer: take it Down() instead. polkit action: org.libreswan.connection.delete.
    async fn delete(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] bus: &zbus::Connection,
    ) -> Result<(), Error> {
        audit::guarded(&self.service, bus, &header, Verb::Delete, &self.name).await
    }

    /// The connection's name in pluto; an instance of a template is named like `rw[3]`.
    #[zbus(property(emits_changed_signal = "const"))]
    fn name(&self) -> String {
        self.name.clone()
    }

    /// `up` when a Child SA of the connection is established, `negotiating` while an IKE or
    /// Child exchange of it is in flight, `down` otherwise.
    #[zbus(property)]
    fn state(&self) -> String {
        self.snapshot().state.as_str().to_owned()
    }

    /// Whether pluto holds a kernel policy for the connection: a trap that brings the tunnel
    /// up on demand, or the tunnel's own while it is up.
    #[zbus(property)]
    fn routed(&self) -> bool {
        self.snapshot().routed()
    }

    /// This end's IP address; empty where pluto does not say.
    #[zbus(property)]
    fn local_address(&self) -> String {
        self.snapshot().info.local_address
    }

    /// The peer's IP address, or `%any` for a template; empty where pluto does not say.
    #[zbus(property)]
    fn remote_address(&self) -> String {
        self.snapshot().info.remote_address
    }

    /// This end's IKE identity, e.g. `@west`; empty where pluto does not say.
    #[zbus(property)]
    fn local_id(&self) -> String {
        self.snapshot().info.local_id
    }

    /// The peer's IKE identity; empty where pluto does not say.
    #[zbus(property)]
    fn remote_id(&self) -> String {
        self.snapshot().info.remote_id
    }

    /// The networks behind this end that the tunnel carries, e.g. `10.1.0.0/24`; empty for a
    /// host-to-host tunnel.
    #[zbus(property)]
    fn local_subnets(&self) -> Vec<String> {
        self.snapshot().info.local_subnets
    }

    /// The networks behind the peer that the tunnel carries; empty for a host-to-host tunnel.
    #[zbus(property)]
    fn remote_subnets(&self) -> Vec<String> {
        self.snapshot().info.remote_subnets
    }

    /// 1 or 2; 0 where pluto does not say.
    #[zbus(property)]
    fn ike_version(&self) -> u32 {
        self.snapshot().info.ike_version
    }

    /// Why the tunnel is not up, in pluto's words: while pluto is still trying (no answer from
    /// the peer) as well as when it gave up (authentication failed, proposal or traffic
    /// selectors refused). Empty once the tunnel is up, and when nothing was tried.
    #[zbus(property)]
    fn last_error(&self) -> String {
        self.snapshot().last_error
    }

    /// For an instance of a template (a road-warrior server's connected peer), the template's
    /// name; empty for an ordinary connection.
    #[zbus(property)]
    fn template(&self) -> String {
        self.snapshot().info.template
    }

    /// Bytes received through the tunnel since its Child SA was established; restarts at each
    /// rekey. Not signalled: read it when showing it.
    #[zbus(property(emits_changed_signal = "false"))]
    async fn bytes_in(&self) -> u64 {
        self.service.bytes(&self.name).await.0
    }

    /// Bytes sent through the tunnel since its Child SA was established; restarts at each
    /// rekey. Not signalled: read it when showing it.
    #[zbus(property(emits_changed_signal = "false"))]
    async fn bytes_out(&self) -> u64 {
        self.service.bytes(&self.name).await.1
    }
}
