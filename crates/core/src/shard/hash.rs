//! ClickHouse's hash functions, bit for bit, for the sharding keys the client computes:
//! `intHash64`, `cityHash64` (CityHash v1.0.2, the version ClickHouse keeps), `sipHash64`
//! (SipHash-2-4, key 0) and `xxHash64` (seed 0), with the rules ClickHouse applies to their
//! arguments (integers through `intHash64` for `cityHash64`, the raw little-endian bytes for
//! the others, several arguments combined). The tests check them against the server.

use std::hash::Hasher;

/// One argument of a hash function, as ClickHouse holds it in a column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyValue {
    /// An integer column's value, with its type's width in bytes (1, 2, 4, 8).
    Int { value: i128, width: u8 },
    /// A `String` (or `FixedString`, zero-padded) column's bytes.
    Bytes(Vec<u8>),
}

impl KeyValue {
    /// The value as the integer ClickHouse's sharding uses for an integer key: the unsigned
    /// value of its width (a negative `Int32` is its two's complement as `UInt32`).
    pub(crate) fn as_key(&self) -> Option<u64> {
        match self {
            KeyValue::Int { .. } => Some(self.bits()),
            KeyValue::Bytes(_) => None,
        }
    }

    /// An integer's bits in its width, zero-extended to 64 (ClickHouse's `bit_cast`).
    fn bits(&self) -> u64 {
        match self {
            KeyValue::Int { value, width } => {
                let bits = u32::from(*width) * 8;
                let mask = if bits >= 64 {
                    u64::MAX
                } else {
                    (1u64 << bits) - 1
                };
                (*value as u64) & mask
            }
            KeyValue::Bytes(_) => 0,
        }
    }

    /// The value's bytes in memory (little-endian integers), as the hashes that read raw
    /// bytes see them.
    fn raw(&self) -> std::borrow::Cow<'_, [u8]> {
        match self {
            KeyValue::Int { width, .. } => {
                std::borrow::Cow::Owned(self.bits().to_le_bytes()[..*width as usize].to_vec())
            }
            KeyValue::Bytes(b) => std::borrow::Cow::Borrowed(b),
        }
    }
}

/// The hash functions a sharding key may call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HashFn {
    /// `intHash64(x)`: one integer argument.
    IntHash64,
    /// `cityHash64(...)`.
    CityHash64,
    /// `sipHash64(...)`.
    SipHash64,
    /// `xxHash64(x)`: one argument.
    XxHash64,
}

impl HashFn {
    /// The function of a (case-insensitive, as ClickHouse's) name.
    pub(crate) fn named(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "inthash64" => HashFn::IntHash64,
            "cityhash64" => HashFn::CityHash64,
            "siphash64" => HashFn::SipHash64,
            "xxhash64" => HashFn::XxHash64,
            _ => return None,
        })
    }

    /// The arguments the client can hash as the server does (`None`: the server's rules for
    /// these arguments are not reproduced here).
    pub(crate) fn accepts(self, args: usize) -> bool {
        match self {
            HashFn::IntHash64 | HashFn::XxHash64 => args == 1,
            HashFn::CityHash64 | HashFn::SipHash64 => args >= 1,
        }
    }

    /// The hash of `args` (see [`accepts`](Self::accepts)); `None` for arguments this
    /// function does not take here (`intHash64` of a string).
    pub(crate) fn apply(self, args: &[KeyValue]) -> Option<u64> {
        match self {
            HashFn::IntHash64 => match args {
                // The argument converted to UInt64 (a negative value sign-extended).
                [KeyValue::Int { value, .. }] => Some(int_hash64_fn(*value as u64)),
                _ => None,
            },
            HashFn::XxHash64 => match args {
                [v] => Some(twox_hash::XxHash64::oneshot(0, &v.raw())),
                _ => None,
            },
            HashFn::CityHash64 => {
                let one = |v: &KeyValue| match v {
                    KeyValue::Int { .. } => int_hash64_fn(v.bits()),
                    KeyValue::Bytes(b) => city_hash64(b),
                };
                let (first, rest) = args.split_first()?;
                Some(
                    rest.iter()
                        .fold(one(first), |h, v| hash_128_to_64(h, one(v))),
                )
            }
            HashFn::SipHash64 => {
                let (first, rest) = args.split_first()?;
                Some(rest.iter().fold(sip_hash64(&first.raw()), |h, v| {
                    let mut both = [0u8; 16];
                    both[..8].copy_from_slice(&h.to_le_bytes());
                    both[8..].copy_from_slice(&sip_hash64(&v.raw()).to_le_bytes());
                    sip_hash64(&both)
                }))
            }
        }
    }
}

