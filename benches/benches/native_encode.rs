//! Row → Native and column → Native encoding of dynamic values, for a narrow and a wide
//! schema, and of typed columns (`ColumnData::Typed`, what Arrow, numpy and lists of one
//! kind become in Python) for both (the wide one with typed lists and maps). No server needed: the schemas are built with
//! `TableSchema::from_columns`.

use std::hint::black_box;
use std::sync::Arc;

use chasync_core::{ColumnBatch, ColumnData, DynRow, Strings, TypedColumn, TypedData, Value};
use chasync_core::{ColumnDef, TableSchema};
use chasync_core::{NativeBatch, NativeOptions};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const ROWS: usize = 10_000;

/// A small deterministic generator (no dependency on rand's API).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 11
    }
}

fn narrow_schema() -> Arc<TableSchema> {
    Arc::new(TableSchema::from_columns(
        "bench",
        "narrow",
        vec![
            ColumnDef::new("id", "UInt64"),
            ColumnDef::new("ts", "DateTime"),
            ColumnDef::new("msg", "String"),
            ColumnDef::new("value", "Float64"),
        ],
    ))
}

fn narrow_rows() -> Vec<DynRow> {
    let mut g = Lcg(1);
    (0..ROWS)
        .map(|i| {
            DynRow::new()
                .with("id", i as u64)
                .with(
                    "ts",
                    format!(
                        "2024-05-{:02} 12:{:02}:{:02}",
                        1 + i % 28,
                        i % 60,
                        g.next() % 60
                    ),
                )
                .with(
                    "msg",
                    format!("event number {} of kind {}", i, g.next() % 17),
                )
                .with("value", (g.next() % 100_000) as f64 / 7.0)
        })
        .collect()
}

fn wide_schema() -> Arc<TableSchema> {
    Arc::new(TableSchema::from_columns(
        "bench",
        "wide",
        vec![
            ColumnDef::new("id", "UInt64"),
            ColumnDef::new("ts", "DateTime64(3, 'Europe/Berlin')"),
            ColumnDef::new("user", "LowCardinality(String)"),
            ColumnDef::new("country", "LowCardinality(Nullable(String))"),
            ColumnDef::new("score", "Nullable(Float64)"),
            ColumnDef::new("tags", "Array(String)"),
            ColumnDef::new("attrs", "Map(String, String)"),
            ColumnDef::new("amount", "Decimal(18, 4)"),
            ColumnDef::new("flag", "Bool"),
            ColumnDef::new("ip", "IPv4"),
            ColumnDef::new("uuid", "UUID"),
            ColumnDef::new(
                "level",
                "Enum8('debug' = 1, 'info' = 2, 'warn' = 3, 'error' = 4)",
            ),
            ColumnDef::new("counts", "Array(UInt32)"),
            ColumnDef::new("note", "Nullable(String)"),
            ColumnDef::new("day", "Date"),
        ],
    ))
}

fn wide_rows() -> Vec<DynRow> {
    let mut g = Lcg(2);
    let levels = ["debug", "info", "warn", "error"];
    let countries = ["DE", "FR", "US", "JP", "BR"];
    (0..ROWS)
        .map(|i| {
            let n = g.next();
            DynRow::new()
                .with("id", i as u64)
                .with(
                    "ts",
                    format!("2024-05-{:02}T10:11:12.{:03}Z", 1 + i % 28, n % 1000),
                )
                .with("user", format!("user{}", n % 500))
                .with(
                    "country",
                    if n.is_multiple_of(7) {
                        Value::Null
                    } else {
                        countries[(n % 5) as usize].into()
                    },
                )
                .with(
                    "score",
                    if n.is_multiple_of(3) {
                        Value::Null
                    } else {
                        Value::Float((n % 1000) as f64 / 3.0)
                    },
                )
                .with(
                    "tags",
                    Value::Array(
                        (0..n % 4)
                            .map(|t| Value::String(format!("tag{t}")))
                            .collect(),
                    ),
                )
                .with(
                    "attrs",
                    Value::Object(vec![
                        ("k1".into(), Value::String(format!("v{}", n % 13))),
                        ("k2".into(), "constant".into()),
                    ]),
                )
                .with("amount", format!("{}.{:04}", n % 100_000, n % 10_000))
                .with("flag", n.is_multiple_of(2))
                .with(
                    "ip",
                    format!("10.{}.{}.{}", n % 256, (n >> 8) % 256, (n >> 16) % 256),
                )
                .with(
                    "uuid",
                    format!(
                        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                        n as u32,
                        (n >> 32) as u16,
                        i % 4096,
                        n % 4096,
                        i
                    ),
                )
                .with("level", levels[(n % 4) as usize])
                .with(
                    "counts",
                    Value::Array((0..n % 5).map(|c| Value::UInt(c * 3)).collect()),
                )
                .with(
                    "note",
                    if n.is_multiple_of(2) {
                        Value::Null
                    } else {
                        Value::String("a note".into())
                    },
                )
                .with("day", format!("2024-06-{:02}", 1 + i % 30))
        })
        .collect()
}

