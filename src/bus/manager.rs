//! `org.libreswan.Manager` at `/org/libreswan`: the service itself and the pluto it talks to.

use std::{collections::HashMap, sync::Arc};

use zbus::{OwnedObjectPath, Variant, interface};

use super::{Error, connection_path};
use crate::service::Service;

pub struct Manager {
    service: Arc<Service>,
}

impl Manager {
    pub fn new(service: Arc<Service>) -> Self {
        Self { service }
    }
}

/// The pluto properties, which change together, with their current values.
pub(crate) fn signalled_properties(service: &Service) -> HashMap<&'static str, Variant<'static>> {
    let model = service.model();
    HashMap::from([
        ("PlutoRunning", Variant::from(model.pluto_running)),
        ("PlutoVersion", Variant::from(model.pluto_version.clone())),
    ])
}

/// The libreswan IPsec service: finds connections and keeps them in step with pluto.
/// Connections are objects below /org/libreswan/Connection, announced through the
/// ObjectManager on this path.
#[interface(name = "org.libreswan.Manager")]
impl Manager {
    /// Returns the object path of the connection pluto knows by `name`. Fails with
    /// org.libreswan.Error.UnknownConnection when pluto has no such connection.
    async fn get_connection(&self, name: &str) -> Result<OwnedObjectPath, Error> {
        if self.service.connection(name).is_some() {
            Ok(connection_path(name))
        } else {
            Err(Error::UnknownConnection(format!(
                "pluto has no connection named {name:?}"
            )))
        }
    }

    /// Reads pluto's connections now and returns when the objects match them. Open to
    /// everyone, so calls are coalesced: pluto is listed at most once per poll interval, and
    /// callers waiting at the same time share one listing.
    async fn refresh(&self) -> Result<(), Error> {
        let _in_flight = self.service.calls_in_flight.read().await;
        self.service.refresh().await;
        let model = self.service.model();
        if model.pluto_running {
            Ok(())
        } else {
            Err(Error::PlutoUnavailable(model.pluto_problem.clone()))
        }
    }

    /// This service's version.
    #[zbus(property(emits_changed_signal = "const"))]
    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_owned()
    }

    /// The running pluto's version, e.g. `4.10`; empty until pluto has answered once.
    #[zbus(property)]
    fn pluto_version(&self) -> String {
        self.service.model().pluto_version.clone()
    }

    /// Whether pluto answered the last time it was asked. While it does not, the objects stay
    /// as they were and calls fail with org.libreswan.Error.PlutoUnavailable.
    #[zbus(property)]
    fn pluto_running(&self) -> bool {
        self.service.model().pluto_running
    }

    /// The pluto control socket this service talks to.
    #[zbus(property(emits_changed_signal = "const"))]
    fn control_socket(&self) -> String {
        self.service.pluto.control_socket()
    }
}
