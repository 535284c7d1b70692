//! A typed client of libreswan-dbus, for programs that show or control IPsec tunnels.
//!
//! The service owns `org.libreswan` on the system bus. [`ManagerProxy`] talks to
//! `org.libreswan.Manager` at `/org/libreswan`; each connection pluto has loaded is an object
//! `/org/libreswan/Connection/<label>`, and [`ConnectionProxy`] talks to its
//! `org.libreswan.Connection`. `<label>` is the connection's name escaped as systemd escapes bus
//! labels: [`escape`] and [`connection_path`] compute it, [`unescape`] and [`connection_name`]
//! reverse it.
//!
//! [`Client`] wraps the calls most tools need: every connection and its properties in one round
//! trip ([`Client::connections`]), one connection by name, and the verbs with or without
//! interactive authorisation ([`Client::run`]). Failures are an [`Error`] with one variant per
//! error name the service returns, each carrying the service's message for a person to read.
//!
//! ```no_run
//! use libreswan_dbus::client::{Client, Interaction, Verb};
//!
//! # async fn example() -> Result<(), libreswan_dbus::client::Error> {
//! let client = Client::system().await?;
//! for connection in client.connections().await? {
//!     println!("{}: {} (routed: {})", connection.name, connection.state, connection.routed);
//! }
//!
//! // Lets polkit ask the user for a password, if an authentication agent runs for them.
//! client.run(Verb::Down, "westnet-eastnet", Interaction::Allow).await?;
//!
//! // Properties that change are announced; follow one with a stream.
//! use futures_util::StreamExt;
//! let tunnel = client.connection("westnet-eastnet").await?;
//! let mut states = tunnel.receive_state_changed().await;
//! while let Some(change) = states.next().await {
//!     println!("now {}", change.get().await?);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! The proxies are ordinary zbus proxies: build them on any [`zbus::Connection`] with
//! `ManagerProxy::new(&bus)` and `ConnectionProxy::new(&bus, connection_path(name))`.

use std::{collections::HashMap, fmt};

use zbus::{
    DBusError, OwnedObjectPath, OwnedVariant,
    fdo::{ObjectManagerProxy, PropertiesProxy},
    names::InterfaceName,
    proxy::CacheProperties,
    wire::ObjectPath,
};

pub use crate::label::{escape, unescape};
use crate::options::BusChoice;
pub use crate::verb::Verb;

/// The well-known name of the service.
pub const SERVICE: &str = "org.libreswan";

/// The path of the manager, which is also the ObjectManager of every connection object.
pub const MANAGER_PATH: &str = "/org/libreswan";

/// The interface of the manager object.
pub const MANAGER_INTERFACE: &str = "org.libreswan.Manager";

/// The interface of every connection object.
pub const CONNECTION_INTERFACE: &str = "org.libreswan.Connection";

/// Connection objects live below this path, one element each.
const CONNECTION_PREFIX: &str = "/org/libreswan/Connection/";

/// The object path of the connection pluto knows as `name`.
pub fn connection_path(name: &str) -> OwnedObjectPath {
    let path = format!("{CONNECTION_PREFIX}{}", escape(name));
    OwnedObjectPath::try_from(path).expect("escaped labels are valid path elements")
}

/// The name of the connection at `path`, or `None` when `path` is not a connection object.
pub fn connection_name(path: &ObjectPath<'_>) -> Option<String> {
    unescape(path.as_str().strip_prefix(CONNECTION_PREFIX)?)
}

/// `org.libreswan.Manager` at `/org/libreswan`: the service, and the pluto it talks to.
#[zbus::proxy(
    interface = "org.libreswan.Manager",
    default_service = "org.libreswan",
    default_path = "/org/libreswan"
)]
pub trait Manager {
    /// The object path of the connection pluto knows as `name`; fails with
    /// [`Error::UnknownConnection`] when pluto has no such connection.
    fn get_connection(&self, name: &str) -> Result<OwnedObjectPath, Error>;

    /// Makes the service read pluto's connections now; returns when the objects match them.
    /// Fails with [`Error::PlutoUnavailable`] when pluto does not answer.
    fn refresh(&self) -> Result<(), Error>;

    /// The service's version.
    #[zbus(property(emits_changed_signal = "const"))]
    fn version(&self) -> Result<String, Error>;

    /// The running pluto's version, e.g. `4.10`; empty until pluto has answered once.
    #[zbus(property)]
    fn pluto_version(&self) -> Result<String, Error>;

