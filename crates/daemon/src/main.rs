//! `chasyncd`: see the crate documentation of `chasync_daemon`.

use std::str::FromStr;

use chasync_daemon::config::LogFormat;
use std::sync::Arc;

use chasync_daemon::tls::ServerTls;
use chasync_daemon::{App, Flags, Settings};
use clap::Parser;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The log filter of `RUST_LOG` (`info` or `warn,chasync_core=debug`: levels per target),
/// INFO when it is unset; one that does not parse is an error, not a silent INFO.
fn log_filter() -> Result<Targets, String> {
    match std::env::var("RUST_LOG") {
        Ok(text) if !text.trim().is_empty() => Targets::from_str(&text).map_err(|e| {
            format!(
                "RUST_LOG {text:?} is not a log filter: {e} (a level: error, warn, info, debug, \
                 trace; or target=level pairs: info,chasync_core=debug)"
            )
        }),
        _ => Ok(Targets::new().with_default(LevelFilter::INFO)),
    }
}

fn init_logging(filter: Targets, format: LogFormat) {
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(false),
            )
            .init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .init(),
    }
}

/// Installs the SIGTERM/SIGINT handlers at once (so a signal that comes right after start-up
/// drains instead of killing the process) and returns the future that resolves on the first.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: draining"),
            _ = int.recv() => tracing::info!("SIGINT: draining"),
        }
    }
}

/// On SIGHUP, reads the listener's certificate and key again (new connections get the new
/// one; the listener and open connections stay). Without HTTPS a SIGHUP changes nothing (and
/// does not end the daemon).
fn reload_on_sighup(tls: Option<Arc<ServerTls>>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match &tls {
                None => tracing::info!("SIGHUP: no TLS certificate to reload"),
                Some(tls) => match tls.reload() {
                    Ok(()) => tracing::info!(
                        cert = %tls.files().cert_file.display(),
                        "SIGHUP: TLS certificate reloaded"
                    ),
                    Err(e) => tracing::error!(
                        error = %e,
                        "SIGHUP: TLS certificate NOT reloaded; the one in use stays"
                    ),
                },
            }
        }
    });
}

fn main() -> std::process::ExitCode {
    let flags = Flags::parse();
    let check = flags.check_config;
    let ack_corruption = flags.ack_corruption;
    let filter = log_filter();
    let settings = match filter.clone().and_then(|_| Settings::load(flags)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("chasyncd: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    if check {
        // A pipe closed early (`| head -1`) ends quietly with 141, as SIGPIPE would.
        use std::io::Write;
        let text = serde_json::to_string_pretty(&settings.describe()).expect("JSON");
        return match writeln!(std::io::stdout().lock(), "{text}") {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                std::process::ExitCode::from(141)
            }
            Err(e) => {
                eprintln!("chasyncd: cannot write to stdout: {e}");
                std::process::ExitCode::from(1)
            }
        };
    }
    if ack_corruption {
        let spool = settings.spool_dir();
        return match chasync_daemon::corrupt::acknowledge(spool) {
            Ok(done) if done.is_empty() => {
                println!(
                    "no unacknowledged write-ahead log damage in {}",
                    spool.display()
                );
                std::process::ExitCode::SUCCESS
            }
            Ok(done) => {
                for r in &done {
                    println!("acknowledged: {}", r.summary());
                }
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!(
                    "chasyncd: cannot acknowledge the damage reports in {}: {e}",
                    spool.join(chasync_daemon::corrupt::DIR).display()
                );
                std::process::ExitCode::from(1)
            }
        };
    }
    init_logging(filter.expect("checked above"), settings.log_format);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        // Before anything can announce that the daemon is up.
        let shutdown = shutdown_signal();
        let listen = settings.listen;
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(%listen, error = %e, "cannot listen");
                return std::process::ExitCode::from(1);
            }
        };
        let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let tls = match settings.listen_tls.as_ref().map(ServerTls::load).transpose() {
            Ok(t) => t.map(Arc::new),
            Err(e) => {
                tracing::error!(error = %e, "cannot serve HTTPS");
                return std::process::ExitCode::from(1);
            }
        };
        reload_on_sighup(tls.clone());
        let app = match App::start(settings).await {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                return std::process::ExitCode::from(1);
            }
        };
        tracing::info!(
            addr = %addr,
            urls = ?app.settings.engine.clickhouse.url.iter().map(|u| chasync_core::redact_url(u)).collect::<Vec<_>>(),
            spool = %app.settings.spool_dir().display(),
            ack = ?app.settings.ack,
            https = tls.is_some(),
            "chasyncd listening"
        );
        chasync_daemon::notify::notify(&format!(
            "READY=1\nSTATUS=listening on {addr}\nMAINPID={}",
            std::process::id()
        ));
        let shutdown = async move {
            shutdown.await;
            chasync_daemon::notify::notify("STOPPING=1\nSTATUS=draining");
        };
        let drained = chasync_daemon::server::serve(app, listener, tls, shutdown).await;
        tracing::info!(drained, "chasyncd stopped");
        std::process::ExitCode::SUCCESS
    })
}
