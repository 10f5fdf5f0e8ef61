//! Column types, table schemas and the values of dynamic rows: data only, no I/O.

pub(crate) mod insert_id;
pub(crate) mod schema;
pub(crate) mod value;
pub(crate) mod wire;
