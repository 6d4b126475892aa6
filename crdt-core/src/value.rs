//! Field values and the limits on names and sizes.

use std::cmp::Ordering;
use std::collections::BTreeMap;

pub use arcstr::ArcStr;
use base64::Engine as _;
pub use thin_vec::ThinVec;

use crate::error::WriteError;

/// Longest collection name, in bytes. Collection names appear in bucket keys.
pub const MAX_COLLECTION_NAME_BYTES: usize = 64;
/// Longest document id, in bytes.
pub const MAX_DOCUMENT_ID_BYTES: usize = 256;
/// Longest field name (and object key inside a value), in bytes.
pub const MAX_FIELD_NAME_BYTES: usize = 256;
/// Largest encoded size of one field value.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Largest encoded size of one document, summed over its fields, for local writes.
pub const MAX_DOCUMENT_BYTES: usize = 4 << 20;
/// Deepest nesting of arrays and objects inside a value.
pub const MAX_VALUE_DEPTH: usize = 32;
/// The reserved register that marks a document as deleted (soft delete).
pub const DELETED_FIELD: &str = "_deleted";

/// A field value. Arrays and objects are written whole: the last writer's value wins entirely.
///
/// A value is 16 bytes: every variant that owns memory holds a single pointer (the lengths of
/// strings, bytes and arrays live in their allocation), so a register, which stores one, is
/// 32 bytes. Strings are reference-counted ([`ArcStr`]): copying a value out of a replica does
/// not copy its text. Build values with `From` (`Value::from("text")`, `Value::from(vec![..])`)
/// rather than spelling these types out.
///
/// Floats are always finite (writes of NaN or ±∞ are refused), so values have a total order and
/// equality is exact (`-0.0` and `0.0` are different values, as they encode differently).
#[derive(Clone, Debug)]
pub enum Value {
    /// No value; writing it removes a field.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A 64-bit signed integer.
    Int(i64),
    /// A finite 64-bit float.
    Float(f64),
    /// UTF-8 text.
    Str(ArcStr),
    /// Raw bytes.
    Bytes(ThinVec<u8>),
    /// A list of values.
    Array(ThinVec<Value>),
    /// A map from keys to values, ordered by key.
    Object(Box<BTreeMap<String, Value>>),
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Float(a), Value::Float(b)) => a.to_bits() == b.to_bits(),
            (Value::Str(a), Value::Str(b)) => a == b,
            (Value::Bytes(a), Value::Bytes(b)) => a == b,
            (Value::Array(a), Value::Array(b)) => a == b,
            (Value::Object(a), Value::Object(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Value {}

impl Value {
    /// Whether this is [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The number as an `f64`, for integers and floats.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The text, for strings.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Checks that the value may be written: finite floats, nesting at most
    /// [`MAX_VALUE_DEPTH`], object keys at most [`MAX_FIELD_NAME_BYTES`], encoded size at most
    /// [`MAX_VALUE_BYTES`]. Returns the encoded size.
    pub fn validate(&self) -> Result<usize, WriteError> {
        let size = self.checked_size(0)?;
        if size > MAX_VALUE_BYTES {
            return Err(WriteError::ValueTooLarge {
                size,
                limit: MAX_VALUE_BYTES,
            });
        }
        Ok(size)
    }

    fn checked_size(&self, depth: usize) -> Result<usize, WriteError> {
        if depth > MAX_VALUE_DEPTH {
            return Err(WriteError::ValueTooDeep {
                limit: MAX_VALUE_DEPTH,
            });
        }
        Ok(match self {
            Value::Float(f) if !f.is_finite() => return Err(WriteError::NonFiniteFloat),
            Value::Array(items) => {
                let mut size = 1 + varint_len(items.len() as u64);
                for item in items.iter() {
                    size = size.saturating_add(item.checked_size(depth + 1)?);
                }
                size
            }
            Value::Object(map) => {
                let mut size = 1 + varint_len(map.len() as u64);
                for (key, item) in map.iter() {
                    if key.len() > MAX_FIELD_NAME_BYTES {
                        return Err(WriteError::InvalidFieldName {
                            name: truncate(key),
                            reason: "object keys are at most 256 bytes",
                        });
                    }
                    size = size
                        .saturating_add(varint_len(key.len() as u64) + key.len())
                        .saturating_add(item.checked_size(depth + 1)?);
                }
                size
            }
            scalar => scalar.encoded_len(),
        })
    }

    /// The size of this value in the binary codec.
    pub fn encoded_len(&self) -> usize {
        1 + match self {
            Value::Null | Value::Bool(_) => 0,
            Value::Int(i) => varint_len(zigzag(*i)),
            Value::Float(_) => 8,
            Value::Str(s) => varint_len(s.len() as u64) + s.len(),
            Value::Bytes(b) => varint_len(b.len() as u64) + b.len(),
            Value::Array(items) => {
                varint_len(items.len() as u64) + items.iter().map(Value::encoded_len).sum::<usize>()
            }
            Value::Object(map) => {
                varint_len(map.len() as u64)
                    + map
                        .iter()
                        .map(|(k, v)| varint_len(k.len() as u64) + k.len() + v.encoded_len())
                        .sum::<usize>()
            }
        }
    }

    /// The value as JSON. Bytes become base64 strings (standard alphabet, padded): JSON has no
    /// byte type.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
            Value::Str(s) => serde_json::Value::String(s.to_string()),
            Value::Bytes(b) => {
                serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(b))
            }
            Value::Array(items) => items.iter().map(Value::to_json).collect(),
            Value::Object(map) => {
                // Inserted one by one rather than collected: collecting into a B-tree map sorts
                // first, and that sort, compiled for each map type, is about 5 KB of wasm.
                let mut object = serde_json::Map::new();
                for (k, v) in map.iter() {
                    object.insert(k.clone(), v.to_json());
                }
                object.into()
            }
        }
    }

    /// The total order used by queries: null < bools < numbers < strings < bytes < arrays <
    /// objects; integers and floats compare by numeric value.
    pub fn total_cmp(&self, other: &Value) -> Ordering {
        self.rank()
            .cmp(&other.rank())
            .then_with(|| match (self, other) {
                (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
                (Value::Str(a), Value::Str(b)) => a.cmp(b),
                (Value::Bytes(a), Value::Bytes(b)) => a.cmp(b),
                (Value::Array(a), Value::Array(b)) => {
                    for (x, y) in a.iter().zip(b.iter()) {
                        let order = x.total_cmp(y);
                        if order != Ordering::Equal {
                            return order;
                        }
                    }
                    a.len().cmp(&b.len())
                }
                (Value::Object(a), Value::Object(b)) => {
                    for ((ka, va), (kb, vb)) in a.iter().zip(b.iter()) {
                        let order = ka.cmp(kb).then_with(|| va.total_cmp(vb));
                        if order != Ordering::Equal {
                            return order;
                        }
                    }
                    a.len().cmp(&b.len())
                }
                (a, b) => match (a, b) {
                    (Value::Int(x), Value::Int(y)) => x.cmp(y),
                    (Value::Int(x), Value::Float(y)) => cmp_int_float(*x, *y),
                    (Value::Float(x), Value::Int(y)) => cmp_int_float(*y, *x).reverse(),
                    (Value::Float(x), Value::Float(y)) => x.total_cmp(y),
                    _ => Ordering::Equal,
                },
            })
    }

    /// Equality as queries see it: like `==`, except integers and floats compare numerically.
    pub fn query_eq(&self, other: &Value) -> bool {
        self.total_cmp(other) == Ordering::Equal
    }

    pub(crate) fn rank(&self) -> u8 {
        match self {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Int(_) | Value::Float(_) => 2,
            Value::Str(_) => 3,
            Value::Bytes(_) => 4,
            Value::Array(_) => 5,
            Value::Object(_) => 6,
        }
    }
}

