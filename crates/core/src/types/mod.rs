//! Column types, table schemas and the values of dynamic rows, with the text parsers,
//! calendar and wire helpers the encoders share: data only, no I/O.

pub(crate) mod insert_id;
pub(crate) mod schema;
pub(crate) mod text;
pub(crate) mod time;
pub(crate) mod value;
pub(crate) mod wire;
