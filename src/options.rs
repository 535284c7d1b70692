//! The command line: the one definition of the daemon's options.

use std::{path::PathBuf, time::Duration};

use clap::Parser;

/// Publishes libreswan's IPsec connections on D-Bus as org.libreswan and lets desktop tools
/// take tunnels down, authorised by polkit, through pluto's control socket.
#[derive(Debug, Clone, Parser)]
#[command(name = "libreswan-dbus", version)]
pub struct Options {
    /// pluto's control socket.
    #[arg(long, value_name = "PATH", default_value = "/run/pluto/pluto.ctl")]
    pub ctlsocket: PathBuf,

    /// The whack program shipped with the running pluto (its socket format is tied to pluto's
    /// exact version).
    #[arg(long, value_name = "PATH", default_value = "/usr/libexec/ipsec/whack")]
    pub whack: PathBuf,

    /// The bus to serve on: `system` (honours DBUS_SYSTEM_BUS_ADDRESS), `session`, or a D-Bus
    /// address such as unix:path=/run/dbus/system_bus_socket.
    #[arg(long, value_name = "system|session|ADDRESS", default_value = "system")]
    pub bus: BusChoice,

    /// Seconds between two reads of pluto's SAs (cheap at any number of connections).
    #[arg(long, value_name = "SECS", default_value = "2", value_parser = seconds)]
    pub poll_interval: Duration,

    /// Longest gap, in seconds, between two full listings of pluto's connections. By default
    /// chosen from the listing's own cost (listings take at most 0.5 % of a core), and never
    /// more than 600 s.
    #[arg(long, value_name = "SECS", value_parser = seconds)]
    pub list_interval: Option<Duration>,

    /// Seconds a whack run may take before it is killed and the call fails with Timeout.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = seconds)]
    pub whack_timeout: Duration,
}

/// Which bus to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusChoice {
    System,
    Session,
    Address(String),
}

impl std::str::FromStr for BusChoice {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match text {
            "system" => Self::System,
            "session" => Self::Session,
            address if address.contains(':') => Self::Address(address.to_owned()),
            other => {
                return Err(format!(
                    "{other:?} is neither system, session nor a D-Bus address"
                ));
            }
        })
    }
}

fn seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if secs.is_finite() && secs > 0.0 && secs <= 86_400.0 {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(format!("{text} s is outside (0, 86400]"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_a_stock_libreswan() {
        let options = Options::parse_from(["libreswan-dbus"]);
        assert_eq!(options.ctlsocket, PathBuf::from("/run/pluto/pluto.ctl"));
        assert_eq!(options.whack, PathBuf::from("/usr/libexec/ipsec/whack"));
        assert_eq!(options.bus, BusChoice::System);
        assert_eq!(options.poll_interval, Duration::from_secs(2));
        assert_eq!(options.list_interval, None);
        assert_eq!(options.whack_timeout, Duration::from_secs(10));
    }

    #[test]
    fn reads_fractional_seconds_and_addresses() {
        let options = Options::parse_from([
            "libreswan-dbus",
            "--poll-interval=0.25",
            "--bus=unix:path=/tmp/bus",
        ]);
        assert_eq!(options.poll_interval, Duration::from_millis(250));
        assert_eq!(options.bus, BusChoice::Address("unix:path=/tmp/bus".into()));
    }

    #[test]
    fn refuses_nonsense() {
        for args in [
            ["libreswan-dbus", "--poll-interval=0"],
            ["libreswan-dbus", "--poll-interval=-1"],
            ["libreswan-dbus", "--whack-timeout=soon"],
            ["libreswan-dbus", "--bus=somewhere"],
        ] {
            assert!(Options::try_parse_from(args).is_err(), "{args:?}");
        }
    }
}
