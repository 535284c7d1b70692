//! Every state-changing call goes through [`guarded`]: authorised with polkit, then carried
//! out, and logged either way with who asked, so the journal is an audit trail.

use std::sync::Arc;

use tracing::{info, warn};
use zbus::{fdo::DBusProxy, message::Header, names::BusName};

use super::Error;
use crate::{
    polkit::{self, Question},
    service::Service,
    verb::Verb,
};

/// Who called, as far as the bus daemon can tell; for the log only.
#[derive(Debug, Default)]
struct Caller {
    sender: String,
    uid: Option<u32>,
    pid: Option<u32>,
}

impl Caller {
    async fn identify(bus: &zbus::Connection, header: &Header<'_>) -> Self {
        let Some(sender) = header.sender() else {
            return Self::default();
        };
        let mut caller = Self {
            sender: sender.to_string(),
            ..Self::default()
        };
        let credentials = match DBusProxy::new(bus).await {
            Ok(proxy) => {
                proxy
                    .get_connection_credentials(BusName::Unique(sender.clone()))
                    .await
            }
            Err(err) => Err(err.into()),
        };
        if let Ok(credentials) = credentials {
            caller.uid = credentials.unix_user_id();
            caller.pid = credentials.process_id();
        }
        caller
    }
}

/// Authorises `verb` on `connection` for the sender of `header`, then runs it.
/// Waits for nothing while holding a lock, and keeps shutdown waiting until it is done.
pub(crate) async fn guarded(
    service: &Arc<Service>,
    bus: &zbus::Connection,
    header: &Header<'_>,
    verb: Verb,
    connection: &str,
) -> Result<(), Error> {
    let _in_flight = service.calls_in_flight.read().await;

    // Rules may allow a whole template: its instances carry its name.
    let template = service
        .connection(connection)
        .map(|known| known.info.template)
        .unwrap_or_default();
    let question = Question {
        verb,
        connection,
        template: &template,
    };
    let (caller, authorized) = tokio::join!(
        Caller::identify(bus, header),
        polkit::authorize(bus, header, question),
    );
    let Caller { sender, uid, pid } = &caller;
    let word = verb.as_str();
    if let Err(denied) = authorized {
        warn!(%sender, ?uid, ?pid, verb = word, connection, outcome = "refused", reason = %denied, "call refused");
        return Err(denied.into());
    }

    let result = service.run_verb(verb, connection).await;
    match &result {
        Ok(()) => {
            info!(%sender, ?uid, ?pid, verb = word, connection, outcome = "done", "verb carried out")
        }
        Err(err) => {
            warn!(%sender, ?uid, ?pid, verb = word, connection, outcome = "failed", error = %err, "verb failed")
        }
    }
    result.map_err(Error::from)
}