    /// Whether pluto answered the last time the service asked.
    #[zbus(property)]
    fn pluto_running(&self) -> Result<bool, Error>;

    /// The pluto control socket the service talks to.
    #[zbus(property(emits_changed_signal = "const"))]
    fn control_socket(&self) -> Result<String, Error>;
}

/// `org.libreswan.Connection`: one connection pluto has loaded.
///
/// Each verb comes twice: `down()` lets polkit answer only from its rules, `down_interactive()`
/// sets the ALLOW_INTERACTIVE_AUTHORIZATION flag so polkit may ask the user through an
/// authentication agent. Without the flag, a user who could authenticate gets
/// [`Error::InteractiveAuthorizationRequired`].
#[zbus::proxy(
    interface = "org.libreswan.Connection",
    default_service = "org.libreswan"
)]
pub trait Connection {
    /// Brings the tunnel up: returns once pluto has accepted the attempt; `State` follows.
    fn up(&self) -> Result<(), Error>;

    /// [`up`](ConnectionProxy::up), allowing interactive authorisation.
    #[zbus(name = "Up", allow_interactive_auth)]
    fn up_interactive(&self) -> Result<(), Error>;

    /// Takes the tunnel down as `ipsec down` does; the connection stays loaded and routed.
    fn down(&self) -> Result<(), Error>;

    /// [`down`](ConnectionProxy::down), allowing interactive authorisation.
    #[zbus(name = "Down", allow_interactive_auth)]
    fn down_interactive(&self) -> Result<(), Error>;

    /// Installs the connection's trap policy, as `ipsec route` does.
    fn route(&self) -> Result<(), Error>;

    /// [`route`](ConnectionProxy::route), allowing interactive authorisation.
    #[zbus(name = "Route", allow_interactive_auth)]
    fn route_interactive(&self) -> Result<(), Error>;

    /// Removes the connection's trap policy, as `ipsec unroute` does; [`Error::Busy`] while the
    /// connection (or, for a template, an instance) has SAs.
    fn unroute(&self) -> Result<(), Error>;

    /// [`unroute`](ConnectionProxy::unroute), allowing interactive authorisation.
    #[zbus(name = "Unroute", allow_interactive_auth)]
    fn unroute_interactive(&self) -> Result<(), Error>;

    /// Makes pluto forget the connection, as `ipsec delete` does; the object is gone when the
    /// call returns. [`Error::Failed`] for an instance of a template: take it down instead.
    fn delete(&self) -> Result<(), Error>;

    /// [`delete`](ConnectionProxy::delete), allowing interactive authorisation.
    #[zbus(name = "Delete", allow_interactive_auth)]
    fn delete_interactive(&self) -> Result<(), Error>;

    /// The connection's name in pluto.
    #[zbus(property(emits_changed_signal = "const"))]
    fn name(&self) -> Result<String, Error>;

    /// `up`, `negotiating` or `down`; see [`State`].
    #[zbus(property)]
    fn state(&self) -> Result<String, Error>;

    /// Why the tunnel is not up, in pluto's words; empty when up or never tried.
    #[zbus(property)]
    fn last_error(&self) -> Result<String, Error>;

    /// Whether pluto holds a kernel policy (a trap, or the tunnel's own) for the connection.
    #[zbus(property)]
    fn routed(&self) -> Result<bool, Error>;

    /// This end's IP address; empty where pluto does not say.
    #[zbus(property)]
    fn local_address(&self) -> Result<String, Error>;

    /// The peer's IP address, or `%any` for a template.
    #[zbus(property)]
    fn remote_address(&self) -> Result<String, Error>;

    /// This end's IKE identity.
    #[zbus(property)]
    fn local_id(&self) -> Result<String, Error>;

    /// The peer's IKE identity.
    #[zbus(property)]
    fn remote_id(&self) -> Result<String, Error>;

    /// The networks behind this end that the tunnel carries.
    #[zbus(property)]
    fn local_subnets(&self) -> Result<Vec<String>, Error>;

    /// The networks behind the peer that the tunnel carries.
    #[zbus(property)]
    fn remote_subnets(&self) -> Result<Vec<String>, Error>;

    /// 1 or 2; 0 where pluto does not say.
    #[zbus(property)]
    fn ike_version(&self) -> Result<u32, Error>;

    /// For an instance of a template, the template's name; empty otherwise.
    #[zbus(property)]
    fn template(&self) -> Result<String, Error>;

