//! ClickHouse's formats, known in one place: the name and aliases of each, how its bodies
//! are framed ([`RowSyntax`], a header or not) and whether two of them can be put one after
//! the other into one insert ([`FormatFamily`], [`Joint`]). The engine's own [`Format`] is
//! looked up here too ([`Format::named`], [`Format::from_name`]), so a name means the same
//! to the engine, the gateway and the spool.

use crate::batch::Format;
use crate::format::bodies::Joint;

/// What is known of a ClickHouse format: its names, how its rows are written and how its
/// bodies join. Looked up with [`format_info`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FormatInfo {
    /// ClickHouse's name for the format (`TabSeparated` for `TSV`).
    pub name: &'static str,
    /// Other names of the same format (`TSV` for `TabSeparated`). Names match case-insensitively.
    pub aliases: &'static [&'static str],
    /// Whether and how bodies in this format can be concatenated.
    pub family: FormatFamily,
    /// How rows (and header rows) are written, for a gateway that must split or strip them.
    pub syntax: RowSyntax,
    /// What to put between two concatenated bodies.
    pub joint: Joint,
}

/// Whether bodies in a format can be coalesced into one insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FormatFamily {
    /// A plain sequence of rows: two bodies glued (with [`FormatInfo::joint`]) insert the same
    /// rows as two inserts.
    Rows,
    /// Header row(s), then rows. Bodies coalesce only if their headers are byte-identical; keep
    /// the first body's header and strip it from the others.
    RowsWithHeader {
        /// What the header holds.
        header: HeaderKind,
    },
    /// A sequence of self-describing blocks (Native): bodies concatenate as they are.
    Blocks,
    /// One document per body (Parquet, Arrow, JSON, ...): gluing bodies loses or breaks data.
    /// Do not coalesce; send each body as its own insert.
    Whole,
    /// An output-only format. ClickHouse answers an insert in it with 85
    /// FORMAT_IS_NOT_SUITABLE_FOR_INPUT (HTTP 500, the message rendered in that format): pass the
    /// request through.
    OutputOnly,
}

/// The header of a [`FormatFamily::RowsWithHeader`] format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderKind {
    /// One header row of column names.
    Names,
    /// A row of column names, then a row of column types.
    NamesAndTypes,
}

/// How a format writes its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RowSyntax {
    /// One line per row, fields separated by tabs, backslash escapes (no raw newline in a field).
    TabSeparated,
    /// One line per row, fields separated by tabs, no escaping.
    TabSeparatedRaw,
    /// RFC 4180 lines; a quoted field may hold newlines.
    Csv,
    /// One line per row of `key=value` pairs separated by tabs.
    Tskv,
    /// One line per row, read whole or through a regular expression.
    Lines,
    /// JSON objects, one per row, separated by whitespace or commas (a body may also be one JSON
    /// array of objects).
    JsonObjects,
    /// JSON arrays, one per row (header rows are arrays of strings).
    JsonArrays,
    /// SQL tuples `(...)`, optionally separated by commas; `;` ends the data.
    Values,
    /// Binary rows; a header is a LEB128 column count, then that many length-prefixed names (and
    /// as many type names).
    RowBinary,
    /// BSON documents.
    Bson,
    /// MessagePack values, one per field.
    MsgPack,
    /// Length-delimited Protobuf messages.
    Protobuf,
    /// ClickHouse Native blocks.
    Native,
    /// Something else (column-oriented or whole-document formats).
    Other,
}

impl FormatInfo {
    /// True when bodies in this format can be coalesced ([`FormatFamily::Rows`],
    /// [`FormatFamily::RowsWithHeader`] or [`FormatFamily::Blocks`]).
    pub fn concatenable(&self) -> bool {
        matches!(
            self.family,
            FormatFamily::Rows | FormatFamily::RowsWithHeader { .. } | FormatFamily::Blocks
        )
    }

    /// The engine's [`Format`] of this format: one of its own, or [`Format::Other`] with
    /// ClickHouse's name.
    pub fn format(&self) -> Format {
        Format::ALL
            .into_iter()
            .find(|f| f.name() == self.name)
            .unwrap_or(Format::Other(self.name))
    }
}

/// Looks a format name up, case-insensitively as ClickHouse 26.9 does (`jsoneachrow`, `TSV`,
/// `ndjson` all work). `None` means ClickHouse does not know the name (it answers such an
/// insert with 73 `UNKNOWN_FORMAT`, HTTP 404).
pub fn format_info(name: &str) -> Option<&'static FormatInfo> {
    FORMATS.iter().find(|f| {
        f.name.eq_ignore_ascii_case(name) || f.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
    })
}

