//! chasync-core
