//! `chasync dlq`: the engine's dead-letter spool ([`DeadLetterSpool`]) and [`replay_with`].

use chasync_core::{DeadLetterRecord, DeadLetterSpool, EntryKind, ReplayOptions, replay_with};
use serde_json::json;

use crate::cli::DlqCommand;
use crate::error::{CliError, exit};
use crate::output::{format_time_ms, human_bytes, note, print_json, table};
use crate::settings::Settings;

/// Runs a `dlq` subcommand.
pub async fn run(settings: &Settings, command: DlqCommand) -> Result<u8, CliError> {
    let spool = DeadLetterSpool::new(settings.dlq_dir());
    match command {
        DlqCommand::List => list(settings, &spool),
        DlqCommand::Show { id } => show(settings, &spool, &id),
        DlqCommand::Replay { as_user, .. } => {
            replay_spool(settings, &spool, &ReplayOptions { as_user }).await
        }
        DlqCommand::Purge { id, yes } => purge(settings, &spool, id.as_deref(), yes),
    }
}

fn kind_name(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::Batch => "batch",
        EntryKind::Rejected => "rejected",
    }
}

fn list(settings: &Settings, spool: &DeadLetterSpool) -> Result<u8, CliError> {
    let records = spool.list()?;
    if settings.json {
        print_json(&json!({
            "dlq_dir": spool.dir(),
            "entries": records,
        }));
        return Ok(exit::OK);
    }
    if records.is_empty() {
        println!("no entries in {}", spool.dir().display());
        return Ok(exit::OK);
    }
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                match &r.shard {
                    None => format!("{}.{}", r.database, r.table),
                    Some(s) => format!(
                        "{}.{} (shard {} of {})",
                        r.database, r.table, s.shard, s.cluster
                    ),
                },
                kind_name(r.kind).to_string(),
                r.rows.to_string(),
                r.bytes.to_string(),
                r.error_kind.to_string(),
                r.code.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
                r.attempts.to_string(),
                format_time_ms(r.dead_lettered_at_ms),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "ID", "TABLE", "KIND", "ROWS", "BYTES", "ERROR", "CODE", "ATTEMPTS", "TIME"
            ],
            &rows
        )
    );
    let total_rows: u64 = records.iter().map(|r| r.rows).sum();
    note(
        settings,
        format!(
            "{} entr{}, {total_rows} row(s) in {}",
            records.len(),
            if records.len() == 1 { "y" } else { "ies" },
            spool.dir().display()
        ),
    );
    Ok(exit::OK)
}

/// The entry whose id is `id` or starts with it.
fn find(spool: &DeadLetterSpool, id: &str) -> Result<DeadLetterRecord, CliError> {
    let id = id.trim().to_ascii_lowercase();
    let matches: Vec<DeadLetterRecord> = spool
        .list()?
        .into_iter()
        .filter(|r| r.id.to_string().starts_with(&id))
        .collect();
    match matches.len() {
        0 => Err(CliError::error(format!(
            "no entry {id:?} in {}",
            spool.dir().display()
        ))),
        1 => Ok(matches.into_iter().next().expect("one")),
        n => Err(CliError::usage(format!(
            "{n} entries start with {id:?}: give more of the id"
        ))),
    }
}

