//! libreswan-dbus: libreswan's IPsec connections on D-Bus.
//!
//! Folders and files by concern: [`bus`] is the D-Bus face, [`pluto`] the pluto client,
//! [`parse`] the parsers of pluto's text, [`polkit`] authorisation, [`sync`] the loop that keeps
//! objects in step with pluto, [`control`] the verbs, [`model`] the data they share.

pub mod bus;
pub mod client;
pub mod control;
pub mod label;
pub mod model;
pub mod options;
pub mod parse;
pub mod pluto;
pub mod polkit;
pub mod service;
pub mod sync;
pub mod verb;

use std::{future::Future, sync::Arc, time::Duration};

use tracing::{info, warn};
use zbus::fdo::{ObjectManager, RequestNameFlags, RequestNameReply};

use crate::{
    bus::{BUS_NAME, Manager, ROOT_PATH},
    options::{BusChoice, Options},
    pluto::Whack,
    service::{Service, Settings},
};

/// How long shutdown waits for calls in flight before it exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot connect to the bus")]
    Bus(#[from] zbus::Error),
    #[error("{BUS_NAME} is already owned on this bus: is another libreswan-dbus running?")]
    NameTaken,
}

/// Serves until `shutdown` completes, then finishes the calls in flight and releases the name.
pub async fn run(options: Options, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
    let bus = connect(&options.bus).await?;
    let whack = Whack::new(
        options.whack.clone(),
        options.ctlsocket.clone(),
        options.whack_timeout,
    );
    let settings = Settings {
        poll_interval: options.poll_interval,
        list_interval: options.list_interval,
        whack_timeout: options.whack_timeout,
    };
    let service = Arc::new(Service::new(bus.clone(), Box::new(whack), settings));

    // Publish everything before taking the name, so a Type=dbus unit is ready exactly when
    // clients can use it.
    let first_listing_cost = service.initial_listing().await;
    let server = bus.object_server();
    server.at(ROOT_PATH, ObjectManager).await?;
    server
        .at(ROOT_PATH, Manager::new(Arc::clone(&service)))
        .await?;
    let names: Vec<String> = service.model().connections.keys().cloned().collect();
    for name in &names {
        bus::publish(&service, name).await;
    }

    let reply = bus
        .request_name_with_flags(BUS_NAME, RequestNameFlags::DO_NOT_QUEUE)
        .await?;
    if !matches!(reply, RequestNameReply::PrimaryOwner) {
        return Err(StartError::NameTaken);
    }
    info!(
        name = BUS_NAME,
        connections = names.len(),
        pluto_running = service.model().pluto_running,
        "serving"
    );

    let sync = tokio::spawn(Arc::clone(&service).run_sync(first_listing_cost));
    shutdown.await;

    info!("stopping: releasing the name and finishing calls in flight");
    if let Err(err) = bus.release_name(BUS_NAME).await {
        warn!(error = %err, "cannot release the name");
    }
    if tokio::time::timeout(SHUTDOWN_GRACE, service.calls_in_flight.write())
        .await
        .is_err()
    {
        warn!(
            grace_s = SHUTDOWN_GRACE.as_secs(),
            "calls still in flight; exiting anyway"
        );
    }
    sync.abort();
    Ok(())
}

async fn connect(choice: &BusChoice) -> zbus::Result<zbus::Connection> {
    let builder = match choice {
        BusChoice::System => zbus::connection::Builder::system(),
        BusChoice::Session => zbus::connection::Builder::session(),
        BusChoice::Address(address) => zbus::connection::Builder::address(address.as_str()),
    };
    builder.build().await
}
