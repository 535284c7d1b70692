//! The errors callers see. Names are stable API: clients match on them.

use zbus::{
    DBusError,
    message::{Header, Message},
    names::ErrorName,
};

use crate::{control::VerbError, pluto::PlutoError, polkit::Denied};

/// An error returned by a method of `org.libreswan.*`, with a message a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    NotAuthorized(String),
    InteractiveAuthorizationRequired(String),
    UnknownConnection(String),
    PlutoUnavailable(String),
    Timeout(String),
    Failed(String),
    Busy(String),
}

impl Error {
    fn parts(&self) -> (&'static str, &str) {
        match self {
            Self::NotAuthorized(m) => ("org.libreswan.Error.NotAuthorized", m),
            // The standard name, so generic clients know to retry with interaction allowed.
            Self::InteractiveAuthorizationRequired(m) => (
                "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired",
                m,
            ),
            Self::UnknownConnection(m) => ("org.libreswan.Error.UnknownConnection", m),
            Self::PlutoUnavailable(m) => ("org.libreswan.Error.PlutoUnavailable", m),
            Self::Timeout(m) => ("org.libreswan.Error.Timeout", m),
            Self::Failed(m) => ("org.libreswan.Error.Failed", m),
            Self::Busy(m) => ("org.libreswan.Error.Busy", m),
        }
    }
}

impl DBusError for Error {
    fn create_reply(&self, call: &Header<'_>) -> zbus::Result<Message> {
        let (name, message) = self.parts();
        Message::error(call, name).build(&(message,))
    }

    fn name(&self) -> ErrorName<'_> {
        ErrorName::from_static_str_unchecked(self.parts().0)
    }

    fn description(&self) -> Option<&str> {
        Some(self.parts().1)
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (name, message) = self.parts();
        write!(f, "{name}: {message}")
    }
}

impl std::error::Error for Error {}

impl From<Denied> for Error {
    fn from(denied: Denied) -> Self {
        let message = denied.to_string();
        match denied {
            Denied::NotAuthorized { .. } | Denied::Unchecked { .. } => Self::NotAuthorized(message),
            Denied::InteractionRequired { .. } => Self::InteractiveAuthorizationRequired(message),
        }
    }
}

impl From<PlutoError> for Error {
    fn from(err: PlutoError) -> Self {
        let message = err.to_string();
        match err {
            PlutoError::Unavailable(_) => Self::PlutoUnavailable(message),
            PlutoError::Timeout(_) => Self::Timeout(message),
        }
    }
}

impl From<VerbError> for Error {
    fn from(err: VerbError) -> Self {
        let message = err.to_string();
        match err {
            VerbError::Pluto(err) => err.into(),
            VerbError::UnknownConnection(_) => Self::UnknownConnection(message),
            VerbError::Refused { .. } | VerbError::Instance { .. } => Self::Failed(message),
            VerbError::Busy { .. } => Self::Busy(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pluto::Unavailable;
    use std::time::Duration;

    #[test]
    fn maps_each_failure_to_its_stable_name() {
        let cases: [(Error, &str); 8] = [
            (
                Denied::NotAuthorized {
                    verb: "down".into(),
                    connection: "a".into(),
                }
                .into(),
                "org.libreswan.Error.NotAuthorized",
            ),
            (
                Denied::InteractionRequired {
                    verb: "down".into(),
                    connection: "a".into(),
                }
                .into(),
                "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired",
            ),
            (
                PlutoError::Unavailable(Unavailable::SocketMissing("/run/pluto/pluto.ctl".into()))
                    .into(),
                "org.libreswan.Error.PlutoUnavailable",
            ),
            (
                PlutoError::Timeout(Duration::from_secs(10)).into(),
                "org.libreswan.Error.Timeout",
            ),
            (
                VerbError::UnknownConnection("a".into()).into(),
                "org.libreswan.Error.UnknownConnection",
            ),
            (
                VerbError::Refused {
                    verb: "down",
                    connection: "a".into(),
                    words: "pluto said no".into(),
                }
                .into(),
                "org.libreswan.Error.Failed",
            ),
            (
                VerbError::Instance {
                    connection: "rw[1]".into(),
                    template: "rw".into(),
                }
                .into(),
                "org.libreswan.Error.Failed",
            ),
            (
                VerbError::Busy {
                    connection: "a".into(),
                    holder: "a".into(),
                }
                .into(),
                "org.libreswan.Error.Busy",
            ),
        ];
        for (error, name) in cases {
            assert_eq!(error.name().as_str(), name);
        }
    }

    #[test]
    fn messages_say_which_and_carry_pluto_words() {
        let missing: Error =
            PlutoError::Unavailable(Unavailable::SocketMissing("/x/pluto.ctl".into())).into();
        assert!(
            missing
                .description()
                .unwrap()
                .contains("/x/pluto.ctl does not exist")
        );

        let refused: Error =
            PlutoError::Unavailable(Unavailable::ConnectionRefused("/x/pluto.ctl".into())).into();
        assert!(
            refused
                .description()
                .unwrap()
                .contains("nothing accepts connections")
        );

        let failed: Error = VerbError::Refused {
            verb: "up",
            connection: "a".into(),
            words: "022 cannot do that".into(),
        }
        .into();
        assert!(failed.description().unwrap().contains("022 cannot do that"));
    }
}
