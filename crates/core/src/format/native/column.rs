//! Column builders: one tree per column, mirroring the type, each node owning the buffers of
//! its Native streams (null map, offsets, data, dictionary).

use std::ops::Range;
use std::sync::Arc;

use super::convert::{Reason, Scalar, write_str_bytes};
use super::typed::encode_range;
use crate::FastMap;
use crate::format::kind::scalar;
use crate::types::schema::ColumnType;
use crate::types::time::Zone;
use crate::types::value::{ColumnData, TypedColumn, TypedData, Value};
use crate::types::wire::{leb128_len, put_leb128};

/// A failure inside a column tree: the innermost value and type that failed.
#[derive(Debug)]
pub(crate) struct Failure {
    pub value: String,
    pub target_type: String,
    pub reason: Reason,
}

const VALUE_TEXT_MAX: usize = 200;

fn fail(v: &Value, ty: &str, reason: Reason) -> Failure {
    Failure {
        value: v.to_truncated_string(VALUE_TEXT_MAX),
        target_type: ty.to_owned(),
        reason,
    }
}

/// The builder of one column (or of a nested part of one).
#[derive(Debug, Clone)]
pub(crate) struct Builder {
    /// The ClickHouse type name of this node, for errors.
    type_name: Arc<str>,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Scalar {
        scalar: Scalar,
        data: Vec<u8>,
    },
    Nullable {
        nulls: Vec<u8>,
        inner: Box<Builder>,
    },
    Array {
        offsets: Vec<u64>,
        total: u64,
        inner: Box<Builder>,
    },
    Map {
        offsets: Vec<u64>,
        total: u64,
        keys: Box<Builder>,
        values: Box<Builder>,
    },
    Tuple {
        names: Option<Arc<[String]>>,
        elems: Vec<Builder>,
    },
    LowCardinality(Box<LowCard>),
}

#[derive(Debug, Clone)]
struct LowCard {
    scalar: Scalar,
    nullable: bool,
    /// Dictionary values, serialized as the inner (non-nullable) type.
    dict: Vec<u8>,
    dict_len: u64,
    lookup: FastMap<Box<[u8]>, u64>,
    keys: Vec<u64>,
    scratch: Vec<u8>,
}

impl Builder {
    /// An empty builder for `ty`; fails for unsupported types and unknown time zones.
    /// A `DateTime` without a time zone of its own reads local times in `server_tz`.
    pub(crate) fn new(
        ty: &ColumnType,
        server_tz: &Result<Zone, Reason>,
    ) -> Result<Builder, Reason> {
        let type_name: Arc<str> = ty.to_string().into();
        if let Some(scalar) = scalar(ty, server_tz)? {
            return Ok(Builder {
                type_name,
                kind: Kind::Scalar {
                    scalar,
                    data: Vec::new(),
                },
            });
        }
        let kind = match ty {
            ColumnType::Nullable(inner) => Kind::Nullable {
                nulls: Vec::new(),
                inner: Box::new(Builder::new(inner, server_tz)?),
            },
            ColumnType::Array(inner) => Kind::Array {
                offsets: Vec::new(),
                total: 0,
                inner: Box::new(Builder::new(inner, server_tz)?),
            },
            ColumnType::Map(k, v) => Kind::Map {
                offsets: Vec::new(),
                total: 0,
                keys: Box::new(Builder::new(k, server_tz)?),
                values: Box::new(Builder::new(v, server_tz)?),
            },
            ColumnType::Tuple(items) => {
                let named = items.iter().all(|(n, _)| n.is_some());
                Kind::Tuple {
                    names: named.then(|| {
                        items
                            .iter()
                            .map(|(n, _)| n.clone().unwrap_or_default())
                            .collect()
                    }),
                    elems: items
                        .iter()
                        .map(|(_, t)| Builder::new(t, server_tz))
                        .collect::<Result<_, _>>()?,
                }
            }
            ColumnType::LowCardinality(inner) => {
                let (nullable, base) = match &**inner {
                    ColumnType::Nullable(b) => (true, &**b),
                    other => (false, other),
                };
                let scalar = match scalar(base, server_tz)? {
                    Some(Scalar::Json) | None => {
                        return Err(format!("LowCardinality({base}) is not supported"));
                    }
                    Some(s) => s,
                };
                let mut lc = LowCard {
                    scalar,
                    nullable,
                    dict: Vec::new(),
                    dict_len: 0,
                    lookup: FastMap::default(),
                    keys: Vec::new(),
                    scratch: Vec::new(),
                };
                if nullable {
                    // Key 0 of a nullable dictionary stands for NULL.
                    lc.scalar.encode_default(&mut lc.dict);
                    lc.dict_len = 1;
                }
                Kind::LowCardinality(Box::new(lc))
            }
            ColumnType::Unsupported(name) => {
                return Err(format!("the type `{name}` is not supported"));
            }
            other => return Err(format!("the type `{other}` is not supported")),
        };
        Ok(Builder { type_name, kind })
    }

