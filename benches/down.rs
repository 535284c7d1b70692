//! Down() against running whack directly, on the lab's real pluto.
//!
//!     scripts/lab up --pluto 4        # or 5
//!     eval "$(scripts/lab env)"
//!     cargo bench --bench down
//!
//! Each round brings westnet-eastnet up with whack, then takes it down: once with
//! `whack --terminate` (what a tool does today, process start included), once with Down()
//! called by the lab's allowed user over a bus connection it keeps open (what an applet does:
//! polkit check, whack, and the re-read of pluto's state included). Prints the medians and
//! their ratio; the target is a ratio of at most 1.2.

use std::{
    env,
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

const CONNECTION: &str = "westnet-eastnet";
const PATH: &str = "/org/libreswan/Connection/westnet_2deastnet";
const ROUNDS: usize = 20;

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
    let whack_run = |verb: &str| {
        let status = Command::new(&whack)
            .args(["--ctlsocket", &ctl, "--name", CONNECTION, verb])
            .stdout(Stdio::null())
            .status()
            .expect("cannot run whack");
        assert!(status.success(), "whack {verb} failed");
    };

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

    let (mut direct, mut service) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        whack_run("--initiate");
        let started = Instant::now();
        whack_run("--terminate");
        direct.push(started.elapsed());

        whack_run("--initiate");
        let deadline = Instant::now() + Duration::from_secs(10);
        while ask("state") != "up" {
            assert!(
                Instant::now() < deadline,
                "the service never showed the tunnel up"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let micros: u64 = ask("down").parse().expect("Down() failed");
        service.push(Duration::from_micros(micros));
    }
    drop(to_client);
    let _ = client.wait();

    let (direct, service) = (median(&mut direct), median(&mut service));
    println!("whack --terminate: median {direct:?} over {ROUNDS} rounds");
    println!("Down():            median {service:?} over {ROUNDS} rounds");
    println!(
        "ratio:             {:.2} (target: at most 1.2)",
        service.as_secs_f64() / direct.as_secs_f64()
    );
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Runs as the allowed user: one bus connection, kept open; answers `state` with the tunnel's
/// State and `down` with the microseconds Down() took.
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
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            let answer = match line.unwrap().as_str() {
                "state" => proxy
                    .get_property::<String>("State")
                    .await
                    .unwrap_or_default(),
                "down" => {
                    let started = Instant::now();
                    proxy.call_method("Down", &()).await.expect("Down() failed");
                    started.elapsed().as_micros().to_string()
                }
                other => panic!("unknown request {other:?}"),
            };
            println!("{answer}");
        }
    });
}
