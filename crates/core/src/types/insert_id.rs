//! The `_insert_id` column: where a table keeps the id of the batch each row came in.

use uuid::Uuid;

/// The name of the column that carries a row's batch id.
pub const INSERT_ID_COLUMN: &str = "_insert_id";

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
            InsertIdType::Uuid => crate::types::wire::put_uuid(buf, id),
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
