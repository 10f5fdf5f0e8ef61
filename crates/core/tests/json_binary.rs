//! NDJSON converted on the client (`JsonRowBinary`, RowBinaryWithDefaults) against the real
//! server: the same lines loaded through the server's own JSONEachRow parsing must store the
//! same rows, column by column, whether a line was converted or passed through.

use bytes::Bytes;
use chasync_core::{JsonEachRow, JsonRowBinary, JsonRowBinaryOptions};

use chasync_core::{Config, PipelineBuilder, Refused, StreamId};
use chasync_testkit::TestDb;

const COLUMNS: &str = "id UInt64, \
    i8 Int8, i16 Int16, i32 Int32, i64 Int64, i128 Int128, i256 Int256, \
    u8 UInt8, u16 UInt16, u32 UInt32, u64 UInt64, u128 UInt128, u256 UInt256, \
    f32 Float32, f64 Float64, b Bool, s String, fs FixedString(4), u UUID, \
    ip4 IPv4, ip6 IPv6, d Date, d32 Date32, dt DateTime, dtz DateTime('Asia/Tokyo'), dny DateTime('America/New_York'), \
    dt3 DateTime64(3), dt9 DateTime64(9, 'UTC'), dt6ny DateTime64(6, 'America/New_York'), \
    e8 Enum8('a' = 1, 'b' = -2, 'c d' = 3), e16 Enum16('x' = 1000, 'y' = -1000), \
    n Nullable(Int32), ns Nullable(String), lc LowCardinality(String), \
    lcn LowCardinality(Nullable(String)), a Array(UInt32), an Array(Nullable(String)), \
    aa Array(Array(Int16)), m Map(String, UInt64), \
    mlc Map(LowCardinality(String), Array(Nullable(Float64))), \
    dflt UInt64 DEFAULT id * 3, sdflt String DEFAULT concat('d', toString(id)), \
    mat UInt64 MATERIALIZED id + 1";

