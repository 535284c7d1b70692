//! libreswan-dbusctl: list, show, control and watch libreswan's connections through the
//! libreswan-dbus service, as any other client of `libreswan_dbus::client` would.

use std::{
    collections::BTreeMap,
    io::{self, IsTerminal, Read, Write},
    os::fd::{AsRawFd, OwnedFd},
    process::{Child, Command, ExitCode, Stdio},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use clap::{Parser, Subcommand};
use futures_util::StreamExt;
use libreswan_dbus::{
    client::{
        CONNECTION_INTERFACE, Client, ConnectionInfo, Error, Interaction, MANAGER_PATH, SERVICE,
        Verb, connection_name,
    },
    options::BusChoice,
};
use tokio::signal::unix::{SignalKind, signal};
use zbus::{
    MatchRule, MessageStream, Variant,
    fdo::{DBusProxy, InterfacesAdded, InterfacesRemoved, NameOwnerChanged, PropertiesChanged},
    message::Type,
};

/// Exit statuses, as `--help` and libreswan-dbusctl(1) list them.
mod status {
    pub const FAILED: u8 = 1;
    pub const NOT_AUTHORIZED: u8 = 3;
    pub const UNKNOWN_CONNECTION: u8 = 4;
    pub const UNAVAILABLE: u8 = 5;
}

const EXIT_STATUS: &str = "\
Exit status:
  0  success
  1  the call failed: pluto refused or timed out, the connection is busy, or another error
  2  usage error
  3  not authorized: polkit or the bus policy refused the call
  4  no such connection
  5  the service, its bus or pluto is unavailable";

/// Lists, shows, controls and watches libreswan's IPsec connections through the libreswan-dbus
/// service (org.libreswan). State-changing commands are authorised by polkit; from a terminal,
/// polkit may ask for a password there.
#[derive(Debug, Parser)]
#[command(name = "libreswan-dbusctl", version, after_help = EXIT_STATUS)]
struct Cli {
    /// The bus the service is on: `system` (honours DBUS_SYSTEM_BUS_ADDRESS), `session`, or a
    /// D-Bus address.
    #[arg(
        long,
        global = true,
        value_name = "system|session|ADDRESS",
        default_value = "system"
    )]
    bus: BusChoice,

    /// Never let polkit ask for a password: fail with "authentication is required" instead.
    #[arg(long, global = true)]
    no_ask_password: bool,

    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// One line per connection: name, state, routed, peer, bytes in and out.
    List,
    /// Every property of one connection, as Property=value lines.
    Show {
        /// The connection's name, as pluto knows it.
        name: String,
    },
    /// The service's version, and whether pluto answers.
    Status,
    /// Bring a tunnel up (ipsec up); returns once pluto has accepted the attempt.
    Up {
        /// The connection's name, as pluto knows it.
        name: String,
    },
    /// Take a tunnel down (ipsec down); the connection stays loaded and routed.
    Down {
        /// The connection's name, as pluto knows it.
        name: String,
    },
    /// Install a connection's trap policy (ipsec route).
    Route {
        /// The connection's name, as pluto knows it.
        name: String,
    },
    /// Remove a connection's trap policy (ipsec unroute); refused while it has SAs.
    Unroute {
        /// The connection's name, as pluto knows it.
        name: String,
    },
    /// Make pluto forget a connection (ipsec delete).
    Delete {
        /// The connection's name, as pluto knows it.
        name: String,
    },
    /// Print every change as it happens, a line each with a timestamp, until interrupted.
    Watch,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            report(&format!("cannot start: {err}"));
            return ExitCode::from(status::FAILED);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // The service's message is meant for a person: print it as it came.
            report(&describe(&err));
            ExitCode::from(exit_status(&err))
        }
    }
}

