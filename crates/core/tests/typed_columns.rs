//! Typed columns (`ColumnData::Typed`) through the whole pipeline against the real server:
//! every kind round-trips (checked with checksums the server computes), NULLs, lossless
//! conversions, range errors that dead-letter only their rows, and bisection of a typed
//! batch with a row the server refuses.

use chasync_testkit as common;

use chasync_core::NativeOptions;
use chasync_core::{ColumnBatch, ColumnData, Strings, TypedColumn, TypedData};
use chasync_core::{DeadLetterSpool, DynIngestor, EntryKind};
use common::TestDb;

const N: u64 = 10_000;

fn nulls(n: std::ops::Range<u64>, every: u64) -> Vec<u8> {
    n.map(|i| (i % every == 0) as u8).collect()
}

/// Rows `range` of the round-trip table, as typed columns.
fn typed_batch(range: std::ops::Range<u64>) -> ColumnBatch {
    let r = || range.clone();
    let col = |d: TypedData| ColumnData::Typed(TypedColumn::new(d));
    ColumnBatch::new()
        .with_data("id", r().collect::<Vec<u64>>())
        .with_data("u8", r().map(|i| (i % 256) as u8).collect::<Vec<u8>>())
        .with_data(
            "i16",
            r().map(|i| (i % 1000) as i16 - 500).collect::<Vec<i16>>(),
        )
        .with_data("u32", r().map(|i| (i * 7) as u32).collect::<Vec<u32>>())
        .with_data("i64", r().map(|i| i as i64 * -3).collect::<Vec<i64>>())
        .with_data("u64", r().map(|i| i * 1_000_003).collect::<Vec<u64>>())
        .with_data(
            "f32",
            r().map(|i| (i as f64 / 4.0) as f32).collect::<Vec<f32>>(),
        )
        .with_data("f64", r().map(|i| i as f64 * 0.5).collect::<Vec<f64>>())
        .with_data("b", r().map(|i| i % 3 == 0).collect::<Vec<bool>>())
        .with_data("s", r().map(|i| format!("s{i}")).collect::<Strings>())
        .with_data(
            "fs",
            r().map(|i| (i % 1000).to_string()).collect::<Strings>(),
        )
        .with_data(
            "lc",
            r().map(|i| format!("k{}", i % 10)).collect::<Strings>(),
        )
        .with_data(
            "lcn",
            TypedColumn::from(r().map(|i| format!("k{}", i % 10)).collect::<Strings>())
                .with_nulls(nulls(r(), 4)),
        )
        .with_data(
            "ns",
            TypedColumn::from(r().map(|i| format!("n{i}")).collect::<Strings>())
                .with_nulls(nulls(r(), 5)),
        )
        .with_data(
            "ni",
            // Int64 data into Nullable(Int32): converted, NULLs kept.
            TypedColumn::from(r().map(|i| i as i64 - 5000).collect::<Vec<i64>>())
                .with_nulls(nulls(r(), 7)),
        )
        .with_data(
            "dt",
            col(TypedData::Timestamp {
                ticks: r().map(|i| 1_700_000_000 + i as i64).collect(),
                precision: 0,
                zoned: true,
            }),
        )
        .with_data(
            "dt64",
            col(TypedData::Timestamp {
                ticks: r().map(|i| 1_700_000_000_000 + i as i64 * 1001).collect(),
                precision: 3,
                zoned: false,
            }),
        )
        .with_data(
            "dt64us",
            // Microseconds into DateTime64(3): truncated towards the past.
            col(TypedData::Timestamp {
                ticks: r()
                    .map(|i| 1_700_000_000_000_000 + i as i64 * 1_000_999)
                    .collect(),
                precision: 6,
                zoned: true,
            }),
        )
        .with_data(
            "dtt",
            // Wall-clock seconds read in the column's zone (Asia/Tokyo, UTC+9).
            col(TypedData::Timestamp {
                ticks: r().map(|i| 1_700_000_000 + i as i64).collect(),
                precision: 0,
                zoned: false,
            }),
        )
        .with_data(
            "d",
            col(TypedData::Date32(
                r().map(|i| 18_000 + (i % 1000) as i32).collect(),
            )),
        )
        .with_data(
            "d32",
            col(TypedData::Date32(
                r().map(|i| (i % 1000) as i32 - 20_000).collect(),
            )),
        )
        .with_data(
            "conv",
            // Int64 data into UInt32: range-checked, all fit.
            r().map(|i| i as i64 * 3).collect::<Vec<i64>>(),
        )
        .with_data(
            "bin",
            col(TypedData::Binary(
                r().map(|i| vec![(i % 256) as u8, 0xff]).collect(),
            )),
        )
}