    /// Bytes received since the Child SA was established. Never signalled, never cached:
    /// each call reads it from the service.
    #[zbus(property(emits_changed_signal = "false"))]
    fn bytes_in(&self) -> Result<u64, Error>;

    /// Bytes sent since the Child SA was established. Never signalled, never cached.
    #[zbus(property(emits_changed_signal = "false"))]
    fn bytes_out(&self) -> Result<u64, Error>;
}

/// Whether polkit may ask the user (through an authentication agent) before answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interaction {
    /// Set ALLOW_INTERACTIVE_AUTHORIZATION: polkit may ask for a password, and the call waits.
    Allow,
    /// polkit answers from its rules alone; a user who could authenticate gets
    /// [`Error::InteractiveAuthorizationRequired`].
    Deny,
}

/// A connection's `State`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum State {
    /// A Child SA is established.
    Up,
    /// An IKE or Child exchange is in flight.
    Negotiating,
    /// No SA.
    #[default]
    Down,
    /// A state a later version of the service may add; names are added, never renamed.
    Other(String),
}

impl State {
    pub fn as_str(&self) -> &str {
        match self {
            State::Up => "up",
            State::Negotiating => "negotiating",
            State::Down => "down",
            State::Other(word) => word,
        }
    }
}

impl From<&str> for State {
    fn from(word: &str) -> Self {
        match word {
            "up" => State::Up,
            "negotiating" => State::Negotiating,
            "down" => State::Down,
            other => State::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every property of one connection, as read in one call.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectionInfo {
    pub path: OwnedObjectPath,
    pub name: String,
    pub state: State,
    pub last_error: String,
    pub routed: bool,
    pub local_address: String,
    pub remote_address: String,
    pub local_id: String,
    pub remote_id: String,
    pub local_subnets: Vec<String>,
    pub remote_subnets: Vec<String>,
    pub ike_version: u32,
    pub template: String,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl ConnectionInfo {
    /// Reads the properties of `org.libreswan.Connection` as `GetAll` or `GetManagedObjects`
    /// return them. A property this version does not know is ignored; one missing takes its
    /// empty value, so a client keeps working with an older or newer service.
    pub fn from_properties(
        path: OwnedObjectPath,
        properties: &HashMap<String, OwnedVariant>,
    ) -> Result<Self, Error> {
        let state: String = field(properties, "State")?;
        let mut info = ConnectionInfo {
            name: field(properties, "Name")?,
            state: State::from(state.as_str()),
            last_error: field(properties, "LastError")?,
            routed: field(properties, "Routed")?,
            local_address: field(properties, "LocalAddress")?,
            remote_address: field(properties, "RemoteAddress")?,
            local_id: field(properties, "LocalId")?,
            remote_id: field(properties, "RemoteId")?,
            local_subnets: field(properties, "LocalSubnets")?,
            remote_subnets: field(properties, "RemoteSubnets")?,
            ike_version: field(properties, "IkeVersion")?,
            template: field(properties, "Template")?,
            bytes_in: field(properties, "BytesIn")?,
            bytes_out: field(properties, "BytesOut")?,
            path,
        };
        if info.name.is_empty() {
            info.name = connection_name(&info.path).unwrap_or_default();
        }
        Ok(info)
    }
}

/// The manager's properties, as read in one call.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceInfo {
    pub version: String,
    pub pluto_version: String,
    pub pluto_running: bool,
    pub control_socket: String,
}

/// Property `key` of `properties`, or its type's empty value when the service does not send it.
fn field<T>(properties: &HashMap<String, OwnedVariant>, key: &str) -> Result<T, Error>
where
    T: TryFrom<OwnedVariant, Error = zbus::Error> + Default,
{
    match properties.get(key) {
        Some(value) => T::try_from(value.clone()).map_err(|err| {
            Error::Bus(zbus::Error::Failure(format!(
                "property {key} has an unexpected type: {err}"
            )))
        }),
        None => Ok(T::default()),
    }
}

/// A connection to the service on one bus.
#[derive(Debug, Clone)]
pub struct Client {
    bus: zbus::Connection,
    manager: ManagerProxy<'static>,
}

impl Client {
    /// Connects to the system bus (`DBUS_SYSTEM_BUS_ADDRESS` when set).
    pub async fn system() -> Result<Self, Error> {
        Self::connect(&BusChoice::System).await
    }

    /// Connects to the bus `choice` names, as the daemon's `--bus` does.
    pub async fn connect(choice: &BusChoice) -> Result<Self, Error> {
        let builder = match choice {
            BusChoice::System => zbus::connection::Builder::system(),
            BusChoice::Session => zbus::connection::Builder::session(),
            BusChoice::Address(address) => zbus::connection::Builder::address(address.as_str()),
        };
        let bus = builder.build().await.map_err(Error::Bus)?;
        Self::new(bus).await
    }

    /// Uses a bus connection the caller already has.
    pub async fn new(bus: zbus::Connection) -> Result<Self, Error> {
        // A command-line tool reads each property once: caching would only add calls.
        let manager = ManagerProxy::builder(&bus)
            .cache_properties(CacheProperties::No)
            .build()
            .await?;
        Ok(Client { bus, manager })
    }

    pub fn bus(&self) -> &zbus::Connection {
        &self.bus
    }

    pub fn manager(&self) -> &ManagerProxy<'static> {
        &self.manager
    }

    /// Every connection with all its properties, sorted by name, in one call
    /// (ObjectManager's `GetManagedObjects`).
    pub async fn connections(&self) -> Result<Vec<ConnectionInfo>, Error> {
        let object_manager = ObjectManagerProxy::builder(&self.bus)
            .destination(SERVICE)
            .path(MANAGER_PATH)
            .cache_properties(CacheProperties::No)
            .build()
            .await?;
        let objects = object_manager.get_managed_objects().await?;
        let mut connections = Vec::with_capacity(objects.len());
        for (path, interfaces) in objects {
            if let Some(properties) = interfaces.get(CONNECTION_INTERFACE) {
                connections.push(ConnectionInfo::from_properties(path, properties)?);
            }
        }
        connections.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(connections)
    }

    /// A proxy for the connection pluto knows as `name`, with its properties cached and
    /// followed; [`Error::UnknownConnection`] when pluto has no such connection.
    pub async fn connection(&self, name: &str) -> Result<ConnectionProxy<'static>, Error> {
        let path = self.manager.get_connection(name).await?;
        Ok(ConnectionProxy::builder(&self.bus)
            .path(path)
            .build()
            .await?)
    }

    /// Every property of the connection pluto knows as `name`, in one call.
    pub async fn connection_info(&self, name: &str) -> Result<ConnectionInfo, Error> {
        let path = self.manager.get_connection(name).await?;
        let properties = self.properties(path.clone(), CONNECTION_INTERFACE).await?;
        ConnectionInfo::from_properties(path, &properties)
    }

    /// The manager's properties, in one call.
    pub async fn service_info(&self) -> Result<ServiceInfo, Error> {
        let path = OwnedObjectPath::try_from(MANAGER_PATH).expect("a valid path");
        let properties = self.properties(path, MANAGER_INTERFACE).await?;
        Ok(ServiceInfo {
            version: field(&properties, "Version")?,
            pluto_version: field(&properties, "PlutoVersion")?,
            pluto_running: field(&properties, "PlutoRunning")?,
            control_socket: field(&properties, "ControlSocket")?,
        })
    }

    /// Runs `verb` on the connection pluto knows as `name`. With [`Interaction::Allow`] the
    /// call may wait while polkit asks the user.
    pub async fn run(&self, verb: Verb, name: &str, interaction: Interaction) -> Result<(), Error> {
        let path = self.manager.get_connection(name).await?;
        // Verbs have no properties to cache.
        let connection = ConnectionProxy::builder(&self.bus)
            .path(path)
            .cache_properties(CacheProperties::No)
            .build()
            .await?;
        let interactive = interaction == Interaction::Allow;
        match (verb, interactive) {
            (Verb::Up, false) => connection.up().await,
            (Verb::Up, true) => connection.up_interactive().await,
            (Verb::Down, false) => connection.down().await,
            (Verb::Down, true) => connection.down_interactive().await,
            (Verb::Route, false) => connection.route().await,
            (Verb::Route, true) => connection.route_interactive().await,
            (Verb::Unroute, false) => connection.unroute().await,
            (Verb::Unroute, true) => connection.unroute_interactive().await,
            (Verb::Delete, false) => connection.delete().await,
            (Verb::Delete, true) => connection.delete_interactive().await,
        }
    }

    async fn properties(
        &self,
        path: OwnedObjectPath,
        interface: &'static str,
    ) -> Result<HashMap<String, OwnedVariant>, Error> {
        let properties = PropertiesProxy::builder(&self.bus)
            .destination(SERVICE)
            .path(path)
            .cache_properties(CacheProperties::No)
            .build()
            .await?;
        let interface = InterfaceName::from_static_str_unchecked(interface);
        Ok(properties.get_all(interface).await?)
    }
}

/// Why a call failed. Each error the service returns has its own variant carrying the
/// service's message, meant for a person as it is. Errors from the bus itself follow.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `org.libreswan.Error.NotAuthorized`: polkit said no, or could not be asked.
    #[error("{0}")]
    NotAuthorized(String),
    /// `org.freedesktop.DBus.Error.InteractiveAuthorizationRequired`: the user could
    /// authenticate, but the call did not allow polkit to ask ([`Interaction::Deny`]).
    #[error("{0}")]
    InteractiveAuthorizationRequired(String),
    /// `org.libreswan.Error.UnknownConnection`: pluto has no connection by that name.
    #[error("{0}")]
    UnknownConnection(String),
    /// `org.libreswan.Error.PlutoUnavailable`: pluto's socket is missing, refused or not
    /// permitted; the message says which.
    #[error("{0}")]
    PlutoUnavailable(String),
    /// `org.libreswan.Error.Timeout`: pluto did not answer in time.
    #[error("{0}")]
    Timeout(String),
    /// `org.libreswan.Error.Failed`: the verb did not happen: pluto refused (the message carries
    /// pluto's words), or it does not apply (delete of an instance).
    #[error("{0}")]
    Failed(String),
    /// `org.libreswan.Error.Busy`: not now (e.g. unroute while the tunnel has SAs).
    #[error("{0}")]
    Busy(String),
    /// `org.freedesktop.DBus.Error.ServiceUnknown` or `NameHasNoOwner`: the service is not
    /// running and the bus cannot start it.
    #[error("{0}")]
    ServiceUnavailable(String),
    /// `org.freedesktop.DBus.Error.AccessDenied`: the bus policy kept the call from the
    /// service (see the restricted variant in org.libreswan.conf).
    #[error("{0}")]
    AccessDenied(String),
    /// `org.freedesktop.DBus.Error.UnknownObject`: the object is gone, e.g. the connection
    /// was deleted between finding it and calling it.
    #[error("{0}")]
    UnknownObject(String),
    /// Any other error reply.
    #[error("{name}: {message}")]
    Other { name: String, message: String },
    /// No error reply: the bus could not be reached, or the reply made no sense.
    #[error("{0}")]
    Bus(#[source] zbus::Error),
}

impl Error {
    /// The error as a reply named `name` carrying `message` would be.
    pub fn from_reply(name: &str, message: &str) -> Self {
        let message = if message.is_empty() {
            name.to_owned()
        } else {
            message.to_owned()
        };
        match name {
            "org.libreswan.Error.NotAuthorized" => Error::NotAuthorized(message),
            "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired" => {
                Error::InteractiveAuthorizationRequired(message)
            }
            "org.libreswan.Error.UnknownConnection" => Error::UnknownConnection(message),
            "org.libreswan.Error.PlutoUnavailable" => Error::PlutoUnavailable(message),
            "org.libreswan.Error.Timeout" => Error::Timeout(message),
            "org.libreswan.Error.Failed" => Error::Failed(message),
            "org.libreswan.Error.Busy" => Error::Busy(message),
            "org.freedesktop.DBus.Error.ServiceUnknown"
            | "org.freedesktop.DBus.Error.NameHasNoOwner" => Error::ServiceUnavailable(message),
            "org.freedesktop.DBus.Error.AccessDenied" => Error::AccessDenied(message),
            "org.freedesktop.DBus.Error.UnknownObject" => Error::UnknownObject(message),
            _ => Error::Other {
                name: name.to_owned(),
                message,
            },
        }
    }