async fn run(cli: Cli) -> Result<(), Error> {
    let client = Client::connect(&cli.bus).await?;
    let (verb, name) = match &cli.command {
        Cmd::List => return list(&client).await,
        Cmd::Show { name } => return show(&client, name).await,
        Cmd::Status => return status(&client).await,
        Cmd::Watch => return watch(&client).await,
        Cmd::Up { name } => (Verb::Up, name),
        Cmd::Down { name } => (Verb::Down, name),
        Cmd::Route { name } => (Verb::Route, name),
        Cmd::Unroute { name } => (Verb::Unroute, name),
        Cmd::Delete { name } => (Verb::Delete, name),
    };

    let interaction = if cli.no_ask_password {
        Interaction::Deny
    } else {
        Interaction::Allow
    };
    // Lives as long as the call: polkit may ask through it until the reply comes.
    let _agent = (interaction == Interaction::Allow)
        .then(|| TtyAgent::start(&cli.bus))
        .flatten();
    client.run(verb, name, interaction).await
}

fn exit_status(err: &Error) -> u8 {
    match err {
        Error::NotAuthorized(_)
        | Error::InteractiveAuthorizationRequired(_)
        | Error::AccessDenied(_) => status::NOT_AUTHORIZED,
        Error::UnknownConnection(_) | Error::UnknownObject(_) => status::UNKNOWN_CONNECTION,
        Error::ServiceUnavailable(_) | Error::PlutoUnavailable(_) | Error::Bus(_) => {
            status::UNAVAILABLE
        }
        _ => status::FAILED,
    }
}

fn describe(err: &Error) -> String {
    match err {
        Error::Bus(err) => format!("cannot talk to {SERVICE}: {err}"),
        other => other.to_string(),
    }
}

/// Writes one line to stderr in a single write, so that what other processes print on the
/// same terminal (pkttyagent's helper may still be reporting a failed password) lands before
/// or after it, never inside it.
fn report(text: &str) {
    let line = format!("libreswan-dbusctl: {text}\n");
    let _ = io::stderr().lock().write_all(line.as_bytes());
}

/// Writes `text` to stdout; a reader that went away (`| head`) ends the program quietly.
fn out(text: &str) {
    let mut stdout = io::stdout().lock();
    if let Err(err) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        if err.kind() != io::ErrorKind::BrokenPipe {
            report(&format!("cannot write: {err}"));
        }
        std::process::exit(0);
    }
}

async fn list(client: &Client) -> Result<(), Error> {
    let connections = client.connections().await?;
    let mut rows = vec![["NAME", "STATE", "ROUTED", "PEER", "IN", "OUT"].map(String::from)];
    rows.extend(connections.iter().map(|c| {
        [
            c.name.clone(),
            c.state.to_string(),
            yes_no(c.routed).to_owned(),
            peer(c),
            human_bytes(c.bytes_in),
            human_bytes(c.bytes_out),
        ]
    }));
    out(&table(&rows, &[false, false, false, false, true, true]));
    Ok(())
}

fn peer(connection: &ConnectionInfo) -> String {
    match (&connection.remote_address, &connection.remote_id) {
        (address, _) if !address.is_empty() => address.clone(),
        (_, id) if !id.is_empty() => id.clone(),
        _ => "-".to_owned(),
    }
}

fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

/// Columns padded to their widest cell; the last column is not padded unless right-aligned.
fn table(rows: &[[String; 6]], right: &[bool; 6]) -> String {
    let mut widths = [0; 6];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                if right[i] {
                    format!("{cell:>width$}", width = widths[i])
                } else {
                    format!("{cell:<width$}", width = widths[i])
                }
            })
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
}

/// Bytes in IEC units, to three significant digits: `0 B`, `1.5 KiB`, `820 MiB`.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else if value < 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

async fn show(client: &Client, name: &str) -> Result<(), Error> {
    let c = client.connection_info(name).await?;
    let lines = [
        ("Name", c.name.clone()),
        ("Path", c.path.to_string()),
        ("State", c.state.to_string()),
        ("LastError", c.last_error.clone()),
        ("Routed", yes_no(c.routed).to_owned()),
        ("LocalAddress", c.local_address.clone()),
        ("RemoteAddress", c.remote_address.clone()),
        ("LocalId", c.local_id.clone()),
        ("RemoteId", c.remote_id.clone()),
        ("LocalSubnets", c.local_subnets.join(" ")),
        ("RemoteSubnets", c.remote_subnets.join(" ")),
        ("IkeVersion", c.ike_version.to_string()),
        ("Template", c.template.clone()),
        ("BytesIn", c.bytes_in.to_string()),
        ("BytesOut", c.bytes_out.to_string()),
    ];
    out(&key_values(&lines));
    Ok(())
}

