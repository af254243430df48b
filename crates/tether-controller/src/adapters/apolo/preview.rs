//! The ApoloApp plan: [`Apolo::observe`], then what `update` would configure (input, display name,
//! template version) or roll back.

use super::*;
use crate::preview::{FieldChange, Plan, Preview};

impl Preview for Apolo {
    async fn preview(client: &Client, cr: &Request<'_, ApoloApp>) -> Result<Plan, PlatformError> {
        let external_id = match Self::observe(client, cr).await? {
            Observation::Absent => {
                let mut fields = serde_json::Map::new();
                fields.insert("template_name".into(), json!(cr.spec.template_name));
                fields.insert("template_version".into(), json!(cr.spec.template_version));
                fields.insert("display_name".into(), json!(display_name(cr)));
                fields.insert("input".into(), input(cr)?);
                return Ok(Plan::Create { fields, actions: vec!["install the app from its template".into()] });
            }
            Observation::Present { external_id, up_to_date: true, .. } => return Ok(Plan::UpToDate { external_id }),
            Observation::Present { external_id, .. } => external_id,
        };
        let client = scoped(client, cr);
        let Observed { app, input: read } =
            cr.recall::<Observed>().ok_or_else(|| PlatformError::Decode("observe kept no app".into()))?;
        let current = match read {
            Some(current) => current,
            None => client.input(&external_id, None).await?,
        };
        let old_input = current.get("input").cloned().unwrap_or(Value::Null);
        let change = |field: &str, old: Value, new: Value| FieldChange { field: field.into(), old, new };
        if let Some(revision) = cr.spec.rollback_to_revision {
            let pinned = pinned_input(&client, &external_id, revision).await?.unwrap_or(Value::Null);
            let actions = vec![format!("roll back to revision {revision} (a new revision with its input)")];
            return Ok(Plan::Update { external_id, changes: vec![change("input", old_input, pinned)], actions });
        }
        let (mut changes, mut actions) = (Vec::new(), Vec::new());
        if cr.spec.template_version != "latest" && cr.spec.template_version != app.template_version {
            changes.push(change("template_version", json!(app.template_version), json!(cr.spec.template_version)));
            actions.push(format!("upgrade the app to template version {}", cr.spec.template_version));
        }
        let name = display_name(cr);
        if app.display_name != name {
            changes.push(change("display_name", json!(app.display_name), json!(name)));
        }
        let desired = input(cr)?;
        if old_input != desired {
            changes.push(change("input", old_input, desired));
        }
        actions.push("configure the app (a new configuration revision)".into());
        Ok(Plan::Update { external_id, changes, actions })
    }
}
