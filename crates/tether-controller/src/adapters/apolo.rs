//! ApoloApp ↔ Apolo app. Apolo names apps itself and display names are not unique, so Tether stamps an
//! ownership marker carrying the resource's UID into the display name and finds its app by that marker:
//! a lost install answer is found again, and nothing is installed twice. Input and template version
//! changes are applied by configure (a new revision); uninstall waits until the app is uninstalled.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tether_platforms::listing::{digest, shows};

use serde_json::{Value, json};
use tether_api::apolo::ApoloAppObservation;
use tether_api::{ApoloApp, Platform};
use tether_platforms::Error as PlatformError;
use tether_platforms::apolo::{App, Client};

use crate::adapter::{Adapter, Deletion, ManagedResource as _, Observation, Probe, Readiness, Request, adopted};
use crate::connection::Account;
use kube::ResourceExt;

managed_resource!(ApoloApp, ApoloAppObservation);
mod preview;

/// The ApoloApp adapter.
pub struct Apolo;

/// `[tether:<uid>]`: what Tether appends to the display name to know its app again.
fn marker(cr: &ApoloApp) -> String {
    format!("[tether:{}]", cr.uid().unwrap_or_default())
}

fn display_name(cr: &ApoloApp) -> String {
    match &cr.spec.display_name {
        Some(name) => format!("{name} {}", marker(cr)),
        None => format!("{} {}", cr.name_any(), marker(cr)),
    }
}

/// The declared input; one Tether will not send (nested too deep) is a spec error, raised only when it
/// would be sent: observing and deleting do not need it.
fn input(cr: &ApoloApp) -> Result<Value, PlatformError> {
    match &cr.spec.input {
        None => Ok(json!({})),
        Some(input) => input.value().cloned().map_err(|why| PlatformError::Invalid(format!("spec.input {why}"))),
    }
}

/// What `observe` read, for `update` and `delete`: the app and, when it was read, its current input.
struct Observed {
    app: App,
    input: Option<serde_json::Map<String, Value>>,
}

fn scoped(client: &Client, cr: &ApoloApp) -> Client {
    client.with_scope(&cr.spec.cluster, &cr.spec.org, &cr.spec.project)
}

/// This resource's app: by the recorded id, else by the marker among the scope's live apps (the newest
/// when several match; the others are reported).
async fn find(client: &Client, cr: &Request<'_, ApoloApp>) -> Result<Option<App>, PlatformError> {
    if let Some(id) = cr.adopt_id() {
        return Ok(adopted(client.get(id).await)?.filter(|a| a.state != "uninstalled"));
    }
    if let Some(id) = cr.status.as_ref().and_then(|s| s.external_id.as_deref()) {
        match client.get(id).await {
            Ok(app) if app.state != "uninstalled" => return Ok(Some(app)),
            Ok(_) | Err(PlatformError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    // One listing serves the searches of many creates (see `Client::marked`).
    let mut ours: Vec<App> = client
        .marked(&marker(cr), cr.held_since)
        .await?
        .into_iter()
        .filter(|a| a.template_name == cr.spec.template_name)
        .collect();
    ours.sort_by(|a, b| {
        let created = |x: &App| x.fields.get("created_at").and_then(Value::as_str).unwrap_or_default().to_string();
        created(b).cmp(&created(a))
    });
    if ours.len() > 1 {
        let others: Vec<&str> = ours[1..].iter().map(|a| a.id.as_str()).collect();
        tracing::warn!(kept = %ours[0].id, ?others, "several Apolo apps carry this resource's marker");
        cr.warn(
            "DuplicateRemoteObjects",
            format!(
                "Apolo apps {others:?} also carry this resource's marker; Tether keeps {} and leaves them alone",
                ours[0].id
            ),
        );
    }
    Ok(ours.into_iter().next())
}

/// What `observe` reads of an app besides the app itself, kept with the scope's listing while the app's
/// entry is unchanged (see [`details_marker`]).
struct Details {
    /// The current `{display_name, input}`, read once the app has settled.
    input: Option<serde_json::Map<String, Value>>,
    /// The input of the revision the spec pins (`rollbackToRevision`), when it pins one and it was read.
    pinned: Option<Value>,
    /// The revision in effect.
    current_revision: Option<i32>,
    /// The app's outputs, each value as text (JSON for non-strings); none before the app was healthy.
    outputs: std::collections::BTreeMap<String, String>,
}

/// What the details were read for: the app's update time (Apolo bumps it on any change of state,
/// input, version or revision), its state, and the revision the spec pins. None without an update time:
/// then every drift check reads the details.
/// A drift check reads the app's entry in its scope's listing (entries are whole apps).
struct Listed {
    /// The client of the app's scope.
    client: Client,
    id: String,
    /// The [`digest`] of the app as the observe read it.
    read: u64,
}

impl Probe<Client> for Listed {
    fn unchanged<'a>(&'a self, _: &'a Client, max_age: Duration) -> BoxFuture<'a, Result<bool, PlatformError>> {
        Box::pin(async move { Ok(shows(self.client.listed(&self.id, max_age).await?, self.read)) })
    }
}

fn details_marker(cr: &ApoloApp, app: &App) -> Option<String> {
    let updated = app.fields.get("updated_at").and_then(Value::as_str).filter(|t| !t.is_empty())?;
    Some(format!("{updated} {} {:?}", app.state, cr.spec.rollback_to_revision))
}

async fn read_details(client: &Client, cr: &ApoloApp, id: &str, settled: bool) -> Result<Details, PlatformError> {
    let (mut input, mut pinned) = (None, None);
    if settled {
        input = Some(client.input(id, None).await?);
        if let Some(revision) = cr.spec.rollback_to_revision {
            pinned = pinned_input(client, id, revision).await?;
        }
    }
    let revisions = client.revisions(id).await?;
    let current_revision =
        revisions.iter().find(|r| r.end_at.is_none()).and_then(|r| i32::try_from(r.revision_number).ok());
    // Outputs exist once the app has been healthy.
    let outputs = match client.output(id).await {
        Ok(values) => {
            values.into_iter().map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_string))).collect()
        }
        Err(PlatformError::NotFound(_)) => Default::default(),
        Err(e) => return Err(e),
    };
    Ok(Details { input, pinned, current_revision, outputs })
}

