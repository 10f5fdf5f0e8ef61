//! `chasync schema buffer`: a Buffer table in front of a table, with exactly its columns.

use chasync_core::quote_ident;
use serde_json::json;

use crate::cli::BufferArgs;
use crate::error::{CliError, exit};
use crate::output::{note, print_json};
use crate::settings::{Settings, split_table};

/// The DDL of a Buffer table `buffer` in front of `target`.
pub fn buffer_ddl(target: (&str, &str), buffer: (&str, &str), a: &BufferArgs) -> String {
    let (db, t) = target;
    format!(
        "CREATE TABLE {}.{} AS {}.{} ENGINE = Buffer({}, {}, {}, {}, {}, {}, {}, {}, {})",
        quote_ident(buffer.0),
        quote_ident(buffer.1),
        quote_ident(db),
        quote_ident(t),
        quote_ident(db),
        quote_ident(t),
        a.num_layers,
        a.min_time,
        a.max_time,
        a.min_rows,
        a.max_rows,
        a.min_bytes,
        a.max_bytes
    )
}

fn check_args(a: &BufferArgs) -> Result<(), CliError> {
    if a.num_layers == 0 {
        return Err(CliError::usage("--num-layers must be at least 1"));
    }
    for (name, min, max) in [
        ("time", a.min_time, a.max_time),
        ("rows", a.min_rows, a.max_rows),
        ("bytes", a.min_bytes, a.max_bytes),
    ] {
        if min > max {
            return Err(CliError::usage(format!(
                "--min-{name} ({min}) is larger than --max-{name} ({max})"
            )));
        }
    }
    Ok(())
}

/// Runs `schema buffer`.
pub async fn buffer(settings: &Settings, args: BufferArgs) -> Result<u8, CliError> {
    check_args(&args)?;
    let (db, table) = settings.table_ref(&args.table)?;
    let (bdb, btable) = match &args.buffer_table {
        Some(name) => split_table(name, &db)?,
        None => (db.clone(), format!("{table}_buffer")),
    };
    if (bdb.as_str(), btable.as_str()) == (db.as_str(), table.as_str()) {
        return Err(CliError::usage(
            "the Buffer table cannot have the target's name",
        ));
    }
    let client = settings.client()?;
    // The target must exist (and be visible) for `AS db.t` to mirror it.
    let target_columns = settings.columns(&db, &table).await?;
    let ddl = buffer_ddl((&db, &table), (&bdb, &btable), &args);
    if !args.apply {
        if settings.json {
            print_json(&json!({ "ddl": ddl, "applied": false }));
        } else {
            println!("{ddl};");
            note(
                settings,
                "-- run with --apply to create it; insert into the Buffer table, read from \
                 either (a Buffer table does not deduplicate: its flushes carry no dedup token)",
            );
        }
        return Ok(exit::OK);
    }
    client.query(&ddl).execute().await?;
    let buffer_columns = settings.columns(&bdb, &btable).await?;
    if buffer_columns != target_columns {
        return Err(CliError::error(format!(
            "the Buffer table {bdb}.{btable} was created but its columns differ from \
             {db}.{table}: {buffer_columns:?} vs {target_columns:?}"
        )));
    }
    if settings.json {
        print_json(&json!({
            "ddl": ddl,
            "applied": true,
            "buffer_table": format!("{bdb}.{btable}"),
            "columns": buffer_columns.iter().map(|(n, t)| json!({"name": n, "type": t})).collect::<Vec<_>>(),
        }));
    } else {
        println!("{ddl};");
        println!(
            "created {bdb}.{btable} ({} columns, the same as {db}.{table})",
            buffer_columns.len()
        );
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddl_and_checks() {
        let a = BufferArgs {
            table: "d.t".into(),
            apply: false,
            buffer_table: None,
            num_layers: 16,
            min_time: 10,
            max_time: 100,
            min_rows: 10_000,
            max_rows: 1_000_000,
            min_bytes: 10_000_000,
            max_bytes: 100_000_000,
        };
        assert_eq!(
            buffer_ddl(("d", "t"), ("d", "t_buffer"), &a),
            "CREATE TABLE `d`.`t_buffer` AS `d`.`t` ENGINE = Buffer(`d`, `t`, 16, 10, 100, \
             10000, 1000000, 10000000, 100000000)"
        );
        check_args(&a).unwrap();
        let bad = BufferArgs {
            min_rows: 5,
            max_rows: 4,
            ..a
        };
        assert!(check_args(&bad).unwrap_err().message.contains("--min-rows"));
    }
}
