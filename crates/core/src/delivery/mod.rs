//! Delivery: sealed batches to ClickHouse. The dispatcher keeps inserts in flight within the
//! adaptive limiter; the sink makes each attempt through the `clickhouse` crate and retries
//! what the error's kind says is worth retrying, after establishing whether an attempt whose
//! answer was lost landed (`outcome`); rows the server rejects are isolated, and what cannot
//! land goes to the spool. Delivery knows [`crate::Batch`] and nothing of how
//! batches are formed.

pub(crate) mod dispatcher;
pub(crate) mod limiter;
pub(crate) mod outcome;
pub(crate) mod replay;
pub(crate) mod retry;
pub(crate) mod sink;