/// The input of configuration revision `revision`; a revision the app does not have is an invalid spec.
async fn pinned_input(client: &Client, id: &str, revision: i32) -> Result<Option<Value>, PlatformError> {
    match client.input(id, Some(i64::from(revision))).await {
        Ok(input) => Ok(input.get("input").cloned()),
        Err(PlatformError::NotFound(why)) => {
            Err(PlatformError::Invalid(format!("rollbackToRevision {revision}: the app has no such revision ({why})")))
        }
        Err(e) => Err(e),
    }
}

/// A NotFound from installing or upgrading to `name` `version` is a spec that names what Apolo lacks.
fn unknown_template(error: PlatformError, name: &str, version: &str) -> PlatformError {
    match error {
        PlatformError::NotFound(why) => PlatformError::Invalid(format!(
            "Apolo has no template {name} version {version} ({why}): set spec.templateName and \
             spec.templateVersion to one the cluster offers"
        )),
        other => other,
    }
}

impl Adapter for Apolo {
    type Resource = ApoloApp;
    type Client = Client;
    const PLATFORM: Platform = Platform::Apolo;

    fn connect(account: &Account) -> Result<Client, PlatformError> {
        // The scope comes from each resource (`with_scope`); the account carries the token and limits.
        Client::new(account.http.clone(), account.credential("token")?, "", "", "")
    }

    async fn verify(client: &Client) -> Result<(), PlatformError> {
        client.authorized().await
    }