    /// Appends one value. On error the builder may hold part of it: roll back with a mark.
    pub(crate) fn push(&mut self, v: &Value) -> Result<(), Failure> {
        let ty = &self.type_name;
        match &mut self.kind {
            Kind::Scalar { scalar, data } => {
                if v.is_null() {
                    scalar.encode_default(data);
                    return Ok(());
                }
                scalar.encode(v, data).map_err(|r| fail(v, ty, r))
            }
            Kind::Nullable { nulls, inner } => {
                if v.is_null() {
                    nulls.push(1);
                    inner.push_default();
                    Ok(())
                } else {
                    nulls.push(0);
                    inner.push(v)
                }
            }
            Kind::Array {
                offsets,
                total,
                inner,
            } => {
                let items: &[Value] = match v {
                    Value::Array(a) | Value::Tuple(a) => a,
                    Value::Null => &[],
                    other => {
                        return Err(fail(
                            other,
                            ty,
                            format!("expected an array, got {}", other.kind()),
                        ));
                    }
                };
                for item in items {
                    inner.push(item)?;
                }
                *total += items.len() as u64;
                offsets.push(*total);
                Ok(())
            }
            Kind::Map {
                offsets,
                total,
                keys,
                values,
            } => {
                let n = match v {
                    Value::Map(pairs) => {
                        for (k, x) in pairs {
                            keys.push(k)?;
                            values.push(x)?;
                        }
                        pairs.len()
                    }
                    Value::Object(fields) => {
                        for (k, x) in fields {
                            keys.push_key_str(k)?;
                            values.push(x)?;
                        }
                        fields.len()
                    }
                    Value::Array(pairs) => {
                        for p in pairs {
                            match p {
                                Value::Array(kv) | Value::Tuple(kv) if kv.len() == 2 => {
                                    keys.push(&kv[0])?;
                                    values.push(&kv[1])?;
                                }
                                other => {
                                    return Err(fail(
                                        other,
                                        ty,
                                        "a map given as an array needs [key, value] pairs"
                                            .to_owned(),
                                    ));
                                }
                            }
                        }
                        pairs.len()
                    }
                    Value::Null => 0,
                    other => {
                        return Err(fail(
                            other,
                            ty,
                            format!("expected a map or an object, got {}", other.kind()),
                        ));
                    }
                };
                *total += n as u64;
                offsets.push(*total);
                Ok(())
            }
            Kind::Tuple { names, elems } => match v {
                Value::Array(items) | Value::Tuple(items) => {
                    if items.len() != elems.len() {
                        return Err(fail(
                            v,
                            ty,
                            format!(
                                "expected {} tuple elements, got {}",
                                elems.len(),
                                items.len()
                            ),
                        ));
                    }
                    for (e, item) in elems.iter_mut().zip(items) {
                        e.push(item)?;
                    }
                    Ok(())
                }
                Value::Object(fields) => {
                    let Some(names) = names else {
                        return Err(fail(
                            v,
                            ty,
                            "an object needs a named Tuple; give an array".to_owned(),
                        ));
                    };
                    if let Some((k, _)) = fields.iter().find(|(k, _)| !names.contains(k)) {
                        return Err(fail(v, ty, format!("the tuple has no element `{k}`")));
                    }
                    for (e, name) in elems.iter_mut().zip(names.iter()) {
                        // A missing element gets its type's default, like ClickHouse's
                        // input_format_json_defaults_for_missing_elements_in_named_tuple.
                        match fields.iter().find(|(k, _)| k == name) {
                            Some((_, x)) => e.push(x)?,
                            None => e.push_default(),
                        }
                    }
                    Ok(())
                }
                Value::Null => {
                    elems.iter_mut().for_each(Builder::push_default);
                    Ok(())
                }
                other => Err(fail(
                    other,
                    ty,
                    format!("expected a tuple (array or object), got {}", other.kind()),
                )),
            },
            Kind::LowCardinality(lc) => {
                if v.is_null() {
                    lc.push_default();
                    return Ok(());
                }
                lc.scratch.clear();
                lc.scalar
                    .encode(v, &mut lc.scratch)
                    .map_err(|r| fail(v, ty, r))?;
                lc.push_scratch();
                Ok(())
            }
        }
    }

