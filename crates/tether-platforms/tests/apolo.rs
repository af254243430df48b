//! The Apolo client against the Apolo simulator: install, wait, configure, upgrade, rollback, outputs,
//! values, events, templates, uninstall, errors.

use std::time::Duration;

use serde_json::json;
use tether_platforms::apolo::Client;
use tether_platforms::{Error, HttpConfig, Secret};
use tether_sim::{SimOptions, spawn};

async fn setup() -> (Client, String) {
    let endpoint =
        spawn("apolo", "127.0.0.1:0".parse().unwrap(), SimOptions { delay: Duration::from_millis(30) }).await.unwrap();
    let c = Client::new(
        HttpConfig::new(endpoint.url.parse().unwrap()),
        &Secret::new("tok"),
        "default",
        "superorg",
        "test3",
    )
    .unwrap();
    (c, endpoint.url)
}

const TICK: Duration = Duration::from_millis(10);
const LONG: Duration = Duration::from_secs(10);

#[tokio::test]
async fn the_whole_lifecycle() {
    let (c, _) = setup().await;
    assert_eq!(c.templates().await.unwrap().len(), 2);
    assert_eq!(c.template_versions("postgres").await.unwrap().len(), 2);
    assert_eq!(c.template("postgres", "latest").await.unwrap()["version"], "v1.1.0");

    let input = json!({"preset": "cpu-small", "storage_gb": 20});
    let app = c.install("postgres", "v1.0.0", &input, Some("db [tether:uid-1]")).await.unwrap();
    assert_eq!(app.state, "queued");
    let app = c.wait(&app.id, &["healthy"], TICK, LONG).await.unwrap();
    assert!(!app.endpoints.is_empty());
    let found = c.list(&["healthy"]).await.unwrap();
    assert_eq!(found.iter().filter(|a| a.display_name.contains("tether:uid-1")).count(), 1);

    assert!(c.output(&app.id).await.unwrap().contains_key("instance_url"));
    assert!(!c.values(Some(&app.id), None).await.unwrap().is_empty());
    assert_eq!(c.values(None, Some("password")).await.unwrap().len(), 1);
    assert!(c.events(&app.id).await.unwrap().len() >= 3);

    let bigger = json!({"preset": "cpu-small", "storage_gb": 50});
    c.configure(&app.id, Some(&bigger), None, None, Some("grow")).await.unwrap();
    assert_eq!(c.wait(&app.id, &["healthy"], TICK, LONG).await.unwrap().state, "healthy");
    assert_eq!(c.upgrades(&[&app.id]).await.unwrap()[0]["available_versions"], json!(["v1.1.0"]));
    c.configure(&app.id, None, None, Some("v1.1.0"), None).await.unwrap();
    assert_eq!(c.wait(&app.id, &["healthy"], TICK, LONG).await.unwrap().template_version, "v1.1.0");

    c.rollback(&app.id, 1, Some("back")).await.unwrap();
    assert_eq!(c.input(&app.id, None).await.unwrap()["input"], input);
    assert_eq!(c.input(&app.id, Some(2)).await.unwrap()["input"], bigger);
    let revisions = c.revisions(&app.id).await.unwrap();
    assert_eq!(revisions.len(), 4);
    assert_eq!(revisions.iter().filter(|r| r.end_at.is_none()).count(), 1);

    c.uninstall(&app.id, false).await.unwrap();
    c.wait(&app.id, &["uninstalled"], TICK, LONG).await.unwrap();
    assert!(matches!(c.output(&app.id).await, Err(Error::NotFound(_))));
}

#[tokio::test]
async fn errors_are_classified() {
    let (c, url) = setup().await;
    assert!(matches!(c.get("00000000-0000-0000-0000-000000000000").await, Err(Error::NotFound(_))));
    assert!(matches!(c.install("nope", "v1", &json!({}), None).await, Err(Error::NotFound(_))));
    let bad = c.install("postgres", "v1.0.0", &json!({"storage_gb": "lots"}), None).await;
    assert!(matches!(bad, Err(Error::Invalid(m)) if m.contains("input.storage_gb")));
    let other =
        Client::new(HttpConfig::new(url.parse().unwrap()), &Secret::new("tok"), "default", "superorg", "elsewhere")
            .unwrap();
    assert!(matches!(other.templates().await, Err(Error::Forbidden(_))));
    let wrong = Client::new(HttpConfig::new(url.parse().unwrap()), &Secret::new("bad"), "default", "superorg", "test3")
        .unwrap();
    assert!(matches!(wrong.list(&[]).await, Err(Error::Unauthorized(_))));

    let app = c.install("shell", "latest", &json!({}), None).await.unwrap();
    let resp = reqwest::Client::new()
        .post(format!("{}/_sim/fail", url.trim_end_matches("/api/v1")))
        .json(&json!({"id": app.id}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert!(matches!(c.wait(&app.id, &["healthy"], TICK, LONG).await, Err(Error::Platform(_))));
}

#[tokio::test]
async fn hostile_ids_and_scopes_are_refused_before_any_request() {
    let (c, url) = setup().await;
    let hostile = ["../x", "a/b", "..", "%2e%2e", "", "x/../other-id", "a\\b"];
    for bad in hostile {
        let outcomes = [
            c.get(bad).await.map(drop),
            c.uninstall(bad, true).await,
            c.configure(bad, None, Some("n"), None, None).await.map(drop),
            c.output(bad).await.map(drop),
            c.values(Some(bad), None).await.map(drop),
            c.events(bad).await.map(drop),
            c.revisions(bad).await.map(drop),
            c.rollback(bad, 1, None).await.map(drop),
            c.input(bad, Some(1)).await.map(drop),
            c.template_versions(bad).await.map(drop),
            c.template("postgres", bad).await.map(drop),
            c.with_scope(bad, "superorg", "test3").templates().await.map(drop),
            c.with_scope("default", bad, "test3").install("shell", "latest", &json!({}), None).await.map(drop),
            c.with_scope("default", "superorg", bad).uninstall("id", false).await,
        ];
        for (i, outcome) in outcomes.into_iter().enumerate() {
            assert!(
                matches!(&outcome, Err(Error::Invalid(m)) if m.contains("is not a valid Apolo")),
                "{bad:?} #{i}: {outcome:?}"
            );
        }
    }
    let origin = url.trim_end_matches("/api/v1");
    let counters: serde_json::Value =
        reqwest::get(format!("{origin}/_sim/counters")).await.unwrap().json().await.unwrap();
    assert_eq!(counters, json!({}), "no request reached any route");
    // A client made before its scope is known (as the operator makes one per account) still works once scoped.
    let unscoped = Client::new(HttpConfig::new(url.parse().unwrap()), &Secret::new("tok"), "", "", "").unwrap();
    assert_eq!(unscoped.with_scope("default", "superorg", "test3").templates().await.unwrap().len(), 2);
}