    async fn observe(
        client: &Client,
        cr: &Request<'_, ApoloApp>,
    ) -> Result<Observation<ApoloAppObservation>, PlatformError> {
        let client = scoped(client, cr);
        // A drift check reads the scope's listing (its entries are whole apps); any other reconcile a young
        // listing begun after Tether's last write or read of the app, when there is one or enough apps
        // wait on one (a mass change, the polls of installs in progress). The app's details are read only
        // when its entry changed since they were read.
        let recorded = cr.status.as_ref().and_then(|s| s.external_id.as_deref()).filter(|_| cr.adopt_id().is_none());
        let listed = match recorded {
            Some(id) => match client.listed(id, cr.shared_read_age).await? {
                Some(app) => Some(app),
                None => client.fresh(id, cr.fresh_read_age).await?,
            },
            None => None,
        };
        let app = match listed {
            Some(app) => app,
            None => match find(&client, cr).await? {
                Some(app) => app,
                None => return Ok(Observation::Absent),
            },
        };
        let settled = !matches!(app.state.as_str(), "queued" | "progressing" | "uninstalling");
        let marker = details_marker(cr, &app);
        // The details change only with the marker, however the app was read (a converging app polled
        // while queued needs its revisions and outputs once).
        let kept = marker.as_ref().and_then(|marker| client.derived(&app.id, marker)?.downcast::<Details>().ok());
        if marker.is_some() {
            // The details are kept by the entry's update time: the entry alone tells a change.
            cr.probe(Listed { client: client.clone(), id: app.id.clone(), read: digest(&app) });
        }
        let details = match kept {
            Some(details) => details,
            None => {
                let details = Arc::new(read_details(&client, cr, &app.id, settled).await?);
                if let Some(marker) = marker {
                    client.keep_derived(&app.id, marker, details.clone());
                }
                details
            }
        };
        let up_to_date = !settled
            || details.input.as_ref().is_some_and(|current| match cr.spec.rollback_to_revision {
                // Pinned to a revision: its input is the declared one, whatever the spec's input says.
                Some(_) => current.get("input") == details.pinned.as_ref(),
                None => {
                    let version_matches =
                        cr.spec.template_version == "latest" || cr.spec.template_version == app.template_version;
                    version_matches
                        && app.display_name == display_name(cr)
                        && current.get("input") == input(cr).ok().as_ref()
                }
            });
        let ready = match app.state.as_str() {
            "healthy" => Readiness::Ready,
            "queued" => Readiness::Creating("Apolo has queued the app".into()),
            "progressing" => Readiness::Updating("Apolo is deploying the app".into()),
            "degraded" => Readiness::Unavailable("the app runs but is degraded".into()),
            "uninstalling" => Readiness::Deleting("Apolo is uninstalling the app".into()),
            other => Readiness::Failed(format!("the app is {other} on Apolo")),
        };
        let text = |key: &str| app.fields.get(key).and_then(Value::as_str).map(str::to_string);
        let at_provider = ApoloAppObservation {
            state: Some(app.state.clone()),
            name: Some(app.name.clone()),
            namespace: text("namespace"),
            endpoints: app.endpoints.clone(),
            creator: text("creator"),
            template_version: Some(app.template_version.clone()),
            current_revision: details.current_revision,
            applied_rollback: cr.spec.rollback_to_revision.filter(|_| settled && up_to_date),
            created_at: text("created_at"),
            updated_at: text("updated_at"),
        };
        let mut outputs = details.outputs.clone();
        if let Some(url) = app.endpoints.first() {
            outputs.insert("endpoint".into(), url.clone());
        }
        let external_id = app.id.clone();
        cr.remember(Observed { app, input: details.input.clone() });
        Ok(Observation::Present { external_id, up_to_date, ready, at_provider, outputs })
    }

    async fn create(client: &Client, cr: &Request<'_, ApoloApp>) -> Result<String, PlatformError> {
        let client = scoped(client, cr);
        let spec = &cr.spec;
        let (input, name) = (input(cr)?, display_name(cr));
        let (template, version) = (&spec.template_name, &spec.template_version);
        let installed = client.install_marked(&marker(cr), template, version, &input, &name).await;
        // A 404 on install names the template or its version: only a spec change can help.
        let app = installed.map_err(|e| unknown_template(e, &spec.template_name, &spec.template_version))?;
        Ok(app.id)
    }

    async fn update(client: &Client, cr: &Request<'_, ApoloApp>, external_id: &str) -> Result<(), PlatformError> {
        let client = scoped(client, cr);
        if let Some(revision) = cr.spec.rollback_to_revision {
            client.rollback(external_id, i64::from(revision), Some("rollbackToRevision, applied by Tether")).await?;
            return Ok(());
        }
        let (app, read_input) = match cr.recall::<Observed>().filter(|o| o.app.id == external_id) {
            Some(Observed { app, input }) => (app, input),
            None => (client.get(external_id).await?, None),
        };
        let upgrade = (cr.spec.template_version != "latest" && cr.spec.template_version != app.template_version)
            .then_some(cr.spec.template_version.as_str());
        let name = display_name(cr);
        let rename = (app.display_name != name).then_some(name.as_str());
        let desired = input(cr)?;
        let current = match read_input {
            Some(current) => current,
            None => client.input(external_id, None).await?,
        };
        let new_input = (current.get("input") != Some(&desired)).then_some(&desired);
        let configured = client.configure(external_id, new_input, rename, upgrade, Some("applied by Tether")).await;
        match (configured, upgrade) {
            (Err(e), Some(version)) => Err(unknown_template(e, &cr.spec.template_name, version)),
            (result, _) => result.map(|_| ()),
        }
    }

    async fn delete(client: &Client, cr: &Request<'_, ApoloApp>, external_id: &str) -> Result<Deletion, PlatformError> {
        let client = scoped(client, cr);
        let read = match cr.recall::<Observed>().filter(|o| o.app.id == external_id) {
            Some(observed) => Ok(observed.app),
            None => client.get(external_id).await,
        };
        match read {
            Err(PlatformError::NotFound(_)) => return Ok(Deletion::Gone),
            Ok(app) if app.state == "uninstalled" => return Ok(Deletion::Gone),
            Ok(app) if app.state == "uninstalling" => return Ok(Deletion::InProgress),
            Ok(_) => {}
            Err(e) => return Err(e),
        }
        client.uninstall(external_id, cr.spec.force_uninstall.unwrap_or(false)).await?;
        Ok(Deletion::InProgress)
    }
}