/// ClickHouse's `intHash64` function: the mixer over the value with its salt.
pub(crate) fn int_hash64_fn(x: u64) -> u64 {
    int_hash64(x ^ 0x4CF2_D2BA_AE6D_A887)
}

/// The 64-bit mixer (MurmurHash3's finaliser) under ClickHouse's `intHash64`.
fn int_hash64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^= x >> 33;
    x
}

/// SipHash-2-4 with the key (0, 0), ClickHouse's `sipHash64` of one string.
#[allow(deprecated)] // std's SipHasher is exactly SipHash-2-4; the deprecation is about HashMap use.
fn sip_hash64(data: &[u8]) -> u64 {
    let mut h = std::hash::SipHasher::new_with_keys(0, 0);
    h.write(data);
    h.finish()
}

const K0: u64 = 0xc3a5_c85c_97cb_3127;
const K1: u64 = 0xb492_b66f_be98_f273;
const K2: u64 = 0x9ae1_6a3b_2f90_404f;
const K3: u64 = 0xc949_d7c7_509e_6557;
const K_MUL: u64 = 0x9ddf_ea08_eb38_2d69;

fn fetch64(s: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(s[at..at + 8].try_into().expect("8 bytes"))
}

fn fetch32(s: &[u8], at: usize) -> u64 {
    u64::from(u32::from_le_bytes(
        s[at..at + 4].try_into().expect("4 bytes"),
    ))
}

fn rotate(v: u64, shift: u32) -> u64 {
    v.rotate_right(shift)
}

fn shift_mix(v: u64) -> u64 {
    v ^ (v >> 47)
}

/// CityHash's `Hash128to64` (also how ClickHouse combines the hashes of several arguments).
fn hash_128_to_64(low: u64, high: u64) -> u64 {
    let mut a = (low ^ high).wrapping_mul(K_MUL);
    a ^= a >> 47;
    let mut b = (high ^ a).wrapping_mul(K_MUL);
    b ^= b >> 47;
    b.wrapping_mul(K_MUL)
}

fn hash_len_0_to_16(s: &[u8]) -> u64 {
    let len = s.len();
    if len > 8 {
        let a = fetch64(s, 0);
        let b = fetch64(s, len - 8);
        return hash_128_to_64(a, rotate(b.wrapping_add(len as u64), len as u32)) ^ b;
    }
    if len >= 4 {
        let a = fetch32(s, 0);
        return hash_128_to_64((len as u64).wrapping_add(a << 3), fetch32(s, len - 4));
    }
    if len > 0 {
        let (a, b, c) = (s[0], s[len >> 1], s[len - 1]);
        let y = u32::from(a).wrapping_add(u32::from(b) << 8);
        let z = (len as u32).wrapping_add(u32::from(c) << 2);
        return shift_mix(u64::from(y).wrapping_mul(K2) ^ u64::from(z).wrapping_mul(K3))
            .wrapping_mul(K2);
    }
    K2
}

fn hash_len_17_to_32(s: &[u8]) -> u64 {
    let len = s.len();
    let a = fetch64(s, 0).wrapping_mul(K1);
    let b = fetch64(s, 8);
    let c = fetch64(s, len - 8).wrapping_mul(K2);
    let d = fetch64(s, len - 16).wrapping_mul(K0);
    hash_128_to_64(
        rotate(a.wrapping_sub(b), 43)
            .wrapping_add(rotate(c, 30))
            .wrapping_add(d),
        a.wrapping_add(rotate(b ^ K3, 20))
            .wrapping_sub(c)
            .wrapping_add(len as u64),
    )
}

fn weak_hash_len_32_with_seeds(s: &[u8], at: usize, mut a: u64, mut b: u64) -> (u64, u64) {
    let (w, x, y, z) = (
        fetch64(s, at),
        fetch64(s, at + 8),
        fetch64(s, at + 16),
        fetch64(s, at + 24),
    );
    a = a.wrapping_add(w);
    b = rotate(b.wrapping_add(a).wrapping_add(z), 21);
    let c = a;
    a = a.wrapping_add(x).wrapping_add(y);
    b = b.wrapping_add(rotate(a, 44));
    (a.wrapping_add(z), b.wrapping_add(c))
}

