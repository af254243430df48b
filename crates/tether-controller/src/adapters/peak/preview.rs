//! The PeakWebapp plan: [`Peak::observe`], then the partial update `update` would PATCH.

use super::*;
use crate::preview::{self, Plan, Preview, object};

impl Preview for Peak {
    async fn preview(client: &Client, cr: &Request<'_, PeakWebapp>) -> Result<Plan, PlatformError> {
        match Self::observe(client, cr).await? {
            Observation::Absent => Ok(Plan::Create { fields: object(&desired(cr)), actions: Vec::new() }),
            Observation::Present { external_id, up_to_date: true, .. } => Ok(Plan::UpToDate { external_id }),
            Observation::Present { external_id, .. } => {
                let remote =
                    cr.recall::<Webapp>().ok_or_else(|| PlatformError::Decode("observe kept no webapp".into()))?;
                let patch = changes(cr, &remote);
                let mut actions = Vec::new();
                if patch.image_details.is_some() || patch.resources.is_some() {
                    actions.push("Peak redeploys the webapp (image or resources change)".to_string());
                }
                let changes = preview::changes(&object(&remote), object(&patch));
                Ok(Plan::Update { external_id, changes, actions })
            }
        }
    }
}
