//! Credentials in URLs and ClickHouse settings checked at start, against the real server.

use chasync_testkit as common;

use chasync_core::{ConfigBuilder, DynIngestor, DynRow, Error, NativeOptions};
use common::TestDb;

/// The test user of the server under test and its password.
fn test_user() -> (String, String) {
    (
        std::env::var("CH_TEST_USER").unwrap_or_else(|_| "chasync_test".into()),
        std::env::var("CH_TEST_PASSWORD").unwrap_or_else(|_| "chasync-secret".into()),
    )
}

/// The server's URL with `user:password@` in it (percent-encoded).
fn url_with(user: &str, password: &str) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    let url = common::url();
    let (scheme, rest) = url.split_once("://").unwrap();
    format!("{scheme}://{}:{}@{rest}", enc(user), enc(password))
}

async fn table(db: &TestDb) {
    db.exec(
        "CREATE TABLE t (id UInt64, v UInt8, CONSTRAINT small CHECK v < 100) \
         ENGINE = MergeTree ORDER BY id",
    )
    .await;
}

/// Every file under `dir`, as text.
fn files_text(dir: &std::path::Path) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.push_str(&files_text(&path));
        } else {
            out.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
        }
    }
    out
}

#[tokio::test]
async fn the_credentials_of_the_url_are_the_ones_inserts_use() {
    let db = TestDb::new("urlcred").await;
    table(&db).await;
    let (user, password) = test_user();
    let dlq = tempfile::tempdir().unwrap();
    let config = ConfigBuilder::new()
        .set("url", url_with(&user, &password))
        .set("table", db.t("t"))
        .spool_dir(dlq.path())
        .build()
        .unwrap();
    assert!(
        !config.clickhouse.url[0].contains('@'),
        "taken out of the URL"
    );
    let who: String = config
        .client()
        .unwrap()
        .query("SELECT currentUser()")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(who, user);
    let ing = DynIngestor::start_dynamic(config, NativeOptions::default())
        .await
        .unwrap();
    let h = ing.handle();
    for i in 0..100u64 {
        // Row 7 breaks the constraint: the server refuses it, and it is dead-lettered.
        let v = if i == 7 { 200u64 } else { i % 50 };
        h.send(DynRow::new().with("id", i).with("v", v).into())
            .await
            .unwrap();
    }
    let err = h.flush().await.unwrap_err();
    assert!(matches!(err, Error::DeadLettered { rows: 1, .. }), "{err}");
    ing.shutdown().await.unwrap();
    assert_eq!(db.u64("SELECT count() FROM t").await, 99);
    db.exec("SYSTEM FLUSH LOGS").await;
    let users = db
        .strings(&format!(
            "SELECT DISTINCT user FROM system.query_log WHERE query_kind = 'Insert' \
             AND type = 'QueryFinish' AND has(tables, '{}.t')",
            db.name
        ))
        .await;
    assert_eq!(users, vec![user.clone()], "every insert as the URL's user");
    // The dead-letter records never hold the password.
    let spooled = files_text(dlq.path());
    assert!(spooled.contains("VIOLATED_CONSTRAINT"), "{spooled}");
    assert!(!spooled.contains(&password), "{spooled}");

    // A configuration filled in by hand, the URL's credentials in it, works the same.
    let mut by_hand = chasync_core::Config::new(url_with(&user, &password), "t");
    by_hand.clickhouse.database = db.name.clone();
    let who: String = by_hand
        .client()
        .unwrap()
        .query("SELECT currentUser()")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(who, user);
}

#[tokio::test]
async fn a_wrong_password_in_the_url_names_the_user_and_never_the_password() {
    let db = TestDb::new("urlbad").await;
    table(&db).await;
    let (user, _) = test_user();
    let secret = "wrong-pw-Kq7-never-shown";
    let dlq = tempfile::tempdir().unwrap();
    let config = ConfigBuilder::new()
        .set("url", url_with(&user, secret))
        .set("table", db.t("t"))
        .spool_dir(dlq.path())
        .build()
        .unwrap();
    assert!(!format!("{config:?}").contains(secret));
    assert!(!serde_json::to_string(&config).unwrap().contains(secret));
    let err = DynIngestor::start_dynamic(config, NativeOptions::default())
        .await
        .err()
        .expect("the server refuses the password");
    let text = format!("{} / {err:?}", err.report());
    assert_eq!(err.code(), Some(516), "{text}");
    assert!(text.contains(&user), "the user is named: {text}");
    assert!(!text.contains(secret), "{text}");
}

#[tokio::test]
async fn settings_the_server_refuses_stop_the_start_before_any_insert() {
    let db = TestDb::new("settings").await;
    table(&db).await;
    let dlq = tempfile::tempdir().unwrap();
    let start = |settings: &[(&str, &str)]| {
        let mut b = ConfigBuilder::new()
            .set("url", common::url())
            .set("table", db.t("t"))
            .spool_dir(dlq.path());
        for (k, v) in settings {
            b = b.setting(k, *v);
        }
        let config = b.build().unwrap();
        async move { DynIngestor::start_dynamic(config, NativeOptions::default()).await }
    };
    let message = |r: chasync_core::Result<DynIngestor>| match r {
        Ok(_) => panic!("started"),
        Err(e @ Error::Config(_)) => e.to_string(),
        Err(e) => panic!("not a configuration error: {e}"),
    };
    // Unknown names, all of them, with the names closest to a misspelt one.
    let e = message(start(&[("no_such_setting", "1"), ("async_inset", "0")]).await);
    assert!(e.contains("`no_such_setting` is not a setting"), "{e}");
    assert!(e.contains("`async_inset` is not a setting"), "{e}");
    assert!(e.contains("did you mean `async_insert`"), "{e}");
    assert!(e.contains("UNKNOWN_SETTING"), "{e}");
    // A value the server cannot parse.
    let e = message(start(&[("async_insert", "maybe")]).await);
    assert!(e.contains("CANNOT_PARSE_BOOL"), "{e}");
    // readonly mode, which refuses every insert.
    let e = message(start(&[("readonly", "1")]).await);
    assert!(e.contains("forbids inserts"), "{e}");
    // Nothing was sent: no insert reached the table.
    assert_eq!(db.inserts("t").await, 0);
    assert!(
        !dlq.path().exists() || std::fs::read_dir(dlq.path()).unwrap().next().is_none(),
        "nothing dead-lettered"
    );
    // Settings the server takes start the engine.
    let ing = start(&[("async_insert", "0"), ("max_insert_threads", "2")])
        .await
        .unwrap();
    ing.handle()
        .send(DynRow::new().with("id", 1u64).with("v", 1u64).into())
        .await
        .unwrap();
    ing.shutdown().await.unwrap();
    assert_eq!(db.u64("SELECT count() FROM t").await, 1);
}
