//! `chasync`, the command line of the chasync engine.
//!
//! Thin by design: the engine (`chasync-core`) makes every ingestion decision (batching,
//! retries, dedup, dead-lettering); this binary parses flags, reads files, calls the engine
//! and prints. Exit codes are in [`error::exit`].

/// `println!` that ends the process quietly with [`error::exit::BROKEN_PIPE`] when stdout is
/// a pipe closed early (`chasync config | head -1`), where the standard one panics.
macro_rules! println {
    () => {
        $crate::output::write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` with [`println!`]'s handling of a closed stdout.
#[allow(unused_macros)]
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!($($arg)*))
    };
}

/// `eprintln!` that does not panic when stderr is closed.
macro_rules! eprintln {
    ($($arg:tt)*) => {
        $crate::output::write_stderr(format_args!("{}\n", format_args!($($arg)*)))
    };
}

mod bench;
mod cli;
mod columnar;
mod consume;
mod dlq;
mod doctor;
mod error;
mod input;
mod insert;
mod output;
mod schema;
mod settings;
mod sharded;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command, DlqCommand, IngestOpts};
use error::{CliError, exit};
use settings::Settings;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.global.json;
    if let Err(e) = init_logging(&cli.global) {
        report_error(&e, json);
        return ExitCode::from(e.code);
    }
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

/// Log lines on stderr (the engine's retries, back-off, endpoints taken out, dead letters):
/// `--log-level`, else `-v` (info), `-vv` (debug), `-vvv` (trace), else `RUST_LOG`, else
/// warnings only. A `RUST_LOG` (or `--log-level`) that does not parse is a usage error.
fn init_logging(global: &cli::GlobalOpts) -> Result<(), CliError> {
    use std::str::FromStr;
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let parse = |source: &str, text: &str| {
        Targets::from_str(text).map_err(|e| {
            CliError::usage(format!(
                "{source} {text:?} is not a log filter: {e} (a level: error, warn, info, debug, \
                 trace; or target=level pairs: warn,chasync_core=debug)"
            ))
        })
    };
    let env = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(|v| parse("RUST_LOG", &v))
        .transpose()?;
    let filter = match (&global.log_level, global.verbose) {
        (Some(level), _) => parse("--log-level", level)?,
        (None, 1) => Targets::new().with_default(LevelFilter::INFO),
        (None, 2) => Targets::new().with_default(LevelFilter::DEBUG),
        (None, n) if n > 2 => Targets::new().with_default(LevelFilter::TRACE),
        (None, _) => env.unwrap_or_else(|| Targets::new().with_default(LevelFilter::WARN)),
    };
    let registry = tracing_subscriber::registry().with(filter);
    let result = match global.log_format {
        cli::LogFormat::Human => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
            )
            .try_init(),
        cli::LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    result.map_err(|e| CliError::error(format!("cannot set up logging: {e}")))
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
        Command::Consume(cli::ConsumeCommand::Kafka(a)) => a.ingest.clone(),
        Command::Consume(cli::ConsumeCommand::Nats(a)) => a.ingest.clone(),
        Command::Dlq(a) => {
            let mut o = IngestOpts {
                spool_dir: a.spool_dir.clone(),
                ..none
            };
            if let DlqCommand::Replay {
                retries,
                compression,
                cluster_urls,
                ..
            } = &a.command
            {
                o.retries = *retries;
                o.compression = *compression;
                o.cluster_urls = cluster_urls.clone();
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
        Command::Consume(command) => consume::run(&settings, command).await,
        Command::Config(args) => {
            let (db, table) = settings.table_ref(&args.table)?;
            if let Some(path) = &settings.config_file {
                output::note(&settings, format!("config file: {}", path.display()));
            }
            output::print_json(&settings.config(&db, &table)?);
            Ok(exit::OK)
        }
    }
}
