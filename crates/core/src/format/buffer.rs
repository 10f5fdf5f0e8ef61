//! The bytes of the open batch, and the buffers of ended batches kept for the next ones.
//!
//! A batch's bytes live until the batch has ended (committed or dead-lettered), as every
//! attempt sends them again. A new buffer for every batch means the pages of megabytes of
//! fresh memory are touched for the first time by every batch (the kernel zeroes each one),
//! a cost the size of the batch's own copy of its rows. So the buffer of an ended batch goes
//! back to its encoder's [`BufferPool`], and the encoder's next batch writes into it.

use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;

use crate::batch::{Encoded, Format, Parts};

/// How many ended batches' buffers a pool keeps. With a batch ending about as often as one
/// begins, one is enough; the second absorbs batches that end close together.
const KEEP: usize = 2;

/// Buffers of ended batches, kept for the next batches of one encoder.
///
/// [`freeze`](Self::freeze) turns a batch's buffer into [`Bytes`] that give the buffer back
/// when the last reference to them is dropped, wherever that happens (after the commit, after
/// the dead-letter spool has the batch, or when a batch is dropped at shutdown). The pool holds
/// at most [`KEEP`] buffers; once the encoder is gone, buffers still in use are freed instead.
#[derive(Clone, Default)]
pub(crate) struct BufferPool {
    kept: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl BufferPool {
    /// An empty buffer for a batch of about `expected` bytes: a kept one if one holds that
    /// much and is not far larger (a stream whose batches became small does not keep writing
    /// into the pages of its largest batches), else a new one with room for a quarter more (a
    /// buffer that fills up is copied into one twice its size).
    pub(super) fn take(&self, expected: usize) -> Vec<u8> {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match kept {
            Some(mut buf) if buf.capacity() >= expected && buf.capacity() / 4 <= expected => {
                buf.clear();
                buf
            }
            _ => Vec::with_capacity(expected + expected / 4),
        }
    }

    /// `buf` as [`Bytes`] that return it to this pool when they are dropped.
    pub(super) fn freeze(&self, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Pooled {
            buf,
            pool: Arc::downgrade(&self.kept),
        })
    }

    /// Buffers kept now.
    #[cfg(test)]
    pub fn kept(&self) -> usize {
        self.kept.lock().unwrap().len()
    }
}

/// A batch's buffer on its way back to the pool.
struct Pooled {
    buf: Vec<u8>,
    pool: Weak<Mutex<Vec<Vec<u8>>>>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.upgrade() {
            let mut kept = pool.lock().unwrap_or_else(|e| e.into_inner());
            if kept.len() < KEEP {
                kept.push(std::mem::take(&mut self.buf));
            }
        }
    }
}

/// The bytes of the open batch of a row-per-row format (RowBinary, JSONEachRow, CSV, TSV) and
/// where each row starts, so the engine can split the batch at rows to isolate rows the
/// server refuses.
#[derive(Default)]
pub(crate) struct BatchBuffer {
    /// The batch's bytes.
    pub buf: Vec<u8>,
    /// Where each row starts in `buf`.
    pub offsets: Vec<u32>,
    /// The size of the last batch: the next one will likely be as large.
    bytes_hint: usize,
    rows_hint: usize,
    pool: BufferPool,
}

impl BatchBuffer {
    /// Starts a new, empty batch.
    pub(crate) fn begin(&mut self) {
        self.buf = self.pool.take(self.bytes_hint.clamp(64 * 1024, 256 << 20));
        self.offsets = Vec::with_capacity(self.rows_hint.min(1 << 20));
    }

    /// Marks the start of a row at the current end of the buffer.
    #[inline]
    pub(crate) fn start_row(&mut self) {
        self.row_at(self.buf.len());
    }

    /// Marks the start of a row at `at` (a row encoded in place, kept once it is whole).
    #[inline]
    pub(crate) fn row_at(&mut self, at: usize) {
        // Batches are far below 4 GiB (`Config::validate` caps `max_bytes`).
        self.offsets.push(at as u32);
    }

    /// Rows in the batch.
    pub(crate) fn rows(&self) -> usize {
        self.offsets.len()
    }

    /// Seals the batch, leaving the buffer empty until the next [`begin`](Self::begin).
    pub(crate) fn finish(&mut self, columns: Vec<String>, format: Format) -> Encoded {
        let buf = std::mem::take(&mut self.buf);
        let offsets = std::mem::take(&mut self.offsets);
        self.bytes_hint = buf.len();
        self.rows_hint = offsets.len();
        Encoded {
            columns,
            format,
            bytes: self.pool.freeze(buf),
            rows: offsets.len(),
            parts: Parts::Offsets(offsets.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ended_batch_buffer_is_written_again_by_a_later_batch() {
        let mut b = BatchBuffer::default();
        b.begin();
        b.start_row();
        b.buf.extend_from_slice(&[7; 100_000]);
        let first = b.finish(vec![], Format::RowBinary);
        let first_ptr = first.bytes.as_ptr();
        // Still in use (a slice of it is being sent): the next batch gets a buffer of its own.
        let slice = first.bytes.slice(10..20);
        drop(first);
        b.begin();
        assert_ne!(b.buf.as_ptr(), first_ptr);
        assert_eq!(b.pool.kept(), 0);
        b.start_row();
        b.buf.extend_from_slice(&[8; 100_000]);
        let second = b.finish(vec![], Format::RowBinary);
        // The last reference gone, the first buffer is kept, and the next batch writes into it.
        assert_eq!(&slice[..], &[7; 10]);
        drop(slice);
        assert_eq!(b.pool.kept(), 1);
        b.begin();
        assert_eq!(b.buf.as_ptr(), first_ptr);
        assert!(b.buf.is_empty());
        assert_eq!(b.pool.kept(), 0);
        // The second batch's bytes are untouched by the third batch's writes.
        b.buf.extend_from_slice(&[9; 50]);
        assert!(second.bytes.iter().all(|&x| x == 8));
        assert_eq!(second.bytes.len(), 100_000);
    }

    #[test]
    fn the_pool_keeps_at_most_two_buffers_and_none_once_its_encoder_is_gone() {
        let pool = BufferPool::default();
        let frozen: Vec<Bytes> = (0..4).map(|_| pool.freeze(vec![1; 1000])).collect();
        drop(frozen);
        assert_eq!(pool.kept(), KEEP);
        let late = pool.freeze(vec![1; 1000]);
        drop(pool);
        // Its pool gone, the buffer is freed with the last reference (no panic, no leak).
        assert_eq!(&late[..3], &[1, 1, 1]);
        drop(late);
    }

    #[test]
    fn a_kept_buffer_far_larger_than_the_next_batch_needs_is_not_reused() {
        let pool = BufferPool::default();
        drop(pool.freeze(Vec::with_capacity(1 << 20)));
        let small = pool.take(64 * 1024);
        assert!(small.capacity() < 1 << 20);
        drop(pool.freeze(Vec::with_capacity(1 << 20)));
        let too_small = pool.take(2 << 20);
        assert!(too_small.capacity() >= 2 << 20);
    }
}
