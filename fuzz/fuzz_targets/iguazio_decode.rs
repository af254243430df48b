//! Arbitrary bytes as an Iguazio answer, decoded as `tether_platforms::iguazio::Client` decodes each one:
//! the manifest envelope (`data[0].attributes`, decoded straight into `Manifest`), a job envelope (`job_of`), the failed job's
//! `result`, the version and verification answers; then what the adapter reads of a manifest. The manifest
//! is written back whole, so every attribute read must serialise back unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tether_fuzz::{assert_round_trip, decode, same};
use tether_platforms::iguazio::{AppService, Job, Manifest};

fuzz_target!(|data: &[u8]| {
    // The typed answers, straight (a proxy or a future version could answer them bare).
    if let Some(manifest) = decode::<Manifest>(data) {
        check_manifest(&manifest, None);
    }
    if let Some(job) = decode::<Job>(data) {
        check_job(&job);
    }
    let Some(answer) = decode::<Value>(data) else { return };

    // `Client::manifest`: the envelope decoded straight into `Manifest`, checked against the attributes
    // as the same bytes read as a `Value`.
    if let Some(Answer { data: entries }) = decode::<Answer>(data)
        && let Some(entry) = entries.into_iter().next()
    {
        check_manifest(&entry.attributes, Some(&answer["data"][0]["attributes"]));
    }

    // `job_of` (`Client::put_manifest`, `Client::job`).
    let data_ = &answer["data"];
    let attrs = &data_["attributes"];
    if let Some(id) = data_["id"].as_str() {
        let job = Job {
            id: id.to_string(),
            state: attrs["state"].as_str().unwrap_or_default().to_string(),
            result: attrs["result"].as_str().unwrap_or_default().to_string(),
        };
        check_job(&job);
    }

    // `Client::version` and `Client::verify`.
    let _ = answer["data"]["attributes"]["external"].as_str();
    let _ = attrs["username"].as_str();
    let _ = attrs["context"]["authentication"]["tenant_id"].as_str();

    // The adapter's `urls`: a status list decoded into the API's type, anything else an empty list.
    for key in ["urls", "api_urls", "internal_api_urls"] {
        let list = answer.get(key).cloned().unwrap_or(Value::Null);
        let urls: Vec<tether_api::iguazio::ServiceUrl> = serde_json::from_value(list).unwrap_or_default();
        let _ = urls.first().map(|u| u.url.clone());
    }
});

fn check_job(job: &Job) {
    assert_round_trip(job, true);
    // `Client::wait_job` on a terminal job: the result is a JSON string `{"message", "status"}` or text.
    if job.is_terminal() {
        let why = serde_json::from_str::<Value>(&job.result)
            .ok()
            .and_then(|r| r["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| job.result.clone());
        let _ = format!("job {} {}: {why}", job.id, job.state);
    }
}

/// `GET /api/app_services_manifests`'s answer as `Client::manifest` decodes it.
#[derive(serde::Deserialize)]
struct Answer {
    #[serde(default)]
    data: Vec<Entry>,
}

#[derive(serde::Deserialize)]
struct Entry {
    attributes: Manifest,
}

/// What the writer and the adapter read of a manifest, and the write-back promise: serialising the
/// manifest gives back every attribute as read (`raw`), and every service's spec, meta and status.
fn check_manifest(manifest: &Manifest, raw: Option<&Value>) {
    let written = assert_round_trip(manifest, true);
    let _ = manifest.running_job();
    for service in &manifest.app_services {
        let name = service.name();
        assert!(manifest.service(name).is_some(), "a service of the manifest is not found by its own name {name:?}");
        let _ = (service.restart_token(), service.labels(), service.state());
        let status = service.status.as_ref();
        let _ = status.and_then(|s| s.get("error_info")?.get("description")?.as_str().map(str::to_string));
    }
    for (key, value) in &manifest.attributes {
        assert!(same(&written[key], value), "the manifest attribute {key:?} is not written back as read");
    }
    let Some(Value::Object(raw)) = raw else { return };
    for (key, value) in raw {
        if key == "app_services" {
            let services = value.as_array().expect("decoded, so an array");
            assert_eq!(services.len(), manifest.app_services.len());
            for (read, service) in services.iter().zip(&manifest.app_services) {
                check_service(read, service);
            }
        } else {
            assert!(same(&written[key], value), "the manifest attribute {key:?} is not written back as read");
        }
    }
}

fn check_service(read: &Value, service: &AppService) {
    assert!(same(&read["spec"], &Value::Object(service.spec.clone())), "a service's spec changed on decode");
    for (key, kept) in [("meta", service.meta.clone()), ("status", service.status.clone().map(Value::Object))] {
        match read.get(key) {
            None | Some(Value::Null) => assert!(kept.is_none()),
            Some(value) => assert!(kept.is_some_and(|k| same(&k, value)), "a service's {key} changed on decode"),
        }
    }
}
