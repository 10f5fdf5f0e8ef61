//! `chasync`, the command line of the chasync engine.
//!
//! Thin by design: the engine (`chasync-core`) makes every ingestion decision (batching,
//! retries, dedup, dead-lettering); this binary parses flags, reads files, calls the engine
//! and prints. Exit codes are in [`error::exit`].

mod bench;
mod cli;
mod dlq;
mod doctor;
mod error;
mod input;
mod insert;
mod output;
mod schema;
mod settings;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command, DlqCommand, IngestOpts};
use error::{CliError, exit};
use settings::Settings;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.global.json;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chasync: cannot start the async runtime: {e}");
            return ExitCode::from(exit::ERROR);
        }
    };
    let mut url = (String::new(), false);
    let result = runtime.block_on(run(cli, &mut url));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(mut e) => {
            if e.unreachable && e.hint.is_none() {
                e.hint = Some(error::unreachable_hint(&url.0, url.1));
            }
            report_error(&e, json);
            ExitCode::from(e.code)
        }
    }
}

fn report_error(e: &CliError, json: bool) {
    if json {
        let v = serde_json::json!({
            "error": e.message,
            "hint": e.hint,
            "exit_code": e.code,
        });
        eprintln!("{v}");
    } else {
        eprintln!("chasync: error: {}", e.message);
        if let Some(h) = &e.hint {
            eprintln!("hint: {h}");
        }
    }
}

/// Runs the command; `url` receives the resolved URL (and whether it was given), for the
/// hint when the server cannot be reached.
async fn run(cli: Cli, url: &mut (String, bool)) -> Result<u8, CliError> {
    let none = IngestOpts::default();
    let ingest = match &cli.command {
        Command::Bench(a) => a.ingest.clone(),
        Command::Insert(a) => a.ingest.clone(),
        Command::Config(a) => a.ingest.clone(),
        Command::Dlq(a) => {
            let mut o = IngestOpts {
                spool_dir: a.spool_dir.clone(),
                ..none
            };
            if let DlqCommand::Replay {
                retries,
                compression,
                ..
            } = &a.command
            {
                o.retries = *retries;
                o.compression = *compression;
            }
            o
        }
        _ => none,
    };
    let settings = Settings::resolve(&cli.global, &ingest)?;
    *url = (settings.url().to_string(), settings.url_given);
    match cli.command {
        Command::Doctor(args) => doctor::run(&settings, args).await,
        Command::Dlq(args) => dlq::run(&settings, args.command).await,
        Command::Schema(cli::SchemaCommand::Buffer(args)) => schema::buffer(&settings, args).await,
        Command::Bench(args) => bench::run(&settings, args).await,
        Command::Insert(args) => insert::run(&settings, args).await,
        Command::Config(args) => {
            let (db, table) = settings.table_ref(&args.table)?;
            output::print_json(&settings.config(&db, &table)?);
            Ok(exit::OK)
        }
    }
}