/// (column expression on the table, the same from `number`)
const CHECKS: &[(&str, &str)] = &[
    ("u8", "toUInt8(number % 256)"),
    ("i16", "toInt16(toInt64(number % 1000) - 500)"),
    ("u32", "toUInt32(number * 7)"),
    ("i64", "toInt64(number) * toInt64(-3)"),
    ("u64", "number * 1000003"),
    ("f32", "toFloat32(number / 4)"),
    ("f64", "number * 0.5"),
    ("b", "toBool(number % 3 = 0)"),
    ("s", "concat('s', toString(number))"),
    (
        "toString(fs)",
        "toString(toFixedString(toString(number % 1000), 4))",
    ),
    ("toString(lc)", "concat('k', toString(number % 10))"),
    (
        "ifNull(toString(lcn), 'null')",
        "if(number % 4 = 0, 'null', concat('k', toString(number % 10)))",
    ),
    (
        "ifNull(ns, 'null')",
        "if(number % 5 = 0, 'null', concat('n', toString(number)))",
    ),
    (
        "ifNull(toString(ni), 'null')",
        "if(number % 7 = 0, 'null', toString(toInt64(number) - 5000))",
    ),
    ("toUnixTimestamp(dt)", "toUInt32(1700000000 + number)"),
    (
        "toUnixTimestamp64Milli(dt64)",
        "toInt64(1700000000000 + number * 1001)",
    ),
    (
        "toUnixTimestamp64Milli(dt64us)",
        "toInt64(intDiv(1700000000000000 + number * 1000999, 1000))",
    ),
    (
        "toUnixTimestamp(dtt)",
        "toUInt32(1700000000 + number - 9 * 3600)",
    ),
    ("toUInt16(d)", "toUInt16(18000 + number % 1000)"),
    ("toInt32(d32)", "toInt32(toInt64(number % 1000) - 20000)"),
    ("conv", "toUInt32(number * 3)"),
    ("hex(bin)", "concat(hex(toUInt8(number % 256)), 'FF')"),
];

#[tokio::test]
async fn every_typed_kind_round_trips() {
    let db = TestDb::new("typed").await;
    db.exec(
        "CREATE TABLE t (id UInt64, u8 UInt8, i16 Int16, u32 UInt32, i64 Int64, u64 UInt64, \
         f32 Float32, f64 Float64, b Bool, s String, fs FixedString(4), \
         lc LowCardinality(String), lcn LowCardinality(Nullable(String)), \
         ns Nullable(String), ni Nullable(Int32), dt DateTime('UTC'), \
         dt64 DateTime64(3, 'UTC'), dt64us DateTime64(3, 'UTC'), dtt DateTime('Asia/Tokyo'), \
         d Date, d32 Date32, conv UInt32, bin String, _insert_id UUID) \
         ENGINE = MergeTree ORDER BY id SETTINGS non_replicated_deduplication_window = 1000",
    )
    .await;
    let dlq = tempfile::tempdir().unwrap();
    let mut c = db.config("t", dlq.path());
    c.batching.max_rows = 4000;
    let ing = DynIngestor::start_dynamic(c, NativeOptions::default())
        .await
        .unwrap();
    let h = ing.handle();
    for lo in (0..N).step_by(2500) {
        h.send(typed_batch(lo..lo + 2500).into()).await.unwrap();
    }
    h.flush().await.unwrap();
    let stats = ing.shutdown().await.unwrap();
    assert_eq!(stats.rows_committed, N, "{stats:?}");
    assert_eq!(stats.rows_rejected, 0, "{stats:?}");
    assert_eq!(db.u64("SELECT count() FROM t").await, N);
    assert_eq!(
        db.u64("SELECT count() FROM t WHERE id < 10000").await,
        db.u64("SELECT uniqExact(id) FROM t").await
    );
    for (col, want) in CHECKS {
        let got = db
            .u64(&format!("SELECT sum(cityHash64(id, {col})) FROM t"))
            .await;
        let expected = db
            .u64(&format!(
                "SELECT sum(cityHash64(number, {want})) FROM numbers({N})"
            ))
            .await;
        assert_eq!(got, expected, "column {col}");
    }
}