    /// Appends rows `range` of a column. A row that fails is reported in `fails` (row, what
    /// failed); it may leave part of itself behind, so a caller that sees failures rolls the
    /// builder back (see [`Builder::mark`]).
    pub(crate) fn push_data_range(
        &mut self,
        data: &ColumnData,
        range: Range<usize>,
        fails: &mut Vec<(usize, Failure)>,
    ) {
        match data {
            ColumnData::Values(v) => {
                for r in range {
                    if let Err(f) = self.push(&v[r]) {
                        fails.push((r, f));
                    }
                }
            }
            ColumnData::Typed(t) => self.push_typed(t, range, fails),
        }
    }

    /// [`Builder::push_data_range`] of a typed column: tight loops where the node is a
    /// scalar, a `Nullable` scalar or a `LowCardinality`; lists into an `Array` and maps into
    /// a `Map` as their offsets then their items (pushed as typed columns themselves); cell
    /// by cell (through [`TypedColumn::value`]) elsewhere.
    fn push_typed(
        &mut self,
        col: &TypedColumn,
        range: Range<usize>,
        fails: &mut Vec<(usize, Failure)>,
    ) {
        let ty = &self.type_name;
        match &mut self.kind {
            Kind::Scalar { scalar, data } => {
                let mut reasons = Vec::new();
                match &col.nulls {
                    Some(n) if n[range.clone()].iter().any(|&b| b != 0) => {
                        // NULL in a scalar: the type's default (as `push` does).
                        for (r, is_null) in runs(&n[range.clone()], range.start) {
                            if is_null {
                                for _ in r {
                                    scalar.encode_default(data);
                                }
                            } else {
                                encode_range(scalar, col, r, data, &mut reasons);
                            }
                        }
                    }
                    _ => encode_range(scalar, col, range, data, &mut reasons),
                }
                fails.extend(
                    reasons
                        .into_iter()
                        .map(|(r, reason)| (r, fail(&col.value(r), ty, reason))),
                );
            }
            Kind::Nullable { nulls, inner } => match &col.nulls {
                None => {
                    nulls.resize(nulls.len() + range.len(), 0);
                    inner.push_typed(col, range, fails);
                }
                Some(n) => {
                    nulls.extend(n[range.clone()].iter().map(|&b| (b != 0) as u8));
                    for (r, is_null) in runs(&n[range.clone()], range.start) {
                        if is_null {
                            for _ in r {
                                inner.push_default();
                            }
                        } else {
                            inner.push_typed(col, r, fails);
                        }
                    }
                }
            },
            Kind::LowCardinality(lc) => {
                let lc = &mut **lc;
                let mut reasons = Vec::new();
                for r in range {
                    if col.is_null(r) {
                        lc.push_default();
                        continue;
                    }
                    lc.scratch.clear();
                    match (&lc.scalar, &col.data) {
                        (Scalar::String, TypedData::String(s) | TypedData::Binary(s)) => {
                            write_str_bytes(&mut lc.scratch, s.get(r))
                        }
                        (scalar, _) => {
                            let before = reasons.len();
                            encode_range(scalar, col, r..r + 1, &mut lc.scratch, &mut reasons);
                            if reasons.len() != before {
                                continue;
                            }
                        }
                    }
                    lc.push_scratch();
                }
                fails.extend(
                    reasons
                        .into_iter()
                        .map(|(r, reason)| (r, fail(&col.value(r), ty, reason))),
                );
            }
            Kind::Array {
                offsets,
                total,
                inner,
            } if matches!(col.data, TypedData::List { .. }) => {
                let TypedData::List {
                    offsets: from,
                    values,
                } = &col.data
                else {
                    unreachable!()
                };
                let mut item_fails = Vec::new();
                let mut scratch = Vec::new();
                push_offsets(offsets, total, from, col.nulls.as_deref(), range, |items| {
                    inner.push_typed(values, items, &mut scratch);
                    item_fails.extend(scratch.drain(..).map(|(i, f)| (i, 0, f)));
                });
                item_fails_to_rows(from, item_fails, fails);
            }
            Kind::Map {
                offsets,
                total,
                keys,
                values,
            } if matches!(col.data, TypedData::Map { .. }) => {
                let TypedData::Map {
                    offsets: from,
                    keys: k,
                    values: v,
                    ..
                } = &col.data
                else {
                    unreachable!()
                };
                let mut item_fails = Vec::new();
                let mut scratch = Vec::new();
                push_offsets(offsets, total, from, col.nulls.as_deref(), range, |items| {
                    keys.push_typed(k, items.clone(), &mut scratch);
                    item_fails.extend(scratch.drain(..).map(|(i, f)| (i, 0, f)));
                    values.push_typed(v, items, &mut scratch);
                    item_fails.extend(scratch.drain(..).map(|(i, f)| (i, 1, f)));
                });
                item_fails_to_rows(from, item_fails, fails);
            }
            _ => {
                for r in range {
                    if let Err(f) = self.push(&col.value(r)) {
                        fails.push((r, f));
                    }
                }
            }
        }
    }

