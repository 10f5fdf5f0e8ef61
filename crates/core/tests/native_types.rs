//! Hand-written values for each type family, inserted through Native into the real server
//! and read back; and bad values, which must be rejected with a precise error.

mod native_common;

use chasync_core::{ConversionErrorKind, NativeBatch, NativeOptions};
use chasync_core::{DynRow, Value};
use native_common::TestDb;

fn row(json: &str) -> DynRow {
    DynRow::from_json_str(json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

#[tokio::test]
async fn dates_and_times_in_column_time_zones() {
    let db = TestDb::new().await;
    db.exec(
        "CREATE TABLE {db}.t (id UInt32, dt DateTime('Asia/Tokyo'), \
         dt64 DateTime64(3, 'America/New_York'), d Date, d32 Date32, dtu DateTime, \
         ns DateTime64(9, 'Europe/Berlin')) ENGINE = MergeTree ORDER BY id",
    )
    .await;
    let rows = [
        // Plain text is read in the column's time zone (the server's, UTC, for dtu).
        row(
            r#"{"id":1,"dt":"2024-03-01 09:00:00","dt64":"2024-02-29 19:00:00.123",
                "d":"2024-03-01","d32":"1950-06-15","dtu":"2024-03-01 00:00:00",
                "ns":"2024-03-01 01:00:00.000000001"}"#,
        ),
        // Epoch numbers: seconds (fractions for DateTime64); small integers are days for dates.
        row(
            r#"{"id":2,"dt":1709251200,"dt64":1709251200.123,"d":19783,"d32":-7140,
                "dtu":"1709251200","ns":"1709251200.000000001"}"#,
        ),
        // RFC 3339 with offsets.
        row(
            r#"{"id":3,"dt":"2024-03-01T01:00:00+01:00","dt64":"2024-03-01T00:00:00.123Z",
                "d":"2024-03-01T10:00:00Z","d32":"1900-01-01","dtu":"2024-03-01T00:00:00Z",
                "ns":"2024-03-01T00:00:00.000000001Z"}"#,
        ),
        // Before 1970 for DateTime64, and a date given as epoch seconds.
        row(
            r#"{"id":4,"dt":"1970-01-01 09:00:00","dt64":"1969-12-31 18:59:59.5",
                "d":1709251200,"d32":"2299-12-31","dtu":0,"ns":-0.5}"#,
        ),
    ];
    db.insert_rows("t", &rows).await;
    let got = db
        .fetch_text(
            "SELECT id, toUnixTimestamp(dt), toString(dt), toUnixTimestamp64Milli(dt64), \
             toString(d), toString(d32), toUnixTimestamp(dtu), toUnixTimestamp64Nano(ns) \
             FROM {db}.t ORDER BY id",
            "TSV",
        )
        .await;
    let want = "\
1\t1709251200\t2024-03-01 09:00:00\t1709251200123\t2024-03-01\t1950-06-15\t1709251200\t1709251200000000001
2\t1709251200\t2024-03-01 09:00:00\t1709251200123\t2024-03-01\t1950-06-15\t1709251200\t1709251200000000001
3\t1709251200\t2024-03-01 09:00:00\t1709251200123\t2024-03-01\t1900-01-01\t1709251200\t1709251200000000001
4\t0\t1970-01-01 09:00:00\t-500\t2024-03-01\t2299-12-31\t0\t-500000000
";
    assert_eq!(got, want);
}

