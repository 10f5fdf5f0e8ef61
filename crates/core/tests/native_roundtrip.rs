//! Type-matrix round trip against the real server: random rows (generateRandom, seeded) →
//! JSONEachRow → DynRow → NativeBatch → INSERT ... FORMAT Native, then the source and target
//! tables must hash the same.

mod native_common;

use chasync_core::{ColumnBatch, DynRow, Value};
use chasync_core::{NativeBatch, NativeOptions};
use native_common::TestDb;

/// Every type family the encoder supports, nested where ClickHouse allows it.
const MATRIX: &[(&str, &str)] = &[
    ("i8", "Int8"),
    ("i16", "Int16"),
    ("i32", "Int32"),
    ("i64", "Int64"),
    ("i128", "Int128"),
    ("i256", "Int256"),
    ("u8", "UInt8"),
    ("u16", "UInt16"),
    ("u32", "UInt32"),
    ("u64", "UInt64"),
    ("u128", "UInt128"),
    ("u256", "UInt256"),
    ("f32", "Float32"),
    ("f64", "Float64"),
    ("bf16", "BFloat16"),
    ("dec32", "Decimal32(3)"),
    ("dec64", "Decimal(18, 6)"),
    ("dec128", "Decimal128(10)"),
    ("dec256", "Decimal256(20)"),
    ("dec_small", "Decimal(5, 5)"),
    ("b", "Bool"),
    ("s", "String"),
    ("fs", "FixedString(8)"),
    ("uuid", "UUID"),
    ("ip4", "IPv4"),
    ("ip6", "IPv6"),
    ("d", "Date"),
    ("d32", "Date32"),
    ("dt", "DateTime"),
    ("dt_tz", "DateTime('Asia/Kolkata')"),
    ("dt64", "DateTime64(3)"),
    ("dt64_tz", "DateTime64(6, 'America/New_York')"),
    ("dt64_9", "DateTime64(9, 'UTC')"),
    ("e8", "Enum8('a' = -3, 'b' = 0, 'c q' = 5)"),
    ("e16", "Enum16('x' = -1000, 'y' = 1000)"),
    ("lc", "LowCardinality(String)"),
    ("lcn", "LowCardinality(Nullable(String))"),
    ("lcfs", "LowCardinality(FixedString(4))"),
    ("lcu", "LowCardinality(UInt32)"),
    ("lcd", "LowCardinality(Nullable(Date))"),
    ("n_i", "Nullable(Int32)"),
    ("n_s", "Nullable(String)"),
    ("n_dec", "Nullable(Decimal(9, 2))"),
    ("n_dt64", "Nullable(DateTime64(3))"),
    ("n_uuid", "Nullable(UUID)"),
    ("a_i", "Array(Int64)"),
    ("a_n", "Array(Nullable(UInt8))"),
    ("a_lc", "Array(LowCardinality(String))"),
    ("a_a", "Array(Array(String))"),
    ("a_e", "Array(Enum8('p' = 1, 'q' = 2))"),
    ("m", "Map(String, UInt64)"),
    ("m_i", "Map(UInt16, Array(Nullable(String)))"),
    ("m_lc", "Map(LowCardinality(String), Float64)"),
    ("t", "Tuple(UInt8, String, Nullable(Float64))"),
    ("tn", "Tuple(a Int32, b Array(String), c Map(String, Int8))"),
    (
        "deep",
        "Array(Map(String, Tuple(x Nullable(UInt32), y LowCardinality(String), z Array(Nullable(IPv6)))))",
    ),
];

fn structure() -> String {
    MATRIX
        .iter()
        .map(|(n, t)| format!("`{n}` {t}"))
        .collect::<Vec<_>>()
        .join(", ")
}

