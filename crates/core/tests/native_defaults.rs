//! Omitted columns get the server's DEFAULT semantics; MATERIALIZED/ALIAS columns, the insert
//! id column, unknown keys and the schema cache.

mod native_common;

use std::sync::Arc;

use chasync_core::{Catalog, ColumnType, Deduplication, DefaultKind, Error};
use chasync_core::{ColumnBatch, DynRow, Value};
use chasync_core::{ConversionErrorKind, NativeBatch, NativeOptions};
use native_common::TestDb;

fn row(json: &str) -> DynRow {
    DynRow::from_json_str(json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

const DEFAULTS_TABLE: &str = "(id UInt32, d DateTime DEFAULT now(), y UInt32, \
    x UInt32 DEFAULT y * 2, s String DEFAULT concat('id-', toString(id)), \
    n Nullable(UInt8) DEFAULT 7, plain UInt16, arr Array(String) DEFAULT ['a'], \
    m UInt64 MATERIALIZED id * 10, al UInt64 ALIAS id + 1, \
    agg AggregateFunction(sum, UInt64)) ENGINE = MergeTree ORDER BY id";

fn mixed_rows() -> Vec<DynRow> {
    vec![
        row(r#"{"id":1,"y":5}"#),
        row(
            r#"{"id":2,"y":5,"x":1,"s":"own","n":null,"plain":3,"arr":[],"d":"2020-01-01 00:00:00"}"#,
        ),
        // A top-level null in a non-Nullable column means "not given": the default applies.
        row(r#"{"id":3,"y":6,"x":null}"#),
        row(r#"{"id":4}"#),
        row(r#"{"y":100,"id":5,"s":null,"n":1}"#),
        row(r#"{}"#),
        row(r#"{"id":6,"y":1}"#),
    ]
}

const MIXED_WANT: &str = "\
0\t0\tid-0\t7\t0\t['a']\t0\t1\t1
1\t10\tid-1\t7\t0\t['a']\t10\t2\t1
2\t1\town\t\\N\t3\t[]\t20\t3\t1
3\t12\tid-3\t7\t0\t['a']\t30\t4\t1
4\t0\tid-4\t7\t0\t['a']\t40\t5\t1
5\t200\tid-5\t1\t0\t['a']\t50\t6\t1
6\t2\tid-6\t7\t0\t['a']\t60\t7\t1
";

const MIXED_QUERY: &str = "SELECT id, x, s, n, plain, arr, m, al, \
    if(id = 2, d = '2020-01-01 00:00:00', d > now() - 600) FROM {db}.t ORDER BY id";

#[tokio::test]
async fn omitted_columns_get_server_defaults_in_order() {
    let db = TestDb::new().await;
    db.exec(&format!("CREATE TABLE {{db}}.t {DEFAULTS_TABLE}"))
        .await;
    let schema = db.schema("t").await;
    assert_eq!(
        schema.column("m").unwrap().default_kind,
        DefaultKind::Materialized
    );
    assert_eq!(schema.column("x").unwrap().default_expression, "y * 2");
    assert!(matches!(
        schema.column("agg").unwrap().ty,
        ColumnType::Unsupported(_)
    ));
    let mut batch = NativeBatch::new(schema.clone(), NativeOptions::default());
    for r in mixed_rows() {
        batch.push_row(&r).unwrap();
    }
    // Consecutive rows of different shapes go to different blocks.
    assert_eq!(batch.blocks(), 7);
    let encoded = batch.finish(None);
    assert_eq!(
        encoded.columns,
        ["id", "d", "y", "x", "s", "n", "plain", "arr"]
    );
    db.insert(&schema, encoded).await.unwrap();
    assert_eq!(db.fetch_text(MIXED_QUERY, "TSV").await, MIXED_WANT);
}

#[tokio::test]
async fn omitted_columns_get_server_defaults_grouped() {
    let db = TestDb::new().await;
    db.exec(&format!("CREATE TABLE {{db}}.t {DEFAULTS_TABLE}"))
        .await;
    let mut rows = mixed_rows();
    rows.extend(mixed_rows().into_iter().map(|mut r| {
        // Same shapes again, other ids.
        for (k, v) in &mut r.fields {
            if k == "id"
                && let Value::UInt(id) = v
            {
                *id += 100;
            }
        }
        r
    }));
    let schema = db.schema("t").await;
    let mut batch = NativeBatch::new(
        schema.clone(),
        NativeOptions {
            preserve_row_order: false,
            ..NativeOptions::default()
        },
    );
    for r in &rows {
        batch.push_row(r).unwrap();
    }
    // Rows 1, 3 (x: null is "not given") and 6 share a shape, and the repeated rows reuse
    // the blocks of their shapes.
    assert_eq!(batch.blocks(), 5);
    db.insert(&schema, batch.finish(None)).await.unwrap();
    // The oracle: the server's own JSONEachRow reading of the same rows.
    db.exec(&format!("CREATE TABLE {{db}}.reference {DEFAULTS_TABLE}"))
        .await;
    let json: String = rows
        .iter()
        .map(|r| Value::Object(r.fields.clone()).to_json_string() + "\n")
        .collect();
    let mut ins = db.client.insert_formatted_with(format!(
        "INSERT INTO `{}`.reference FORMAT JSONEachRow",
        db.name
    ));
    ins.send(json.into()).await.unwrap();
    ins.end().await.unwrap();
    let q = |t: &str| {
        format!(
            "SELECT id, x, s, n, plain, arr, m, al, if(id % 100 = 2, \
             d = '2020-01-01 00:00:00', d > now() - 600) FROM {{db}}.{t} ORDER BY id, s"
        )
    };
    let got = db.fetch_text(&q("t"), "TSV").await;
    assert_eq!(got, db.fetch_text(&q("reference"), "TSV").await);
    assert_eq!(got.lines().count(), 14);
    assert!(got.starts_with(&MIXED_WANT[..MIXED_WANT.find('\n').unwrap()]));
}

#[tokio::test]
async fn columnar_nulls_are_omitted_values() {
    let db = TestDb::new().await;
    db.exec(&format!("CREATE TABLE {{db}}.t {DEFAULTS_TABLE}"))
        .await;
    let schema = db.schema("t").await;
    let mut batch = NativeBatch::new(schema.clone(), NativeOptions::default());
    let cols = ColumnBatch::new()
        .with_column(
            "id",
            vec![Value::UInt(10), Value::UInt(11), Value::UInt(12)],
        )
        .with_column("y", vec![Value::UInt(1), Value::UInt(1), Value::UInt(1)])
        .with_column("x", vec![Value::Null, Value::UInt(3), "bad".into()])
        .with_column("n", vec![Value::Null, Value::UInt(1), Value::Null]);
    let outcome = batch.push_columns(&cols).unwrap();
    assert_eq!(outcome.accepted, 2);
    assert_eq!(outcome.rejected.len(), 1);
    let e = &outcome.rejected[0];
    assert_eq!(
        (e.row, e.column.as_str(), e.value.as_str()),
        (2, "x", "\"bad\"")
    );
    db.insert(&schema, batch.finish(None)).await.unwrap();
    assert_eq!(
        db.fetch_text("SELECT id, x, n FROM {db}.t ORDER BY id", "TSV")
            .await,
        "10\t2\t\\N\n11\t3\t1\n"
    );
    // Whole-batch problems reject everything.
    let mut batch = NativeBatch::new(schema.clone(), NativeOptions::default());
    let ragged = ColumnBatch::new()
        .with_column("id", vec![Value::UInt(1)])
        .with_column("y", vec![]);
    assert_eq!(
        batch.push_columns(&ragged).unwrap_err().kind,
        ConversionErrorKind::ColumnLengths
    );
    let materialized = ColumnBatch::new().with_column("m", vec![Value::UInt(1)]);
    assert_eq!(
        batch.push_columns(&materialized).unwrap_err().kind,
        ConversionErrorKind::NotInsertable
    );
    let unknown = ColumnBatch::new().with_column("nope", vec![Value::UInt(1)]);
    assert_eq!(
        batch.push_columns(&unknown).unwrap_err().kind,
        ConversionErrorKind::UnknownColumn
    );
    assert!(batch.is_empty());
}

#[tokio::test]
async fn materialized_alias_and_unsupported_columns_cannot_be_set() {
    let db = TestDb::new().await;
    db.exec(&format!("CREATE TABLE {{db}}.t {DEFAULTS_TABLE}"))
        .await;
    let schema = db.schema("t").await;
    let mut batch = NativeBatch::new(schema, NativeOptions::default());
    for (i, (col, kind)) in [
        ("m", ConversionErrorKind::NotInsertable),
        ("al", ConversionErrorKind::NotInsertable),
        ("agg", ConversionErrorKind::UnsupportedType),
    ]
    .into_iter()
    .enumerate()
    {
        let err = batch
            .push_row(&DynRow::new().with("id", 1u32).with(col, 5u32))
            .unwrap_err();
        assert_eq!(err.kind, kind, "{err}");
        assert_eq!(err.column, col);
        assert_eq!(err.row, i);
    }
    assert!(batch.is_empty());
}

async fn insert_id_case(ty: &str) -> (String, String) {
    let db = TestDb::new().await;
    db.exec(&format!(
        "CREATE TABLE {{db}}.t (id UInt32, v String DEFAULT 'dv', _insert_id {ty}) \
         ENGINE = MergeTree ORDER BY id"
    ))
    .await;
    let schema = db.schema("t").await;
    let id = uuid::Uuid::new_v4();
    let mut batch = NativeBatch::new(schema.clone(), NativeOptions::default());
    for r in [r#"{"id":1}"#, r#"{"id":2,"v":"x"}"#, r#"{"id":3}"#] {
        batch.push_row(&row(r)).unwrap();
    }
    let err = batch
        .push_row(&row(
            r#"{"id":4,"_insert_id":"00000000-0000-0000-0000-000000000000"}"#,
        ))
        .unwrap_err();
    assert_eq!(err.kind, ConversionErrorKind::NotInsertable);
    let estimate = batch.encoded_bytes();
    let encoded = batch.finish(Some(id));
    assert_eq!(encoded.bytes.len(), estimate);
    assert_eq!(
        encoded.columns.last().map(String::as_str),
        Some("_insert_id")
    );
    db.insert(&schema, encoded).await.unwrap();
    // Without an id the column keeps its default.
    let mut batch = NativeBatch::new(schema.clone(), NativeOptions::default());
    batch.push_row(&row(r#"{"id":9}"#)).unwrap();
    db.insert(&schema, batch.finish(None)).await.unwrap();
    let got = db
        .fetch_text(
            "SELECT id, v, toString(_insert_id) FROM {db}.t ORDER BY id",
            "TSV",
        )
        .await;
    (got, id.to_string())
}

#[tokio::test]
async fn insert_id_fills_uuid_column() {
    let (got, id) = insert_id_case("UUID").await;
    assert_eq!(
        got,
        format!(
            "1\tdv\t{id}\n2\tx\t{id}\n3\tdv\t{id}\n9\tdv\t00000000-0000-0000-0000-000000000000\n"
        )
    );
}

#[tokio::test]
async fn insert_id_fills_string_column() {
    let (got, id) = insert_id_case("String").await;
    assert_eq!(
        got,
        format!("1\tdv\t{id}\n2\tx\t{id}\n3\tdv\t{id}\n9\tdv\t\n")
    );
    let (got, id) = insert_id_case("LowCardinality(String)").await;
    assert_eq!(
        got,
        format!("1\tdv\t{id}\n2\tx\t{id}\n3\tdv\t{id}\n9\tdv\t\n")
    );
}

#[tokio::test]
async fn unknown_keys_error_or_skip() {
    let db = TestDb::new().await;
    db.exec("CREATE TABLE {db}.t (id UInt32, v String) ENGINE = MergeTree ORDER BY id")
        .await;
    let schema = db.schema("t").await;
    let r = row(r#"{"id":1,"extra":{"a":1},"v":"x"}"#);
    let mut strict = NativeBatch::new(schema.clone(), NativeOptions::default());
    let err = strict.push_row(&r).unwrap_err();
    assert_eq!(err.kind, ConversionErrorKind::UnknownColumn);
    assert_eq!(err.column, "extra");
    assert!(err.to_string().contains("extra"));
    assert!(err.reason.contains(&format!("{}.t", db.name)), "{err}");
    assert!(strict.is_empty());
    let mut lenient = NativeBatch::new(
        schema.clone(),
        NativeOptions {
            skip_unknown_keys: true,
            ..NativeOptions::default()
        },
    );
    lenient.push_row(&r).unwrap();
    let cols = ColumnBatch::new()
        .with_column("id", vec![Value::UInt(2)])
        .with_column("other", vec![Value::UInt(5)]);
    assert_eq!(lenient.push_columns(&cols).unwrap().accepted, 1);
    db.insert(&schema, lenient.finish(None)).await.unwrap();
    assert_eq!(
        db.fetch_text("SELECT * FROM {db}.t ORDER BY id", "TSV")
            .await,
        "1\tx\n2\t\n"
    );
}

#[tokio::test]
async fn catalog_cache_refresh_engines_and_unknown_table() {
    let db = TestDb::new().await;
    db.exec("CREATE TABLE {db}.t (id UInt32) ENGINE = MergeTree ORDER BY id")
        .await;
    db.exec(
        "CREATE TABLE {db}.w (id UInt32, _insert_id String) ENGINE = MergeTree ORDER BY id \
         SETTINGS non_replicated_deduplication_window = 100, index_granularity = 8192",
    )
    .await;
    db.exec("CREATE TABLE {db}.m (id UInt32) ENGINE = Memory")
        .await;
    let cache = Catalog::with_client(db.client.clone(), std::time::Duration::from_secs(10));
    let s1 = cache.table(&db.name, "t").await.unwrap();
    let s2 = cache.table(&db.name, "t").await.unwrap();
    assert!(Arc::ptr_eq(&s1, &s2));
    assert_eq!(s1.server_timezone, db.scalar("SELECT timezone()").await);
    db.exec("ALTER TABLE {db}.t ADD COLUMN extra String").await;
    let r = row(r#"{"id":1,"extra":"e"}"#);
    let mut batch = NativeBatch::new(s1.clone(), NativeOptions::default());
    assert_eq!(
        batch.push_row(&r).unwrap_err().kind,
        ConversionErrorKind::UnknownColumn
    );
    // The cached schema is stale until refreshed.
    assert!(Arc::ptr_eq(&cache.table(&db.name, "t").await.unwrap(), &s1));
    let s3 = cache.refresh(&db.name, "t").await.unwrap();
    assert!(s3.column("extra").is_some());
    let mut batch = NativeBatch::new(s3.clone(), NativeOptions::default());
    batch.push_row(&r).unwrap();
    db.insert(&s3, batch.finish(None)).await.unwrap();
    assert_eq!(db.fetch_text("SELECT * FROM {db}.t", "TSV").await, "1\te\n");

    // What the engine needs to know of each table's engine.
    assert_eq!(s1.engine, "MergeTree");
    assert_eq!(s1.deduplication, Deduplication::Off);
    assert!(s1.insert_id().is_none());
    let w = cache.table(&db.name, "w").await.unwrap();
    assert_eq!(w.deduplication, Deduplication::Window(100));
    assert!(w.deduplication.is_on());
    assert_eq!(
        w.insert_id().map(|c| c.name),
        Some("_insert_id".to_string())
    );
    let m = cache.table(&db.name, "m").await.unwrap();
    assert_eq!(
        (m.engine.as_str(), m.deduplication),
        ("Memory", Deduplication::Off)
    );

    let err = cache.table(&db.name, "missing").await.unwrap_err();
    assert!(matches!(err, Error::UnknownTable { .. }));
    assert!(
        err.to_string().contains(&format!("{}.missing", db.name)),
        "{err}"
    );
}