#[tokio::test]
async fn numbers_decimals_bools_enums() {
    let db = TestDb::new().await;
    db.exec(
        "CREATE TABLE {db}.t (id UInt32, d2 Decimal(9, 2), d38 Decimal(38, 10), \
         d256 Decimal256(30), u256 UInt256, i128 Int128, i256 Int256, u8 UInt8, f32 Float32, \
         b Bool, e8 Enum8('low' = -5, 'high' = 100), e16 Enum16('a' = 1000, 'b' = -1000)) \
         ENGINE = MergeTree ORDER BY id",
    )
    .await;
    // JSON integers beyond 64 bits become floats in serde_json, so give i128 natively.
    let mut r2 = row(
        r#"{"id":2,"d2":0.1,"d38":-1e-10,"d256":12,"u256":0,"i256":-1,"u8":7.0,
                "f32":3,"b":0,"e8":100,"e16":"1000"}"#,
    );
    r2.push("i128", Value::Int128(i128::MAX));
    let rows = [
        row(
            r#"{"id":1,"d2":"123.45","d38":"123456789012345678901234567.0123456789",
                "d256":"-1234567890123456789012345678901234567890.123456789012345678901234567890",
                "u256":"115792089237316195423570985008687907853269984665640564039457584007913129639935",
                "i128":"-170141183460469231731687303715884105728",
                "i256":"57896044618658097711785492504343953926634992332820282019728792003956564819967",
                "u8":"255","f32":"0.1","b":"true","e8":"low","e16":"b"}"#,
        ),
        r2,
        row(
            r#"{"id":3,"d2":"-0.019","d38":"1.5e3","d256":"0","u256":"1","i128":"0",
                "i256":"-57896044618658097711785492504343953926634992332820282019728792003956564819968",
                "u8":0,"f32":-2.5,"b":false,"e8":"-5","e16":-1000}"#,
        ),
    ];
    db.insert_rows("t", &rows).await;
    let got = db
        .fetch_text("SELECT * FROM {db}.t ORDER BY id", "TSV")
        .await;
    let want = "\
1\t123.45\t123456789012345678901234567.0123456789\t-1234567890123456789012345678901234567890.12345678901234567890123456789\t115792089237316195423570985008687907853269984665640564039457584007913129639935\t-170141183460469231731687303715884105728\t57896044618658097711785492504343953926634992332820282019728792003956564819967\t255\t0.1\ttrue\tlow\tb
2\t0.1\t-0.0000000001\t12\t0\t170141183460469231731687303715884105727\t-1\t7\t3\tfalse\thigh\ta
3\t-0.01\t1500\t0\t1\t0\t-57896044618658097711785492504343953926634992332820282019728792003956564819968\t0\t-2.5\tfalse\tlow\tb
";
    assert_eq!(got, want);
}

#[tokio::test]
async fn strings_ips_uuids_json() {
    let db = TestDb::new().await;
    db.exec(
        "CREATE TABLE {db}.t (id UInt32, s String, fs FixedString(5), ip4 IPv4, ip6 IPv6, \
         u UUID, lcn LowCardinality(Nullable(String)), j JSON) ENGINE = MergeTree ORDER BY id",
    )
    .await;
    let mut r1 = row(
        r#"{"id":1,"fs":"ab","ip4":"10.1.2.3","ip6":"2001:db8::ff00:42:8329",
                "u":"61f0c404-5cb3-11e7-907b-a6006ad3dba0","lcn":"x",
                "j":{"a":{"b":[1,2]},"c":"d"}}"#,
    );
    // Not UTF-8: String columns take bytes as they are.
    r1.push("s", Value::Bytes(vec![0xff, 0x00, b'a']));
    let rows = [
        r1,
        row(
            r#"{"id":2,"s":"naïve","fs":"abcde","ip4":167838211,"ip6":"10.1.2.3",
                "u":"61F0C4045CB311E7907BA6006AD3DBA0","lcn":null,"j":"{\"k\":true}"}"#,
        ),
        row(
            r#"{"id":3,"s":42,"fs":"","ip4":"0.0.0.0","ip6":"::","u":"00000000-0000-0000-0000-000000000000",
                "lcn":"","j":{}}"#,
        ),
    ];
    db.insert_rows("t", &rows).await;
    let got = db
        .fetch_text(
            "SELECT id, hex(s), hex(fs), ip4, ip6, u, lcn, toString(j) FROM {db}.t ORDER BY id",
            "TSV",
        )
        .await;
    let want = "\
1\tFF0061\t6162000000\t10.1.2.3\t2001:db8::ff00:42:8329\t61f0c404-5cb3-11e7-907b-a6006ad3dba0\tx\t{\"a\":{\"b\":[1,2]},\"c\":\"d\"}
2\t6E61C3AF7665\t6162636465\t10.1.2.3\t::ffff:10.1.2.3\t61f0c404-5cb3-11e7-907b-a6006ad3dba0\t\\N\t{\"k\":true}
3\t3432\t0000000000\t0.0.0.0\t::\t00000000-0000-0000-0000-000000000000\t\t{}
";
    assert_eq!(got, want);
}