async fn status(client: &Client) -> Result<(), Error> {
    let s = client.service_info().await?;
    let lines = [
        ("Version", s.version),
        ("PlutoVersion", s.pluto_version),
        ("PlutoRunning", yes_no(s.pluto_running).to_owned()),
        ("ControlSocket", s.control_socket),
    ];
    out(&key_values(&lines));
    Ok(())
}

fn key_values(lines: &[(&str, String)]) -> String {
    lines
        .iter()
        .map(|(key, value)| format!("{key}={value}\n"))
        .collect()
}

/// Prints a line per signal from the service, and when the service comes and goes, until
/// SIGINT or SIGTERM.
async fn watch(client: &Client) -> Result<(), Error> {
    let bus = client.bus();
    // Every message this connection receives, in order, from before the match rules exist.
    let mut messages = MessageStream::from(bus);
    let rules = [
        MatchRule::builder()
            .msg_type(Type::Signal)
            .sender(SERVICE)
            .interface("org.freedesktop.DBus.Properties")
            .member("PropertiesChanged")
            .path_namespace(MANAGER_PATH)
            .build(),
        MatchRule::builder()
            .msg_type(Type::Signal)
            .sender(SERVICE)
            .interface("org.freedesktop.DBus.ObjectManager")
            .path(MANAGER_PATH)
            .build(),
        MatchRule::builder()
            .msg_type(Type::Signal)
            .sender("org.freedesktop.DBus")
            .interface("org.freedesktop.DBus")
            .member("NameOwnerChanged")
            .arg(0, SERVICE)
            .build(),
    ];
    let dbus = DBusProxy::new(bus).await?;
    for rule in rules {
        dbus.add_match_rule(rule?).await?;
    }

    let mut terminate = signal(SignalKind::terminate()).map_err(|err| Error::Bus(err.into()))?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|err| Error::Bus(err.into()))?;
    report(&format!("watching {SERVICE}; interrupt to stop"));
    loop {
        let message = tokio::select! {
            message = messages.next() => message,
            _ = terminate.recv() => return Ok(()),
            _ = interrupt.recv() => return Ok(()),
        };
        match message {
            Some(Ok(message)) => {
                if let Some(line) = describe_signal(message) {
                    out(&format!("{} {line}\n", timestamp()));
                }
            }
            Some(Err(err)) => return Err(err.into()),
            None => {
                return Err(Error::Bus(zbus::Error::Failure(
                    "the bus closed the connection".into(),
                )));
            }
        }
    }
}

