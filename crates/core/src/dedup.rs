//! The idempotent insert scheme: deterministic batch ids and the `_insert_id` column.
//!
//! Every batch of a stream gets the id `UUIDv5(stream id, sequence number)`. The id is sent as
//! the insert's `insert_deduplication_token` and `query_id`, and, when the table has an
//! `_insert_id` column, written into every row of the batch. A retry or a replay of the same
//! batch carries the same id and the same bytes, so ClickHouse's insert deduplication lands it
//! once.
//!
//! Replicated tables deduplicate by default. A plain (non-replicated) MergeTree ignores the
//! token unless the table sets `non_replicated_deduplication_window`, e.g.
//! `ENGINE = MergeTree ORDER BY id SETTINGS non_replicated_deduplication_window = 1000`.

use uuid::Uuid;

/// The namespace of chasync's stream ids (a fixed, random UUID).
pub const CHASYNC_NAMESPACE: Uuid = Uuid::from_u128(0x6c3c_0f8e_2b7d_4d55_9a43_51c2_7b1e_93a4);

/// The name of the column that carries a row's batch id.
pub const INSERT_ID_COLUMN: &str = "_insert_id";

/// The id of a stream of batches; batch ids derive from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamId(pub Uuid);

impl StreamId {
    /// A stream id derived from a name: the same name gives the same ids across restarts.
    pub fn named(name: &str) -> Self {
        Self(Uuid::new_v5(&CHASYNC_NAMESPACE, name.as_bytes()))
    }

    /// A fresh random stream id.
    pub fn random() -> Self {
        Self(Uuid::new_v4())
    }

    /// The id of batch number `seq` of this stream.
    pub fn batch_id(&self, seq: u64) -> Uuid {
        Uuid::new_v5(&self.0, &seq.to_be_bytes())
    }
}

/// The id of a part of a batch that was split (e.g. `id/0`, `id/1` after a data error).
pub fn derived_id(parent: &Uuid, part: u32) -> Uuid {
    let mut name = parent.as_bytes().to_vec();
    name.extend_from_slice(&part.to_be_bytes());
    Uuid::new_v5(&CHASYNC_NAMESPACE, &name)
}

/// How the table stores `_insert_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertIdType {
    /// `UUID`
    Uuid,
    /// `String` (the hyphenated UUID text)
    String,
}

/// The table's `_insert_id` column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsertIdColumn {
    /// Column name (`_insert_id`).
    pub name: String,
    /// Its type.
    pub ty: InsertIdType,
}

impl InsertIdColumn {
    /// Recognises an `_insert_id` column by name and ClickHouse type; `None` for other columns
    /// or types chasync cannot fill.
    pub fn from_column(name: &str, type_name: &str) -> Option<Self> {
        if name != INSERT_ID_COLUMN {
            return None;
        }
        let ty = match type_name.trim() {
            "UUID" => InsertIdType::Uuid,
            "String" | "LowCardinality(String)" => InsertIdType::String,
            _ => return None,
        };
        Some(Self {
            name: name.to_string(),
            ty,
        })
    }

    /// Appends `id` in RowBinary for this column's type.
    #[inline]
    pub fn put(&self, buf: &mut Vec<u8>, id: &Uuid) {
        match self.ty {
            InsertIdType::Uuid => crate::encode::rowbinary::put_uuid(buf, id),
            InsertIdType::String => {
                buf.push(36);
                buf.extend_from_slice(
                    id.hyphenated()
                        .encode_lower(&mut Uuid::encode_buffer())
                        .as_bytes(),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_ids_are_deterministic_and_distinct() {
        let s = StreamId::named("orders");
        assert_eq!(s.batch_id(7), StreamId::named("orders").batch_id(7));
        assert_ne!(s.batch_id(7), s.batch_id(8));
        assert_ne!(s.batch_id(7), StreamId::named("other").batch_id(7));
        let r = StreamId::random();
        assert_ne!(r, StreamId::random());
        assert_ne!(derived_id(&s.batch_id(1), 0), derived_id(&s.batch_id(1), 1));
    }

    #[test]
    fn insert_id_column_recognition() {
        assert_eq!(
            InsertIdColumn::from_column("_insert_id", "UUID").map(|c| c.ty),
            Some(InsertIdType::Uuid)
        );
        assert_eq!(
            InsertIdColumn::from_column("_insert_id", "String").map(|c| c.ty),
            Some(InsertIdType::String)
        );
        assert!(InsertIdColumn::from_column("_insert_id", "UInt64").is_none());
        assert!(InsertIdColumn::from_column("id", "UUID").is_none());
        let col = InsertIdColumn::from_column("_insert_id", "String").unwrap();
        let mut buf = Vec::new();
        col.put(&mut buf, &Uuid::nil());
        assert_eq!(buf.len(), 37);
        assert_eq!(buf[0], 36);
    }
}