    /// The D-Bus error name, or `None` when no error reply came.
    pub fn name(&self) -> Option<&str> {
        Some(match self {
            Error::NotAuthorized(_) => "org.libreswan.Error.NotAuthorized",
            Error::InteractiveAuthorizationRequired(_) => {
                "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"
            }
            Error::UnknownConnection(_) => "org.libreswan.Error.UnknownConnection",
            Error::PlutoUnavailable(_) => "org.libreswan.Error.PlutoUnavailable",
            Error::Timeout(_) => "org.libreswan.Error.Timeout",
            Error::Failed(_) => "org.libreswan.Error.Failed",
            Error::Busy(_) => "org.libreswan.Error.Busy",
            Error::ServiceUnavailable(_) => "org.freedesktop.DBus.Error.ServiceUnknown",
            Error::AccessDenied(_) => "org.freedesktop.DBus.Error.AccessDenied",
            Error::UnknownObject(_) => "org.freedesktop.DBus.Error.UnknownObject",
            Error::Other { name, .. } => name,
            Error::Bus(_) => return None,
        })
    }
}

impl From<zbus::Error> for Error {
    fn from(err: zbus::Error) -> Self {
        match err {
            zbus::Error::MethodError(name, message, _) => {
                Error::from_reply(name.as_str(), message.as_deref().unwrap_or_default())
            }
            zbus::Error::FDO(err) => Error::from(*err),
            other => Error::Bus(other),
        }
    }
}

impl From<zbus::fdo::Error> for Error {
    fn from(err: zbus::fdo::Error) -> Self {
        match err {
            zbus::fdo::Error::ZBus(err) => Error::from(err),
            err => Error::from_reply(err.name().as_str(), err.description().unwrap_or_default()),
        }
    }
}

// The README's Rust examples compile as doctests, so they cannot drift from this module.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExamples;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_names_round_trip() {
        let path = connection_path("westnet-eastnet");
        assert_eq!(path.as_str(), "/org/libreswan/Connection/westnet_2deastnet");
        assert_eq!(connection_name(&path).as_deref(), Some("westnet-eastnet"));
        let manager = ObjectPath::try_from(MANAGER_PATH).unwrap();
        assert_eq!(connection_name(&manager), None);
    }

    #[test]
    fn each_error_name_has_its_variant_and_keeps_the_message() {
        for name in [
            "org.libreswan.Error.NotAuthorized",
            "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired",
            "org.libreswan.Error.UnknownConnection",
            "org.libreswan.Error.PlutoUnavailable",
            "org.libreswan.Error.Timeout",
            "org.libreswan.Error.Failed",
            "org.libreswan.Error.Busy",
            "org.freedesktop.DBus.Error.ServiceUnknown",
            "org.freedesktop.DBus.Error.AccessDenied",
            "org.freedesktop.DBus.Error.UnknownObject",
            "org.example.Error.Whatever",
        ] {
            let error = Error::from_reply(name, "pluto said so");
            assert_eq!(error.name(), Some(name));
            assert!(error.to_string().contains("pluto said so"), "{error}");
        }
        assert!(matches!(
            Error::from_reply("org.example.Error.Whatever", "x"),
            Error::Other { .. }
        ));
    }

    #[test]
    fn fdo_errors_from_the_bus_keep_their_names() {
        let error = Error::from(zbus::Error::FDO(Box::new(
            zbus::fdo::Error::InteractiveAuthorizationRequired("ask first".into()),
        )));
        assert!(matches!(
            &error,
            Error::InteractiveAuthorizationRequired(message) if message == "ask first"
        ));
        let error = Error::from(zbus::fdo::Error::ServiceUnknown("nobody".into()));
        assert!(matches!(error, Error::ServiceUnavailable(_)));
    }

    fn text(value: &str) -> OwnedVariant {
        OwnedVariant::try_from(zbus::Variant::from(value)).unwrap()
    }

    #[test]
    fn properties_read_into_the_struct_and_missing_ones_are_empty() {
        let properties = HashMap::from([
            ("Name".to_owned(), text("rw[3]")),
            ("State".to_owned(), text("negotiating")),
            ("Routed".to_owned(), OwnedVariant::from(true)),
            ("IkeVersion".to_owned(), OwnedVariant::from(2u32)),
            ("BytesIn".to_owned(), OwnedVariant::from(42u64)),
            ("Future".to_owned(), OwnedVariant::from(7u32)),
        ]);
        let info = ConnectionInfo::from_properties(connection_path("rw[3]"), &properties).unwrap();
        assert_eq!(info.name, "rw[3]");
        assert_eq!(info.state, State::Negotiating);
        assert!(info.routed);
        assert_eq!(info.ike_version, 2);
        assert_eq!(info.bytes_in, 42);
        assert_eq!(info.local_subnets, Vec::<String>::new());

        let wrong = HashMap::from([("Routed".to_owned(), text("yes"))]);
        assert!(ConnectionInfo::from_properties(connection_path("a"), &wrong).is_err());
    }
}