/// Values of every type from the row number, extremes included (the first rows).
const FILL: &str = "INSERT INTO src (id, i8, i16, i32, i64, i128, i256, u8, u16, u32, u64, u128, \
    u256, f32, f64, b, s, fs, u, ip4, ip6, d, d32, dt, dtz, dny, dt3, dt9, dt6ny, e8, e16, n, ns, lc, lcn, \
    a, an, aa, m, mlc, dflt, sdflt) SELECT number, \
    multiIf(number = 0, -128, number = 1, 127, toInt8(intHash64(number))), \
    multiIf(number = 0, -32768, number = 1, 32767, toInt16(intHash64(number))), \
    multiIf(number = 0, -2147483648, number = 1, 2147483647, toInt32(intHash64(number))), \
    multiIf(number = 0, toInt64('-9223372036854775808'), number = 1, toInt64('9223372036854775807'), toInt64(intHash64(number))), \
    multiIf(number = 0, toInt128('-170141183460469231731687303715884105728'), number = 1, toInt128('170141183460469231731687303715884105727'), toInt128(intHash64(number)) * toInt128(intHash64(number + 1)) * if(number % 2 = 0, -1, 1)), \
    multiIf(number = 0, toInt256('-57896044618658097711785492504343953926634992332820282019728792003956564819968'), number = 1, toInt256('57896044618658097711785492504343953926634992332820282019728792003956564819967'), toInt256(intHash64(number)) * toInt256(intHash64(number + 2)) * toInt256(intHash64(number + 3)) * if(number % 3 = 0, -1, 1)), \
    multiIf(number = 1, 255, toUInt8(intHash64(number))), \
    multiIf(number = 1, 65535, toUInt16(intHash64(number))), \
    multiIf(number = 1, 4294967295, toUInt32(intHash64(number))), \
    multiIf(number = 1, toUInt64('18446744073709551615'), intHash64(number)), \
    multiIf(number = 1, toUInt128('340282366920938463463374607431768211455'), toUInt128(intHash64(number)) * toUInt128(intHash64(number + 5))), \
    multiIf(number = 1, toUInt256('115792089237316195423570985008687907853269984665640564039457584007913129639935'), toUInt256(intHash64(number)) * toUInt256(intHash64(number + 6)) * toUInt256(intHash64(number + 7))), \
    multiIf(number % 4 = 0, reinterpretAsFloat32(toUInt32(intHash32(number))), number % 4 = 1, toFloat32(number) / 7, toFloat32(intHash32(number) % 1000) / 100), \
    multiIf(number % 4 = 0, reinterpretAsFloat64(intHash64(number)), number % 4 = 1, number / 3, number % 4 = 2, round(number / 10, 1), -toFloat64(number) * 1e-300), \
    number % 2 = 0, \
    multiIf(number % 5 = 0, unhex('FFFE41C3'), number % 5 = 1, concat('q\"b\\\\s\\t\\n\\r', char(1), char(0), char(127), 'é😀/'), repeat(toString(number), number % 7)), \
    toFixedString(substring(toString(number * 37), 1, number % 5), 4), \
    reinterpretAsUUID(reverse(unhex(lower(hex(cityHash64(number)) || hex(cityHash64(number + 1)))))), \
    multiIf(number = 0, toIPv4('0.0.0.0'), number = 1, toIPv4('255.255.255.255'), toIPv4(intHash32(number))), \
    multiIf(number = 0, toIPv6('::'), number % 3 = 1, toIPv6(IPv4NumToString(intHash32(number))), toIPv6(IPv6NumToString(toFixedString(unhex(lower(hex(cityHash64(number)) || hex(cityHash64(number + 9)))), 16)))), \
    toDate(intHash32(number) % 65536), \
    toDate32(toInt32(intHash32(number) % 146097) - 25567), \
    toDateTime(intHash32(number)), \
    toDateTime(intHash32(number + 1), 'Asia/Tokyo'), \
    toDateTime(intHash32(number + 2), 'America/New_York'), \
    fromUnixTimestamp64Milli(toInt64(intHash64(number) % 12622780800000) - 2208988800000, 'UTC'), \
    fromUnixTimestamp64Nano(toInt64(intHash64(number) % 9223372036854775807), 'UTC'), \
    fromUnixTimestamp64Micro(toInt64(intHash64(number + 3) % 4294967295000000), 'America/New_York'), \
    ['a', 'b', 'c d'][number % 3 + 1], ['x', 'y'][number % 2 + 1], \
    if(number % 3 = 0, NULL, toInt32(intHash32(number))), \
    if(number % 4 = 0, NULL, toString(number)), \
    ['click', 'view', 'buy'][number % 3 + 1], \
    if(number % 5 = 0, NULL, concat('l', toString(number % 4))), \
    range(number % 4), \
    arrayMap(x -> if(x % 2 = 0, NULL, toString(x)), range(number % 5)), \
    [range(number % 3), [toUInt8(number % 7)]]::Array(Array(Int16)), \
    mapFromArrays(arrayMap(x -> concat('k', toString(x)), range(number % 4)), arrayMap(x -> intHash64(x + number), range(number % 4))), \
    map('a', [number / 7, NULL], 'b', []), \
    number * 11, concat('s', toString(number)) \
    FROM numbers(3000)";

