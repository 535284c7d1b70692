//! Authorisation: every state-changing call is checked with polkit before pluto hears of it.
//!
//! The subject is always the caller's unique bus name, asked of the polkitd on the bus the call
//! arrived on (a unique name means nothing on another bus). Anything other than a clear yes is
//! a no: polkitd missing, erroring or slow all refuse the call.

use std::{collections::HashMap, time::Duration};

use tracing::warn;
use zbus::message::{Flags, Header};
use zbus_polkit::policykit1::{AuthorityProxy, CheckAuthorizationFlags, Subject};

use crate::verb::Verb;

/// How long a check without user interaction may take before it counts as a refusal.
const CHECK_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a person may take to answer an authentication dialog.
const INTERACTIVE_TIMEOUT: Duration = Duration::from_secs(300);

/// What is asked of polkit: the action and the details rules can read with
/// `action.lookup("connection")`, `"verb"` and `"template"`.
#[derive(Debug, Clone, Copy)]
pub struct Question<'a> {
    /// Names the action; its word is the `verb` detail.
    pub verb: Verb,
    pub connection: &'a str,
    /// The template of an instance (road-warrior peer); empty otherwise, and then not sent.
    pub template: &'a str,
}

/// Why a call was not authorised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("not authorized to {verb} {connection}")]
    NotAuthorized { verb: String, connection: String },
    #[error(
        "authentication is required to {verb} {connection}; call again allowing interactive \
         authorization (for example busctl --allow-interactive-authorization=yes)"
    )]
    InteractionRequired { verb: String, connection: String },
    #[error("not authorized to {verb} {connection}: polkit could not be asked ({reason})")]
    Unchecked {
        verb: String,
        connection: String,
        reason: String,
    },
}

/// Asks polkitd whether the sender of `header` may do what `question` says.
pub async fn authorize(
    bus: &zbus::Connection,
    header: &Header<'_>,
    question: Question<'_>,
) -> Result<(), Denied> {
    let Question {
        verb, connection, ..
    } = question;
    let interactive = header
        .primary()
        .flags()
        .contains(Flags::ALLOW_INTERACTIVE_AUTH);
    let answer = check(bus, header, question, interactive).await;
    match answer {
        Ok(result) if result.is_authorized => Ok(()),
        Ok(result) if result.is_challenge && !interactive => Err(Denied::InteractionRequired {
            verb: verb.to_string(),
            connection: connection.to_owned(),
        }),
        Ok(_) => Err(Denied::NotAuthorized {
            verb: verb.to_string(),
            connection: connection.to_owned(),
        }),
        Err(reason) => {
            warn!(%reason, action = verb.action(), connection, "polkit check failed; refusing");
            Err(Denied::Unchecked {
                verb: verb.to_string(),
                connection: connection.to_owned(),
                reason,
            })
        }
    }
}

async fn check(
    bus: &zbus::Connection,
    header: &Header<'_>,
    question: Question<'_>,
    interactive: bool,
) -> Result<zbus_polkit::policykit1::AuthorizationResult, String> {
    // A system-bus-name subject: never a pid (racy) and never our own process (we are root).
    let subject = Subject::new_for_message_header(header).map_err(|err| err.to_string())?;
    let mut details = HashMap::from([
        ("connection", question.connection),
        ("verb", question.verb.as_str()),
    ]);
    if !question.template.is_empty() {
        details.insert("template", question.template);
    }
    let (flags, limit) = if interactive {
        (
            CheckAuthorizationFlags::ALLOW_USER_INTERACTION,
            INTERACTIVE_TIMEOUT,
        )
    } else {
        (CheckAuthorizationFlags::empty(), CHECK_TIMEOUT)
    };

    let authority = AuthorityProxy::builder(bus)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .map_err(|err| err.to_string())?;
    let call = authority.check_authorization(&subject, question.verb.action(), &details, flags, "");
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(result)) => Ok(result),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err(format!(
            "polkitd did not answer within {} s",
            limit.as_secs()
        )),
    }
}
