//! The items of a list or tuple by index, for the loops that read Python columns and rows a
//! range at a time.

use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

/// A list or tuple read by index.
pub enum Seq<'a, 'py> {
    /// A list (or a subclass of one).
    List(&'a Bound<'py, PyList>),
    /// A tuple (or a subclass of one).
    Tuple(&'a Bound<'py, PyTuple>),
}

impl<'a, 'py> Seq<'a, 'py> {
    /// `obj` when it is a list or a tuple (or of a subclass of either).
    pub fn new(obj: &'a Bound<'py, PyAny>) -> Option<Self> {
        if let Ok(list) = obj.cast::<PyList>() {
            Some(Seq::List(list))
        } else if let Ok(tuple) = obj.cast::<PyTuple>() {
            Some(Seq::Tuple(tuple))
        } else {
            None
        }
    }

    /// The interpreter's token.
    pub fn py(&self) -> Python<'py> {
        match self {
            Seq::List(l) => l.py(),
            Seq::Tuple(t) => t.py(),
        }
    }

    /// Its length now (a list may change while the GIL is released).
    pub fn len(&self) -> usize {
        match self {
            Seq::List(l) => l.len(),
            Seq::Tuple(t) => t.len(),
        }
    }

    /// Whether it has no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Item `i`; an `IndexError` when the sequence is shorter than `i + 1` now (a list that
    /// changed while the GIL was released).
    #[inline]
    pub fn get(&self, i: usize) -> PyResult<Bound<'py, PyAny>> {
        match self {
            Seq::List(l) => l.get_item(i),
            Seq::Tuple(t) => t.get_item(i),
        }
    }
}