/// Hand-written lines: escapes, spellings and values at and beyond the edges of the fast path.
const EDGE: &[&[u8]] = &[
    br#"{"id": 100001, "s": "a\"\\\/\b\f\n\r\t\u0000\u00e9\u00E9\ud83d\ude00\u20ac", "fs": "a\u0000"}"#,
    br#"{"id": "100003", "u64": "18446744073709551615", "i128": "-170141183460469231731687303715884105728", "u256": "115792089237316195423570985008687907853269984665640564039457584007913129639935", "i64": "-9223372036854775808"}"#,
    br#"{"id": 100004}"#,
    br#"{"id": 100005, "n": null, "ns": null, "i32": null, "s": null, "dflt": null, "sdflt": null, "a": null, "lcn": null, "lc": null, "dt": null, "m": null, "u": null, "e8": null}"#,
    br#"{"id": 100006, "i8": -128, "u8": 255, "i64": -9223372036854775808, "f64": 1.7976931348623157e308, "f32": 3.4028235e38, "d": "2149-06-06", "d32": "1900-01-01", "dt": "2106-02-07 06:28:15", "dt3": "2299-12-31 23:59:59.999", "dt9": "1900-01-01 00:00:00.000000001"}"#,
    br#"{"id": 100007, "u8": 256, "i8": -129}"#,
    br#"{"id": 100008, "f64": "1.5", "f32": "0.1", "u16": "65535", "i16": "-1"}"#,
    br#"{"f64": 2.5, "id": 100009, "s": "out of order", "dflt": 5}"#,
    br#"{"id": 100010, "s": {"a": 1}}"#,
    br#"{"id": 100011, "s": 123, "ns": 4.5}"#,
    br#"{"id": 100012, "dt": "2024-01-01T10:00:00", "d": "2024-1-2", "dt3": "2024-01-01 00:00:00.123456"}"#,
    br#"{"id": 100013, "dny": "2024-03-10 02:30:00", "dt6ny": "2024-11-03 01:30:00.5"}"#,
    br#"{"id": 100014, "e8": 3, "e16": "y"}"#,
    br#"{"id": 100015, "m": {"k": 1, "k": 2}}"#,
    br#"{"id": 100016, "b": 1}"#,
    br#"{"id": 100017, "f64": 1e5, "f32": -0.0, "i32": -0}"#,
    b"{\"id\": 100018, \"s\": \"\xff\xfe raw\", \"lc\": \"\xc3\"}",
    br#"   { "id" : 100019 , "s" : "spaced" , "a" : [ 1 , 2 ] }   "#,
    br#"{"id": 100020, "u": "6BA7B810-9DAD-11D1-80B4-00C04FD430C8", "fs": "abcd"}"#,
    br#"{"id": 100021, "dt": 1700000000, "dt3": 1700000000, "dtz": 0, "dt9": 5}"#,
    br#"{"id": 100022, "f64": 0.1000000000000000055511151231257827, "f32": 1.00000005960464477539062500001}"#,
    br#"{"id": 100023, "f64": 2.2250738585072011e-308, "f32": 1.000000059604644775390625}"#,
    br#"{"id": 100024, "an": [null, "x", null], "aa": [[], [-32768, 32767]], "mlc": {"z": [null, 1.25]}}"#,
    br#"{"id": 100025, "d": "1970-01-01", "dtz": "1970-01-01 09:00:00", "dt": "1970-01-01 00:00:00"}"#,
    br#"{"id": 100026, "dt6ny": "1969-12-31 19:00:00.000001", "dt3": "1950-06-01 12:00:00.5"}"#,
    br#"{"id": 100027, "a": [1, null]}"#,
    br#"{"id": 100028, "e8": "c d", "lcn": "l9"}"#,
    br#"{"id": 100029, "i256": -1, "u128": 0, "i128": 1}"#,
    br#"{"id": 100030, "dtz": "2024-06-01 12:00:00", "dny": "2024-06-01 12:00:00"}"#,
    br#"{"id": 100031, "ip4": "10.0.0.1", "ip6": "2001:db8::1"}"#,
    br#"{"id": 100032, "ip4": "010.0.0.1", "ip6": "1.2.3.4"}"#,
    br#"{"id": 100033, "ip4": "255.255.255.255", "ip6": "::ffff:10.0.0.1"}"#,
    br#"{"id": 100034, "ip6": "2001:DB8:0:0:0:0:0:FFFF"}"#,
];

/// Lines the server refuses (so does the fast path: it passes them through).
const REFUSED: &[&[u8]] = &[
    br#"{"id": 200001, "s": "\ud800", "ns": "\udc00x"}"#,
    br#"{"id": 200002, "u32": 1e3}"#,
    br#"{"id": 200003, "zzz": 1}"#,
    br#"{"id": 200004, "fs": "abcde"}"#,
    br#"{"id": 200005, "e8": "nope"}"#,
    br#"{"id": 200006, "ip4": 167772161}"#,
    br#"{"id": 200007, "ip4": "1.2.3"}"#,
];

async fn export(db: &TestDb, settings: &str) -> Vec<Bytes> {
    let sql = format!("SELECT * FROM src ORDER BY id FORMAT JSONEachRow SETTINGS {settings}");
    let mut cursor = db.client.query(&sql).fetch_bytes("JSONEachRow").unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = cursor.next().await.unwrap() {
        out.extend_from_slice(&chunk);
    }
    out.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(Bytes::copy_from_slice)
        .collect()
}