/// Compares an integer with a float exactly (no rounding of large integers).
fn cmp_int_float(int: i64, float: f64) -> Ordering {
    let approx = (int as f64).total_cmp(&float);
    if approx != Ordering::Equal {
        return approx;
    }
    // `int as f64 == float`, so `float` is integral and within ±2^63; the exact comparison
    // only matters where the conversion rounded `int`.
    // 2^63, the smallest float above every i64.
    if float >= 9_223_372_036_854_775_808.0 {
        return Ordering::Less;
    }
    int.cmp(&(float as i64))
}

fn truncate(text: &str) -> String {
    text.chars().take(40).collect()
}

pub(crate) const fn zigzag(i: i64) -> u64 {
    ((i << 1) ^ (i >> 63)) as u64
}

pub(crate) const fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

pub(crate) const fn varint_len(u: u64) -> usize {
    // One byte per 7 significant bits, at least one: no loop, as sizing runs on every write.
    let bits = 64 - (u | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Checks a collection name: 1–64 bytes of ASCII letters, digits, `_` and `-`, starting with a
/// letter or digit. Collection names become bucket key segments.
pub fn validate_collection_name(name: &str) -> Result<(), WriteError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_COLLECTION_NAME_BYTES
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(WriteError::InvalidCollectionName {
            name: truncate(name),
        })
    }
}

/// Checks a document id: 1–256 bytes of UTF-8.
pub fn validate_document_id(id: &str) -> Result<(), WriteError> {
    if id.is_empty() || id.len() > MAX_DOCUMENT_ID_BYTES {
        return Err(WriteError::InvalidDocumentId { id: truncate(id) });
    }
    Ok(())
}

