//! Tenant isolation for the kinds whose remote object is found by a natural key (UbiService: project and
//! name; AppService: the service name of the tenant's manifest; PeakWebapp: the webapp name): a remote
//! object belongs to exactly one resource, whose uid Tether marks on it. Two teams in two namespaces naming
//! the same key on one platform account: the second gets Synced=False Conflict naming the first, the
//! remote object keeps the first's spec, and deleting the second deletes nothing. An object without a mark
//! (made outside Tether) is adopted by its natural key and marked; one marked by a resource deleted with
//! deletionPolicy: Orphan is refused until adopted by annotation, which takes it over.
//!
//! The remote state is read from the simulators' `/_sim/state`; writes are counted by `/_sim/counters`.

use std::time::Duration;

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};
use tether_controller::adapter::Adapter;
use tether_controller::adapters::{iguazio::Iguazio, peak::Peak, ubiops::UbiOps};
use tether_e2e::{api_for, connect_with, create, sim_credentials, spawn_controller};
use tether_sim::{SimOptions, spawn};
use tether_testenv::TestNamespace;

/// The remote object of a natural key, as the platform holds it.
#[derive(Debug, PartialEq)]
struct Remote {
    /// The description as declared (without a marker Tether appends to it).
    description: String,
    /// The uid of the owner marked on it.
    owner: Option<String>,
}

struct Kind {
    platform: &'static str,
    kind: &'static str,
    /// The spec of a resource naming the natural key `key`, with `description`.
    spec: fn(key: &str, description: &str) -> Value,
    /// The `/_sim/seed` body of an object with the natural key `key`, made behind Tether's back.
    seed: fn(key: &str) -> Value,
    /// The object of the natural key `key` in the simulator's `/_sim/state`.
    remote: fn(state: &Value, key: &str) -> Option<Remote>,
    /// What the routes of the object's writes contain (a write is any call but a GET).
    routes: &'static str,
}

fn ubiops() -> Kind {
    Kind {
        platform: "ubiops",
        kind: "UbiService",
        spec: |key, description| json!({"project": "proj", "name": key, "deployment": "dep-1", "port": 8080, "description": description}),
        seed: |key| json!({"project": "proj", "service": {"name": key, "deployment": "dep-1", "port": 80}}),
        remote: |state, key| {
            let services = state["projects"]["proj"]["services"].as_array()?;
            let service = services.iter().find(|s| s["name"] == key)?;
            Some(Remote {
                description: service["description"].as_str().unwrap_or_default().to_string(),
                owner: service["labels"]["tether-owner-uid"].as_str().map(str::to_string),
            })
        },
        routes: "/services",
    }
}

fn iguazio() -> Kind {
    Kind {
        platform: "iguazio",
        kind: "AppService",
        spec: |key, description| json!({"name": key, "kind": "shell", "description": description}),
        seed: |key| json!({"service": {"name": key, "kind": "shell", "description": "made by hand"}}),
        remote: |state, key| {
            let services = state["manifest"]["attributes"]["app_services"].as_array()?;
            let service = services.iter().find(|s| s["spec"]["name"] == key)?;
            Some(Remote {
                description: service["spec"]["description"].as_str().unwrap_or_default().to_string(),
                owner: service["meta"]["annotations"]["tether.dev/owner-uid"].as_str().map(str::to_string),
            })
        },
        routes: "app_services_manifests",
    }
}

fn peak() -> Kind {
    Kind {
        platform: "peak",
        kind: "PeakWebapp",
        spec: |key, description| json!({"name": key, "title": "Forecast", "description": description, "imageDetails": {"imageId": 100}}),
        seed: |key| json!({"webapp": {"name": key, "description": "made by hand", "imageDetails": {"imageId": 100}}}),
        remote: |state, key| {
            let webapp = state["webapps"].as_array()?.iter().find(|w| w["name"] == key)?;
            let text = webapp["description"].as_str().unwrap_or_default();
            // `<declared> [tether:<uid> <namespace>/<name>]`
            let (description, owner) = match text.rfind("[tether:") {
                Some(at) => {
                    let uid = text[at + "[tether:".len()..].split([' ', ']']).next().map(str::to_string);
                    (text[..at].trim_end().to_string(), uid)
                }
                None => (text.to_string(), None),
            };
            Some(Remote { description, owner })
        },
        routes: "/webapps",
    }
}

