//! Turning a spec into the platform's own field names: the custom resources use camelCase versions of
//! the platform's names, so most platforms need only the spelling changed back.

use serde::Serialize;
use serde_json::{Map, Value};

/// The frame fields every spec carries that are Tether's, not the platform's.
const FRAME: &[&str] = &["connectionRef", "deletionPolicy", "managementPolicy", "writeOutputsTo"];

/// The spec's platform fields, keys in snake_case (recursively, except inside the `verbatim` keys, whose
/// contents are user data), without Tether's frame fields or `skip`.
pub fn spec_fields(spec: &impl Serialize, skip: &[&str], verbatim: &[&str]) -> Map<String, Value> {
    let Ok(Value::Object(map)) = serde_json::to_value(spec) else { return Map::new() };
    map.into_iter()
        .filter(|(k, _)| !FRAME.contains(&k.as_str()) && !skip.contains(&k.as_str()))
        .map(|(k, v)| {
            let v = if verbatim.contains(&k.as_str()) { v } else { snake_keys(v) };
            (snake(&k), v)
        })
        .collect()
}

fn snake_keys(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (snake(&k), snake_keys(v))).collect()),
        Value::Array(items) => Value::Array(items.into_iter().map(snake_keys).collect()),
        other => other,
    }
}

fn snake(key: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn camel_keys_become_the_platforms_snake_keys_except_user_data() {
        let spec = json!({
            "connectionRef": {"name": "c"}, "deletionPolicy": "Delete", "project": "p",
            "rateLimitUserDefault": 5, "healthCheck": {"failureThreshold": 3},
            "labels": {"myLabel": "x"},
        });
        let fields = spec_fields(&spec, &["project"], &["labels"]);
        assert_eq!(
            Value::Object(fields),
            json!({"rate_limit_user_default": 5, "health_check": {"failure_threshold": 3}, "labels": {"myLabel": "x"}})
        );
    }
}
