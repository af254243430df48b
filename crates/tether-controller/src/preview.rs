//! What the next reconcile would change on the platform, without changing it: the adapters' own
//! comparison (the one `observe` and `update` use) turned into a plan a human can read, for
//! `kubectl tether diff`. Only reads are made: each adapter's [`Preview::preview`] calls its `observe`
//! (which never writes) and then lists, field by field, what `create` or `update` would send.
//!
//! Values read from Secrets (Civis `environmentVariablesFrom`) are never shown: [`redact`] replaces them.

use std::future::Future;

use serde::Serialize;
use serde_json::{Map, Value};
use tether_platforms::Error as PlatformError;

use crate::adapter::{Adapter, Request};

/// One field the update would change, in the platform's name, with the remote value now and the value
/// Tether would send.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FieldChange {
    /// The platform's field name.
    pub field: String,
    /// The remote object's value now (`null` when it has none).
    pub old: Value,
    /// What Tether would send.
    pub new: Value,
}

/// What the next reconcile would do to the remote object.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub enum Plan {
    /// No remote object: Tether would create one with these fields (then the `actions`).
    Create {
        /// The fields of the create request, in the platform's names.
        fields: Map<String, Value>,
        /// Further calls after the create (deploy, share, mint a token).
        actions: Vec<String>,
    },
    /// The remote object differs: Tether would change these fields (and make the `actions`).
    Update {
        /// The platform's id of the remote object.
        external_id: String,
        /// The fields that differ.
        changes: Vec<FieldChange>,
        /// Calls beside the field changes (redeploy, restart, stop, rollback, access changes).
        actions: Vec<String>,
    },
    /// The remote object matches the spec (or the platform is busy with it and Tether waits).
    UpToDate {
        /// The platform's id of the remote object.
        external_id: String,
    },
}

/// A kind whose next reconcile can be previewed.
pub trait Preview: Adapter {
    /// What the next reconcile would send for `cr`; makes only the reads `observe` makes.
    fn preview(
        client: &Self::Client,
        cr: &Request<'_, Self::Resource>,
    ) -> impl Future<Output = Result<Plan, PlatformError>> + Send;
}

/// The text shown instead of a value read from a Secret.
pub const REDACTED: &str = "(secret value, not shown)";

/// `fields` with the values of the environment variables named in `secret_keys` (under `env_field`)
/// replaced by [`REDACTED`].
pub fn redact(mut fields: Map<String, Value>, env_field: &str, secret_keys: &[&str]) -> Map<String, Value> {
    if let Some(Value::Object(env)) = fields.get_mut(env_field) {
        for (key, value) in env.iter_mut() {
            if secret_keys.contains(&key.as_str()) {
                *value = Value::String(REDACTED.into());
            }
        }
    }
    fields
}

/// The changes from `remote` (the remote object as JSON) to `new` (field → value to send), with the old
/// values read from `remote` by the same field names.
pub fn changes(remote: &Map<String, Value>, new: Map<String, Value>) -> Vec<FieldChange> {
    new.into_iter()
        .map(|(field, new)| FieldChange { old: remote.get(&field).cloned().unwrap_or(Value::Null), field, new })
        .collect()
}

/// `value` as a JSON object (empty when it is not one).
pub fn object(value: &impl Serialize) -> Map<String, Value> {
    match serde_json::to_value(value) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_values_are_replaced_and_old_values_paired_by_field() {
        let fields = object(&json!({"environmentVariables": {"A": "1", "TOKEN": "s3cr3t"}, "cpu": 500}));
        let shown = redact(fields, "environmentVariables", &["TOKEN"]);
        assert_eq!(shown["environmentVariables"], json!({"A": "1", "TOKEN": REDACTED}));
        let remote = object(&json!({"cpu": 250}));
        let new = object(&json!({"cpu": 500, "memory": 1024}));
        assert_eq!(
            changes(&remote, new),
            vec![
                FieldChange { field: "cpu".into(), old: json!(250), new: json!(500) },
                FieldChange { field: "memory".into(), old: Value::Null, new: json!(1024) },
            ]
        );
    }
}