const ROWS: usize = 3000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn type_matrix_round_trip() {
    let db = TestDb::new().await;
    let cols = structure();
    for t in ["raw", "src", "dst_rows", "dst_grouped", "dst_cols"] {
        db.exec(&format!(
            "CREATE TABLE {{db}}.{t} ({cols}) ENGINE = MergeTree ORDER BY tuple()"
        ))
        .await;
    }
    // Random rows. Strings are random bytes, which JSON cannot carry, so the source is the
    // server's own reading of its JSON output (invalid UTF-8 replaced, NaN -> 0), i.e. the
    // data the JSON path can represent.
    // generateRandom has no BFloat16: draw Float32 and let the INSERT convert it.
    let structure_lit = cols
        .replace("BFloat16", "Float32")
        .replace('\\', "\\\\")
        .replace('\'', "\\'");
    db.exec(&format!(
        "INSERT INTO {{db}}.raw SELECT * REPLACE ( \
           toFixedString(left(hex(fs), cityHash64(fs) % 9), 8) AS fs, \
           toFixedString(left(hex(lcfs), cityHash64(lcfs) % 5), 4) AS lcfs) \
         FROM generateRandom('{structure_lit}', 20240917, 12, 4) \
         LIMIT {ROWS}"
    ))
    .await;
    let raw_json = db
        .fetch_text(
            "SELECT * FROM {db}.raw SETTINGS output_format_json_validate_utf8 = 1, \
             output_format_json_quote_decimals = 1",
            "JSONEachRow",
        )
        .await;
    let mut ins = db
        .client
        .insert_formatted_with(format!("INSERT INTO `{}`.src FORMAT JSONEachRow", db.name));
    ins.send(raw_json.into()).await.unwrap();
    ins.end().await.unwrap();
    assert_eq!(db.hash("src").await.1, ROWS as u64);
    // The data is not degenerate: NULLs, nested values and many distinct strings are there.
    let stats = db
        .scalar(
            "SELECT countIf(lcn IS NULL) > 0 AND countIf(n_s IS NULL) > 0 \
               AND countIf(has(a_n, NULL)) > 0 AND countIf(length(deep) > 0) > 100 \
               AND countIf(length(m_i) > 0) > 100 \
               AND uniqExact(lc) > 100 AND countIf(lcd IS NULL) > 0 \
             FROM {db}.src",
        )
        .await;
    assert_eq!(stats, "1");

    let rows = db
        .fetch_rows(
            "SELECT * FROM {db}.src SETTINGS output_format_json_quote_decimals = 1, \
             output_format_json_quote_64bit_integers = 1, output_format_json_quote_denormals = 1",
        )
        .await;
    assert_eq!(rows.len(), ROWS);

    // Row path, keeping the order.
    db.insert_rows("dst_rows", &rows).await;

    // Row path, grouping by shape, with a random half of the rows sent in a second batch.
    let schema = db.schema("dst_grouped").await;
    for chunk in rows.chunks(ROWS / 2 + 7) {
        let mut batch = NativeBatch::new(
            schema.clone(),
            NativeOptions {
                preserve_row_order: false,
                ..NativeOptions::default()
            },
        );
        for r in chunk {
            batch.push_row(r).unwrap();
        }
        let expected = batch.encoded_bytes();
        let encoded = batch.finish(None);
        // Without an insert id column the estimate is exact.
        assert_eq!(encoded.bytes.len(), expected);
        db.insert(&schema, encoded).await.unwrap();
    }

    // Columnar path.
    let schema = db.schema("dst_cols").await;
    let mut batch = NativeBatch::new(schema.clone(), NativeOptions::default());
    let mut columns = ColumnBatch::new();
    for (name, _) in MATRIX {
        let values: Vec<Value> = rows
            .iter()
            .map(|r| r.get(name).cloned().expect("every column is in every row"))
            .collect();
        columns.push_column(*name, values);
    }
    let outcome = batch.push_columns(&columns).unwrap();
    assert_eq!(outcome.accepted, ROWS);
    assert!(
        outcome.rejected.is_empty(),
        "{:?}",
        outcome.rejected.first()
    );
    db.insert(&schema, batch.finish(None)).await.unwrap();

    let names: Vec<&str> = MATRIX.iter().map(|(n, _)| *n).collect();
    db.assert_same_columns("src", "dst_rows", &names).await;
    let src = db.hash("src").await;
    assert_eq!(db.hash("dst_rows").await, src);
    assert_eq!(db.hash("dst_grouped").await, src);
    assert_eq!(db.hash("dst_cols").await, src);
}

/// The same matrix with values given as native numbers instead of text (64-bit integers and
/// decimals unquoted), which exercises the numeric conversion paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numeric_json_round_trip() {
    let db = TestDb::new().await;
    let cols = "i64 Int64, u64 UInt64, f64 Float64, f32 Float32, dec Decimal(9, 3), \
                dt DateTime, dt64 DateTime64(3), a Array(UInt64), m Map(UInt64, Int64)";
    for t in ["src", "dst"] {
        db.exec(&format!(
            "CREATE TABLE {{db}}.{t} ({cols}) ENGINE = MergeTree ORDER BY tuple()"
        ))
        .await;
    }
    db.exec(&format!(
        "INSERT INTO {{db}}.src SELECT i64, u64, if(isFinite(f64), f64, 0), \
         if(isFinite(f32), f32, 0), dec, dt, dt64, a, m \
         FROM generateRandom('{cols}', 7, 8, 5) LIMIT 2000"
    ))
    .await;
    let rows: Vec<DynRow> = db
        .fetch_rows("SELECT * FROM {db}.src SETTINGS output_format_json_quote_64bit_integers = 0")
        .await;
    // u64 and i64 arrive as exact JSON integers.
    assert!(
        rows.iter()
            .any(|r| matches!(r.get("u64"), Some(Value::UInt(u)) if *u > 1 << 53))
    );
    // Decimal(9, 3) arrives as a float: exact for 9 digits.
    db.insert_rows("dst", &rows).await;
    db.assert_same_columns(
        "src",
        "dst",
        &["i64", "u64", "f64", "f32", "dec", "dt", "dt64", "a", "m"],
    )
    .await;
    assert_eq!(db.hash("dst").await, db.hash("src").await);
}