fn hash_len_33_to_64(s: &[u8]) -> u64 {
    let len = s.len();
    let mut z = fetch64(s, 24);
    let mut a = fetch64(s, 0).wrapping_add(
        (len as u64)
            .wrapping_add(fetch64(s, len - 16))
            .wrapping_mul(K0),
    );
    let mut b = rotate(a.wrapping_add(z), 52);
    let mut c = rotate(a, 37);
    a = a.wrapping_add(fetch64(s, 8));
    c = c.wrapping_add(rotate(a, 7));
    a = a.wrapping_add(fetch64(s, 16));
    let vf = a.wrapping_add(z);
    let vs = b.wrapping_add(rotate(a, 31)).wrapping_add(c);
    a = fetch64(s, 16).wrapping_add(fetch64(s, len - 32));
    z = fetch64(s, len - 8);
    b = rotate(a.wrapping_add(z), 52);
    c = rotate(a, 37);
    a = a.wrapping_add(fetch64(s, len - 24));
    c = c.wrapping_add(rotate(a, 7));
    a = a.wrapping_add(fetch64(s, len - 16));
    let wf = a.wrapping_add(z);
    let ws = b.wrapping_add(rotate(a, 31)).wrapping_add(c);
    let r = shift_mix(
        vf.wrapping_add(ws)
            .wrapping_mul(K2)
            .wrapping_add(wf.wrapping_add(vs).wrapping_mul(K0)),
    );
    shift_mix(r.wrapping_mul(K0).wrapping_add(vs)).wrapping_mul(K2)
}