fn show(settings: &Settings, spool: &DeadLetterSpool, id: &str) -> Result<u8, CliError> {
    let record = find(spool, id)?;
    let payload = spool.payload(&record)?;
    let lines: Option<Vec<serde_json::Value>> = (record.kind == EntryKind::Rejected).then(|| {
        String::from_utf8_lossy(&payload)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|_| json!(l)))
            .collect()
    });
    if settings.json {
        print_json(&json!({
            "record": record,
            "payload_path": spool.dir().join(&record.payload_file),
            "payload_bytes": payload.len(),
            "rejected_rows": lines,
        }));
        return Ok(exit::OK);
    }
    let code = record
        .code
        .map(|c| c.to_string())
        .unwrap_or_else(|| "-".into());
    println!("id:          {}", record.id);
    println!("kind:        {}", kind_name(record.kind));
    println!("table:       {}.{}", record.database, record.table);
    if let Some(s) = &record.shard {
        println!(
            "shard:       {} of cluster {} (a replay sends it to that shard's replicas)",
            s.shard, s.cluster
        );
    }
    if !record.columns.is_empty() {
        println!("columns:     {}", record.columns.join(", "));
    }
    println!("format:      {}", record.format);
    match &record.insert {
        Some(insert) => {
            println!("statement:   {}", insert.statement);
            println!("user:        {}", insert.user);
            let settings: Vec<String> = insert
                .settings
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            println!("settings:    {}", settings.join(" "));
        }
        None if record.kind == EntryKind::Batch => {
            println!(
                "record:      version {} (written without the exact insert)",
                record.version
            );
        }
        None => {}
    }
    println!("rows:        {}", record.rows);
    println!(
        "payload:     {} ({} bytes, {})",
        spool.dir().join(&record.payload_file).display(),
        payload.len(),
        human_bytes(payload.len() as u64)
    );
    println!("error kind:  {}", record.error_kind);
    println!("code:        {code}");
    println!("error:       {}", record.error);
    println!("attempts:    {}", record.attempts);
    println!(
        "stream:      {} (sequence {})",
        record.stream_id, record.sequence
    );
    println!(
        "time:        {}",
        format_time_ms(record.dead_lettered_at_ms)
    );
    if let Some(lines) = lines {
        println!("rejected rows:");
        for l in lines {
            println!("{l}");
        }
    }
    Ok(exit::OK)
}

async fn replay_spool(
    settings: &Settings,
    spool: &DeadLetterSpool,
    options: &ReplayOptions,
) -> Result<u8, CliError> {
    let config = settings.config(settings.database(), "-")?;
    let before = spool.list()?;
    let report = replay_with(&config, spool, options).await?;
    let code = if report.failed.is_empty() {
        exit::OK
    } else {
        exit::NOT_COMMITTED
    };
    if settings.json {
        print_json(&json!({
            "dlq_dir": spool.dir(),
            "entries": before.len(),
            "batches_committed": report.batches,
            "rows_committed": report.rows,
            "failed": report.failed.iter().map(|(id, e)| json!({"id": id, "error": e})).collect::<Vec<_>>(),
            "skipped_rejected": report.skipped_rejected,
            "legacy": report.legacy,
        }));
        return Ok(code);
    }
    println!(
        "replayed {} batch(es), {} row(s) committed from {}",
        report.batches,
        report.rows,
        spool.dir().display()
    );
    for (id, e) in &report.failed {
        println!("failed again: {id}: {e}");
    }
    if report.legacy > 0 {
        println!(
            "{} entr{} written by an older chasync (without the exact insert) sent with the \
             settings {} recorded, and input_format_skip_unknown_fields=0 unless recorded",
            report.legacy,
            if report.legacy == 1 { "y" } else { "ies" },
            if report.legacy == 1 { "it" } else { "they" },
        );
    }
    if report.skipped_rejected > 0 {
        println!(
            "skipped {} entr{} of rejected rows (not replayable as they are: see `chasync dlq show`)",
            report.skipped_rejected,
            if report.skipped_rejected == 1 {
                "y"
            } else {
                "ies"
            }
        );
    }
    if !report.failed.is_empty() {
        note(
            settings,
            format!(
                "{} batch(es) stay in the spool; fix the cause and run `chasync dlq replay` again",
                report.failed.len()
            ),
        );
    }
    Ok(code)
}

fn purge(
    settings: &Settings,
    spool: &DeadLetterSpool,
    id: Option<&str>,
    yes: bool,
) -> Result<u8, CliError> {
    let targets = match id {
        Some(id) => vec![find(spool, id)?],
        None => spool.list()?,
    };
    if !yes {
        return Err(CliError::usage(format!(
            "refusing to delete {} entr{} ({} row(s)) from {} without --yes",
            targets.len(),
            if targets.len() == 1 { "y" } else { "ies" },
            targets.iter().map(|r| r.rows).sum::<u64>(),
            spool.dir().display()
        )));
    }
    for r in &targets {
        spool.remove(r)?;
    }
    let rows: u64 = targets.iter().map(|r| r.rows).sum();
    if settings.json {
        print_json(&json!({
            "purged": targets.iter().map(|r| r.id).collect::<Vec<_>>(),
            "rows": rows,
        }));
    } else {
        println!(
            "purged {} entr{} ({rows} row(s)) from {}",
            targets.len(),
            if targets.len() == 1 { "y" } else { "ies" },
            spool.dir().display()
        );
    }
    Ok(exit::OK)
}
