//! The Peak client against the Peak simulator: every method, the asynchronous lifecycle, paging, errors.

use std::time::Duration;

use serde_json::json;
use tether_platforms::peak::{Client, ImageDetails, Resources, WebappFields};
use tether_platforms::{Error, HttpConfig, Secret};
use tether_sim::{SimOptions, spawn};

async fn setup(delay: Duration) -> (Client, String) {
    let endpoint = spawn("peak", "127.0.0.1:0".parse().unwrap(), SimOptions { delay }).await.unwrap();
    let client = Client::new(HttpConfig::new(endpoint.url.parse().unwrap()), &Secret::new("sim-token")).unwrap();
    (client, endpoint.url)
}

fn app(name: &str) -> WebappFields {
    WebappFields {
        name: Some(name.into()),
        title: Some("T".into()),
        image_details: Some(ImageDetails { image_id: 100, version_id: Some(100) }),
        resources: Some(Resources { instance_type_id: Some(1) }),
        ..Default::default()
    }
}

const TICK: Duration = Duration::from_millis(20);
const LONG: Duration = Duration::from_secs(10);

#[tokio::test]
async fn lifecycle_create_update_redeploy_delete() {
    let (c, _) = setup(Duration::from_millis(100)).await;
    c.tenant_metadata().await.unwrap();
    let id = c.create(&app("conf-app")).await.unwrap();
    assert_eq!(c.describe(&id).await.unwrap().status, "CREATING");
    let w = c.wait(&id, false, TICK, LONG).await.unwrap().unwrap();
    assert_eq!(w.image_details, Some(ImageDetails { image_id: 100, version_id: Some(100) }));
    assert!(w.application_url.is_some());

    c.update(&id, &WebappFields { title: Some("New".into()), ..Default::default() }).await.unwrap();
    let w = c.describe(&id).await.unwrap();
    assert_eq!((w.status.as_str(), w.fields["title"].clone()), ("AVAILABLE", json!("New")));

    let redeploy = WebappFields {
        image_details: Some(ImageDetails { image_id: 100, version_id: Some(101) }),
        ..Default::default()
    };
    c.update(&id, &redeploy).await.unwrap();
    assert_eq!(c.describe(&id).await.unwrap().status, "DEPLOYING");
    let w = c.wait(&id, false, TICK, LONG).await.unwrap().unwrap();
    assert_eq!(w.image_details.unwrap().version_id, Some(101));

    // Another image, no version named: the latest ready version of that image, not the old image's one.
    let other_image =
        WebappFields { image_details: Some(ImageDetails { image_id: 1, version_id: None }), ..Default::default() };
    c.update(&id, &other_image).await.unwrap();
    let w = c.wait(&id, false, TICK, LONG).await.unwrap().unwrap();
    assert_eq!(w.image_details, Some(ImageDetails { image_id: 1, version_id: Some(2) }));

    assert_eq!(c.find_by_name("conf-app").await.unwrap().map(|w| w.id), Some(id.clone()));
    assert!(c.find_by_name("conf").await.unwrap().is_none(), "search is a substring match; find is exact");

    c.delete(&id).await.unwrap();
    assert!(matches!(c.delete(&id).await, Err(Error::Conflict(_))), "second delete while DELETING");
    assert!(c.wait(&id, true, TICK, LONG).await.unwrap().is_none());
    assert!(matches!(c.describe(&id).await, Err(Error::NotFound(_))));
}

#[tokio::test]
async fn list_all_walks_every_page_and_filters() {
    let (c, _) = setup(Duration::ZERO).await;
    for i in 0..7 {
        c.create(&app(&format!("page-{i}"))).await.unwrap();
    }
    let first = c.list(1, 3, &[], None).await.unwrap();
    assert_eq!((first.webapps.len(), first.webapps_count, first.page_count), (3, 7, 3));
    assert_eq!(c.list_all(&["AVAILABLE"], None).await.unwrap().len(), 7);
    assert!(c.list_all(&["CREATE_FAILED"], None).await.unwrap().is_empty());
}

#[tokio::test]
async fn errors_are_classified() {
    let (c, url) = setup(Duration::ZERO).await;
    c.create(&app("dup")).await.unwrap();
    assert!(matches!(c.create(&app("dup")).await, Err(Error::Conflict(_))));
    let no_image = WebappFields { name: Some("x".into()), ..Default::default() };
    assert!(matches!(c.create(&no_image).await, Err(Error::Invalid(m)) if m.contains("imageDetails")));
    assert!(matches!(c.describe("00000000-0000-0000-0000-000000000000").await, Err(Error::NotFound(_))));
    let wrong = Client::new(HttpConfig::new(url.parse().unwrap()), &Secret::new("wrong")).unwrap();
    assert!(matches!(wrong.tenant_metadata().await, Err(Error::Unauthorized(_))));
}

#[tokio::test]
async fn a_failed_create_surfaces_as_a_platform_error() {
    let (c, url) = setup(Duration::from_millis(200)).await;
    let id = c.create(&app("doomed")).await.unwrap();
    let resp = reqwest::Client::new().post(format!("{url}/_sim/fail")).json(&json!({"id": id})).send().await.unwrap();
    assert_eq!(resp.status(), 204);
    assert!(matches!(c.wait(&id, false, TICK, LONG).await, Err(Error::Platform(m)) if m.contains("CREATE_FAILED")));
}

#[tokio::test]
async fn hostile_ids_are_refused_before_any_request() {
    let (c, url) = setup(Duration::ZERO).await;
    for bad in ["../x", "a/b", "..", "%2e%2e", "", "x/../other-id", "a\\b"] {
        let outcomes = [
            c.describe(bad).await.map(drop),
            c.update(bad, &WebappFields { title: Some("t".into()), ..Default::default() }).await,
            c.delete(bad).await,
            c.wait(bad, true, TICK, LONG).await.map(drop),
        ];
        for (i, outcome) in outcomes.into_iter().enumerate() {
            assert!(
                matches!(&outcome, Err(Error::Invalid(m)) if m.contains("is not a valid Peak webapp id")),
                "{bad:?} #{i}: {outcome:?}"
            );
        }
    }
    let counters: serde_json::Value = reqwest::get(format!("{url}/_sim/counters")).await.unwrap().json().await.unwrap();
    assert_eq!(counters, json!({}), "no request reached any route");
}