/// Checks a field name an application may write: 1–256 bytes, not starting with `_` (names
/// starting with `_` are reserved for Tidemark, like [`DELETED_FIELD`]).
pub fn validate_field_name(name: &str) -> Result<(), WriteError> {
    if name.is_empty() || name.len() > MAX_FIELD_NAME_BYTES {
        return Err(WriteError::InvalidFieldName {
            name: truncate(name),
            reason: "field names are 1 to 256 bytes",
        });
    }
    if name.starts_with('_') {
        return Err(WriteError::InvalidFieldName {
            name: truncate(name),
            reason: "field names starting with '_' are reserved",
        });
    }
    Ok(())
}

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Value {
                Value::Int(i64::from(v))
            }
        }
    )*};
}
from_int!(i8, i16, i32, i64, u8, u16, u32);

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Bool(v)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Float(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Str(v.into())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Str(v.into())
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Value {
        Value::Bytes(v.into())
    }
}

impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Value {
        Value::Bytes(v.into())
    }
}

impl From<Vec<Value>> for Value {
    fn from(v: Vec<Value>) -> Value {
        Value::Array(v.into())
    }
}

impl From<serde_json::Value> for Value {
    /// Integers that fit an `i64` become [`Value::Int`], other numbers [`Value::Float`].
    fn from(json: serde_json::Value) -> Value {
        match json {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Value::from(s),
            serde_json::Value::Array(items) => {
                Value::Array(items.into_iter().map(Value::from).collect())
            }
            serde_json::Value::Object(map) => {
                // One by one, not collected: see `Value::to_json`.
                let mut object = BTreeMap::new();
                for (k, v) in map {
                    object.insert(k, Value::from(v));
                }
                Value::Object(Box::new(object))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_round_trips_except_bytes() {
        let json = json!({"a": [1, 2.5, "x", null, true], "b": {"c": -3}});
        assert_eq!(Value::from(json.clone()).to_json(), json);
        assert_eq!(Value::from(vec![1u8, 2, 3]).to_json(), json!("AQID"));
    }

    #[test]
    fn numbers_compare_across_int_and_float() {
        assert!(Value::Int(1).query_eq(&Value::Float(1.0)));
        assert_eq!(
            Value::Int(2).total_cmp(&Value::Float(1.5)),
            Ordering::Greater
        );
        assert_eq!(
            Value::Int(i64::MAX).total_cmp(&Value::Float(9_223_372_036_854_775_808.0)),
            Ordering::Less
        );
        assert_eq!(
            Value::Int((1 << 53) + 1).total_cmp(&Value::Float((1u64 << 53) as f64)),
            Ordering::Greater,
            "large integers are compared exactly"
        );
    }

    #[test]
    fn types_order_null_bool_number_string() {
        let ordered = [
            Value::Null,
            Value::Bool(false),
            Value::Int(-5),
            Value::Str("a".into()),
            Value::from(vec![0u8]),
        ];
        for pair in ordered.windows(2) {
            assert_eq!(pair[0].total_cmp(&pair[1]), Ordering::Less);
        }
    }

    #[test]
    fn invalid_values_are_refused_with_a_reason() {
        assert_eq!(
            Value::Float(f64::NAN).validate(),
            Err(WriteError::NonFiniteFloat)
        );
        let mut deep = Value::Null;
        for _ in 0..=MAX_VALUE_DEPTH + 1 {
            deep = Value::from(vec![deep]);
        }
        assert!(matches!(
            deep.validate(),
            Err(WriteError::ValueTooDeep { .. })
        ));
        let big = Value::from("x".repeat(MAX_VALUE_BYTES));
        assert!(matches!(
            big.validate(),
            Err(WriteError::ValueTooLarge { .. })
        ));
        assert_eq!(Value::from("hello").validate(), Ok(7));
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_collection_name("orders-2024_a").is_ok());
        for bad in ["", "-x", "a/b", "a b", &"c".repeat(65)] {
            assert!(validate_collection_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_field_name("_deleted").is_err());
        assert!(validate_field_name("price").is_ok());
        assert!(validate_document_id("").is_err());
        assert!(validate_document_id("日本").is_ok());
    }

    #[test]
    fn varint_len_counts_seven_bits_a_byte() {
        for (u, len) in [
            (0, 1),
            (1, 1),
            (0x7f, 1),
            (0x80, 2),
            (0x3fff, 2),
            (0x4000, 3),
        ] {
            assert_eq!(varint_len(u), len, "{u:#x}");
        }
        assert_eq!(varint_len(u64::MAX), 10);
        assert_eq!(varint_len(1 << 63), 10);
        assert_eq!(varint_len((1 << 63) - 1), 9);
    }

    #[test]
    fn zigzag_round_trips_extremes() {
        for i in [0, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag(zigzag(i)), i);
        }
    }
}
