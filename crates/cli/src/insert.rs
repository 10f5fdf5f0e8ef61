//! `chasync insert`: NDJSON / CSV / TSV files into a table.
//!
//! Not implemented yet: rows whose columns are known only at run time need the engine's
//! runtime-schema path (dynamic rows encoded as Native, schema from `system.columns`), which
//! is being added to `chasync-core`. The flags and the input readers ([`crate::input`]) are
//! here; the command checks its arguments and then says so, rather than ingesting in the CLI.

use std::path::Path;

use crate::cli::{InputFormat, InsertArgs};
use crate::error::CliError;
use crate::input::format_from_name;
use crate::settings::Settings;

/// The formats of the inputs, from `--format` or their names.
pub fn formats(args: &InsertArgs) -> Result<Vec<InputFormat>, CliError> {
    args.files
        .iter()
        .map(|f| {
            args.format.or_else(|| format_from_name(f)).ok_or_else(|| {
                CliError::usage(format!(
                    "cannot tell the format of {} from its name: give --format ndjson|csv|tsv",
                    f.display()
                ))
            })
        })
        .collect()
}

/// Runs `insert`.
pub async fn run(settings: &Settings, args: InsertArgs) -> Result<u8, CliError> {
    settings.table_ref(&args.table)?;
    formats(&args)?;
    for f in &args.files {
        if f != Path::new("-") && !f.exists() {
            return Err(CliError::error(format!("no such file: {}", f.display())));
        }
    }
    Err(CliError::error(
        "chasync insert is not implemented yet: it needs the engine's runtime-schema path \
         (dynamic rows encoded as Native), which has not landed in chasync-core",
    ))
}