#[tokio::test]
async fn values_out_of_range_dead_letter_only_their_rows() {
    let db = TestDb::new("typedrange").await;
    db.exec(
        "CREATE TABLE t (id UInt64, small UInt8, ts DateTime('UTC'), name String, \
         _insert_id UUID) ENGINE = MergeTree ORDER BY id",
    )
    .await;
    let dlq = tempfile::tempdir().unwrap();
    let ing = DynIngestor::start_dynamic(db.config("t", dlq.path()), NativeOptions::default())
        .await
        .unwrap();
    let h = ing.handle();
    let n = 5000u64;
    // Row 100: 300 does not fit UInt8; row 2000: -1 does not; row 4000: a time before 1970.
    let small: Vec<i64> = (0..n)
        .map(|i| match i {
            100 => 300,
            2000 => -1,
            _ => (i % 200) as i64,
        })
        .collect();
    let ts: Vec<i64> = (0..n)
        .map(|i| {
            if i == 4000 {
                -86_400_000
            } else {
                1_700_000_000_000 + i as i64
            }
        })
        .collect();
    let batch = ColumnBatch::new()
        .with_data("id", (0..n).collect::<Vec<u64>>())
        .with_data("small", small)
        .with_data(
            "ts",
            TypedColumn::new(TypedData::Timestamp {
                ticks: ts,
                precision: 3,
                zoned: true,
            }),
        )
        .with_data("name", (0..n).map(|i| format!("n{i}")).collect::<Strings>());
    h.send(batch.into()).await.unwrap();
    let err = h.flush().await.unwrap_err();
    assert!(
        matches!(err, chasync_core::Error::DeadLettered { rows: 3, .. }),
        "{err}"
    );
    let stats = ing.shutdown().await.unwrap();
    assert_eq!(stats.rows_committed, n - 3);
    assert_eq!(stats.rows_rejected, 3);
    assert_eq!(
        db.u64("SELECT sum(cityHash64(id, small, toUnixTimestamp(ts), name)) FROM t")
            .await,
        db.u64(
            "SELECT sum(cityHash64(number, toUInt8(number % 200), \
             toUInt32(1700000000 + intDiv(number, 1000)), concat('n', toString(number)))) \
             FROM numbers(5000) WHERE number NOT IN (100, 2000, 4000)"
        )
        .await
    );
    let spool = DeadLetterSpool::new(dlq.path());
    let entries = spool.list().unwrap();
    assert!(entries.iter().all(|e| e.kind == EntryKind::Rejected));
    let text: String = entries
        .iter()
        .map(|e| String::from_utf8_lossy(&spool.payload(e).unwrap()).into_owned())
        .collect();
    assert_eq!(text.lines().count(), 3, "{text}");
    for want in [
        "row 100, column `small`: cannot insert value 300 as UInt8",
        "row 2000, column `small`: cannot insert value -1 as UInt8",
        "row 4000, column `ts`",
        "DateTime('UTC')",
        "n100",
        "\\\"id\\\":2000",
    ] {
        assert!(text.contains(want), "{want} not in {text}");
    }
}

