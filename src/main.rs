//! The daemon: logging, options, signals; everything else lives in the library.

use std::{io::IsTerminal, process::ExitCode};

use clap::Parser;
use libreswan_dbus::options::Options;
use tokio::signal::unix::{SignalKind, signal};
use tracing::error;
use tracing_subscriber::{EnvFilter, prelude::*};

fn main() -> ExitCode {
    tune_malloc();
    init_logging();
    let options = Options::parse();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            error!(error = %err, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };

    runtime.block_on(async {
        // Installed before serving, so a signal during start-up is not lost.
        let (mut terminate, mut interrupt) = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(terminate), Ok(interrupt)) => (terminate, interrupt),
            (Err(err), _) | (_, Err(err)) => {
                error!(error = %err, "cannot install signal handlers");
                return ExitCode::FAILURE;
            }
        };
        let shutdown = async {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
        };

        match libreswan_dbus::run(options, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                error!("{:#}", anyhow_like(&err));
                ExitCode::FAILURE
            }
        }
    })
}

/// Keeps the resident size near what is live. glibc gives each thread that allocates its own
/// arena and keeps what is freed there for reuse, so a listing applied on one worker and a
/// `GetManagedObjects` reply built on another would each leave tens of MiB resident; the work
/// is I/O-bound with two workers, so one arena costs no measurable contention. And glibc
/// raises its threshold for serving large blocks with mmap each time such a block is freed,
/// after which the multi-MiB buffers of a reply fragment the heap; a fixed threshold keeps
/// them in mappings of their own, returned when freed.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: called first thing in main, before any other thread exists; mallopt only
    // changes how later allocations are placed.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
    }
}

/// Logs to the journal with structured fields when systemd started us, as text otherwise.
/// `RUST_LOG` sets the level (default `info`).
fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let journald = std::env::var_os("JOURNAL_STREAM")
        .is_some()
        .then(|| tracing_journald::layer().ok())
        .flatten();
    match journald {
        Some(layer) => registry.with(layer).init(),
        None => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::stderr().is_terminal()),
            )
            .init(),
    }
}

/// The error with its chain of causes, `outer: inner: innermost`.
fn anyhow_like(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
