//! The verbs of `org.libreswan.Connection`: for each, its method, its polkit action and the word
//! logs and polkit's `verb` detail use. Part of the interface, so the service and the client
//! share this one list.

use std::{fmt, str::FromStr};

/// A state-changing method of `org.libreswan.Connection`, a pluto operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    Up,
    Down,
    Route,
    Unroute,
    Delete,
}

impl Verb {
    pub const ALL: [Verb; 5] = [
        Verb::Up,
        Verb::Down,
        Verb::Route,
        Verb::Unroute,
        Verb::Delete,
    ];

    /// The word used in logs and in polkit's `verb` detail, as `ipsec` spells the command.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Up => "up",
            Verb::Down => "down",
            Verb::Route => "route",
            Verb::Unroute => "unroute",
            Verb::Delete => "delete",
        }
    }

    /// The D-Bus method.
    pub fn method(self) -> &'static str {
        match self {
            Verb::Up => "Up",
            Verb::Down => "Down",
            Verb::Route => "Route",
            Verb::Unroute => "Unroute",
            Verb::Delete => "Delete",
        }
    }

    /// The polkit action the service checks; route and unroute share one.
    pub fn action(self) -> &'static str {
        match self {
            Verb::Up => "org.libreswan.connection.up",
            Verb::Down => "org.libreswan.connection.down",
            Verb::Route | Verb::Unroute => "org.libreswan.connection.route",
            Verb::Delete => "org.libreswan.connection.delete",
        }
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Verb {
    type Err = String;

    fn from_str(word: &str) -> Result<Self, Self::Err> {
        Verb::ALL
            .into_iter()
            .find(|verb| verb.as_str() == word)
            .ok_or_else(|| format!("{word:?} is not one of up, down, route, unroute, delete"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_word_reads_back_as_its_verb() {
        for verb in Verb::ALL {
            assert_eq!(verb.as_str().parse::<Verb>(), Ok(verb));
            assert_eq!(verb.to_string(), verb.as_str());
        }
        assert!("terminate".parse::<Verb>().is_err());
    }

    #[test]
    fn each_verb_names_its_method_and_action() {
        assert_eq!(Verb::Unroute.method(), "Unroute");
        assert_eq!(Verb::Unroute.action(), "org.libreswan.connection.route");
        assert_eq!(Verb::Delete.action(), "org.libreswan.connection.delete");
    }

    #[test]
    fn route_and_unroute_share_an_action_and_no_other_verbs_do() {
        assert_eq!(Verb::Route.action(), Verb::Unroute.action());
        let mut actions: Vec<_> = Verb::ALL.iter().map(|verb| verb.action()).collect();
        actions.dedup();
        assert_eq!(actions.len(), 4);
    }
}
