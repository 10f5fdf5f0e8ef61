//! Encoding typed rows to RowBinary, and the batcher that seals them into batches.

use std::hint::black_box;
use std::time::Duration;

use chasync_core::EncodedRows;
use chasync_core::InsertIdColumn;
use chasync_core::{BatchEncoder, RowBinary, StreamId};
use chasync_core::{Batcher, Limits, Target};
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

criterion_group!(benches, encode, batching);
criterion_main!(benches);