impl Format {
    /// The format named `name`: one of the engine's own, or [`Format::Other`] for any other
    /// name, with ClickHouse's spelling of it when it is a format ClickHouse knows (names
    /// not in [`format_info`]'s catalog are kept once per distinct name for the life of the
    /// process).
    pub fn named(name: &str) -> Format {
        if let Some(info) = format_info(name) {
            return info.format();
        }
        static NAMES: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
        let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
        let name = match names.iter().find(|n| **n == name) {
            Some(n) => n,
            None => {
                let n: &'static str = Box::leak(name.to_string().into_boxed_str());
                names.push(n);
                n
            }
        };
        Format::Other(name)
    }

    /// The format of a ClickHouse format name, aliases included (`TSV`, `JSONLines`,
    /// `NDJSON`), case-insensitively as ClickHouse reads them; `None` for a name the engine
    /// does not write.
    pub fn from_name(name: &str) -> Option<Format> {
        let info = format_info(name)?;
        Format::ALL.into_iter().find(|f| f.name() == info.name)
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let ok = !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if ok {
            Ok(Format::named(s))
        } else {
            Err(format!("invalid format name {s:?}"))
        }
    }
}

impl<'de> serde::Deserialize<'de> for Format {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

const fn fmt_entry(
    name: &'static str,
    aliases: &'static [&'static str],
    family: FormatFamily,
    syntax: RowSyntax,
    joint: Joint,
) -> FormatInfo {
    FormatInfo {
        name,
        aliases,
        family,
        syntax,
        joint,
    }
}

const fn rows(
    name: &'static str,
    aliases: &'static [&'static str],
    syntax: RowSyntax,
    joint: Joint,
) -> FormatInfo {
    fmt_entry(name, aliases, FormatFamily::Rows, syntax, joint)
}

const fn headed(
    name: &'static str,
    aliases: &'static [&'static str],
    header: HeaderKind,
    syntax: RowSyntax,
    joint: Joint,
) -> FormatInfo {
    fmt_entry(
        name,
        aliases,
        FormatFamily::RowsWithHeader { header },
        syntax,
        joint,
    )
}

const fn blocks(name: &'static str, syntax: RowSyntax) -> FormatInfo {
    fmt_entry(name, &[], FormatFamily::Blocks, syntax, Joint::None)
}

const fn whole(name: &'static str) -> FormatInfo {
    fmt_entry(
        name,
        &[],
        FormatFamily::Whole,
        RowSyntax::Other,
        Joint::None,
    )
}