#[tokio::test]
async fn nested_types() {
    let db = TestDb::new().await;
    db.exec(
        "CREATE TABLE {db}.t (id UInt32, \
         deep Array(Map(String, Tuple(x Nullable(UInt32), y LowCardinality(String), z Array(Nullable(Int8))))), \
         an Array(Nullable(String)), aa Array(Array(LowCardinality(Nullable(String)))), \
         m Map(UInt16, Nullable(Float64)), t Tuple(UInt8, String), \
         tn Tuple(a Int32, b Nullable(String))) ENGINE = MergeTree ORDER BY id",
    )
    .await;
    let rows = [
        row(r#"{"id":1,
            "deep":[{"k1":{"x":1,"y":"a","z":[1,null,-3]},"k2":{"x":null,"y":"b","z":[]}},{}],
            "an":["a",null,""],"aa":[["p",null],[],["p"]],
            "m":{"1":1.5,"65535":null},"t":[7,"seven"],"tn":{"a":-1,"b":"x"}}"#),
        // Tuples from arrays, a map given as pairs, named tuple with a missing element.
        row(r#"{"id":2,"deep":[{"k":[5,"c",[null]]}],"an":[],"aa":[],
            "m":[[2,0.25],[2,0.5]],"t":[0,""],"tn":{"b":null}}"#),
        // NULL inside a non-Nullable nested type becomes the type's default.
        row(
            r#"{"id":3,"deep":[],"an":[null],"aa":[[null,null]],"m":{},"t":[null,null],
            "tn":[5,"y"]}"#,
        ),
    ];
    db.insert_rows("t", &rows).await;
    let got = db
        .fetch_text(
            "SELECT id, deep, an, aa, m, t, tn FROM {db}.t ORDER BY id",
            "JSONCompactEachRow",
        )
        .await;
    let want = r#"[1, [{"k1":{"x":1,"y":"a","z":[1,null,-3]},"k2":{"x":null,"y":"b","z":[]}},{}], ["a",null,""], [["p",null],[],["p"]], {"1":1.5,"65535":null}, [7,"seven"], {"a":-1,"b":"x"}]
[2, [{"k":{"x":5,"y":"c","z":[null]}}], [], [], {"2":0.25,"2":0.5}, [0,""], {"a":0,"b":null}]
[3, [], [null], [[null,null]], {}, [0,""], {"a":5,"b":"y"}]
"#;
    assert_eq!(
        got.replace(", ", ",").replace("],[", "], ["),
        want.replace(", ", ",").replace("],[", "], [")
    );
}