#[tokio::test]
async fn a_typed_batch_with_a_row_the_server_refuses_is_bisected() {
    let db = TestDb::new("typedpoison").await;
    db.exec(
        "CREATE TABLE t (id UInt64, v Int64, name LowCardinality(String), _insert_id UUID, \
         CONSTRAINT positive CHECK v >= 0) \
         ENGINE = MergeTree ORDER BY id SETTINGS non_replicated_deduplication_window = 1000",
    )
    .await;
    let dlq = tempfile::tempdir().unwrap();
    let mut c = db.config("t", dlq.path());
    c.batching.max_rows = 8000;
    let ing = DynIngestor::start_dynamic(c, NativeOptions::default())
        .await
        .unwrap();
    let h = ing.handle();
    let poison = [13u64, 4999, 12_345];
    for lo in (0..20_000u64).step_by(4000) {
        let ids: Vec<u64> = (lo..lo + 4000).collect();
        let batch = ColumnBatch::new()
            .with_data("id", ids.clone())
            .with_data(
                "v",
                ids.iter()
                    .map(|i| if poison.contains(i) { -1 } else { *i as i64 })
                    .collect::<Vec<i64>>(),
            )
            .with_data(
                "name",
                ids.iter()
                    .map(|i| format!("k{}", i % 7))
                    .collect::<Strings>(),
            );
        h.send(batch.into()).await.unwrap();
    }
    let err = h.flush().await.unwrap_err();
    assert!(
        matches!(err, chasync_core::Error::DeadLettered { rows: 3, .. }),
        "{err}"
    );
    let stats = ing.shutdown().await.unwrap();
    assert_eq!(stats.rows_committed, 20_000 - 3, "{stats:?}");
    assert!(stats.batches_split > 0);
    assert_eq!(
        db.u64("SELECT sum(cityHash64(id, v, toString(name))) FROM t")
            .await,
        db.u64(
            "SELECT sum(cityHash64(number, toInt64(number), concat('k', toString(number % 7)))) \
             FROM numbers(20000) WHERE number NOT IN (13, 4999, 12345)"
        )
        .await
    );
    let spool = DeadLetterSpool::new(dlq.path());
    let entries = spool.list().unwrap();
    assert_eq!(entries.len(), 3);
    for e in &entries {
        assert_eq!(e.kind, EntryKind::Batch);
        assert_eq!(e.rows, 1);
        assert_eq!(e.code, Some(469), "{}", e.error);
    }
    // The single-row entries replay to exactly their rows once the constraint is gone.
    db.exec("ALTER TABLE t DROP CONSTRAINT positive").await;
    let report = chasync_core::replay(&db.config("t", dlq.path()), &spool)
        .await
        .unwrap();
    assert_eq!(report.rows, 3);
    assert_eq!(
        db.strings("SELECT concat(toString(id), name) FROM t WHERE v = -1 ORDER BY id")
            .await,
        vec!["13k6", "4999k1", "12345k4"]
    );
}

/// A list column of rows `rows`, its items made a typed column by `items`.
fn list<T>(rows: Vec<Vec<T>>, items: impl FnOnce(Vec<T>) -> TypedColumn) -> TypedColumn {
    let mut offsets = vec![0u64];
    for r in &rows {
        offsets.push(offsets.last().unwrap() + r.len() as u64);
    }
    TypedColumn::new(TypedData::List {
        offsets,
        values: Box::new(items(rows.into_iter().flatten().collect())),
    })
}

/// Rows `range` of the nested table as typed lists and maps (some items NULL, many lists
/// empty); `poison` rows get a negative `v` (refused by the table's constraint).
fn nested_batch(range: std::ops::Range<u64>, poison: &[u64]) -> ColumnBatch {
    let r = || range.clone();
    let strings = |v: Vec<String>| TypedColumn::from(v.iter().collect::<Strings>());
    let attrs: Vec<Vec<(String, u64)>> = r()
        .map(|i| {
            let mut m = vec![("a".to_owned(), i % 10)];
            if i % 2 == 1 {
                m.push(("b".to_owned(), i % 100));
            }
            m
        })
        .collect();
    let mut offsets = vec![0u64];
    for m in &attrs {
        offsets.push(offsets.last().unwrap() + m.len() as u64);
    }
    let pairs: Vec<(String, u64)> = attrs.into_iter().flatten().collect();
    let ni: Vec<Vec<Option<i64>>> = r()
        .map(|i| {
            (0..i % 3)
                .map(|k| ((i + k) % 4 != 0).then_some(k as i64 - i as i64))
                .collect()
        })
        .collect();
    ColumnBatch::new()
        .with_data("id", r().collect::<Vec<u64>>())
        .with_data(
            "v",
            r().map(|i| if poison.contains(&i) { -1 } else { i as i64 })
                .collect::<Vec<i64>>(),
        )
        .with_data(
            "tags",
            list(
                r().map(|i| (0..i % 4).map(|k| format!("t{}", (i + k) % 20)).collect())
                    .collect(),
                strings,
            ),
        )
        .with_data(
            "counts",
            list(
                r().map(|i| (0..i % 3).map(|k| (i * (k + 1) % 1000) as u32).collect())
                    .collect(),
                TypedColumn::from,
            ),
        )
        .with_data(
            "attrs",
            TypedColumn::new(TypedData::Map {
                objects: false,
                offsets,
                keys: Box::new(strings(pairs.iter().map(|p| p.0.clone()).collect())),
                values: Box::new(pairs.iter().map(|p| p.1).collect::<Vec<u64>>().into()),
            }),
        )
        .with_data(
            "ni",
            list(ni, |items| {
                let nulls = items.iter().map(|x| x.is_none() as u8).collect();
                TypedColumn::from(
                    items
                        .into_iter()
                        .map(|x| x.unwrap_or(0))
                        .collect::<Vec<_>>(),
                )
                .with_nulls(nulls)
            }),
        )
        .with_data(
            "nested",
            list(
                r().map(|i| {
                    (0..i % 3)
                        .map(|k| (0..k).map(|x| x as u8).collect())
                        .collect()
                })
                .collect(),
                |inner: Vec<Vec<u8>>| list(inner, TypedColumn::from),
            ),
        )
}