    /// Appends an object key as a map key: written directly for `String` keys, otherwise
    /// converted like a string value.
    fn push_key_str(&mut self, k: &str) -> Result<(), Failure> {
        if let Kind::Scalar {
            scalar: Scalar::String,
            data,
        } = &mut self.kind
        {
            put_leb128(data, k.len() as u64);
            data.extend_from_slice(k.as_bytes());
            return Ok(());
        }
        self.push(&Value::String(k.to_owned()))
    }

    /// Appends the type's default value (NULL for Nullable).
    pub(crate) fn push_default(&mut self) {
        match &mut self.kind {
            Kind::Scalar { scalar, data } => scalar.encode_default(data),
            Kind::Nullable { nulls, inner } => {
                nulls.push(1);
                inner.push_default();
            }
            Kind::Array { offsets, total, .. } | Kind::Map { offsets, total, .. } => {
                offsets.push(*total)
            }
            Kind::Tuple { elems, .. } => elems.iter_mut().for_each(Builder::push_default),
            Kind::LowCardinality(lc) => lc.push_default(),
        }
    }

    /// Appends `n` copies of the image of `v` (used for the insert id column).
    pub(crate) fn push_repeated(&mut self, v: &Value, n: usize) -> Result<(), Failure> {
        if n == 0 {
            return Ok(());
        }
        if let Kind::Scalar { data, .. } = &self.kind {
            let start = data.len();
            self.push(v)?;
            let Kind::Scalar { data, .. } = &mut self.kind else {
                unreachable!()
            };
            let end = data.len();
            data.reserve((end - start) * (n - 1));
            for _ in 1..n {
                data.extend_from_within(start..end);
            }
            return Ok(());
        }
        for _ in 0..n {
            self.push(v)?;
        }
        Ok(())
    }

    /// Records the lengths of all buffers (depth first) for [`Builder::rollback`].
    pub(crate) fn mark(&self, m: &mut Vec<usize>) {
        match &self.kind {
            Kind::Scalar { data, .. } => m.push(data.len()),
            Kind::Nullable { nulls, inner } => {
                m.push(nulls.len());
                inner.mark(m);
            }
            Kind::Array {
                offsets,
                total,
                inner,
            } => {
                m.push(offsets.len());
                m.push(*total as usize);
                inner.mark(m);
            }
            Kind::Map {
                offsets,
                total,
                keys,
                values,
            } => {
                m.push(offsets.len());
                m.push(*total as usize);
                keys.mark(m);
                values.mark(m);
            }
            Kind::Tuple { elems, .. } => elems.iter().for_each(|e| e.mark(m)),
            // Dictionary entries added by a failed row stay; unused keys are harmless.
            Kind::LowCardinality(lc) => m.push(lc.keys.len()),
        }
    }

