//! The AppService plan: [`Iguazio::observe`], then the entry's fields the manifest write would change.

use super::*;
use crate::preview::{FieldChange, Plan, Preview};

impl Preview for Iguazio {
    async fn preview(writer: &ManifestWriter, cr: &Request<'_, AppService>) -> Result<Plan, PlatformError> {
        let (fields, labels) = desired(cr);
        let external_id = match Self::observe(writer, cr).await? {
            Observation::Absent => {
                let mut fields = fields;
                if let Some(labels) = labels {
                    fields.insert("labels".into(), Value::Object(labels));
                }
                let actions = vec!["write the tenant's app-services manifest (an Iguazio job applies it)".to_string()];
                return Ok(Plan::Create { fields, actions });
            }
            Observation::Present { external_id, up_to_date: true, .. } => return Ok(Plan::UpToDate { external_id }),
            Observation::Present { external_id, .. } => external_id,
        };
        let manifest = writer.read_within(cr.shared_read_age).await?;
        let Some(remote) = manifest.service(&cr.spec.name) else { return Ok(Plan::UpToDate { external_id }) };
        let (mut changes, mut actions) = (Vec::new(), Vec::new());
        for name in differences(cr, &remote) {
            match (fields.get(&name), name.as_str()) {
                (Some(new), _) => changes.push(FieldChange {
                    old: remote.spec.get(&name).cloned().unwrap_or(Value::Null),
                    new: new.clone(),
                    field: name,
                }),
                (None, "labels") => changes.push(FieldChange {
                    field: name,
                    old: remote.labels().cloned().map_or(Value::Null, Value::Object),
                    new: labels.clone().map_or(Value::Null, Value::Object),
                }),
                (None, other) => actions.push(other.to_string()),
            }
        }
        actions.push("write the tenant's app-services manifest (an Iguazio job applies it)".to_string());
        Ok(Plan::Update { external_id, changes, actions })
    }
}
