//! Encoding typed rows to RowBinary, NDJSON lines converted to RowBinary, and the batcher
//! that seals them into batches.

use std::hint::black_box;
use std::time::Duration;

use chasync_core::EncodedRows;
use chasync_core::InsertIdColumn;
use chasync_core::{BatchEncoder, RowBinary, StreamId};
use chasync_core::{Batcher, Limits, Target};
use chasync_core::{ColumnDef, JsonRowBinary, JsonRowBinaryOptions, TableSchema};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

#[derive(clickhouse::Row, serde::Serialize, Clone)]
struct Narrow {
    id: u64,
    ts: u32,
    name: String,
    value: f64,
}

fn rows(n: usize) -> Vec<Narrow> {
    (0..n as u64)
        .map(|id| Narrow {
            id,
            ts: 1_700_000_000 + id as u32,
            name: format!("user-{}", id % 10_000),
            value: id as f64 * 0.25,
        })
        .collect()
}

const N: usize = 100_000;

fn encode(c: &mut Criterion) {
    let data = rows(N);
    let mut g = c.benchmark_group("rowbinary");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("narrow_100k", |b| {
        let mut enc = RowBinary::<Narrow>::new(None);
        b.iter(|| {
            enc.begin(uuid::Uuid::nil());
            let mut rejected = Vec::new();
            for r in &data {
                let _ = enc.push(r.clone(), &mut rejected);
            }
            assert!(rejected.is_empty());
            black_box(enc.finish())
        })
    });
    g.bench_function("narrow_100k_with_insert_id", |b| {
        let mut enc = RowBinary::<Narrow>::new(InsertIdColumn::from_column("_insert_id", "UUID"));
        b.iter(|| {
            enc.begin(uuid::Uuid::nil());
            let mut rejected = Vec::new();
            for r in &data {
                let _ = enc.push(r.clone(), &mut rejected);
            }
            assert!(rejected.is_empty());
            black_box(enc.finish())
        })
    });
    // A Writer's path: each row encoded on the producer's side into chunks of 4096 rows
    // (the row dropped there), then the chunks appended to the batch with the batch id
    // written over each row's placeholder `_insert_id`.
    g.bench_function("narrow_100k_with_insert_id_producer_side", |b| {
        let mut enc = RowBinary::<Narrow>::new(InsertIdColumn::from_column("_insert_id", "UUID"));
        let mut row_enc = enc.row_encoder().expect("RowBinary encodes rows ahead");
        b.iter(|| {
            enc.begin(uuid::Uuid::nil());
            for part in data.chunks(4096) {
                let mut chunk = EncodedRows::default();
                for r in part {
                    chunk.push(&mut *row_enc, &r.clone()).unwrap();
                }
                enc.push_encoded(&chunk, 0..chunk.rows());
            }
            black_box(enc.finish())
        })
    });
    g.finish();
}

fn batching(c: &mut Criterion) {
    let data = rows(N);
    let mut g = c.benchmark_group("batcher");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("narrow_100k_in_10k_batches", |b| {
        let mut batcher = Batcher::new(
            RowBinary::<Narrow>::new(None),
            Limits {
                max_rows: 10_000,
                max_bytes: 64 << 20,
                linger: Duration::from_secs(1),
            },
            Target::new("db", "t", StreamId::named("bench")),
        );
        b.iter(|| {
            let mut sealed = 0;
            for r in &data {
                if batcher.push(r.clone()).0.is_some() {
                    sealed += 1;
                }
            }
            black_box(sealed)
        })
    });
    g.finish();
}

/// Narrow NDJSON lines as a logger writes them (keys in column order), and lines with date,
/// date-time and UUID texts, converted to `RowBinaryWithDefaults` by [`JsonRowBinary`].
fn json_rowbinary(c: &mut Criterion) {
    let narrow = TableSchema::from_columns(
        "bench",
        "narrow",
        vec![
            ColumnDef::new("id", "UInt64"),
            ColumnDef::new("ts", "DateTime"),
            ColumnDef::new("name", "String"),
            ColumnDef::new("value", "Float64"),
        ],
    );
    let narrow_lines: Vec<bytes::Bytes> = (0..N as u64)
        .map(|id| {
            format!(
                r#"{{"id":{id},"ts":{},"name":"user-{}","value":{}}}"#,
                1_700_000_000 + id,
                id % 10_000,
                id as f64 * 0.25
            )
            .into()
        })
        .collect();
    let texts = TableSchema::from_columns(
        "bench",
        "texts",
        vec![
            ColumnDef::new("day", "Date"),
            ColumnDef::new("at", "DateTime64(3, 'UTC')"),
            ColumnDef::new("local", "DateTime('Europe/Berlin')"),
            ColumnDef::new("id", "UUID"),
            ColumnDef::new("level", "LowCardinality(String)"),
            ColumnDef::new("tags", "Array(String)"),
        ],
    );
    let text_lines: Vec<bytes::Bytes> = (0..N as u64)
        .map(|i| {
            format!(
                r#"{{"day":"2024-05-{:02}","at":"2024-05-{:02} 12:{:02}:{:02}.{:03}","local":"2024-05-{:02} 08:{:02}:00","id":"{}","level":"{}","tags":["a","b{}"]}}"#,
                1 + i % 28,
                1 + i % 28,
                i % 60,
                (i / 60) % 60,
                i % 1000,
                1 + i % 28,
                i % 60,
                uuid::Uuid::from_u128(u128::from(i) * 0x9e37_79b9_7f4a_7c15),
                ["info", "warn", "error"][(i % 3) as usize],
                i % 7
            )
            .into()
        })
        .collect();
    let mut g = c.benchmark_group("json_rowbinary");
    g.throughput(Throughput::Elements(N as u64));
    for (name, schema, lines) in [
        ("narrow_100k", &narrow, &narrow_lines),
        ("texts_100k", &texts, &text_lines),
    ] {
        g.bench_function(name, |b| {
            let mut enc = JsonRowBinary::new(schema, None, JsonRowBinaryOptions::default())
                .expect("every column converts");
            b.iter(|| {
                enc.begin(uuid::Uuid::nil());
                let mut rejected = Vec::new();
                for line in lines {
                    let _ = enc.push(line.clone(), &mut rejected);
                }
                assert!(rejected.is_empty(), "{:?}", rejected.first());
                black_box(enc.finish())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, encode, batching, json_rowbinary);
criterion_main!(benches);