/// The line for one signal of the service, or `None` for a message that is none of ours.
fn describe_signal(message: zbus::Message) -> Option<String> {
    if let Some(signal) = PropertiesChanged::from_message(message.clone()) {
        let path = signal.message().header().path()?.to_owned();
        let args = signal.args().ok()?;
        let mut changed: BTreeMap<&str, String> = args
            .changed_properties()
            .iter()
            .map(|(name, value)| (*name, format_value(value)))
            .collect();
        for name in args.invalidated_properties().iter() {
            changed.insert(name, "(invalidated)".to_owned());
        }
        let what = if path.as_str() == MANAGER_PATH {
            "service".to_owned()
        } else {
            format!("connection {}", quote(&connection_name(&path)?))
        };
        return Some(format!("{what} changed {}", assignments(&changed)));
    }
    if let Some(signal) = InterfacesAdded::from_message(message.clone()) {
        let args = signal.args().ok()?;
        let properties = args
            .interfaces_and_properties()
            .iter()
            .find(|(interface, _)| interface.as_str() == CONNECTION_INTERFACE)?
            .1;
        let name = connection_name(args.object_path())?;
        let shown: BTreeMap<&str, String> = ["State", "Routed"]
            .into_iter()
            .filter_map(|key| Some((key, format_value(properties.get(key)?))))
            .collect();
        return Some(format!(
            "connection {} added {}",
            quote(&name),
            assignments(&shown)
        ));
    }
    if let Some(signal) = InterfacesRemoved::from_message(message.clone()) {
        let args = signal.args().ok()?;
        if !args
            .interfaces()
            .iter()
            .any(|interface| interface.as_str() == CONNECTION_INTERFACE)
        {
            return None;
        }
        let name = connection_name(args.object_path())?;
        return Some(format!("connection {} removed", quote(&name)));
    }
    if let Some(signal) = NameOwnerChanged::from_message(message) {
        let args = signal.args().ok()?;
        if args.name().as_str() != SERVICE {
            return None;
        }
        let event = match (args.old_owner().is_some(), args.new_owner().is_some()) {
            (false, true) => "started",
            (true, false) => "stopped",
            _ => "restarted",
        };
        return Some(format!("service {event}"));
    }
    None
}

fn assignments(values: &BTreeMap<&str, String>) -> String {
    values
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A property value on one line: strings as they are (quoted when empty or holding spaces),
/// lists joined with commas.
fn format_value(value: &Variant<'_>) -> String {
    match value {
        Variant::Str(text) => quote(text.as_str()),
        Variant::Array(items) => quote(
            &items
                .inner()
                .iter()
                .map(|item| match item {
                    Variant::Str(text) => text.as_str().to_owned(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(","),
        ),
        Variant::Variant(inner) => format_value(inner),
        Variant::Bool(flag) => flag.to_string(),
        Variant::U32(number) => number.to_string(),
        Variant::U64(number) => number.to_string(),
        other => other.to_string(),
    }
}

fn quote(text: &str) -> String {
    if !text.is_empty()
        && !text
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '\\')
    {
        text.to_owned()
    } else {
        format!("{text:?}")
    }
}

/// Local time to the millisecond, with the UTC offset: `2025-12-03T14:30:01.123+01:00`.
fn timestamp() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let Ok(seconds) = libc::time_t::try_from(now.as_secs()) else {
        return now.as_secs().to_string();
    };
    // SAFETY: an all-zero `tm` is a valid value, and localtime_r writes only to it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    if unsafe { libc::localtime_r(&seconds, &mut tm) }.is_null() {
        return format!("{}.{:03}", now.as_secs(), now.subsec_millis());
    }
    let offset = tm.tm_gmtoff / 60;
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}{}{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        now.subsec_millis(),
        if offset < 0 { '-' } else { '+' },
        offset.abs() / 60,
        offset.abs() % 60,
    )
}

/// A polkit authentication agent on this terminal, registered for this process only, as
/// systemctl starts one: polkit asks the person at the terminal for a password instead of
/// refusing. It exists only while a call is in flight.
struct TtyAgent {
    child: Child,
}