    /// Truncates all buffers to the lengths recorded by [`Builder::mark`].
    pub(crate) fn rollback(&mut self, m: &mut std::slice::Iter<'_, usize>) {
        let mut next = || *m.next().expect("BUG: mark/rollback mismatch");
        match &mut self.kind {
            Kind::Scalar { data, .. } => data.truncate(next()),
            Kind::Nullable { nulls, inner } => {
                nulls.truncate(next());
                inner.rollback(m);
            }
            Kind::Array {
                offsets,
                total,
                inner,
            } => {
                offsets.truncate(next());
                *total = next() as u64;
                inner.rollback(m);
            }
            Kind::Map {
                offsets,
                total,
                keys,
                values,
            } => {
                offsets.truncate(next());
                *total = next() as u64;
                keys.rollback(m);
                values.rollback(m);
            }
            Kind::Tuple { elems, .. } => elems.iter_mut().for_each(|e| e.rollback(m)),
            Kind::LowCardinality(lc) => lc.keys.truncate(next()),
        }
    }

    /// The number of bytes [`Builder::write_prefix`] + [`Builder::write_data`] will write.
    pub(crate) fn encoded_len(&self) -> usize {
        match &self.kind {
            Kind::Scalar { data, .. } => data.len(),
            Kind::Nullable { nulls, inner } => nulls.len() + inner.encoded_len(),
            Kind::Array { offsets, inner, .. } => offsets.len() * 8 + inner.encoded_len(),
            Kind::Map {
                offsets,
                keys,
                values,
                ..
            } => offsets.len() * 8 + keys.encoded_len() + values.encoded_len(),
            Kind::Tuple { elems, .. } => elems.iter().map(Builder::encoded_len).sum(),
            Kind::LowCardinality(lc) => {
                8 + if lc.keys.is_empty() {
                    0
                } else {
                    24 + lc.dict.len() + lc.keys.len() * lc.index_width()
                }
            }
        }
    }

    /// Writes the serialization prefixes of the column (LowCardinality's key version),
    /// which precede all data of the column.
    pub(crate) fn write_prefix(&self, out: &mut Vec<u8>) {
        match &self.kind {
            Kind::Scalar { .. } => {}
            Kind::Nullable { inner, .. } | Kind::Array { inner, .. } => inner.write_prefix(out),
            Kind::Map { keys, values, .. } => {
                keys.write_prefix(out);
                values.write_prefix(out);
            }
            Kind::Tuple { elems, .. } => elems.iter().for_each(|e| e.write_prefix(out)),
            // KeysSerializationVersion::SharedDictionariesWithAdditionalKeys
            Kind::LowCardinality(_) => out.extend_from_slice(&1u64.to_le_bytes()),
        }
    }

    /// Writes the column data (Native layout: null map before values, offsets before
    /// elements, tuple elements one after the other).
    pub(crate) fn write_data(&self, out: &mut Vec<u8>) {
        match &self.kind {
            Kind::Scalar { data, .. } => out.extend_from_slice(data),
            Kind::Nullable { nulls, inner } => {
                out.extend_from_slice(nulls);
                inner.write_data(out);
            }
            Kind::Array { offsets, inner, .. } => {
                write_offsets(offsets, out);
                inner.write_data(out);
            }
            Kind::Map {
                offsets,
                keys,
                values,
                ..
            } => {
                write_offsets(offsets, out);
                keys.write_data(out);
                values.write_data(out);
            }
            Kind::Tuple { elems, .. } => elems.iter().for_each(|e| e.write_data(out)),
            Kind::LowCardinality(lc) => lc.write_data(out),
        }
    }
}

/// The runs of equal null-ness of a null map: (rows, whether NULL), rows counted from `base`.
fn runs(nulls: &[u8], base: usize) -> impl Iterator<Item = (Range<usize>, bool)> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        if i >= nulls.len() {
            return None;
        }
        let is_null = nulls[i] != 0;
        let start = i;
        while i < nulls.len() && (nulls[i] != 0) == is_null {
            i += 1;
        }
        Some((base + start..base + i, is_null))
    })
}