fn config(db: &TestDb, table: &str, dlq: &std::path::Path, stream: &str) -> Config {
    let mut c = db.config(table, dlq);
    c.delivery.stream_id = Some(StreamId::named(stream));
    c.batching.max_rows = 700;
    c.clickhouse
        .settings
        .insert("input_format_skip_unknown_fields".into(), "0".into());
    c
}

/// Loads `lines` into `fast` through the converter (lines it does not convert through a
/// JSONEachRow pipeline) and into `slow` through JSONEachRow only. Returns how many lines
/// were passed through.
async fn load_both(db: &TestDb, lines: &[Bytes]) -> u64 {
    let dlq = tempfile::tempdir().unwrap();
    // The server's own parsing.
    let slow = PipelineBuilder::new(config(db, "slow", dlq.path(), "slow"))
        .start(|t| JsonEachRow::new(t.insert_id(), Vec::new()))
        .await
        .unwrap();
    let h = slow.handle();
    for l in lines {
        h.send(l.clone()).await.unwrap();
    }
    drop(h);
    slow.shutdown().await.unwrap();

    // The fast path.
    let schema = db.schema("fast").await;
    let pass = PipelineBuilder::new(config(db, "fast", dlq.path(), "fast/pass"))
        .start(|t| JsonEachRow::new(t.insert_id(), Vec::new()))
        .await
        .unwrap();
    // As `chasync insert` does: lines converted by a writer's row encoder; those it hands
    // back go to the JSONEachRow pipeline.
    let enc = JsonRowBinary::new(&schema, None, JsonRowBinaryOptions::default()).unwrap();
    let fast = PipelineBuilder::new(config(db, "fast", dlq.path(), "fast"))
        .start_with_encoder(enc)
        .unwrap();
    let mut w = fast.handle().writer();
    let mut pw = pass.handle().writer();
    let mut passed = 0;
    for l in lines {
        match w.try_write(l.clone()).await {
            Ok(()) => {}
            Err(Refused::Unencodable(l, _)) => {
                passed += 1;
                pw.write(l).await.unwrap();
            }
            Err(Refused::Closed(_)) => panic!("the fast pipeline stopped"),
        }
    }
    w.close().await;
    pw.close().await;
    fast.shutdown().await.unwrap();
    pass.shutdown().await.unwrap();
    passed
}

/// Every column of `fast` equals `slow`'s, row for row.
async fn assert_same(db: &TestDb, what: &str) {
    let count = db.u64("SELECT count() FROM slow").await;
    assert_eq!(db.u64("SELECT count() FROM fast").await, count, "{what}");
    for (a, b) in [("fast", "slow"), ("slow", "fast")] {
        let diff = db
            .strings(&format!(
                "SELECT toString(id) FROM (SELECT *, mat FROM {a} EXCEPT SELECT *, mat FROM {b}) \
                 ORDER BY id LIMIT 10"
            ))
            .await;
        assert!(
            diff.is_empty(),
            "{what}: rows of {a} not in {b}: ids {diff:?}"
        );
    }
    let hash = "SELECT sum(cityHash64(tuple(*))) FROM (SELECT *, mat FROM {t})";
    assert_eq!(
        db.u64(&hash.replace("{t}", "fast")).await,
        db.u64(&hash.replace("{t}", "slow")).await,
        "{what}"
    );
}