impl TtyAgent {
    /// How long pkttyagent may take to register before the call goes ahead without it.
    const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);

    /// Starts pkttyagent when someone can answer on this terminal. Returns once the agent is
    /// registered, or `None` when there is no terminal, no pkttyagent, or no polkit on `bus`.
    ///
    /// In a login session the agent registers as a fallback, so the session's own agent (a
    /// desktop's dialog) stays in charge. Outside one (a container, `su` without a session)
    /// polkit ignores fallback agents, so it registers plainly.
    fn start(bus: &BusChoice) -> Option<TtyAgent> {
        if !io::stdin().is_terminal() {
            return None;
        }
        // polkitd lives on the system bus: the one the service is on is the one to ask.
        let system_bus = match bus {
            BusChoice::System => None,
            BusChoice::Address(address) => Some(address.clone()),
            BusChoice::Session => return None,
        };

        let (mut ready, notify) = io::pipe().ok()?;
        let notify = OwnedFd::from(notify);
        // pkttyagent must inherit the write end, which it closes once registered. Nothing
        // else is spawned meanwhile, so no other child inherits it.
        // SAFETY: F_SETFD on a descriptor we own.
        if unsafe { libc::fcntl(notify.as_raw_fd(), libc::F_SETFD, 0) } == -1 {
            return None;
        }
        let mut command = Command::new("pkttyagent");
        command
            .arg("--process")
            .arg(std::process::id().to_string())
            .arg("--notify-fd")
            .arg(notify.as_raw_fd().to_string())
            .stdout(Stdio::null());
        if in_login_session() {
            command.arg("--fallback");
        }
        if let Some(address) = system_bus {
            command.env("DBUS_SYSTEM_BUS_ADDRESS", address);
        }
        let child = command.spawn().ok()?;
        drop(notify);
        let mut agent = TtyAgent { child };

        if !readable_within(&ready, Self::REGISTER_TIMEOUT) {
            return None;
        }
        // EOF: registered, or pkttyagent gave up (it says why on stderr).
        let _ = ready.read(&mut [0; 1]);
        match agent.child.try_wait() {
            Ok(None) => Some(agent),
            _ => {
                agent.stop();
                None
            }
        }
    }

    fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SIGTERM, not SIGKILL: pkttyagent restores the terminal (echo) on its way out.
            if let Ok(pid) = i32::try_from(self.child.id()) {
                // SAFETY: signals our own child, which has not been reaped yet.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
        }
        let _ = self.child.wait();
    }
}

impl Drop for TtyAgent {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether logind counts this process in a session, as polkit will when it looks for the
/// session's agent: the process's cgroup is a `session-N.scope`.
fn in_login_session() -> bool {
    std::fs::read_to_string("/proc/self/cgroup").is_ok_and(|groups| {
        groups.lines().any(|line| {
            line.rsplit('/')
                .next()
                .is_some_and(|unit| unit.starts_with("session-") && unit.ends_with(".scope"))
        })
    })
}

fn readable_within(pipe: &io::PipeReader, timeout: Duration) -> bool {
    let mut poll = libc::pollfd {
        fd: pipe.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let millis = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut poll, 1, millis) > 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_as_a_person_would() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(820 * 1024 * 1024), "820 MiB");
    }

    #[test]
    fn values_stay_on_one_line_and_parse_back() {
        assert_eq!(format_value(&Variant::from("down")), "down");
        assert_eq!(format_value(&Variant::from("")), "\"\"");
        assert_eq!(
            format_value(&Variant::from("no answer from peer")),
            "\"no answer from peer\""
        );
        assert_eq!(format_value(&Variant::from(true)), "true");
        assert_eq!(
            format_value(&Variant::from(vec!["10.1.0.0/24", "10.2.0.0/24"])),
            "10.1.0.0/24,10.2.0.0/24"
        );
    }

    #[test]
    fn timestamps_carry_milliseconds_and_offset() {
        let stamp = timestamp();
        assert_eq!(
            stamp.len(),
            "2025-12-03T14:30:01.123+01:00".len(),
            "{stamp}"
        );
        assert_eq!(&stamp[10..11], "T");
    }

    #[test]
    fn exit_statuses_follow_the_error() {
        let cases = [
            ("org.libreswan.Error.NotAuthorized", status::NOT_AUTHORIZED),
            (
                "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired",
                status::NOT_AUTHORIZED,
            ),
            (
                "org.libreswan.Error.UnknownConnection",
                status::UNKNOWN_CONNECTION,
            ),
            ("org.libreswan.Error.PlutoUnavailable", status::UNAVAILABLE),
            (
                "org.freedesktop.DBus.Error.ServiceUnknown",
                status::UNAVAILABLE,
            ),
            ("org.libreswan.Error.Failed", status::FAILED),
            ("org.libreswan.Error.Busy", status::FAILED),
            ("org.libreswan.Error.Timeout", status::FAILED),
        ];
        for (name, code) in cases {
            assert_eq!(exit_status(&Error::from_reply(name, "m")), code, "{name}");
        }
    }
}
