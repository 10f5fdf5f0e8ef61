//! Shared pieces of the chasync benchmarks: the narrow benchmark row and its table.

/// The narrow benchmark row: `(id UInt64, ts DateTime, name String, value Float64)`.
#[derive(clickhouse::Row, serde::Serialize, Clone, Debug)]
pub struct Narrow {
    /// Row id.
    pub id: u64,
    /// Seconds since the epoch (a `DateTime`).
    pub ts: u32,
    /// A short string with repeats.
    pub name: String,
    /// A float.
    pub value: f64,
}

/// Row `id` of the benchmark data (deterministic, so what landed can be checked).
pub fn narrow_row(id: u64) -> Narrow {
    Narrow {
        id,
        ts: 1_700_000_000 + (id % 86_400) as u32,
        name: format!("user-{}", id % 10_000),
        value: (id % 1000) as f64 * 0.25,
    }
}

/// The benchmark table (MergeTree that deduplicates by token, as chasync recommends).
pub const NARROW_DDL: &str = "CREATE TABLE chasync_bench.narrow (id UInt64, ts DateTime, \
     name String, value Float64) ENGINE = MergeTree ORDER BY id \
     SETTINGS non_replicated_deduplication_window = 1000";