/// CityHash64 v1.0.2 (ClickHouse's `cityHash64` of one string).
pub(crate) fn city_hash64(s: &[u8]) -> u64 {
    let len = s.len();
    if len <= 16 {
        return hash_len_0_to_16(s);
    }
    if len <= 32 {
        return hash_len_17_to_32(s);
    }
    if len <= 64 {
        return hash_len_33_to_64(s);
    }
    let mut x = fetch64(s, 0);
    let mut y = fetch64(s, len - 16) ^ K1;
    let mut z = fetch64(s, len - 56) ^ K0;
    let mut v = weak_hash_len_32_with_seeds(s, len - 64, len as u64, y);
    let mut w = weak_hash_len_32_with_seeds(s, len - 32, (len as u64).wrapping_mul(K1), K0);
    z = z.wrapping_add(shift_mix(v.1).wrapping_mul(K1));
    x = rotate(z.wrapping_add(x), 39).wrapping_mul(K1);
    y = rotate(y, 33).wrapping_mul(K1);
    // The length rounded down to a multiple of 64, taken in 64-byte chunks.
    let mut left = (len - 1) & !63;
    let mut at = 0;
    loop {
        x = rotate(
            x.wrapping_add(y)
                .wrapping_add(v.0)
                .wrapping_add(fetch64(s, at + 16)),
            37,
        )
        .wrapping_mul(K1);
        y = rotate(y.wrapping_add(v.1).wrapping_add(fetch64(s, at + 48)), 42).wrapping_mul(K1);
        x ^= w.1;
        y ^= v.0;
        z = rotate(z ^ w.0, 33);
        v = weak_hash_len_32_with_seeds(s, at, v.1.wrapping_mul(K1), x.wrapping_add(w.0));
        w = weak_hash_len_32_with_seeds(s, at + 32, z.wrapping_add(w.1), y);
        std::mem::swap(&mut z, &mut x);
        at += 64;
        left -= 64;
        if left == 0 {
            break;
        }
    }
    hash_128_to_64(
        hash_128_to_64(v.0, w.0)
            .wrapping_add(shift_mix(y).wrapping_mul(K1))
            .wrapping_add(z),
        hash_128_to_64(v.1, w.1).wrapping_add(x),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> clickhouse::Client {
        chasync_testkit::client()
    }

    /// Strings of every length from 0 to 300 bytes (every branch of CityHash64), hashed here
    /// and by the server.
    #[tokio::test]
    async fn string_hashes_match_the_server() {
        #[derive(clickhouse::Row, serde::Deserialize)]
        struct Row {
            s: String,
            city: u64,
            sip: u64,
            xx: u64,
            city2: u64,
            sip2: u64,
        }
        let rows = client()
            .query(
                "SELECT s, cityHash64(s) AS city, sipHash64(s) AS sip, xxHash64(s) AS xx, \
                 cityHash64(s, 'second') AS city2, sipHash64(s, 'second') AS sip2 FROM \
                 (SELECT substring(repeat(hex(sipHash128(number)), 20), 1, number) AS s \
                  FROM numbers(301))",
            )
            .fetch_all::<Row>()
            .await
            .expect("the server answers");
        assert_eq!(rows.len(), 301);
        let second = KeyValue::Bytes(b"second".to_vec());
        for r in rows {
            let v = KeyValue::Bytes(r.s.clone().into_bytes());
            let len = r.s.len();
            assert_eq!(
                HashFn::CityHash64.apply(std::slice::from_ref(&v)),
                Some(r.city),
                "cityHash64, {len} bytes"
            );
            assert_eq!(
                HashFn::SipHash64.apply(std::slice::from_ref(&v)),
                Some(r.sip),
                "sipHash64, {len} bytes"
            );
            assert_eq!(
                HashFn::XxHash64.apply(std::slice::from_ref(&v)),
                Some(r.xx),
                "xxHash64, {len} bytes"
            );
            let two = [v, second.clone()];
            assert_eq!(
                HashFn::CityHash64.apply(&two),
                Some(r.city2),
                "cityHash64 of two, {len} bytes"
            );
            assert_eq!(
                HashFn::SipHash64.apply(&two),
                Some(r.sip2),
                "sipHash64 of two, {len} bytes"
            );
        }
    }

    /// Every integer type, negative values and the extremes included, hashed here and by the
    /// server, alone and after a string.
    #[tokio::test]
    async fn integer_hashes_match_the_server() {
        #[derive(clickhouse::Row, serde::Deserialize)]
        struct Row {
            v: String,
            int: u64,
            city: u64,
            sip: u64,
            xx: u64,
            city2: u64,
            sip2: u64,
        }
        let types: [(&str, u8, bool); 8] = [
            ("Int8", 1, true),
            ("Int16", 2, true),
            ("Int32", 4, true),
            ("Int64", 8, true),
            ("UInt8", 1, false),
            ("UInt16", 2, false),
            ("UInt32", 4, false),
            ("UInt64", 8, false),
        ];
        for (ty, width, signed) in types {
            let bits = u32::from(width) * 8;
            let (lo, hi): (i128, i128) = if signed {
                (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
            } else {
                (0, (1i128 << bits) - 1)
            };
            let mut values: Vec<i128> = vec![lo, hi, 0, 1, 2, 3, 7, 100];
            if signed {
                values.extend([-1, -2, -100]);
            }
            let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
            for _ in 0..40 {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let span = (hi - lo) as u128 + 1;
                values.push(lo + ((x as u128) % span) as i128);
            }
            let list: Vec<String> = values.iter().map(|v| format!("'{v}'")).collect();
            let sql = format!(
                "SELECT toString(x) AS v, intHash64(x) AS int, cityHash64(x) AS city, \
                 sipHash64(x) AS sip, xxHash64(x) AS xx, cityHash64('k', x) AS city2, \
                 sipHash64('k', x) AS sip2 FROM \
                 (SELECT CAST(arrayJoin([{}]) AS {ty}) AS x)",
                list.join(",")
            );
            let rows = client()
                .query(&sql)
                .fetch_all::<Row>()
                .await
                .expect("the server answers");
            assert_eq!(rows.len(), values.len());
            for r in rows {
                let v = KeyValue::Int {
                    value: r.v.parse().unwrap(),
                    width,
                };
                let what = format!("{ty} {}", r.v);
                assert_eq!(
                    HashFn::IntHash64.apply(std::slice::from_ref(&v)),
                    Some(r.int),
                    "intHash64 {what}"
                );
                assert_eq!(
                    HashFn::CityHash64.apply(std::slice::from_ref(&v)),
                    Some(r.city),
                    "cityHash64 {what}"
                );
                assert_eq!(
                    HashFn::SipHash64.apply(std::slice::from_ref(&v)),
                    Some(r.sip),
                    "sipHash64 {what}"
                );
                assert_eq!(
                    HashFn::XxHash64.apply(std::slice::from_ref(&v)),
                    Some(r.xx),
                    "xxHash64 {what}"
                );
                let two = [KeyValue::Bytes(b"k".to_vec()), v];
                assert_eq!(
                    HashFn::CityHash64.apply(&two),
                    Some(r.city2),
                    "cityHash64('k', {what})"
                );
                assert_eq!(
                    HashFn::SipHash64.apply(&two),
                    Some(r.sip2),
                    "sipHash64('k', {what})"
                );
            }
        }
    }
}
