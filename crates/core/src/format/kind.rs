//! The type compiler: a scalar [`ColumnType`] resolved once per column into the kind the
//! encoders write (integer width and sign, float width, decimal width, scale and limit,
//! date kinds with their time zone, enum elements), shared by the Native encoder and the
//! JSON → RowBinary converter.

use std::sync::Arc;

use crate::types::schema::ColumnType;
use crate::types::text::U256;
use crate::types::time::Zone;

/// A resolved scalar column type: what a leaf of a column's type holds.
#[derive(Debug, Clone)]
pub(crate) enum Scalar {
    Int {
        width: u8,
        signed: bool,
    },
    Float32,
    Float64,
    BFloat16,
    Decimal {
        width: u8,
        scale: u8,
        limit: U256,
    },
    Bool,
    String,
    FixedString(usize),
    Uuid,
    IPv4,
    IPv6,
    /// The zone reads date-times and epoch seconds given for a date: the server's.
    Date(Zone),
    Date32(Zone),
    DateTime(Zone),
    DateTime64 {
        precision: u8,
        zone: Zone,
    },
    Enum8(Arc<[(String, i8)]>),
    Enum16(Arc<[(String, i16)]>),
    Json,
}

/// Compiles a scalar column type; `Ok(None)` for a type that is not a scalar (a wrapper:
/// `Nullable`, `Array`, `Map`, `Tuple`, `LowCardinality`) or that has no scalar kind. A
/// `DateTime` without a time zone of its own takes `server`'s, and fails with its reason
/// when the server's is not known; a `Date` reads instants in the server's zone, or in UTC
/// when it is not known.
pub(crate) fn scalar(
    ty: &ColumnType,
    server: &Result<Zone, String>,
) -> Result<Option<Scalar>, String> {
    use ColumnType as T;
    if let Some((width, signed)) = ty.int_width() {
        return Ok(Some(Scalar::Int { width, signed }));
    }
    let server_date_zone = || server.as_ref().cloned().unwrap_or(Zone::UTC);
    Ok(Some(match ty {
        T::Float32 => Scalar::Float32,
        T::Float64 => Scalar::Float64,
        T::BFloat16 => Scalar::BFloat16,
        T::Decimal { precision, scale } => Scalar::Decimal {
            width: match precision {
                0..=9 => 4,
                10..=18 => 8,
                19..=38 => 16,
                _ => 32,
            },
            scale: *scale,
            limit: U256::pow10(u32::from(*precision)).ok_or("Decimal precision too large")?,
        },
        T::Bool => Scalar::Bool,
        T::String => Scalar::String,
        T::FixedString(n) => Scalar::FixedString(*n),
        T::Uuid => Scalar::Uuid,
        T::IPv4 => Scalar::IPv4,
        T::IPv6 => Scalar::IPv6,
        T::Date => Scalar::Date(server_date_zone()),
        T::Date32 => Scalar::Date32(server_date_zone()),
        T::DateTime(z) => Scalar::DateTime(Zone::of_column(z.as_deref(), server)?),
        T::DateTime64(p, z) if *p <= 9 => Scalar::DateTime64 {
            precision: *p,
            zone: Zone::of_column(z.as_deref(), server)?,
        },
        T::Enum8(items) => Scalar::Enum8(items.clone().into()),
        T::Enum16(items) => Scalar::Enum16(items.clone().into()),
        T::Json(_) => Scalar::Json,
        _ => return Ok(None),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(ty: &str, server: &Result<Zone, String>) -> Result<Option<Scalar>, String> {
        scalar(&ColumnType::parse(ty).unwrap(), server)
    }

    #[test]
    fn scalars_resolve_their_zones() {
        let tokyo = Zone::named("Asia/Tokyo");
        let unknown: Result<Zone, String> = Err("unknown time zone `X`".into());
        assert!(matches!(
            compile("Int128", &tokyo),
            Ok(Some(Scalar::Int {
                width: 16,
                signed: true
            }))
        ));
        assert!(matches!(
            compile("Decimal(20, 3)", &tokyo),
            Ok(Some(Scalar::Decimal {
                width: 16,
                scale: 3,
                ..
            }))
        ));
        match compile("DateTime", &tokyo) {
            Ok(Some(Scalar::DateTime(z))) => assert!(!z.is_utc()),
            other => panic!("{other:?}"),
        }
        match compile("DateTime64(3, 'UTC')", &unknown) {
            Ok(Some(Scalar::DateTime64 { precision: 3, zone })) => assert!(zone.is_utc()),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            compile("DateTime", &unknown).unwrap_err(),
            "unknown time zone `X`"
        );
        match compile("Date", &unknown) {
            Ok(Some(Scalar::Date(z))) => assert!(z.is_utc()),
            other => panic!("{other:?}"),
        }
        assert!(compile("DateTime('Mars/Olympus')", &tokyo).is_err());
        for wrapper in [
            "Nullable(String)",
            "Array(UInt8)",
            "LowCardinality(String)",
            "Map(String, UInt8)",
            "Tuple(UInt8, String)",
        ] {
            assert!(compile(wrapper, &tokyo).unwrap().is_none(), "{wrapper}");
        }
    }
}
