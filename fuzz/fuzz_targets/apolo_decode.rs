//! Arbitrary bytes as an Apolo answer, decoded into each type `tether_platforms::apolo::Client` decodes:
//! an app, a page of apps (`{items, pages}`), revisions, a page of values or events, outputs, inputs,
//! upgrades, templates and the config (`authorized`); then what the adapter reads of them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use tether_fuzz::{assert_round_trip, decode};
use tether_platforms::apolo::{App, Page, Revision};

fuzz_target!(|data: &[u8]| {
    if let Some(app) = decode::<App>(data) {
        check_app(&app);
    }
    if let Some(page) = decode::<Page<App>>(data) {
        page.items.iter().for_each(check_app);
        let _more = 1 < page.pages;
        // The adapter keeps the newest app carrying its marker.
        let mut ours: Vec<&App> = page.items.iter().filter(|a| a.display_name.ends_with(']')).collect();
        ours.sort_by_key(|a| std::cmp::Reverse(created(a)));
    }
    if let Some(page) = decode::<Page<Map<String, Value>>>(data) {
        let _ = (page.items.len(), page.pages);
    }
    if let Some(revisions) = decode::<Vec<Revision>>(data) {
        for revision in &revisions {
            assert_round_trip(revision, true);
        }
        let _ = revisions.iter().find(|r| r.end_at.is_none()).and_then(|r| i32::try_from(r.revision_number).ok());
    }
    if let Some(revision) = decode::<Revision>(data) {
        assert_round_trip(&revision, true);
    }
    // `output` (written to the outputs Secret as text), `input`, `template`.
    if let Some(values) = decode::<Map<String, Value>>(data) {
        let _: Vec<(String, String)> =
            values.iter().map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_string))).collect();
        let _ = values.get("input");
    }
    let _ = decode::<Vec<Map<String, Value>>>(data);
    // `authorized`.
    if let Some(config) = decode::<Value>(data) {
        let _ = config.get("authorized").and_then(Value::as_bool);
    }
});

fn created(app: &App) -> String {
    app.fields.get("created_at").and_then(Value::as_str).unwrap_or_default().to_string()
}

fn check_app(app: &App) {
    assert_round_trip(app, true);
    let text = |key: &str| app.fields.get(key).and_then(Value::as_str).map(str::to_string);
    let _ = (text("namespace"), text("creator"), text("created_at"), text("updated_at"), app.endpoints.first());
}