/// Typed lists and maps through the whole pipeline: they land as the server computes the same
/// values, also when a batch with rows the server refuses is bisected (the halves re-encoded
/// from slices of the nested columns).
#[tokio::test]
async fn typed_lists_and_maps_round_trip_and_bisect() {
    let db = TestDb::new("typednested").await;
    db.exec(
        "CREATE TABLE t (id UInt64, v Int64, tags Array(String), counts Array(UInt32), \
         attrs Map(LowCardinality(String), UInt64), ni Array(Nullable(Int64)), \
         nested Array(Array(UInt8)), _insert_id UUID, CONSTRAINT positive CHECK v >= 0) \
         ENGINE = MergeTree ORDER BY id SETTINGS non_replicated_deduplication_window = 1000",
    )
    .await;
    let dlq = tempfile::tempdir().unwrap();
    let mut c = db.config("t", dlq.path());
    c.batching.max_rows = 4000;
    let ing = DynIngestor::start_dynamic(c, NativeOptions::default())
        .await
        .unwrap();
    let h = ing.handle();
    let poison = [7u64, 5001];
    for lo in (0..N).step_by(2500) {
        h.send(nested_batch(lo..lo + 2500, &poison).into())
            .await
            .unwrap();
    }
    let err = h.flush().await.unwrap_err();
    assert!(
        matches!(err, chasync_core::Error::DeadLettered { rows: 2, .. }),
        "{err}"
    );
    let stats = ing.shutdown().await.unwrap();
    assert_eq!(stats.rows_committed, N - 2, "{stats:?}");
    assert!(stats.batches_split > 0);
    let got = db
        .u64("SELECT sum(cityHash64(id, v, tags, counts, CAST(attrs, 'Map(String, UInt64)'), ni, nested)) FROM t")
        .await;
    let want = db
        .u64(&format!(
            "SELECT sum(cityHash64(number, toInt64(number), \
             CAST(arrayMap(k -> concat('t', toString((number + k) % 20)), range(number % 4)), 'Array(String)'), \
             CAST(arrayMap(k -> number * (k + 1) % 1000, range(number % 3)), 'Array(UInt32)'), \
             CAST(if(number % 2 = 1, map('a', number % 10, 'b', number % 100), map('a', number % 10)), 'Map(String, UInt64)'), \
             CAST(arrayMap(k -> if((number + k) % 4 = 0, NULL, toInt64(k) - toInt64(number)), range(number % 3)), 'Array(Nullable(Int64))'), \
             CAST(arrayMap(k -> range(k), range(number % 3)), 'Array(Array(UInt8))'))) \
             FROM numbers({N}) WHERE number NOT IN (7, 5001)"
        ))
        .await;
    assert_eq!(got, want);
    assert_eq!(
        db.u64("SELECT count() FROM t WHERE length(tags) = 0 AND length(nested) = 0")
            .await,
        db.u64(&format!(
            "SELECT count() FROM numbers({N}) WHERE number % 12 = 0 AND number NOT IN (7, 5001)"
        ))
        .await
    );
}
