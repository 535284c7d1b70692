//! The D-Bus face: `org.libreswan.Manager` at `/org/libreswan`, one `org.libreswan.Connection`
//! per connection below it, and the ObjectManager that announces them.
//!
//! The interface methods are thin: authorise, call one function of the core, map the result to
//! a D-Bus error. Signals for changes made elsewhere are sent from here too.

mod audit;
mod connection;
mod error;
mod manager;

pub use connection::ConnectionObject;
pub use error::Error;
pub use manager::Manager;

use std::{borrow::Cow, collections::HashMap, sync::Arc};

use tracing::warn;
use zbus::{
    OwnedObjectPath, Variant,
    fdo::Properties,
    names::InterfaceName,
    object_server::{Interface, SignalEmitter},
};

use crate::{label, model::Connection, service::Service};

/// The well-known name the service owns.
pub const BUS_NAME: &str = "org.libreswan";

/// Where the manager and the ObjectManager live.
pub const ROOT_PATH: &str = "/org/libreswan";

/// The object path of a connection.
pub fn connection_path(name: &str) -> OwnedObjectPath {
    let path = format!("{ROOT_PATH}/Connection/{}", label::escape(name));
    OwnedObjectPath::try_from(path).expect("escaped labels are valid path elements")
}

/// Publishes the object of a connection already in the model; InterfacesAdded follows.
pub(crate) async fn publish(service: &Arc<Service>, name: &str) {
    let object = ConnectionObject::new(name.to_owned(), Arc::clone(service));
    if let Err(err) = service
        .bus
        .object_server()
        .at(connection_path(name), object)
        .await
    {
        warn!(connection = %name, error = %err, "cannot publish connection");
    }
}

/// Removes the object of a connection gone from pluto; InterfacesRemoved follows.
pub(crate) async fn unpublish(bus: &zbus::Connection, name: &str) {
    let path = connection_path(name);
    if let Err(err) = bus
        .object_server()
        .remove::<ConnectionObject, _>(&path)
        .await
    {
        warn!(connection = %name, error = %err, "cannot remove connection object");
    }
}

/// Announces, in one PropertiesChanged, every signalled property that differs.
pub(crate) async fn connection_changed(bus: &zbus::Connection, old: &Connection, new: &Connection) {
    let before = connection::signalled_properties(old);
    let changed: HashMap<&str, Variant<'_>> = connection::signalled_properties(new)
        .into_iter()
        .zip(before)
        .filter(|((_, now), (_, was))| now != was)
        .map(|((name, now), _)| (name, now))
        .collect();
    if !changed.is_empty() {
        let path = connection_path(&new.info.name);
        emit(bus, &path, ConnectionObject::name(), changed).await;
    }
}

/// Announces the manager's pluto properties, which change together.
pub(crate) async fn manager_changed(service: &Service) {
    let changed = manager::signalled_properties(service);
    emit(&service.bus, ROOT_PATH, Manager::name(), changed).await;
}

async fn emit(
    bus: &zbus::Connection,
    path: &str,
    interface: InterfaceName<'static>,
    changed: HashMap<&str, Variant<'_>>,
) {
    let sent = match SignalEmitter::new(bus, path) {
        Ok(emitter) => {
            Properties::properties_changed(&emitter, interface, changed, Cow::Borrowed(&[])).await
        }
        Err(err) => Err(err),
    };
    if let Err(err) = sent {
        warn!(path, error = %err, "cannot send PropertiesChanged");
    }
}
