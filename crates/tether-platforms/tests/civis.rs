//! The Civis client against the Civis simulator: services, deployments, tokens, shares, projects,
//! transfer, archive, errors.

use std::time::Duration;

use serde_json::{Map, Value, json};
use tether_platforms::civis::{Client, ListOptions};
use tether_platforms::{Error, HttpConfig, Secret};
use tether_sim::{SimOptions, spawn};

async fn setup() -> (Client, String) {
    let endpoint =
        spawn("civis", "127.0.0.1:0".parse().unwrap(), SimOptions { delay: Duration::from_millis(30) }).await.unwrap();
    (Client::new(HttpConfig::new(endpoint.url.parse().unwrap()), &Secret::new("sim-key")).unwrap(), endpoint.url)
}

fn fields(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap()
}

const TICK: Duration = Duration::from_millis(10);
const LONG: Duration = Duration::from_secs(10);

#[tokio::test]
async fn services_and_deployments() {
    let (c, _) = setup().await;
    let svc = c
        .create(&fields(json!({"name": "dash", "description": "x [tether:uid-1]", "dockerImageName": "nginx",
                               "environmentVariables": {"snake_key": "1"}, "credentials": [4]})))
        .await
        .unwrap();
    assert!(svc.current_deployment.is_none() && !svc.archived);
    assert_eq!(
        c.patch(svc.id, &fields(json!({"dockerImageTag": "1.26"}))).await.unwrap().fields["dockerImageTag"],
        "1.26"
    );
    let replaced = c
        .put(svc.id, &fields(json!({"name": "dash", "description": "x [tether:uid-1]", "dockerImageName": "nginx"})))
        .await
        .unwrap();
    assert_eq!(replaced.fields["dockerImageTag"], "latest", "PUT resets what it leaves out");
    let all = c.list_all(&ListOptions::default()).await.unwrap();
    assert!(all.iter().any(|s| s.description.as_deref().is_some_and(|d| d.ends_with("[tether:uid-1]"))));

    let first = c.deploy(svc.id, false).await.unwrap();
    assert_eq!(first.state, "pending");
    assert_eq!(c.wait_running(svc.id, TICK, LONG).await.unwrap().deployment_id, first.deployment_id);
    assert!(c.get(svc.id).await.unwrap().current_url.is_some());
    let second = c.deploy(svc.id, true).await.unwrap();
    assert_eq!(c.deployment(svc.id, first.deployment_id).await.unwrap().state, "terminated");
    assert_eq!(c.deployments(svc.id).await.unwrap().len(), 2);
    assert!(!c.logs(svc.id, first.deployment_id).await.unwrap().is_empty());
    c.stop(svc.id, second.deployment_id).await.unwrap();

    let copy = c.clone_service(svc.id).await.unwrap();
    assert_ne!(copy.id, svc.id);
    assert!(c.archive(svc.id, true).await.unwrap().archived);
    assert!(c.list_all(&ListOptions::default()).await.unwrap().iter().all(|s| s.id != svc.id));
    let archived = ListOptions { archived: Some("all"), ..Default::default() };
    assert!(c.list_all(&archived).await.unwrap().iter().any(|s| s.id == svc.id));
}

#[tokio::test]
async fn tokens_shares_projects_transfer() {
    let (c, _) = setup().await;
    let svc = c.create(&fields(json!({"name": "t", "dockerImageName": "nginx", "credentials": [4]}))).await.unwrap();
    let token = c.create_token(svc.id, "api", true, Some(3600)).await.unwrap();
    assert!(token.token.is_some());
    assert!(c.tokens(svc.id).await.unwrap().iter().all(|t| t.token.is_none()));
    c.delete_token(svc.id, token.id).await.unwrap();
    assert!(c.tokens(svc.id).await.unwrap().is_empty());

    c.share(svc.id, false, &[2, 3], "read").await.unwrap();
    c.share(svc.id, true, &[9], "write").await.unwrap();
    c.unshare(svc.id, false, 3).await.unwrap();
    let shares = c.shares(svc.id).await.unwrap();
    assert_eq!(shares["readers"]["users"], json!([{"id": 2, "name": "User 2"}]));
    assert_eq!(shares["writers"]["groups"][0]["id"], 9);

    c.set_project(svc.id, 1, true).await.unwrap();
    c.set_project(svc.id, 3, true).await.unwrap();
    c.set_project(svc.id, 1, false).await.unwrap();
    assert_eq!(c.projects(svc.id).await.unwrap(), [3]);
    assert_eq!(c.dependencies(svc.id).await.unwrap()[0]["id"], 4);
    c.transfer(svc.id, 5, false).await.unwrap();
    assert_eq!(c.get(svc.id).await.unwrap().fields["user"]["id"], 5);
}

#[tokio::test]
async fn errors_and_a_crashing_deployment() {
    let (c, url) = setup().await;
    assert!(matches!(c.get(999_999).await, Err(Error::NotFound(m)) if m.contains("could not be found")));
    assert!(matches!(c.create(&fields(json!({"replicas": "two"}))).await, Err(Error::Invalid(_))));
    let svc = c.create(&fields(json!({"name": "x", "dockerImageName": "nginx"}))).await.unwrap();
    assert!(matches!(c.set_project(svc.id, 99, true).await, Err(Error::NotFound(_))));
    let wrong = Client::new(HttpConfig::new(url.parse().unwrap()), &Secret::new("wrong")).unwrap();
    assert!(matches!(wrong.get(svc.id).await, Err(Error::Unauthorized(_))));

    let crash = c.create(&fields(json!({"name": "c", "dockerImageName": "registry/fail-fast"}))).await.unwrap();
    c.deploy(crash.id, false).await.unwrap();
    assert!(matches!(c.wait_running(crash.id, TICK, LONG).await, Err(Error::Platform(m)) if m.contains("crash")));
}

#[tokio::test]
async fn a_listing_reads_every_page_and_stops_at_a_short_one() {
    let (c, url) = setup().await;
    for i in 0..120 {
        c.create(&fields(json!({"name": format!("s{i}"), "dockerImageName": "nginx"}))).await.unwrap();
    }
    let origin = reqwest::Url::parse(&url).unwrap().origin().ascii_serialization();
    let lists = || async {
        let counters: Value = reqwest::get(format!("{origin}/_sim/counters")).await.unwrap().json().await.unwrap();
        counters["GET /services"].as_u64().unwrap_or(0)
    };
    let before = lists().await;
    let all = c.list_all(&ListOptions::default()).await.unwrap();
    assert_eq!(all.len(), 120);
    assert_eq!(lists().await - before, 3, "50 + 50 + 20: the short page is the last");
}
