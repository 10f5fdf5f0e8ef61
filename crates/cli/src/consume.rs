//! `chasync consume kafka|nats`: a source of `chasync-source` into one table, until SIGINT or
//! SIGTERM; then the open ranges are finished (inserted and committed) and a summary printed.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use chasync_core::Dispatcher;
use chasync_source::SourceCounters;
use tokio_util::sync::CancellationToken;

use crate::cli::ConsumeCommand;
use crate::error::{CliError, exit};
use crate::settings::Settings;

// Without a source feature every arm of the match returns.
#[cfg_attr(
    not(all(feature = "kafka", feature = "nats")),
    allow(unreachable_code, unused_variables)
)]
pub async fn run(settings: &Settings, command: ConsumeCommand) -> Result<u8, CliError> {
    let table = match &command {
        ConsumeCommand::Kafka(a) => &a.table,
        ConsumeCommand::Nats(a) => &a.table,
    };
    let (db, table) = settings.table_ref(table)?;
    let config = settings.config(&db, &table)?;
    let dispatcher = Arc::new(Dispatcher::start(&config)?);
    let shutdown = CancellationToken::new();
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())
            .map_err(|e| CliError::error(format!("signal handler: {e}")))?;
        let mut int = signal(SignalKind::interrupt())
            .map_err(|e| CliError::error(format!("signal handler: {e}")))?;
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            shutdown.cancel();
        });
    }
    let quiet = settings.quiet || settings.json;
    let result: Result<Arc<SourceCounters>, chasync_source::SourceError> = match command {
        #[cfg(not(feature = "kafka"))]
        ConsumeCommand::Kafka(_) => {
            return Err(CliError::usage(
                "this chasync was built without the kafka feature",
            ));
        }
        #[cfg(feature = "kafka")]
        ConsumeCommand::Kafka(a) => {
            let mut opts = chasync_source::kafka::KafkaOptions::new(&a.brokers, &a.group, a.topics);
            opts.format = a.format;
            opts.seal_table = a.seal_table;
            if let Some(t) = a.session_timeout {
                opts.session_timeout = t;
            }
            for kv in &a.properties {
                let (k, v) = kv.split_once('=').ok_or_else(|| {
                    CliError::usage(format!("--property {kv}: expected NAME=VALUE"))
                })?;
                opts.properties.push((k.trim().into(), v.trim().into()));
            }
            if !quiet {
                eprintln!(
                    "chasync: consuming {} (group {}) from {} into {db}.{table}; SIGINT or SIGTERM stops",
                    opts.topics.join(", "),
                    opts.group,
                    opts.brokers
                );
            }
            chasync_source::kafka::run(opts, config, dispatcher.clone(), shutdown).await
        }
        #[cfg(not(feature = "nats"))]
        ConsumeCommand::Nats(_) => {
            return Err(CliError::usage(
                "this chasync was built without the nats feature",
            ));
        }
        #[cfg(feature = "nats")]
        ConsumeCommand::Nats(a) => {
            let mut opts = chasync_source::nats::NatsOptions::new(
                &a.server, &a.stream, a.subjects, &a.durable,
            );
            opts.format = a.format;
            opts.seal_table = a.seal_table;
            if let Some(t) = a.ack_wait {
                opts.ack_wait = t;
            }
            if !quiet {
                eprintln!(
                    "chasync: consuming {} of stream {} from {} into {db}.{table}; SIGINT or SIGTERM stops",
                    opts.subjects.join(", "),
                    opts.stream,
                    opts.url
                );
            }
            chasync_source::nats::run(opts, config, dispatcher.clone(), shutdown).await
        }
    };
    let counters = result.map_err(|e| match e {
        chasync_source::SourceError::Engine(e) => CliError::from(e),
        chasync_source::SourceError::Config(m) => CliError::usage(m),
        e => CliError::error(e.to_string()),
    })?;
    let stats = match Arc::try_unwrap(dispatcher) {
        Ok(d) => d.shutdown().await?,
        Err(d) => d.stats(),
    };
    summary(&counters, &stats, settings.json, quiet);
    Ok(if stats.rows_dead_lettered > 0 {
        exit::NOT_COMMITTED
    } else {
        exit::OK
    })
}

fn summary(c: &SourceCounters, stats: &chasync_core::Stats, json: bool, quiet: bool) {
    let v = serde_json::json!({
        "messages": c.messages.load(Relaxed),
        "batches_committed": c.batches.load(Relaxed),
        "messages_committed": c.committed.load(Relaxed),
        "batches_formed_again": c.reformed.load(Relaxed),
        "messages_refused": c.refused.load(Relaxed),
        "rows_committed": stats.rows_committed,
        "rows_dead_lettered": stats.rows_dead_lettered,
    });
    if json {
        println!("{v}");
    } else if !quiet {
        eprintln!("chasync: {v}");
    }
}