fn to_columns(rows: &[DynRow]) -> ColumnBatch {
    let mut batch = ColumnBatch::new();
    for (name, _) in &rows[0].fields {
        batch.push_column(
            name.clone(),
            rows.iter().map(|r| r.get(name).cloned().unwrap()).collect(),
        );
    }
    batch
}

fn bench_schema(c: &mut Criterion, name: &str, schema: Arc<TableSchema>, rows: Vec<DynRow>) {
    let columns = to_columns(&rows);
    let mut group = c.benchmark_group(format!("native_encode/{name}"));
    group.throughput(Throughput::Elements(ROWS as u64));
    group.bench_function("rows", |b| {
        b.iter(|| {
            let mut batch = NativeBatch::new(schema.clone(), NativeOptions::default());
            for r in &rows {
                batch.push_row(r).unwrap();
            }
            black_box(batch.finish(None))
        })
    });
    group.bench_function("columns", |b| {
        b.iter(|| {
            let mut batch = NativeBatch::new(schema.clone(), NativeOptions::default());
            let outcome = batch.push_columns(&columns).unwrap();
            assert!(outcome.rejected.is_empty());
            black_box(batch.finish(None))
        })
    });
    group.finish();
}

/// The narrow rows as typed columns: `exact` in the columns' own types (u64 ids, u32
/// seconds, f64), otherwise as Arrow often has them (i64 ids into UInt64 with a range check,
/// millisecond timestamps into DateTime).
fn narrow_typed(rows: &[DynRow], exact: bool) -> ColumnBatch {
    let get = |r: &DynRow, k: &str| r.get(k).cloned().unwrap();
    let ids: Vec<u64> = rows
        .iter()
        .map(|r| match get(r, "id") {
            Value::UInt(u) => u,
            other => panic!("{other:?}"),
        })
        .collect();
    let secs: Vec<i64> = rows
        .iter()
        .map(|r| match get(r, "ts") {
            // "2024-05-DD 12:MM:SS" in UTC
            Value::String(s) => {
                let n = |a: usize| s[a..a + 2].parse::<i64>().unwrap();
                1_714_521_600 + (n(8) - 1) * 86_400 + n(11) * 3600 + n(14) * 60 + n(17)
            }
            other => panic!("{other:?}"),
        })
        .collect();
    let msgs: Strings = rows
        .iter()
        .map(|r| match get(r, "msg") {
            Value::String(s) => s,
            other => panic!("{other:?}"),
        })
        .collect();
    let values: Vec<f64> = rows
        .iter()
        .map(|r| match get(r, "value") {
            Value::Float(f) => f,
            other => panic!("{other:?}"),
        })
        .collect();
    let (id, ts): (ColumnData, ColumnData) = if exact {
        (
            ids.into(),
            secs.iter().map(|s| *s as u32).collect::<Vec<u32>>().into(),
        )
    } else {
        (
            ids.iter().map(|i| *i as i64).collect::<Vec<i64>>().into(),
            TypedColumn::new(TypedData::Timestamp {
                ticks: secs.iter().map(|s| s * 1000).collect(),
                precision: 3,
                zoned: true,
            })
            .into(),
        )
    };
    ColumnBatch::new()
        .with_data("id", id)
        .with_data("ts", ts)
        .with_data("msg", msgs)
        .with_data("value", values)
}