const fn output(name: &'static str, aliases: &'static [&'static str]) -> FormatInfo {
    fmt_entry(
        name,
        aliases,
        FormatFamily::OutputOnly,
        RowSyntax::Other,
        Joint::None,
    )
}

const NL: Joint = Joint::Newline;
const GLUE: Joint = Joint::None;
const NAMES: HeaderKind = HeaderKind::Names;
const TYPES: HeaderKind = HeaderKind::NamesAndTypes;

/// ClickHouse 26.9's formats (`system.formats`), plus CapnProto (absent from the chdb-core
/// build, present in regular builds): input formats, then output-only ones.
static FORMATS: &[FormatInfo] = &[
    // Rows: verified against 26.9 by gluing two bodies.
    rows(
        "JSONEachRow",
        &["JSONLines", "NDJSON", "JSONL"],
        RowSyntax::JsonObjects,
        GLUE,
    ),
    rows("JSONStringsEachRow", &[], RowSyntax::JsonObjects, GLUE),
    rows("JSONCompactEachRow", &[], RowSyntax::JsonArrays, GLUE),
    rows(
        "JSONCompactStringsEachRow",
        &[],
        RowSyntax::JsonArrays,
        GLUE,
    ),
    rows("JSONAsString", &[], RowSyntax::JsonObjects, GLUE),
    rows("JSONAsObject", &[], RowSyntax::JsonObjects, GLUE),
    rows("BSONEachRow", &[], RowSyntax::Bson, GLUE),
    rows("MsgPack", &[], RowSyntax::MsgPack, GLUE),
    rows("Protobuf", &[], RowSyntax::Protobuf, GLUE),
    rows("RowBinary", &[], RowSyntax::RowBinary, GLUE),
    rows("RowBinaryWithDefaults", &[], RowSyntax::RowBinary, GLUE),
    rows("Values", &[], RowSyntax::Values, NL),
    rows("CSV", &[], RowSyntax::Csv, NL),
    rows("TabSeparated", &["TSV"], RowSyntax::TabSeparated, NL),
    rows(
        "TabSeparatedRaw",
        &["TSVRaw", "Raw"],
        RowSyntax::TabSeparatedRaw,
        NL,
    ),
    rows("TSKV", &[], RowSyntax::Tskv, NL),
    rows("LineAsString", &[], RowSyntax::Lines, NL),
    rows("Regexp", &[], RowSyntax::Lines, NL),
    // Rows after a header.
    headed("CSVWithNames", &[], NAMES, RowSyntax::Csv, NL),
    headed("CSVWithNamesAndTypes", &[], TYPES, RowSyntax::Csv, NL),
    headed(
        "TabSeparatedWithNames",
        &["TSVWithNames"],
        NAMES,
        RowSyntax::TabSeparated,
        NL,
    ),
    headed(
        "TabSeparatedWithNamesAndTypes",
        &["TSVWithNamesAndTypes"],
        TYPES,
        RowSyntax::TabSeparated,
        NL,
    ),
    headed(
        "TabSeparatedRawWithNames",
        &["TSVRawWithNames", "RawWithNames"],
        NAMES,
        RowSyntax::TabSeparatedRaw,
        NL,
    ),
    headed(
        "TabSeparatedRawWithNamesAndTypes",
        &["TSVRawWithNamesAndTypes", "RawWithNamesAndTypes"],
        TYPES,
        RowSyntax::TabSeparatedRaw,
        NL,
    ),
    headed(
        "JSONCompactEachRowWithNames",
        &[],
        NAMES,
        RowSyntax::JsonArrays,
        GLUE,
    ),
    headed(
        "JSONCompactEachRowWithNamesAndTypes",
        &[],
        TYPES,
        RowSyntax::JsonArrays,
        GLUE,
    ),
    headed(
        "JSONCompactStringsEachRowWithNames",
        &[],
        NAMES,
        RowSyntax::JsonArrays,
        GLUE,
    ),
    headed(
        "JSONCompactStringsEachRowWithNamesAndTypes",
        &[],
        TYPES,
        RowSyntax::JsonArrays,
        GLUE,
    ),
    headed("RowBinaryWithNames", &[], NAMES, RowSyntax::RowBinary, GLUE),
    headed(
        "RowBinaryWithNamesAndTypes",
        &[],
        TYPES,
        RowSyntax::RowBinary,
        GLUE,
    ),
    headed(
        "RowBinaryWithNamesAndTypesAndDefaults",
        &[],
        TYPES,
        RowSyntax::RowBinary,
        GLUE,
    ),
    // Blocks: verified by gluing two bodies.
    blocks("Native", RowSyntax::Native),
    blocks("Buffers", RowSyntax::Other),
    blocks("JSONColumns", RowSyntax::Other),
    blocks("JSONCompactColumns", RowSyntax::Other),
    // Whole documents. Arrow, ArrowStream, Parquet, ORC, JSON and JSONCompact silently drop the
    // second of two glued bodies; Avro, JSONObjectEachRow and JSONColumnsWithMetadata fail.
    whole("Arrow"),
    whole("ArrowStream"),
    whole("Parquet"),
    whole("ORC"),
    whole("Avro"),
    whole("AvroConfluent"),
    whole("JSON"),
    whole("JSONCompact"),
    whole("JSONColumnsWithMetadata"),
    whole("JSONObjectEachRow"),
    whole("GeoJSON"),
    whole("Npy"),
    whole("ProtobufSingle"),
    whole("ProtobufList"),
    whole("CapnProto"),
    whole("RawBLOB"),
    whole("Template"),
    whole("TemplateIgnoreSpaces"),
    whole("CustomSeparated"),
    whole("CustomSeparatedWithNames"),
    whole("CustomSeparatedWithNamesAndTypes"),
    whole("CustomSeparatedIgnoreSpaces"),
    whole("CustomSeparatedIgnoreSpacesWithNames"),
    whole("CustomSeparatedIgnoreSpacesWithNamesAndTypes"),
    whole("MySQLDump"),
    whole("Form"),
    whole("One"),
    whole("DWARF"),
    whole("ParquetMetadata"),
    whole("Puffin"),
    whole("PuffinMetadata"),
    // Output only.
    output("Hash", &[]),
    output("HiveText", &[]),
    output("JSONCompactEachRowWithProgress", &[]),
    output("JSONCompactStrings", &[]),
    output("JSONCompactStringsEachRowWithProgress", &[]),
    output("JSONEachRowWithProgress", &[]),
    output("JSONStrings", &[]),
    output("JSONStringsEachRowWithProgress", &[]),
    output("LineAsStringWithNames", &[]),
    output("LineAsStringWithNamesAndTypes", &[]),
    output("Markdown", &["MD"]),
    output("MySQLWire", &[]),
    output("Null", &[]),
    output("ODBCDriver2", &[]),
    output("PNG", &[]),
    output("PostgreSQLWire", &[]),
    output("Pretty", &[]),
    output("PrettyCompact", &[]),
    output("PrettyCompactMonoBlock", &[]),
    output("PrettyCompactNoEscapes", &[]),
    output("PrettyCompactNoEscapesMonoBlock", &[]),
    output("PrettyJSONEachRow", &["PrettyJSONLines", "PrettyNDJSON"]),
    output("PrettyMonoBlock", &[]),
    output("PrettyNoEscapes", &[]),
    output("PrettyNoEscapesMonoBlock", &[]),
    output("PrettySpace", &[]),
    output("PrettySpaceMonoBlock", &[]),
    output("PrettySpaceNoEscapes", &[]),
    output("PrettySpaceNoEscapesMonoBlock", &[]),
    output("Prometheus", &[]),
    output("SQLInsert", &[]),
    output("Vertical", &[]),
    output("XML", &[]),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// `SELECT name FROM system.formats WHERE is_input` on ClickHouse 26.9.2.1.
    const INPUT_26_9: &str = "Arrow ArrowStream Avro AvroConfluent BSONEachRow Buffers CSV CSVWithNames \
        CSVWithNamesAndTypes CustomSeparated CustomSeparatedIgnoreSpaces CustomSeparatedIgnoreSpacesWithNames \
        CustomSeparatedIgnoreSpacesWithNamesAndTypes CustomSeparatedWithNames CustomSeparatedWithNamesAndTypes DWARF \
        Form GeoJSON JSON JSONAsObject JSONAsString JSONColumns JSONColumnsWithMetadata JSONCompact JSONCompactColumns \
        JSONCompactEachRow JSONCompactEachRowWithNames JSONCompactEachRowWithNamesAndTypes JSONCompactStringsEachRow \
        JSONCompactStringsEachRowWithNames JSONCompactStringsEachRowWithNamesAndTypes JSONEachRow JSONL JSONLines \
        JSONObjectEachRow JSONStringsEachRow LineAsString MsgPack MySQLDump NDJSON Native Npy ORC One Parquet \
        ParquetMetadata Protobuf ProtobufList ProtobufSingle Puffin PuffinMetadata Raw RawBLOB RawWithNames \
        RawWithNamesAndTypes Regexp RowBinary RowBinaryWithDefaults RowBinaryWithNames RowBinaryWithNamesAndTypes \
        RowBinaryWithNamesAndTypesAndDefaults TSKV TSV TSVRaw TSVRawWithNames TSVRawWithNamesAndTypes TSVWithNames \
        TSVWithNamesAndTypes TabSeparated TabSeparatedRaw TabSeparatedRawWithNames TabSeparatedRawWithNamesAndTypes \
        TabSeparatedWithNames TabSeparatedWithNamesAndTypes Template TemplateIgnoreSpaces Values";

    /// `SELECT name FROM system.formats WHERE NOT is_input` on ClickHouse 26.9.2.1.
    const OUTPUT_26_9: &str = "Hash HiveText JSONCompactEachRowWithProgress JSONCompactStrings \
        JSONCompactStringsEachRowWithProgress JSONEachRowWithProgress JSONStrings JSONStringsEachRowWithProgress \
        LineAsStringWithNames LineAsStringWithNamesAndTypes MD Markdown MySQLWire Null ODBCDriver2 PNG PostgreSQLWire \
        Pretty PrettyCompact PrettyCompactMonoBlock PrettyCompactNoEscapes PrettyCompactNoEscapesMonoBlock \
        PrettyJSONEachRow PrettyJSONLines PrettyMonoBlock PrettyNDJSON PrettyNoEscapes PrettyNoEscapesMonoBlock \
        PrettySpace PrettySpaceMonoBlock PrettySpaceNoEscapes PrettySpaceNoEscapesMonoBlock Prometheus SQLInsert \
        Vertical XML";

    #[test]
    fn catalog_covers_clickhouse_26_9() {
        let inputs: Vec<&str> = INPUT_26_9.split_whitespace().collect();
        let outputs: Vec<&str> = OUTPUT_26_9.split_whitespace().collect();
        assert_eq!((inputs.len(), outputs.len()), (77, 36));
        for name in &inputs {
            let f = format_info(name).unwrap_or_else(|| panic!("{name} missing"));
            assert_ne!(f.family, FormatFamily::OutputOnly, "{name}");
        }
        for name in &outputs {
            assert_eq!(
                format_info(name).map(|f| f.family),
                Some(FormatFamily::OutputOnly),
                "{name}"
            );
        }
        // Every catalog name is one of them (CapnProto aside), and names are unique.
        let mut all: Vec<String> = Vec::new();
        for f in FORMATS {
            for n in std::iter::once(&f.name).chain(f.aliases) {
                assert!(
                    n == &"CapnProto" || inputs.contains(n) || outputs.contains(n),
                    "{n}"
                );
                all.push(n.to_ascii_lowercase());
            }
        }
        let count = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), count);
        assert_eq!(count, 77 + 36 + 1);
    }

    #[test]
    fn catalog_lookup() {
        let fam = |n: &str| format_info(n).map(|f| (f.name, f.family, f.joint));
        assert_eq!(
            fam("jsoneachrow"),
            Some(("JSONEachRow", FormatFamily::Rows, Joint::None))
        );
        assert_eq!(
            fam("NDJSON"),
            Some(("JSONEachRow", FormatFamily::Rows, Joint::None))
        );
        assert_eq!(
            fam("JSONLines"),
            Some(("JSONEachRow", FormatFamily::Rows, Joint::None))
        );
        assert_eq!(
            fam("tsv"),
            Some(("TabSeparated", FormatFamily::Rows, Joint::Newline))
        );
        assert_eq!(
            fam("Raw"),
            Some(("TabSeparatedRaw", FormatFamily::Rows, Joint::Newline))
        );
        assert_eq!(
            fam("TSVRaw"),
            Some(("TabSeparatedRaw", FormatFamily::Rows, Joint::Newline))
        );
        assert_eq!(
            fam("TSVWithNamesAndTypes"),
            Some((
                "TabSeparatedWithNamesAndTypes",
                FormatFamily::RowsWithHeader {
                    header: HeaderKind::NamesAndTypes
                },
                Joint::Newline
            ))
        );
        assert_eq!(
            fam("RowBinaryWithNamesAndTypes"),
            Some((
                "RowBinaryWithNamesAndTypes",
                FormatFamily::RowsWithHeader {
                    header: HeaderKind::NamesAndTypes
                },
                Joint::None
            ))
        );
        assert_eq!(fam("native").map(|f| f.1), Some(FormatFamily::Blocks));
        for whole in [
            "Parquet",
            "Arrow",
            "ArrowStream",
            "ORC",
            "Avro",
            "JSON",
            "JSONCompact",
            "CapnProto",
            "RawBLOB",
            "CustomSeparated",
        ] {
            assert_eq!(
                fam(whole).map(|f| f.1),
                Some(FormatFamily::Whole),
                "{whole}"
            );
            assert!(!format_info(whole).is_some_and(FormatInfo::concatenable));
        }
        assert_eq!(fam("Pretty").map(|f| f.1), Some(FormatFamily::OutputOnly));
        assert_eq!(fam("NoSuchFormat"), None);
        assert_eq!(fam(""), None);
        let csv = format_info("CSV").unwrap().joint;
        assert_eq!(csv.after(b"1,a"), b"\n");
        assert_eq!(csv.after(b"1,a\n"), b"");
        assert_eq!(csv.after(b""), b"");
        assert_eq!(format_info("JSONEachRow").unwrap().joint.after(b"{}"), b"");
    }

    #[test]
    fn engine_formats_are_looked_up_in_the_catalog() {
        for f in Format::ALL {
            assert_eq!(Format::from_name(f.name()), Some(f));
            assert_eq!(format_info(f.name()).map(FormatInfo::format), Some(f));
            let json = serde_json::to_string(&f).unwrap();
            assert_eq!(json, format!("\"{}\"", f.name()));
            assert_eq!(serde_json::from_str::<Format>(&json).unwrap(), f);
        }
        // Every alias of the catalog, in any case.
        for name in ["TSV", "tsv", "NDJSON", "JSONLines", "JSONL", "jsoneachrow"] {
            assert!(
                matches!(
                    Format::from_name(name),
                    Some(Format::TabSeparated | Format::JsonEachRow)
                ),
                "{name}"
            );
        }
        assert_eq!(Format::from_name("Parquet"), None);
        assert_eq!(
            "Parquet".parse::<Format>().unwrap(),
            Format::Other("Parquet")
        );
        // A name ClickHouse knows gets its spelling; any other is kept as given.
        assert_eq!(Format::named("parquet"), Format::Other("Parquet"));
        assert_eq!(Format::named("NoSuchFormat").name(), "NoSuchFormat");
        assert!("Bad name".parse::<Format>().is_err());
    }
}
