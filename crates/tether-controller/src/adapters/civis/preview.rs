//! The CivisService plan: [`Civis::observe`], then what `update` would PATCH, start, redeploy or stop.

use super::*;
use crate::preview::{Plan, Preview, changes, object, redact};

/// Wire field of the environment, whose values from Secrets are never shown.
const ENV: &str = "environmentVariables";

impl Preview for Civis {
    async fn preview(client: &Client, cr: &Request<'_, CivisService>) -> Result<Plan, PlatformError> {
        let secret_keys: Vec<&str> = cr.inputs.keys().map(String::as_str).collect();
        let access_declared = cr.spec.shares.is_some() || cr.spec.projects.is_some() || !cr.spec.tokens.is_empty();
        let (external_id, service, access) = match Self::observe(client, cr).await? {
            Observation::Absent => {
                let mut actions = Vec::new();
                if access_declared {
                    actions.push("set the declared shares, projects and tokens".to_string());
                }
                if cr.spec.deployed {
                    actions.push("start a deployment".to_string());
                }
                return Ok(Plan::Create { fields: redact(desired(cr), ENV, &secret_keys), actions });
            }
            Observation::Present { external_id, up_to_date: true, .. } => return Ok(Plan::UpToDate { external_id }),
            Observation::Present { external_id, .. } => {
                let (service, access) = cr
                    .recall::<(Service, access::AccessPlan)>()
                    .ok_or_else(|| PlatformError::Decode("observe kept no service".into()))?;
                (external_id, service, access)
            }
        };
        let differing = differences(cr, &service);
        let redeploy =
            differing.keys().any(|k| REDEPLOY_FIELDS.contains(&k.as_str())) || redeploy_requested(cr, &service)?;
        let remote = redact(object(&service), ENV, &secret_keys);
        let fields = changes(&remote, redact(differing, ENV, &secret_keys));
        let mut actions = Vec::new();
        if !access.is_empty() {
            actions.push("change shares, projects or tokens to the declared ones".to_string());
        }
        let current = service.current_deployment.as_ref().map(|d| d.deployment_id);
        match (cr.spec.deployed, running(&service)) {
            (true, false) if redeploy || start_wanted(cr, &service) => actions.push("start a new deployment".into()),
            (true, true) if redeploy => {
                actions.push(format!("redeploy: a new deployment replaces deployment {}", current.unwrap_or_default()))
            }
            (false, true) => {
                actions.push(format!("stop deployment {} (spec.deployed: false)", current.unwrap_or_default()))
            }
            _ => {}
        }
        Ok(Plan::Update { external_id, changes: fields, actions })
    }
}
