//! Arbitrary JSON as each kind's spec (bare, or as `spec` of a whole resource as the API server hands it
//! to the watcher), decoded into the `tether_api` types, then turned into platform fields the way the
//! adapters do before diffing them against the remote object:
//!
//! - AppService: `spec_fields(spec, ["labels", "serviceConfig", "advanced"], ["pvc"])` (adapters/iguazio.rs);
//! - UbiService: `spec_fields(spec, ["project"], ["labels"])` (adapters/ubiops.rs);
//! - every kind: the spec serialises as an object (Civis diffs `serde_json::to_value(spec)` key by key) and
//!   decodes again to itself.
//!
//! A typed spec's keys cannot collide once snake_cased, so `spec_fields` must keep every field it does not
//! skip, with every key below it (except under a verbatim key) in snake_case.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tether_api::{
    ApoloApp, ApoloAppSpec, AppService, AppServiceSpec, CivisService, CivisServiceSpec, PeakWebapp, PeakWebappSpec,
    UbiService, UbiServiceSpec,
};
use tether_controller::adapters::spec_fields;
use tether_fuzz::{assert_round_trip, check_spec_fields, decode};

const IGUAZIO_SKIP: &[&str] = &["labels", "serviceConfig", "advanced"];
const IGUAZIO_VERBATIM: &[&str] = &["pvc"];
const UBIOPS_SKIP: &[&str] = &["project"];
const UBIOPS_VERBATIM: &[&str] = &["labels"];

fuzz_target!(|data: &[u8]| {
    let Some(doc) = decode::<Value>(data) else { return };
    for spec in [Some(&doc), doc.get("spec")].into_iter().flatten() {
        if let Ok(spec) = serde_json::from_value::<AppServiceSpec>(spec.clone()) {
            iguazio(&spec);
        }
        if let Ok(spec) = serde_json::from_value::<UbiServiceSpec>(spec.clone()) {
            ubiops(&spec);
        }
        if let Ok(spec) = serde_json::from_value::<CivisServiceSpec>(spec.clone()) {
            round_trip(&spec);
        }
        if let Ok(spec) = serde_json::from_value::<ApoloAppSpec>(spec.clone()) {
            round_trip(&spec);
        }
        if let Ok(spec) = serde_json::from_value::<PeakWebappSpec>(spec.clone()) {
            round_trip(&spec);
        }
    }
    // Whole resources, from the bytes as the watcher decodes them.
    if let Some(cr) = decode::<AppService>(data) {
        iguazio(&cr.spec);
    }
    if let Some(cr) = decode::<UbiService>(data) {
        ubiops(&cr.spec);
    }
    if let Some(cr) = decode::<CivisService>(data) {
        round_trip(&cr.spec);
    }
    if let Some(cr) = decode::<ApoloApp>(data) {
        round_trip(&cr.spec);
    }
    if let Some(cr) = decode::<PeakWebapp>(data) {
        round_trip(&cr.spec);
    }
});

/// The spec serialises as an object that decodes again to the same spec.
fn round_trip<S: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(spec: &S) -> Value {
    let value = assert_round_trip(spec, true);
    let again: S = serde_json::from_value(value.clone()).expect("checked by assert_round_trip");
    assert_eq!(&again, spec, "the spec does not decode back from its own serialisation {value}");
    value
}

fn iguazio(spec: &AppServiceSpec) {
    let serialized = round_trip(spec);
    let fields = spec_fields(spec, IGUAZIO_SKIP, IGUAZIO_VERBATIM);
    check_spec_fields(&serialized, &fields, IGUAZIO_SKIP, IGUAZIO_VERBATIM, true);
    assert_eq!(fields.get("name").and_then(Value::as_str), Some(spec.name.as_str()));
    assert_eq!(fields.get("kind").and_then(Value::as_str), Some(spec.kind.as_str()));
}

fn ubiops(spec: &UbiServiceSpec) {
    let serialized = round_trip(spec);
    let mut fields = spec_fields(spec, UBIOPS_SKIP, UBIOPS_VERBATIM);
    check_spec_fields(&serialized, &fields, UBIOPS_SKIP, UBIOPS_VERBATIM, true);
    assert_eq!(fields.get("port").and_then(Value::as_i64), Some(i64::from(spec.port)));
    // The adapter's `desired`: `version` always managed, null for "the deployment's default".
    fields.entry("version").or_insert(Value::Null);
    assert_eq!(fields["version"].as_str(), spec.version.as_deref());
}
