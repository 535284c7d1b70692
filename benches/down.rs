//! Down() against running whack directly, on the lab's real pluto.
//!
//!     scripts/lab up --pluto 4        # or 5
//!     eval "$(scripts/lab env)"
//!     cargo bench --bench down        # DOWN_ROUNDS=N for another number of rounds
//!
//! Each round brings westnet-eastnet up with whack (and has the service read it back with
//! Refresh(), so both ways start from the same moment), then takes it down: once with
//! `whack --terminate` (what a tool does today, process start included), once with Down()
//! called by the lab's allowed user over a bus connection it keeps open (what an applet does:
//! polkit check, whack, and the re-read of pluto's state included). Prints the medians and
//! their ratio; the target is a ratio of at most 1.2.
//!
//! It also times, alone, the other steps Down() takes besides the terminate: the polkit check
//! about the client, asked by root (with the client's credentials asked of the bus at the same
//! time, as the service does), on 5.x the re-read of the connection and the states in one
//! whack run (4.x lists the states in the terminate's own run), and a round trip to the
//! service over the bus (reading State). Their sum with the terminate is what Down() costs
//! however lean the service is.

use std::{
    collections::HashMap,
    env,
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use zbus::Variant;

const CONNECTION: &str = "westnet-eastnet";
const PATH: &str = "/org/libreswan/Connection/westnet_2deastnet";
const DEFAULT_ROUNDS: usize = 20;

/// The lab's user whom polkit allows (tests/support/testbus).
const ALLOWED_UID: &str = "64101";
const CONTROL_GID: &str = "64100";

fn main() {
    let args: Vec<String> = env::args().collect();
    if args.get(1).map(String::as_str) == Some("--client") {
        return client(&args[2]);
    }

    let lab = |name: &str| {
        env::var(name).unwrap_or_else(|_| {
            panic!("{name} is not set: run scripts/lab up, then eval \"$(scripts/lab env)\"")
        })
    };
    let (bus, whack, ctl) = (lab("LAB_BUS"), lab("LAB_WHACK"), lab("LAB_CTL"));
    // 5.x's Down() reads the connection and the states back after the terminate.
    let rereads = lab("LAB_PLUTO") != "4";
    let rounds = env::var("DOWN_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(DEFAULT_ROUNDS);
    let whack_run = |args: &[&str]| {
        let started = Instant::now();
        let status = Command::new(&whack)
            .args(["--ctlsocket", &ctl])
            .args(args)
            .stdout(Stdio::null())
            .status()
            .expect("cannot run whack");
        assert!(status.success(), "whack {args:?} failed");
        started.elapsed()
    };
    let named = |verb| whack_run(&["--name", CONNECTION, verb]);
    let reread = || whack_run(&["--name", CONNECTION, "--connectionstatus", "--showstates"]);

    let mut client = Command::new("setpriv")
        .args([
            &format!("--reuid={ALLOWED_UID}"),
            &format!("--regid={ALLOWED_UID}"),
            &format!("--groups={CONTROL_GID}"),
            "--",
        ])
        .arg(env::current_exe().unwrap())
        .args(["--client", &bus])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("cannot start the client");
    let mut to_client = client.stdin.take().unwrap();
    let mut from_client = BufReader::new(client.stdout.take().unwrap()).lines();
    let mut ask = |request: &str| -> String {
        writeln!(to_client, "{request}").unwrap();
        from_client.next().expect("the client ended").unwrap()
    };
    let bring_up = |ask: &mut dyn FnMut(&str) -> String| {
        named("--initiate");
        assert_eq!(
            ask("refresh"),
            "up",
            "the service did not show the tunnel up"
        );
    };

    // polkit answers questions with details only from root, as the service is.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let root_bus = runtime
        .block_on(zbus::connection::Builder::address(bus.as_str()).build())
        .expect("cannot connect to the lab's bus");
    let client_name = ask("name");
    let authorize = || {
        runtime.block_on(async {
            let started = Instant::now();
            let (credentials, authorized) = tokio::join!(
                credentials(&root_bus, &client_name),
                check_down(&root_bus, &client_name)
            );
            credentials.expect("GetConnectionCredentials failed");
            assert!(authorized, "polkit refused the lab's allowed user");
            started.elapsed()
        })
    };

    let (mut direct, mut service) = (Vec::new(), Vec::new());
    let (mut polkit, mut rereading) = (Vec::new(), Vec::new());
    let mut round_trip = Vec::new();
    for _ in 0..rounds {
        // Both ways start alike, right after the tunnel came up and the service read it back:
        // a terminate takes a millisecond or two longer once the machine has sat idle.
        bring_up(&mut ask);
        direct.push(named("--terminate"));
        ask("refresh");
        if rereads {
            rereading.push(reread());
        }
        polkit.push(authorize());
        round_trip.push(micros(&ask("ping"), "reading State"));

        bring_up(&mut ask);
        service.push(micros(&ask("down"), "Down()"));
    }
    drop(to_client);
    let _ = client.wait();

    let [direct, service, polkit, rereading, round_trip] =
        [direct, service, polkit, rereading, round_trip].map(|mut s| median(&mut s));
    let floor = round_trip + polkit + direct + rereading;
    let ms = |d: Duration| format!("{:7.2} ms", d.as_secs_f64() * 1e3);
    println!("over {rounds} rounds, medians:");
    println!("whack --terminate:               {}", ms(direct));
    println!("Down():                          {}", ms(service));
    println!(
        "ratio:                           {:7.2} (target: at most 1.2)",
        service.as_secs_f64() / direct.as_secs_f64()
    );
    println!("the steps of Down(), each alone:");
    println!(
        "  {:<38}{}",
        "bus round trip (reading State)",
        ms(round_trip)
    );
    println!("  {:<38}{}", "polkit check (with credentials)", ms(polkit));
    println!("  {:<38}{}", "whack --terminate", ms(direct));
    if rereads {
        println!(
            "  {:<38}{}",
            "whack --connectionstatus --showstates",
            ms(rereading)
        );
    }
    println!(
        "  {:<38}{} (ratio {:.2})",
        "sum",
        ms(floor),
        floor.as_secs_f64() / direct.as_secs_f64()
    );
}

/// The client's answer to a timed request.
fn micros(answer: &str, what: &str) -> Duration {
    let micros = answer.parse().unwrap_or_else(|_| panic!("{what} failed"));
    Duration::from_micros(micros)
}

/// The median of `samples`; zero when there are none.
fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

/// Runs as the allowed user: one bus connection, kept open; answers `name` with its unique bus
/// name, `refresh` with the tunnel's State after Refresh(), `ping` with the microseconds reading State took, and
/// `down` with the microseconds Down() took.
fn client(address: &str) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let bus = zbus::connection::Builder::address(address)
            .build()
            .await
            .expect("cannot connect to the lab's bus");
        let proxy: zbus::Proxy<'_> = zbus::proxy::Builder::new(&bus)
            .destination("org.libreswan")
            .path(PATH)
            .interface("org.libreswan.Connection")
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .unwrap();
        let manager: zbus::Proxy<'_> = zbus::proxy::Builder::new(&bus)
            .destination("org.libreswan")
            .path("/org/libreswan")
            .interface("org.libreswan.Manager")
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .unwrap();
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            let answer = match line.unwrap().as_str() {
                "refresh" => {
                    manager
                        .call_method("Refresh", &())
                        .await
                        .expect("Refresh() failed");
                    proxy
                        .get_property::<String>("State")
                        .await
                        .unwrap_or_default()
                }
                "ping" => {
                    let started = Instant::now();
                    let _: String = proxy.get_property("State").await.expect("no State");
                    started.elapsed().as_micros().to_string()
                }
                "down" => {
                    let started = Instant::now();
                    proxy.call_method("Down", &()).await.expect("Down() failed");
                    started.elapsed().as_micros().to_string()
                }
                "name" => bus.unique_name().expect("no unique name").to_string(),
                other => panic!("unknown request {other:?}"),
            };
            println!("{answer}");
        }
    });
}

/// What the service asks the bus daemon about each caller, for its log.
async fn credentials(bus: &zbus::Connection, caller: &str) -> zbus::Result<()> {
    let caller = zbus::names::UniqueName::try_from(caller)?;
    zbus::fdo::DBusProxy::new(bus)
        .await?
        .get_connection_credentials(caller.into())
        .await?;
    Ok(())
}

/// The question the service asks polkit before `caller` may run Down().
async fn check_down(bus: &zbus::Connection, caller: &str) -> bool {
    let subject = (
        "system-bus-name",
        HashMap::from([("name", Variant::from(caller))]),
    );
    let details = HashMap::from([("connection", CONNECTION), ("verb", "down")]);
    let reply = bus
        .call_method(
            Some("org.freedesktop.PolicyKit1"),
            "/org/freedesktop/PolicyKit1/Authority",
            Some("org.freedesktop.PolicyKit1.Authority"),
            "CheckAuthorization",
            &(subject, "org.libreswan.connection.down", details, 0u32, ""),
        )
        .await
        .expect("CheckAuthorization failed");
    let (authorized, _challenge, _details): (bool, bool, HashMap<String, String>) =
        reply.body().deserialize().expect("an unexpected answer");
    authorized
}
