//! The UbiService plan: [`UbiOps::observe`], then the fields `update` would PATCH.

use super::*;
use crate::preview::{Plan, Preview, changes, object};

impl Preview for UbiOps {
    async fn preview(client: &Client, cr: &Request<'_, UbiService>) -> Result<Plan, PlatformError> {
        match Self::observe(client, cr).await? {
            Observation::Absent => Ok(Plan::Create { fields: desired(cr, None), actions: Vec::new() }),
            Observation::Present { external_id, up_to_date: true, .. } => Ok(Plan::UpToDate { external_id }),
            Observation::Present { external_id, .. } => {
                let remote =
                    cr.recall::<Service>().ok_or_else(|| PlatformError::Decode("observe kept no service".into()))?;
                let changes = changes(&object(&remote), differences(cr, &remote));
                Ok(Plan::Update { external_id, changes, actions: Vec::new() })
            }
        }
    }
}
