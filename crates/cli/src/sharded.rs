//! `chasync insert` of NDJSON into a sharded cluster: a `Distributed` target table, or the
//! `--cluster` option. Each line is read into a row, and the engine's [`Sharded`] pipelines
//! route it to its shard (the server's own sharding function, computed on the client) and
//! insert it straight into the shard's local table. A line that is not a JSON object, or
//! whose shard cannot be computed, goes to the dead-letter spool with its `file:line` and
//! reason.

use std::time::Instant;

use chasync_core::{Config, DynInput, DynRow, NativeOptions, RouteError, ShardPlan, Sharded};

use crate::cli::{InputFormat, InsertArgs};
use crate::columnar::{landed_ticker, progress_bar};
use crate::error::{CliError, exit};
use crate::input::Reader;
use crate::insert::{InsertSummary, print_summary};
use crate::output::print_json;
use crate::settings::Settings;

/// The shard plan when this insert goes to a cluster's shards: `None` for a target that is
/// not sharded, and for a `Distributed` table (without `--cluster`) whose input format or
/// sharding key the sharded path does not take: those rows go through the Distributed table
/// as before, with a note.
pub async fn plan(
    settings: &Settings,
    config: &Config,
    format: InputFormat,
) -> Result<Option<ShardPlan>, CliError> {
    let explicit = config.clickhouse.cluster.is_some();
    let note = |why: &str| {
        if !settings.quiet && !settings.json {
            eprintln!(
                "note: {}.{} is a Distributed table; {why}: the rows go through the \
                 Distributed table",
                config.clickhouse.database, config.table
            );
        }
    };
    let plan = match ShardPlan::resolve(config).await {
        Ok(p) => p,
        Err(chasync_core::Error::Config(msg)) if !explicit => {
            note(&msg);
            return Ok(None);
        }
        Err(chasync_core::Error::Config(msg)) => return Err(CliError::error(msg)),
        Err(e) => return Err(e.into()),
    };
    let Some(plan) = plan else {
        return Ok(None);
    };
    if format != InputFormat::Ndjson {
        if explicit {
            return Err(CliError::usage(
                "--cluster takes NDJSON (JSONEachRow), Parquet and Arrow input; route CSV and \
                 TSV through a Distributed table",
            ));
        }
        note("chasync routes NDJSON, Parquet and Arrow rows to the shards itself, not CSV or TSV");
        return Ok(None);
    }
    Ok(Some(plan))
}

/// Loads the NDJSON inputs into the shards of `plan`.
pub async fn run(
    settings: &Settings,
    args: &InsertArgs,
    config: Config,
    plan: ShardPlan,
    readers: Vec<Reader>,
) -> Result<u8, CliError> {
    for (given, flag) in [
        (args.resume, "--resume"),
        (args.threads.is_some_and(|t| t > 1), "--threads"),
        (args.deadline.is_some(), "--deadline"),
        (args.strict, "--strict"),
        (args.no_convert, "--no-convert"),
    ] {
        if given {
            return Err(CliError::usage(format!(
                "{flag} is not available when the rows go to a cluster's shards (a Distributed \
                 table or --cluster)"
            )));
        }
    }
    let table = format!("{}.{}", config.clickhouse.database, config.table);
    let dlq_dir = config.spool.dir.clone();
    if !settings.quiet && !settings.json {
        eprintln!(
            "routing to the {} shards of cluster {} ({}.{} on each{})",
            plan.shards.len(),
            plan.cluster,
            plan.database,
            plan.table,
            plan.sharding_key
                .as_ref()
                .map(|k| format!(", sharding key {k}"))
                .unwrap_or_default()
        );
    }
    let opts = NativeOptions {
        skip_unknown_keys: args.skip_unknown_fields,
        ..NativeOptions::default()
    };
    let ingestor = Sharded::start_dynamic(config, plan, opts)
        .await
        .map_err(|e| match e {
            chasync_core::Error::Config(msg) => CliError::error(msg),
            e => e.into(),
        })?;
    let bar = progress_bar(settings, None);
    let started = Instant::now();
    let ticker = {
        let handle = ingestor.handle();
        landed_ticker(&bar, move || handle.stats())
    };
    let stop_on_bad_input = args.stop_on_bad_input;
    let feed = {
        let (handle, bar) = (ingestor.handle(), bar.clone());
        let rt = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || -> (u64, u64, Vec<String>, Option<String>) {
            let (mut read, mut bad, mut bad_inputs, mut failed) = (0u64, 0u64, Vec::new(), None);
            'inputs: for reader in readers {
                for item in reader {
                    let item = match item {
                        Ok(i) => i,
                        Err(e) => {
                            bad_inputs.push(e.to_string());
                            continue 'inputs;
                        }
                    };
                    read += 1;
                    bar.inc(1);
                    let place = item.place();
                    let refused = match item.record {
                        Err(m) => Some((m.reason, m.raw)),
                        Ok(bytes) => {
                            let text = String::from_utf8_lossy(&bytes).into_owned();
                            match DynRow::from_json_str(&text) {
                                Err(e) => Some((format!("not a JSON object: {e}"), Some(text))),
                                Ok(row) => match rt.block_on(handle.send(DynInput::Row(row))) {
                                    Ok(()) => None,
                                    Err(RouteError::Unroutable(_, why)) => Some((why, Some(text))),
                                    Err(_) => {
                                        failed = Some("the engine stopped accepting rows".into());
                                        break 'inputs;
                                    }
                                },
                            }
                        }
                    };
                    if let Some((why, raw)) = refused {
                        bad += 1;
                        if stop_on_bad_input {
                            failed = Some(format!("{place}: {why} (--stop-on-bad-input)"));
                            break 'inputs;
                        }
                        if rt
                            .block_on(handle.reject(format!("{place}: {why}"), raw))
                            .is_err()
                        {
                            failed = Some("the engine stopped accepting rows".into());
                            break 'inputs;
                        }
                    }
                }
            }
            (read, bad, bad_inputs, failed)
        })
    };
    let (read, bad, bad_inputs, failed) = feed
        .await
        .map_err(|e| CliError::error(format!("reader failed: {e}")))?;
    ticker.abort();
    let _ = ticker.await;
    // Everything handed over is committed or dead-lettered before the run ends.
    let stats = ingestor.shutdown().await?;
    bar.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    let summary = InsertSummary {
        stopped_at: failed.clone(),
        bad_inputs: bad_inputs.clone(),
        ..InsertSummary::native(table, args, read, bad, dlq_dir, elapsed, stats)
    };
    if settings.json {
        print_json(&summary);
    } else if !settings.quiet {
        print_summary(&summary);
    }
    if let Some(why) = failed {
        return Err(CliError::error(why));
    }
    Ok(if !bad_inputs.is_empty() {
        exit::INCOMPLETE
    } else if summary.rows_dead_lettered > 0 {
        exit::NOT_COMMITTED
    } else {
        exit::OK
    })
}