/// Every family rejects bad values with the row, column, value and type in the error, and a
/// rejected row leaves nothing in the batch.
#[tokio::test]
async fn bad_values_are_rejected_precisely() {
    let db = TestDb::new().await;
    db.exec(
        "CREATE TABLE {db}.t (id UInt32, u8 UInt8, i64 Int64, u256 UInt256, f Float64, \
         d Decimal(5, 2), b Bool, fs FixedString(2), u UUID, ip4 IPv4, ip6 IPv6, dt DateTime, \
         dt64 DateTime64(3), dd Date, e Enum8('a' = 1), lc LowCardinality(String), \
         n Nullable(UInt8), a Array(UInt8), m Map(String, UInt8), t Tuple(UInt8, String), \
         tn Tuple(x UInt8)) ENGINE = MergeTree ORDER BY id",
    )
    .await;
    let schema = db.schema("t").await;
    let mut batch = NativeBatch::new(schema.clone(), NativeOptions::default());
    batch.push_row(&row(r#"{"id":1,"u8":1}"#)).unwrap();
    let cases: &[(&str, &str, &str, &str, &str)] = &[
        // column, json value, expected value text, expected type, reason fragment
        ("u8", "300", "300", "UInt8", "out of range"),
        ("u8", "\"abc\"", "\"abc\"", "UInt8", "not an integer"),
        ("u8", "-1", "-1", "UInt8", "out of range"),
        ("u8", "1.5", "1.5", "UInt8", "fractional"),
        (
            "i64",
            "9223372036854775808",
            "9223372036854775808",
            "Int64",
            "out of range",
        ),
        ("i64", "[1]", "[1]", "Int64", "expected an integer"),
        ("u256", "\"-1\"", "\"-1\"", "UInt256", "negative"),
        ("f", "\"x1\"", "\"x1\"", "Float64", "not a number"),
        (
            "d",
            "\"1234.5\"",
            "\"1234.5\"",
            "Decimal(5, 2)",
            "too many digits",
        ),
        ("d", "\"1,5\"", "\"1,5\"", "Decimal(5, 2)", "not a decimal"),
        ("b", "2", "2", "Bool", "boolean"),
        ("b", "\"maybe\"", "\"maybe\"", "Bool", "boolean"),
        ("fs", "\"abc\"", "\"abc\"", "FixedString(2)", "do not fit"),
        (
            "u",
            "\"not-a-uuid\"",
            "\"not-a-uuid\"",
            "UUID",
            "not a UUID",
        ),
        (
            "ip4",
            "\"1.2.3.256\"",
            "\"1.2.3.256\"",
            "IPv4",
            "not an IPv4",
        ),
        ("ip4", "4294967296", "4294967296", "IPv4", "out of range"),
        (
            "ip6",
            "\"2001:db8:::1\"",
            "\"2001:db8:::1\"",
            "IPv6",
            "not an IPv6",
        ),
        (
            "dt",
            "\"2024-13-01 00:00:00\"",
            "\"2024-13-01 00:00:00\"",
            "DateTime",
            "not a date/time",
        ),
        ("dt", "-1", "-1", "DateTime", "out of range"),
        ("dt", "1.5", "1.5", "DateTime", "whole"),
        (
            "dt64",
            "\"2400-01-01 00:00:00\"",
            "\"2400-01-01 00:00:00\"",
            "DateTime64(3)",
            "out of range",
        ),
        (
            "dd",
            "\"1969-12-31\"",
            "\"1969-12-31\"",
            "Date",
            "out of range",
        ),
        (
            "dd",
            "\"2024-02-30\"",
            "\"2024-02-30\"",
            "Date",
            "not a date",
        ),
        ("e", "\"b\"", "\"b\"", "Enum8('a' = 1)", "not an element"),
        ("e", "2", "2", "Enum8('a' = 1)", "not an element"),
        ("lc", "{\"k\":1}", "{\"k\":1}", "String", ""),
        ("n", "256", "256", "UInt8", "out of range"),
        ("a", "[1,2,-3]", "-3", "UInt8", "out of range"),
        (
            "a",
            "\"[1]\"",
            "\"[1]\"",
            "Array(UInt8)",
            "expected an array",
        ),
        ("m", "{\"k\":\"v\"}", "\"v\"", "UInt8", "not an integer"),
        ("m", "[1]", "1", "Map(String, UInt8)", "[key, value] pairs"),
        ("m", "true", "true", "Map(String, UInt8)", "expected a map"),
        (
            "t",
            "[1]",
            "[1]",
            "Tuple(UInt8, String)",
            "expected 2 tuple elements",
        ),
        (
            "t",
            "{\"a\":1}",
            "{\"a\":1}",
            "Tuple(UInt8, String)",
            "named Tuple",
        ),
        (
            "tn",
            "{\"y\":1}",
            "{\"y\":1}",
            "Tuple(x UInt8)",
            "no element `y`",
        ),
    ];
    let mut rejected = 0;
    for (i, (col, json, value, ty, reason)) in cases.iter().enumerate() {
        // The bad value comes last so that the good ones before it must be rolled back.
        let r = row(&format!(
            r#"{{"id":{},"u8":2,"a":[9,9],"{col}":{json}}}"#,
            100 + i
        ));
        let r = if *col == "u8" || *col == "a" {
            row(&format!(r#"{{"id":{},"{col}":{json}}}"#, 100 + i))
        } else {
            r
        };
        let err = match batch.push_row(&r) {
            Ok(()) if *col == "lc" => {
                // An object is its JSON text in a String column (ClickHouse does the same).
                rejected += 0;
                continue;
            }
            Ok(()) => panic!("{col} = {json} was accepted"),
            Err(e) => e,
        };
        rejected += 1;
        assert_eq!(err.kind, ConversionErrorKind::InvalidValue, "{err}");
        assert_eq!(err.row, i + 1, "{err}");
        assert_eq!(err.column, *col, "{err}");
        assert_eq!(err.value, *value, "{err}");
        assert_eq!(err.target_type, *ty, "{err}");
        assert!(err.reason.contains(reason), "{col} = {json}: {err}");
        let text = err.to_string();
        for part in [&format!("row {}", i + 1), *col, *value, *ty] {
            assert!(text.contains(part), "{text} lacks {part}");
        }
    }
    assert_eq!(rejected, cases.len() - 1);
    batch.push_row(&row(r#"{"id":2,"u8":3,"a":[1]}"#)).unwrap();
    assert_eq!(batch.rows(), 3);
    let encoded = batch.finish(None);
    db.insert(&schema, encoded).await.unwrap();
    let got = db
        .fetch_text("SELECT id, u8, a, lc FROM {db}.t ORDER BY id", "TSV")
        .await;
    let lc_row = 100 + cases.iter().position(|c| c.0 == "lc").unwrap();
    assert_eq!(
        got,
        format!("1\t1\t[]\t\n2\t3\t[1]\t\n{lc_row}\t2\t[9,9]\t{{\"k\":1}}\n")
    );
}

/// Values far beyond any width and long texts are cut in the error.
#[tokio::test]
async fn long_values_are_truncated_in_errors() {
    let db = TestDb::new().await;
    db.exec("CREATE TABLE {db}.t (u8 UInt8) ENGINE = Memory")
        .await;
    let schema = db.schema("t").await;
    let mut batch = NativeBatch::new(schema, NativeOptions::default());
    let long = "9".repeat(5000);
    let err = batch
        .push_row(&DynRow::new().with("u8", long.as_str()))
        .unwrap_err();
    assert!(err.value.len() < 300, "{}", err.value.len());
    assert!(err.value.ends_with("..."));
    assert_eq!(batch.rows(), 0);
    assert!(batch.is_empty());
}