/// One simulator: one platform account that both teams' Connections use.
struct Platform {
    url: String,
    origin: String,
}

async fn platform(kind: &Kind) -> Platform {
    let sim = spawn(kind.platform, "127.0.0.1:0".parse().unwrap(), SimOptions { delay: Duration::from_millis(200) })
        .await
        .unwrap();
    let origin = reqwest::Url::parse(&sim.url).unwrap().origin().ascii_serialization();
    Platform { url: sim.url, origin }
}

impl Platform {
    async fn state(&self) -> Value {
        reqwest::get(format!("{}/_sim/state", self.origin)).await.unwrap().json().await.unwrap()
    }

    async fn remote(&self, kind: &Kind, key: &str) -> Option<Remote> {
        (kind.remote)(&self.state().await, key)
    }

    /// The writes to the object's routes so far, by `METHOD route`.
    async fn writes(&self, kind: &Kind) -> std::collections::BTreeMap<String, u64> {
        let counters: Value =
            reqwest::get(format!("{}/_sim/counters", self.origin)).await.unwrap().json().await.unwrap();
        let counters = counters.as_object().cloned().unwrap_or_default();
        counters
            .into_iter()
            .filter(|(k, _)| !k.starts_with("GET ") && k.contains(kind.routes))
            .filter_map(|(k, v)| Some((k, v.as_u64()?)))
            .collect()
    }