/// Appends the offsets of rows `range` of a list-like typed column (`from`: its offsets,
/// `nulls`: its null map) to an `Array`/`Map` node whose items so far number `total`, and
/// hands each run of items to push to `items`. A NULL row is an empty array (as
/// [`Value::Null`] is in [`Builder::push`]): its items, if any, are skipped.
fn push_offsets(
    offsets: &mut Vec<u64>,
    total: &mut u64,
    from: &[u64],
    nulls: Option<&[u8]>,
    range: Range<usize>,
    mut items: impl FnMut(Range<usize>),
) {
    offsets.reserve(range.len());
    let mut run = |r: Range<usize>, is_null: bool| {
        if is_null {
            offsets.resize(offsets.len() + r.len(), *total);
            return;
        }
        let (lo, hi) = (from[r.start], from[r.end]);
        let t = *total;
        offsets.extend(from[r.start + 1..=r.end].iter().map(|&o| t + (o - lo)));
        *total += hi - lo;
        if hi > lo {
            items(lo as usize..hi as usize);
        }
    };
    match nulls {
        Some(n) if n[range.clone()].iter().any(|&b| b != 0) => {
            for (r, is_null) in runs(&n[range.clone()], range.start) {
                run(r, is_null);
            }
        }
        _ if range.is_empty() => {}
        _ => run(range, false),
    }
}

/// The failures of the items of a list-like typed column (`from`: its offsets) as failures
/// of its rows: (item, part, failure) with part 0 for list items and map keys, 1 for map
/// values. A row keeps its first failure in the order [`Builder::push`] meets them (item by
/// item, a key before its value).
fn item_fails_to_rows(
    from: &[u64],
    mut item_fails: Vec<(usize, u8, Failure)>,
    fails: &mut Vec<(usize, Failure)>,
) {
    if item_fails.is_empty() {
        return;
    }
    item_fails.sort_by_key(|(i, part, _)| (*i, *part));
    let mut last = None;
    for (i, _, f) in item_fails {
        // The row whose items hold `i`: the last one starting at or before it (rows before
        // it that start there too are empty).
        let row = from.partition_point(|&o| o <= i as u64) - 1;
        if last != Some(row) {
            last = Some(row);
            fails.push((row, f));
        }
    }
}

fn write_offsets(offsets: &[u64], out: &mut Vec<u8>) {
    out.reserve(offsets.len() * 8);
    for o in offsets {
        out.extend_from_slice(&o.to_le_bytes());
    }
}

impl LowCard {
    fn push_default(&mut self) {
        if self.nullable {
            self.keys.push(0);
        } else {
            self.scratch.clear();
            self.scalar.encode_default(&mut self.scratch);
            self.push_scratch();
        }
    }

    fn push_scratch(&mut self) {
        let key = match self.lookup.get(&self.scratch[..]) {
            Some(k) => *k,
            None => {
                let k = self.dict_len;
                self.dict.extend_from_slice(&self.scratch);
                self.dict_len += 1;
                self.lookup
                    .insert(self.scratch.clone().into_boxed_slice(), k);
                k
            }
        };
        self.keys.push(key);
    }

    fn index_width(&self) -> usize {
        match self.dict_len {
            0..=0x100 => 1,
            0x101..=0x1_0000 => 2,
            0x1_0001..=0x1_0000_0000 => 4,
            _ => 8,
        }
    }

    fn write_data(&self, out: &mut Vec<u8>) {
        // An empty column (e.g. the elements of empty arrays) writes nothing.
        if self.keys.is_empty() {
            return;
        }
        let width = self.index_width();
        let index_type: u64 = match width {
            1 => 0,
            2 => 1,
            4 => 2,
            _ => 3,
        };
        // HasAdditionalKeysBit | NeedUpdateDictionary, as the server writes it.
        let flags = index_type | (1 << 9) | (1 << 10);
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&self.dict_len.to_le_bytes());
        out.extend_from_slice(&self.dict);
        out.extend_from_slice(&(self.keys.len() as u64).to_le_bytes());
        out.reserve(self.keys.len() * width);
        for &k in &self.keys {
            out.extend_from_slice(&k.to_le_bytes()[..width]);
        }
    }
}

/// Writes a Native column header: name and type name.
pub(crate) fn write_column_header(name: &str, type_name: &str, out: &mut Vec<u8>) {
    put_leb128(out, name.len() as u64);
    out.extend_from_slice(name.as_bytes());
    put_leb128(out, type_name.len() as u64);
    out.extend_from_slice(type_name.as_bytes());
}

/// The size of a column header.
pub(crate) fn column_header_len(name: &str, type_name: &str) -> usize {
    leb128_len(name.len() as u64)
        + name.len()
        + leb128_len(type_name.len() as u64)
        + type_name.len()
}
