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
pub(crate) const CHASYNC_NAMESPACE: Uuid =
    Uuid::from_u128(0x6c3c_0f8e_2b7d_4d55_9a43_51c2_7b1e_93a4);

/// The id of a stream of batches; batch ids derive from it.
///
/// In a configuration it is written as a name ([`StreamId::named`]) or as the UUID itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamId(pub Uuid);

impl serde::Serialize for StreamId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for StreamId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Ok(StreamId::parse(&text))
    }
}

impl StreamId {
    /// A stream id derived from a name: the same name gives the same ids across restarts.
    pub fn named(name: &str) -> Self {
        Self(Uuid::new_v5(&CHASYNC_NAMESPACE, name.as_bytes()))
    }

    /// The stream a configuration names: the UUID itself when `text` is one, else the stream
    /// [`named`](Self::named) so.
    pub fn parse(text: &str) -> Self {
        match Uuid::parse_str(text.trim()) {
            Ok(id) => Self(id),
            Err(_) => Self::named(text),
        }
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
pub(crate) fn derived_id(parent: &Uuid, part: u32) -> Uuid {
    let mut name = parent.as_bytes().to_vec();
    name.extend_from_slice(&part.to_be_bytes());
    Uuid::new_v5(&CHASYNC_NAMESPACE, &name)
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
}
