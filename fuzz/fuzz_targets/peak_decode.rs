//! Arbitrary bytes as a Peak answer, decoded into each type `tether_platforms::peak::Client` decodes (a
//! webapp, a page of the list, the create answer `{id}`, the tenant metadata); then what the adapter
//! reads of a webapp.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use serde_json::{Map, Value};
use tether_fuzz::{assert_round_trip, decode};
use tether_platforms::peak::{ImageDetails, Page, Resources, Webapp};

/// The client's private `IdOnly` (the create answer), with the same serde attributes (peak.rs).
#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

fuzz_target!(|data: &[u8]| {
    if let Some(webapp) = decode::<Webapp>(data) {
        check_webapp(&webapp);
    }
    if let Some(page) = decode::<Page>(data) {
        page.webapps.iter().for_each(check_webapp);
        let _ = (page.webapps_count, 1 >= page.page_count);
        let _ = page.webapps.iter().find(|w| w.name == "x");
    }
    if let Some(created) = decode::<IdOnly>(data) {
        let _ = created.id;
    }
    if let Some(image) = decode::<ImageDetails>(data) {
        assert_round_trip(&image, true);
    }
    if let Some(resources) = decode::<Resources>(data) {
        assert_round_trip(&resources, true);
    }
    let _ = decode::<Map<String, Value>>(data);
});

fn check_webapp(webapp: &Webapp) {
    assert_round_trip(webapp, true);
    let text = |key: &str| webapp.fields.get(key).and_then(Value::as_str).map(str::to_string);
    let flag = |key: &str| webapp.fields.get(key).and_then(Value::as_bool);
    let _ = (text("title"), text("description"), text("createdAt"), flag("sessionStickiness"), flag("scaleToZero"));
    let _ = webapp.image_details.clone().unwrap_or_default();
    let _ = webapp.resources.as_ref().and_then(|r| r.instance_type_id);
    let _ = webapp.status.ends_with("_FAILED");
}
