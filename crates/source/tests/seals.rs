//! The ClickHouse seal store against the real server: a seal written is the one read back,
//! by this process or another, and a new owner's seal wins over its predecessor's even when
//! its clock is behind.

use chasync_source::{ClickHouseSeals, PartitionKey, Seal, SealStore, batch_id};
use chasync_testkit::{TestDb, url};

fn key(partition: &str) -> PartitionKey {
    PartitionKey {
        source: "kafka",
        group: "g".into(),
        topic: "events".into(),
        partition: partition.into(),
    }
}

fn seal(k: &PartitionKey, first: u64, last: u64) -> Seal {
    Seal {
        first,
        last,
        batch_id: batch_id(k, first, last, "db", "t"),
    }
}

#[tokio::test]
async fn a_seal_is_read_back_by_another_store_and_the_latest_wins() {
    let db = TestDb::new("seals").await;
    let config = chasync_core::Config::builder(url(), format!("{}.t", db.name))
        .build()
        .unwrap();
    let table = format!("{}.seals", db.name);
    let a = ClickHouseSeals::new(&config, &table).unwrap();
    a.create().await.unwrap();
    let (k0, k1) = (key("0"), key("1"));
    assert_eq!(a.read(&k0).await.unwrap(), None);
    a.write(&k0, seal(&k0, 0, 49)).await.unwrap();
    a.write(&k1, seal(&k1, 0, 9)).await.unwrap();
    // Another process (another store) sees them.
    let b = ClickHouseSeals::new(&config, &table).unwrap();
    assert_eq!(b.read(&k0).await.unwrap(), Some(seal(&k0, 0, 49)));
    // The next range replaces it.
    b.write(&k0, seal(&k0, 50, 99)).await.unwrap();
    assert_eq!(a.read(&k0).await.unwrap(), Some(seal(&k0, 50, 99)));
    assert_eq!(a.read(&k1).await.unwrap(), Some(seal(&k1, 0, 9)));
    // A previous owner whose clock was far ahead wrote the latest seal.
    db.exec(&format!(
        "INSERT INTO {table} (source, `group`, topic, partition, first, last, batch_id, version) \
         VALUES ('kafka', 'g', 'events', '0', 100, 149, '{}', 18446744073709551000)",
        seal(&k0, 100, 149).batch_id
    ))
    .await;
    let c = ClickHouseSeals::new(&config, &table).unwrap();
    assert_eq!(c.read(&k0).await.unwrap(), Some(seal(&k0, 100, 149)));
    // The new owner read it, so its own next seal wins all the same.
    c.write(&k0, seal(&k0, 150, 199)).await.unwrap();
    assert_eq!(b.read(&k0).await.unwrap(), Some(seal(&k0, 150, 199)));
}

#[test]
fn batch_ids_differ_by_every_part_of_the_range_and_repeat_for_the_same() {
    let k = key("0");
    let id = batch_id(&k, 0, 49, "db", "t");
    assert_eq!(id, batch_id(&k, 0, 49, "db", "t"));
    assert_eq!(id.get_version_num(), 5);
    let others = [
        batch_id(&k, 0, 48, "db", "t"),
        batch_id(&k, 1, 49, "db", "t"),
        batch_id(&key("1"), 0, 49, "db", "t"),
        batch_id(&k, 0, 49, "db", "u"),
        batch_id(&k, 0, 49, "db2", "t"),
        batch_id(
            &PartitionKey {
                group: "h".into(),
                ..k.clone()
            },
            0,
            49,
            "db",
            "t",
        ),
        batch_id(
            &PartitionKey {
                source: "nats",
                ..k.clone()
            },
            0,
            49,
            "db",
            "t",
        ),
    ];
    for o in others {
        assert_ne!(id, o);
    }
}