fn bench_typed(c: &mut Criterion) {
    let schema = narrow_schema();
    let rows = narrow_rows();
    let mut group = c.benchmark_group("native_encode/narrow");
    group.throughput(Throughput::Elements(ROWS as u64));
    for (name, exact) in [("typed", true), ("typed_converted", false)] {
        let columns = narrow_typed(&rows, exact);
        // The same bytes as the values.
        let mut a = NativeBatch::new(schema.clone(), NativeOptions::default());
        a.push_columns(&columns).unwrap();
        let mut b = NativeBatch::new(schema.clone(), NativeOptions::default());
        b.push_columns(&to_columns(&rows)).unwrap();
        assert_eq!(a.finish(None).bytes, b.finish(None).bytes);
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut batch = NativeBatch::new(schema.clone(), NativeOptions::default());
                let outcome = batch.push_columns(&columns).unwrap();
                assert!(outcome.rejected.is_empty());
                black_box(batch.finish(None))
            })
        });
    }
    group.finish();
}

/// A column of values as a typed column, as Arrow would give it: unsigned integers, floats,
/// booleans and strings flat, arrays as lists and objects as maps of typed items, NULL rows
/// in the null map.
fn typed_of(values: &[Value]) -> TypedColumn {
    let nulls: Vec<u8> = values.iter().map(|v| v.is_null() as u8).collect();
    let first = values.iter().find(|v| !v.is_null());
    let items = |each: &dyn Fn(&Value) -> Vec<Value>| {
        let mut offsets = vec![0u64];
        let mut items = Vec::new();
        for v in values {
            items.extend(each(v));
            offsets.push(items.len() as u64);
        }
        (offsets, items)
    };
    let data = match first {
        None | Some(Value::UInt(_)) => TypedData::UInt64(
            values
                .iter()
                .map(|v| if let Value::UInt(u) = v { *u } else { 0 })
                .collect(),
        ),
        Some(Value::Float(_)) => TypedData::Float64(
            values
                .iter()
                .map(|v| if let Value::Float(f) = v { *f } else { 0.0 })
                .collect(),
        ),
        Some(Value::Bool(_)) => {
            TypedData::Bool(values.iter().map(|v| *v == Value::Bool(true)).collect())
        }
        Some(Value::String(_)) => TypedData::String(
            values
                .iter()
                .map(|v| {
                    if let Value::String(s) = v {
                        s.as_str()
                    } else {
                        ""
                    }
                })
                .collect(),
        ),
        Some(Value::Array(_)) => {
            let (offsets, items) = items(&|v| match v {
                Value::Array(a) => a.clone(),
                _ => Vec::new(),
            });
            TypedData::List {
                offsets,
                values: Box::new(typed_of(&items)),
            }
        }
        Some(Value::Object(_)) => {
            let (offsets, keys) = items(&|v| match v {
                Value::Object(o) => o.iter().map(|(k, _)| Value::String(k.clone())).collect(),
                _ => Vec::new(),
            });
            let (_, vals) = items(&|v| match v {
                Value::Object(o) => o.iter().map(|(_, x)| x.clone()).collect(),
                _ => Vec::new(),
            });
            TypedData::Map {
                objects: false,
                offsets,
                keys: Box::new(typed_of(&keys)),
                values: Box::new(typed_of(&vals)),
            }
        }
        Some(other) => panic!("no typed column of {other:?}"),
    };
    TypedColumn::new(data).with_nulls(nulls)
}

/// The wide rows as typed columns (lists and maps included; the decimal, enum and date
/// columns are strings converted cell by cell).
fn bench_wide_typed(c: &mut Criterion) {
    let schema = wide_schema();
    let rows = wide_rows();
    let values = to_columns(&rows);
    let mut columns = ColumnBatch::new();
    for (name, data) in &values.columns {
        columns.push_data(name.clone(), typed_of(&data.to_values()));
    }
    // The same bytes as the values.
    let mut a = NativeBatch::new(schema.clone(), NativeOptions::default());
    a.push_columns(&columns).unwrap();
    let mut b = NativeBatch::new(schema.clone(), NativeOptions::default());
    b.push_columns(&values).unwrap();
    assert_eq!(a.finish(None).bytes, b.finish(None).bytes);
    let mut group = c.benchmark_group("native_encode/wide");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.bench_function("typed", |b| {
        b.iter(|| {
            let mut batch = NativeBatch::new(schema.clone(), NativeOptions::default());
            let outcome = batch.push_columns(&columns).unwrap();
            assert!(outcome.rejected.is_empty());
            black_box(batch.finish(None))
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    bench_schema(c, "narrow", narrow_schema(), narrow_rows());
    bench_typed(c);
    bench_schema(c, "wide", wide_schema(), wide_rows());
    bench_wide_typed(c);
}

criterion_group!(native_encode, benches);
criterion_main!(native_encode);