#[tokio::test]
async fn converted_rows_equal_what_the_server_parses_from_the_same_json() {
    let db = TestDb::new("json_binary").await;
    for t in ["src", "fast", "slow"] {
        db.exec(&format!(
            "CREATE TABLE {t} ({COLUMNS}) ENGINE = MergeTree ORDER BY id"
        ))
        .await;
    }
    db.exec(FILL).await;
    let src = db.u64("SELECT count() FROM src").await;
    assert_eq!(src, 3000);

    for (what, settings) in [
        (
            "default output",
            "output_format_json_quote_64bit_integers = 0",
        ),
        (
            "quoted 64-bit integers and denormals",
            "output_format_json_quote_64bit_integers = 1, output_format_json_quote_denormals = 1",
        ),
    ] {
        db.exec("TRUNCATE TABLE fast").await;
        db.exec("TRUNCATE TABLE slow").await;
        let mut lines = export(&db, settings).await;
        assert_eq!(lines.len() as u64, src);
        lines.extend(EDGE.iter().map(|l| Bytes::from_static(l)));
        let passed = load_both(&db, &lines).await;
        assert_same(&db, what).await;
        // Most of the server's own lines are converted; the edge cases that must go through
        // do; and the server took nearly all lines.
        assert!(passed >= 15, "{what}: {passed} passed through");
        assert!(passed < src / 5, "{what}: {passed} passed through");
        assert!(
            db.u64("SELECT count() FROM fast").await == src + EDGE.len() as u64,
            "{what}"
        );
    }
    // Lines the server refuses are refused on the fast path too (passed through, refused
    // there), and leave no trace in either table.
    let passed = load_both(
        &db,
        &REFUSED
            .iter()
            .map(|l| Bytes::from_static(l))
            .collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(passed, REFUSED.len() as u64);
    assert_eq!(
        db.u64("SELECT count() FROM fast WHERE id > 200000").await,
        0
    );
    assert_same(&db, "refused lines").await;

    // The server's export itself landed exactly (src vs fast, not only fast vs slow), but
    // for what the JSON text cannot carry: NaN and infinities are written as null (stored as
    // 0), and a New York time in the repeated hour of a DST change reads back as the other one.
    for hash in [
        "SELECT sum(cityHash64(tuple(* EXCEPT (f32, f64, dny), mat))) FROM {t} WHERE id < 100000",
        "SELECT sum(cityHash64(f32, f64)) FROM {t} WHERE id < 100000 \
         AND isFinite(f32) AND isFinite(f64)",
    ] {
        assert_eq!(
            db.u64(&hash.replace("{t}", "fast")).await,
            db.u64(&hash.replace("{t}", "src")).await,
            "{hash}"
        );
    }
}

#[tokio::test]
async fn the_demo_table_converts_every_line_and_fills_insert_ids() {
    let db = TestDb::new("json_binary_demo").await;
    let ddl = "(id UInt64, ts DateTime, user String, kind LowCardinality(String), value Float64, \
         _insert_id UUID) ENGINE = MergeTree ORDER BY id \
         SETTINGS non_replicated_deduplication_window = 1000";
    db.exec(&format!("CREATE TABLE t {ddl}")).await;
    let sql = "SELECT number AS id, toDateTime(1700000000 + number % 86400) AS ts, \
         concat('user-', toString(number % 10000)) AS user, \
         ['click', 'view', 'buy'][number % 3 + 1] AS kind, round((number % 1000) / 10, 1) AS value \
         FROM numbers(10000) FORMAT JSONEachRow";
    let mut cursor = db.client.query(sql).fetch_bytes("JSONEachRow").unwrap();
    let mut text = Vec::new();
    while let Some(chunk) = cursor.next().await.unwrap() {
        text.extend_from_slice(&chunk);
    }
    let dlq = tempfile::tempdir().unwrap();
    let mut c = config(&db, "t", dlq.path(), "demo");
    c.batching.max_rows = 4000;
    let schema = db.schema("t").await;
    let p = PipelineBuilder::new(c)
        .start(|t| {
            // Lines sent as they are: one outside the fast path would be refused.
            JsonRowBinary::new(&schema, t.insert_id(), JsonRowBinaryOptions::default()).unwrap()
        })
        .await
        .unwrap();
    let h = p.handle();
    for l in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        h.send(Bytes::copy_from_slice(l)).await.unwrap();
    }
    drop(h);
    let stats = p.shutdown().await.unwrap();
    assert_eq!(stats.rows_committed, 10000);
    assert_eq!(stats.rows_dead_lettered, 0);
    assert_eq!(
        db.u64(
            "SELECT count() FROM t WHERE ts = toDateTime(1700000000 + id % 86400) \
             AND user = concat('user-', toString(id % 10000)) \
             AND kind = ['click', 'view', 'buy'][id % 3 + 1] AND value = round((id % 1000) / 10, 1)"
        )
        .await,
        10000
    );
    assert_eq!(db.u64("SELECT uniqExact(_insert_id) FROM t").await, 3);
    assert_eq!(
        db.u64(&format!(
            "SELECT count() FROM t WHERE _insert_id = '{}'",
            StreamId::named("demo").batch_id(2)
        ))
        .await,
        2000
    );
}
