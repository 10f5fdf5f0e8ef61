//! chasync-core

pub mod native;
pub mod schema;
pub mod value;