    async fn seed(&self, kind: &Kind, key: &str) {
        let answer = reqwest::Client::new()
            .post(format!("{}/_sim/seed", self.origin))
            .json(&(kind.seed)(key))
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success(), "{}: /_sim/seed said {}", kind.platform, answer.status());
    }

    /// Waits until the object of `key` is as `check` wants it.
    async fn wait_remote(&self, kind: &Kind, key: &str, what: &str, check: impl Fn(Option<&Remote>) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let remote = self.remote(kind, key).await;
            if check(remote.as_ref()) {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "{}: {what}: the platform holds {remote:?}", kind.platform);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A team: a namespace with a Connection to the platform's one account and a controller over it.
struct Team {
    ns: TestNamespace,
    _controller: tokio::task::JoinHandle<()>,
}

async fn team<A: Adapter>(kind: &Kind, platform: &Platform, prefix: &str) -> Team {
    let ns = TestNamespace::new(&format!("{prefix}-{}", kind.platform)).await;
    connect_with(&ns.client, &ns.name, kind.platform, &platform.url, sim_credentials(kind.platform)).await;
    let controller = spawn_controller::<A>(&ns.client, &ns.name);
    Team { ns, _controller: controller }
}

impl Team {
    /// Creates the resource `name` of `kind` with `spec` (and `annotations`); returns its API handle.
    async fn apply(&self, kind: &Kind, name: &str, spec: Value) -> Api<DynamicObject> {
        let mut spec = spec;
        spec["connectionRef"] = json!({"name": kind.platform});
        let resource = json!({"apiVersion": "tether.dev/v1alpha1", "kind": kind.kind,
            "metadata": {"name": name}, "spec": spec});
        let api = api_for(&self.ns.client, &self.ns.name, &resource).await;
        create(&self.ns.client, &self.ns.name, &resource, false).await.unwrap();
        api
    }
}

/// `(status, reason, message)` of a condition.
fn condition(obj: &DynamicObject, type_: &str) -> Option<(String, String, String)> {
    let c = obj.data["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == type_)?;
    Some((c["status"].as_str()?.into(), c["reason"].as_str()?.into(), c["message"].as_str().unwrap_or("").into()))
}

/// Ready and Synced for the resource's current generation.
fn ready(obj: Option<&DynamicObject>) -> bool {
    obj.is_some_and(|o| {
        condition(o, "Ready").is_some_and(|(s, _, _)| s == "True")
            && condition(o, "Synced").is_some_and(|(s, _, _)| s == "True")
            && o.metadata.generation.is_some_and(|g| o.data["status"]["observedGeneration"] == g)
    })
}

/// Synced=False Conflict.
fn conflicted(obj: Option<&DynamicObject>) -> bool {
    obj.and_then(|o| condition(o, "Synced")).is_some_and(|(s, r, _)| s == "False" && r == "Conflict")
}

async fn wait_for(
    api: &Api<DynamicObject>,
    name: &str,
    what: &str,
    check: impl Fn(Option<&DynamicObject>) -> bool,
) -> Option<DynamicObject> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let current = api.get_opt(name).await.unwrap();
        if check(current.as_ref()) {
            return current;
        }
        assert!(tokio::time::Instant::now() < deadline, "{name}: {what}: still {:?}", current.map(|c| c.data));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn uid(obj: &DynamicObject) -> String {
    obj.metadata.uid.clone().expect("a uid")
}

/// Team A's resource is Ready; team B's, naming the same key on the same account, is refused with
/// Conflict naming A and changes nothing through several drift periods; deleting B deletes nothing and A
/// stays Ready; deleting A deletes the remote object.
async fn one_key_two_teams<A: Adapter>(kind: Kind) {
    let (key, name) = ("shared-name", "scoring");
    let platform = platform(&kind).await;
    let (a, b) = (team::<A>(&kind, &platform, "team-a").await, team::<A>(&kind, &platform, "team-b").await);

    let api_a = a.apply(&kind, name, (kind.spec)(key, "team a")).await;
    let first = wait_for(&api_a, name, "A becomes Ready", ready).await.unwrap();
    let owner = uid(&first);
    let a_remote = Remote { description: "team a".into(), owner: Some(owner.clone()) };
    assert_eq!(platform.remote(&kind, key).await.as_ref(), Some(&a_remote), "{}: A's object", kind.platform);
    let writes = platform.writes(&kind).await;

    // B: the same key, another spec. Refused, naming A; nothing is written.
    let api_b = b.apply(&kind, name, (kind.spec)(key, "team b")).await;
    let refused = wait_for(&api_b, name, "B is refused with Conflict", conflicted).await.unwrap();
    let (_, _, message) = condition(&refused, "Synced").unwrap();
    assert!(
        message.contains(&format!("{}/{name}", a.ns.name)) && message.contains(&owner),
        "{}: the conflict does not name A: {message}",
        kind.platform
    );
    assert_eq!(condition(&refused, "Stalled").map(|(s, r, _)| (s, r)), Some(("True".into(), "Conflict".into())));
    assert_eq!(condition(&refused, "Ready").map(|(s, _, _)| s), Some("False".into()), "{}", kind.platform);

    // Several drift periods (1 s each): neither takes the object from the other.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(platform.remote(&kind, key).await.as_ref(), Some(&a_remote), "{}: B overwrote A", kind.platform);
    assert_eq!(platform.writes(&kind).await, writes, "{}: writes while B is refused", kind.platform);
    assert!(ready(api_a.get_opt(name).await.unwrap().as_ref()), "{}: A is no longer Ready", kind.platform);
    assert!(conflicted(api_b.get_opt(name).await.unwrap().as_ref()), "{}: B is no longer refused", kind.platform);

    // Deleting B deletes nothing: no DELETE, no manifest PUT; A's object stays, A stays Ready.
    api_b.delete(name, &DeleteParams::default()).await.unwrap();
    wait_for(&api_b, name, "B is deleted", |o| o.is_none()).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(platform.writes(&kind).await, writes, "{}: deleting B wrote to the platform", kind.platform);
    assert_eq!(platform.remote(&kind, key).await.as_ref(), Some(&a_remote), "{}: deleting B took A's", kind.platform);
    assert!(ready(api_a.get_opt(name).await.unwrap().as_ref()), "{}: A is no longer Ready", kind.platform);

    // Deleting A deletes the remote object.
    api_a.delete(name, &DeleteParams::default()).await.unwrap();
    wait_for(&api_a, name, "A is deleted", |o| o.is_none()).await;
    platform.wait_remote(&kind, key, "A's object is deleted", |r| r.is_none()).await;
}

/// An object made outside Tether (no mark) is adopted by its natural key and marked, without a create.
/// Deleted with deletionPolicy: Orphan, it keeps that owner's mark: another resource naming it is refused
/// until it adopts it with the annotation tether.dev/external-id, which takes it over and re-marks it.
async fn adoption<A: Adapter>(kind: Kind) {
    let (key, name) = ("legacy", "legacy");
    let platform = platform(&kind).await;
    let (first, second) = (team::<A>(&kind, &platform, "adopt-a").await, team::<A>(&kind, &platform, "adopt-b").await);
    platform.seed(&kind, key).await;
    assert_eq!(platform.remote(&kind, key).await.and_then(|r| r.owner), None, "{}: seeded unmarked", kind.platform);
    let creates = |w: &std::collections::BTreeMap<String, u64>| -> u64 {
        w.iter().filter(|(k, _)| k.starts_with("POST ")).map(|(_, v)| v).sum()
    };
    let before = creates(&platform.writes(&kind).await);

    // Adopted by natural key and marked.
    let api_a = first.apply(&kind, name, (kind.spec)(key, "adopted")).await;
    let adopted = wait_for(&api_a, name, "adopts the unmarked object", ready).await.unwrap();
    let a_remote = Remote { description: "adopted".into(), owner: Some(uid(&adopted)) };
    assert_eq!(platform.remote(&kind, key).await.as_ref(), Some(&a_remote), "{}: not marked", kind.platform);
    assert_eq!(creates(&platform.writes(&kind).await), before, "{}: adoption created something", kind.platform);
    let external_id = adopted.data["status"]["externalId"].as_str().expect("an external id").to_string();

    // Orphaned: the object stays, marked by the resource that is gone.
    api_a
        .patch(name, &PatchParams::default(), &Patch::Merge(json!({"spec": {"deletionPolicy": "Orphan"}})))
        .await
        .unwrap();
    wait_for(&api_a, name, "records Orphan", ready).await;
    api_a.delete(name, &DeleteParams::default()).await.unwrap();
    wait_for(&api_a, name, "is deleted", |o| o.is_none()).await;
    assert_eq!(platform.remote(&kind, key).await.as_ref(), Some(&a_remote), "{}: Orphan touched it", kind.platform);

    // Another resource naming it is refused; with the annotation it takes it over.
    let api_b = second.apply(&kind, name, (kind.spec)(key, "taken over")).await;
    let refused = wait_for(&api_b, name, "is refused with Conflict", conflicted).await.unwrap();
    let (_, _, message) = condition(&refused, "Synced").unwrap();
    assert!(message.contains(&format!("{}/{name}", first.ns.name)), "{}: {message}", kind.platform);
    assert!(message.contains(&format!("tether.dev/external-id: {external_id}")), "{}: {message}", kind.platform);
    assert_eq!(platform.remote(&kind, key).await.as_ref(), Some(&a_remote), "{}: taken without asking", kind.platform);
    let annotate = json!({"metadata": {"annotations": {"tether.dev/external-id": external_id}}});
    api_b.patch(name, &PatchParams::default(), &Patch::Merge(annotate)).await.unwrap();
    let taken = wait_for(&api_b, name, "adopts by annotation", ready).await.unwrap();
    assert_eq!(taken.data["status"]["externalId"], Value::from(external_id), "{}", kind.platform);
    let b_remote = Remote { description: "taken over".into(), owner: Some(uid(&taken)) };
    platform.wait_remote(&kind, key, "re-marked", |r| r == Some(&b_remote)).await;
    assert_eq!(creates(&platform.writes(&kind).await), before, "{}: adoption created something", kind.platform);

    // Its owner now, it deletes it.
    api_b.delete(name, &DeleteParams::default()).await.unwrap();
    wait_for(&api_b, name, "is deleted", |o| o.is_none()).await;
    platform.wait_remote(&kind, key, "the adopted object is deleted", |r| r.is_none()).await;
}

#[tokio::test]
async fn ubiservice_one_key_two_teams() {
    one_key_two_teams::<UbiOps>(ubiops()).await;
}

#[tokio::test]
async fn appservice_one_key_two_teams() {
    one_key_two_teams::<Iguazio>(iguazio()).await;
}

#[tokio::test]
async fn peakwebapp_one_key_two_teams() {
    one_key_two_teams::<Peak>(peak()).await;
}

#[tokio::test]
async fn ubiservice_adoption() {
    adoption::<UbiOps>(ubiops()).await;
}

#[tokio::test]
async fn appservice_adoption() {
    adoption::<Iguazio>(iguazio()).await;
}

#[tokio::test]
async fn peakwebapp_adoption() {
    adoption::<Peak>(peak()).await;
}
