//! The items of a list or tuple by index, with the objects a few items ahead prefetched.
//!
//! A column of a million Python objects is spread over memory (a `dict` per row built them
//! row by row), so reading it item after item waits on a cache miss per object: in a profile
//! of `write_columns` on a dict of lists, most of the time went into the list iterator taking
//! a reference to the next item. Asking the CPU for the object `PREFETCH` items ahead while
//! the current one is read hides that wait. Besides [`arrow`](crate::arrow), this is the one
//! module of the crate with `unsafe` code (each block says why it is sound).

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

/// How many items ahead the next object is asked for.
const PREFETCH: usize = 16;

/// A list or tuple read by index.
pub struct Seq<'a, 'py> {
    obj: &'a Bound<'py, PyAny>,
    tuple: bool,
}

impl<'a, 'py> Seq<'a, 'py> {
    /// `obj` when it is a list or a tuple (or of a subclass of either).
    pub fn new(obj: &'a Bound<'py, PyAny>) -> Option<Self> {
        if obj.is_instance_of::<PyList>() {
            Some(Self { obj, tuple: false })
        } else if obj.is_instance_of::<PyTuple>() {
            Some(Self { obj, tuple: true })
        } else {
            None
        }
    }

    /// The interpreter's token.
    pub fn py(&self) -> Python<'py> {
        self.obj.py()
    }

    /// Its length now (a list may change while the GIL is released).
    pub fn len(&self) -> usize {
        // SAFETY: `obj` is a live list or tuple (checked in `new`) and the GIL is held
        // (`Bound`); the size functions only read its header.
        #[allow(unsafe_code)]
        let n = unsafe {
            if self.tuple {
                ffi::PyTuple_Size(self.obj.as_ptr())
            } else {
                ffi::PyList_Size(self.obj.as_ptr())
            }
        };
        usize::try_from(n).unwrap_or(0)
    }

    /// Whether it has no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Item `i` (a new reference), and a prefetch of item `i + PREFETCH`'s object; an
    /// `IndexError` when the sequence is shorter than `i + 1` now.
    #[inline]
    pub fn get(&self, i: usize) -> PyResult<Bound<'py, PyAny>> {
        let len = self.len();
        if i + PREFETCH < len {
            prefetch(self.borrowed(i + PREFETCH));
        }
        if i >= len {
            return Err(pyo3::exceptions::PyIndexError::new_err(format!(
                "item {i} is gone: the sequence changed while it was read"
            )));
        }
        // SAFETY: `borrowed(i)` is a borrowed reference to a live object (`i` is within the
        // length just read, nothing ran in between, the GIL is held); taking a new
        // reference makes it ours.
        #[allow(unsafe_code)]
        Ok(unsafe { Bound::from_borrowed_ptr(self.obj.py(), self.borrowed(i)) })
    }

    /// The pointer in slot `i`, borrowed. `i` must be below [`Seq::len`] (read with nothing
    /// run since), so that the call sets no exception and returns the item.
    #[inline]
    fn borrowed(&self, i: usize) -> *mut ffi::PyObject {
        let at = i as ffi::Py_ssize_t;
        // SAFETY: `obj` is a live list or tuple and the GIL is held; `at` is within its
        // length (the callers check it), so the call returns the borrowed item.
        #[allow(unsafe_code)]
        unsafe {
            if self.tuple {
                ffi::PyTuple_GetItem(self.obj.as_ptr(), at)
            } else {
                ffi::PyList_GetItem(self.obj.as_ptr(), at)
            }
        }
    }
}

/// Asks the CPU to bring the first two cache lines of the object at `p` into the cache (a
/// short `str` keeps its text there too). A hint: it never faults, whatever `p` is.
#[inline]
fn prefetch(p: *mut ffi::PyObject) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint; it reads nothing and cannot fault.
    #[allow(unsafe_code)]
    unsafe {
        use core::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>());
        _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>().wrapping_add(64));
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
