//! Shared pieces of the chasync benchmarks: the benchmark rows and their tables, and a
//! counting allocator for the end-to-end harness ([`heap`]).

pub mod heap;

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

/// The wide benchmark table: a realistic event row of 16 columns (LowCardinality, Nullable,
/// Array, Map, DateTime64, UUID, IPv4, Bool).
pub const WIDE_DDL: &str = "CREATE TABLE chasync_bench.wide (id UInt64, \
     ts DateTime64(3, 'UTC'), kind LowCardinality(String), country LowCardinality(String), \
     user String, url String, referrer Nullable(String), score Nullable(Float64), \
     tags Array(String), counts Array(UInt32), attrs Map(String, UInt64), status UInt8, \
     value Float64, ok Bool, uid UUID, ip IPv4) ENGINE = MergeTree ORDER BY id \
     SETTINGS non_replicated_deduplication_window = 1000";

/// The wide benchmark row, typed for RowBinary (the `clickhouse` crate's serde conventions).
#[derive(clickhouse::Row, serde::Serialize, Clone, Debug)]
pub struct Wide {
    /// Row id.
    pub id: u64,
    /// Milliseconds since the epoch (a `DateTime64(3, 'UTC')`).
    pub ts: i64,
    /// One of five event kinds.
    pub kind: String,
    /// One of eight country codes.
    pub country: String,
    /// `user-N`, 50,000 distinct.
    pub user: String,
    /// A path with a query string.
    pub url: String,
    /// NULL for every third row.
    pub referrer: Option<String>,
    /// NULL for every fifth row.
    pub score: Option<f64>,
    /// 0 to 3 tags.
    pub tags: Vec<String>,
    /// 0 to 2 numbers.
    pub counts: Vec<u32>,
    /// One or two entries, keys in order.
    pub attrs: std::collections::BTreeMap<String, u64>,
    /// A small status code.
    pub status: u8,
    /// A float.
    pub value: f64,
    /// A flag.
    pub ok: bool,
    /// A UUID derived from the id.
    #[serde(with = "clickhouse::serde::uuid")]
    pub uid: uuid::Uuid,
    /// `10.x.y.z` derived from the id.
    #[serde(with = "clickhouse::serde::ipv4")]
    pub ip: std::net::Ipv4Addr,
}

const KINDS: [&str; 5] = ["view", "click", "purchase", "signup", "logout"];
const COUNTRIES: [&str; 8] = ["DE", "FR", "US", "JP", "BR", "IN", "GB", "ES"];

/// Row `id` of the wide benchmark data (deterministic; every contender gets these rows, the
/// Python ones through [`wide_json`]'s NDJSON).
pub fn wide_row(id: u64) -> Wide {
    let i = id;
    let mut attrs = std::collections::BTreeMap::new();
    attrs.insert("a".to_string(), i % 10);
    if i % 2 == 1 {
        attrs.insert("b".to_string(), i % 100);
    }
    Wide {
        id,
        ts: 1_700_000_000_000 + (i as i64) * 37,
        kind: KINDS[(i % 5) as usize].to_string(),
        country: COUNTRIES[((i / 7) % 8) as usize].to_string(),
        user: format!("user-{}", i % 50_000),
        url: format!("/product/{}/item?ref={}", i % 1000, i % 97),
        referrer: (!i.is_multiple_of(3)).then(|| format!("/from/{}", i % 13)),
        score: (!i.is_multiple_of(5)).then_some((i % 1000) as f64 * 0.5),
        tags: (0..i % 4).map(|k| format!("tag{}", (i + k) % 20)).collect(),
        counts: (0..i % 3).map(|k| ((i * (k + 1)) % 1000) as u32).collect(),
        attrs,
        status: (i % 6) as u8,
        value: (i % 100_000) as f64 * 0.25,
        ok: !i.is_multiple_of(3),
        uid: uuid::Uuid::from_u128((0x4000u128 << 64) | (0x8000u128 << 48) | i as u128),
        ip: std::net::Ipv4Addr::from(0x0A00_0000 | (i as u32 & 0x00FF_FFFF)),
    }
}

/// `YYYY-MM-DD hh:mm:ss.mmm` (UTC) of milliseconds since the epoch.
pub fn format_ts_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{milli:03}",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// One NDJSON line (with its newline) of a narrow row: `ts` as seconds since the epoch.
pub fn narrow_json(r: &Narrow, out: &mut String) {
    use std::fmt::Write;
    let _ = writeln!(
        out,
        r#"{{"id":{},"ts":{},"name":"{}","value":{:?}}}"#,
        r.id, r.ts, r.name, r.value
    );
}

/// One NDJSON line (with its newline) of a wide row: `ts` as `YYYY-MM-DD hh:mm:ss.mmm` (UTC),
/// the UUID and the IP as text, `attrs` as an object, NULLs as `null`. (The strings of the
/// generator need no escaping.)
pub fn wide_json(r: &Wide, out: &mut String) {
    use std::fmt::Write;
    let strs = |v: &[String]| {
        v.iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(",")
    };
    let nums = |v: &[u32]| {
        v.iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let attrs = r
        .attrs
        .iter()
        .map(|(k, v)| format!("\"{k}\":{v}"))
        .collect::<Vec<_>>()
        .join(",");
    let referrer = r
        .referrer
        .as_ref()
        .map_or("null".to_string(), |s| format!("\"{s}\""));
    let score = r.score.map_or("null".to_string(), |s| format!("{s:?}"));
    let _ = writeln!(
        out,
        r#"{{"id":{},"ts":"{}","kind":"{}","country":"{}","user":"{}","url":"{}","referrer":{referrer},"score":{score},"tags":[{}],"counts":[{}],"attrs":{{{attrs}}},"status":{},"value":{:?},"ok":{},"uid":"{}","ip":"{}"}}"#,
        r.id,
        format_ts_ms(r.ts),
        r.kind,
        r.country,
        r.user,
        r.url,
        strs(&r.tags),
        nums(&r.counts),
        r.status,
        r.value,
        r.ok,
        r.uid,
        r.ip
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_format_in_utc() {
        assert_eq!(format_ts_ms(0), "1970-01-01 00:00:00.000");
        assert_eq!(format_ts_ms(1_700_000_000_123), "2023-11-14 22:13:20.123");
        assert_eq!(format_ts_ms(951_782_400_007), "2000-02-29 00:00:00.007");
    }

    #[test]
    fn json_lines_are_what_the_python_contenders_read() {
        let mut s = String::new();
        wide_json(&wide_row(7), &mut s);
        assert_eq!(
            s,
            "{\"id\":7,\"ts\":\"2023-11-14 22:13:20.259\",\"kind\":\"purchase\",\"country\":\"FR\",\
             \"user\":\"user-7\",\"url\":\"/product/7/item?ref=7\",\"referrer\":\"/from/7\",\
             \"score\":3.5,\"tags\":[\"tag7\",\"tag8\",\"tag9\"],\"counts\":[7],\
             \"attrs\":{\"a\":7,\"b\":7},\"status\":1,\"value\":1.75,\"ok\":true,\
             \"uid\":\"00000000-0000-4000-8000-000000000007\",\"ip\":\"10.0.0.7\"}\n"
        );
        s.clear();
        narrow_json(&narrow_row(3), &mut s);
        assert_eq!(
            s,
            "{\"id\":3,\"ts\":1700000003,\"name\":\"user-3\",\"value\":0.75}\n"
        );
    }
}
