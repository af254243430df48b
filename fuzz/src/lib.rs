//! Helpers shared by the fuzz targets in `fuzz_targets/`: decoding the way the platform clients do, and the
//! invariants every decoded value must keep. A target panics (and libFuzzer reports a crash) only when the
//! code under test panics or breaks one of these invariants.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// What `Http::json` does with a 2xx answer: `serde_json::from_slice::<T>`, and on failure the error's
/// text (which quotes the platform's bytes) goes into an `Error::Decode` message.
pub fn decode<T: DeserializeOwned>(data: &[u8]) -> Option<T> {
    match serde_json::from_slice::<T>(data) {
        Ok(value) => Some(value),
        Err(e) => {
            let _ = e.to_string();
            None
        }
    }
}

/// The decoded value serialises (the adapters compare `serde_json::to_value(remote)` against the spec, and
/// Iguazio writes its manifest back whole), serialises as a JSON object when `object` (an adapter reads a
/// non-object as "every field differs"), and decodes again into the same value.
pub fn assert_round_trip<T: Serialize + DeserializeOwned>(value: &T, object: bool) -> Value {
    let first = serde_json::to_value(value).expect("a decoded platform value must serialise");
    if object {
        assert!(first.is_object(), "a decoded platform object serialised as {first}");
    }
    let again: T = serde_json::from_value(first.clone()).expect("a serialised platform value must decode again");
    let second = serde_json::to_value(&again).expect("a decoded platform value must serialise");
    assert!(same(&first, &second), "decode∘encode changed the value:\n{first}\n{second}");
    first
}

/// JSON equality, with numbers compared by value (an integer-valued float and the integer are the same
/// number to the platform).
pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x == y || matches!((x.as_f64(), y.as_f64()), (Some(x), Some(y)) if x == y)
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// The input as text, as a platform or a user could send it (invalid UTF-8 replaced, as `from_utf8_lossy`).
pub fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// Whether any key in `value` (recursively) has an ASCII capital.
pub fn has_capital_key(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.iter().any(|(k, v)| k.bytes().any(|b| b.is_ascii_uppercase()) || has_capital_key(v)),
        Value::Array(items) => items.iter().any(has_capital_key),
        _ => false,
    }
}

/// Number of object keys in `value`, recursively.
pub fn key_count(value: &Value) -> usize {
    match value {
        Value::Object(map) => map.len() + map.values().map(key_count).sum::<usize>(),
        Value::Array(items) => items.iter().map(key_count).sum(),
        _ => 0,
    }
}

/// The frame fields every managed spec carries (Tether's, never sent to a platform).
pub const FRAME: &[&str] = &["connectionRef", "deletionPolicy", "managementPolicy", "writeOutputsTo"];

/// Checks `tether_controller::adapters::spec_fields(spec, skip, verbatim)` against its contract, given the
/// spec as serde serialises it (`serialized`): no frame or skipped field; every other top-level field,
/// snake_cased; keys snake_cased recursively except under `verbatim` keys, which are kept as given. With
/// `distinct` (a typed spec, whose keys cannot collide once snake_cased) nothing may be lost either.
pub fn check_spec_fields(
    serialized: &Value,
    fields: &serde_json::Map<String, Value>,
    skip: &[&str],
    verbatim: &[&str],
    distinct: bool,
) {
    let Value::Object(input) = serialized else {
        assert!(fields.is_empty(), "spec_fields of a non-object gave {fields:?}");
        return;
    };
    let kept: Vec<(&String, &Value)> =
        input.iter().filter(|(k, _)| !FRAME.contains(&k.as_str()) && !skip.contains(&k.as_str())).collect();
    for (k, v) in &kept {
        let snake = snake(k);
        let Some(out) = fields.get(&snake) else { panic!("spec_fields dropped {k:?} (as {snake:?})") };
        if verbatim.contains(&k.as_str()) {
            if distinct || !kept.iter().any(|(other, _)| other != k && snake_eq(other, k)) {
                assert_eq!(out, *v, "spec_fields changed the verbatim field {k:?}");
            }
        } else {
            assert!(!has_capital_key(out), "spec_fields left a capital in a key under {k:?}: {out}");
            if distinct {
                assert_eq!(key_count(out), key_count(v), "spec_fields lost keys under {k:?}: {v} became {out}");
            }
        }
    }
    for k in fields.keys() {
        assert!(!k.bytes().any(|b| b.is_ascii_uppercase()), "spec_fields kept a capital in the top-level key {k:?}");
        assert!(kept.iter().any(|(orig, _)| snake(orig) == *k), "spec_fields invented the key {k:?}");
    }
    if distinct {
        assert_eq!(fields.len(), kept.len(), "spec_fields lost top-level fields of a typed spec");
    }
}

/// The expected spelling: each ASCII capital becomes `_` and its lower case (keys.rs's rule).
pub fn snake(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn snake_eq(a: &str, b: &str) -> bool {
    snake(a) == snake(b)
}
