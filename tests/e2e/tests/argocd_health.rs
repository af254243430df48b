//! The Argo CD health check in deploy/argocd runs, in Lua 5.1 as Argo CD's gopher-lua does, over the
//! statuses Tether writes, and deploy/argocd/argocd-cm.yaml embeds exactly that script for every kind.

use mlua::{Lua, LuaSerdeExt};
use serde_json::{Value, json};

const KINDS: [&str; 5] = ["AppService", "CivisService", "ApoloApp", "UbiService", "PeakWebapp"];
const CONNECTION_KINDS: [&str; 2] = ["Connection", "ClusterConnection"];

fn read(file: &str) -> String {
    std::fs::read_to_string(tether_testenv::repo_root().join("deploy/argocd").join(file)).unwrap()
}

fn script() -> String {
    read("health.lua")
}

fn health(obj: Value) -> (String, String) {
    let lua = Lua::new();
    lua.globals().set("obj", lua.to_value(&obj).unwrap()).unwrap();
    let result: mlua::Table = lua.load(script()).eval().unwrap();
    (result.get("status").unwrap(), result.get::<Option<String>>("message").unwrap().unwrap_or_default())
}

fn resource(generation: i64, observed: i64, conditions: &[(&str, &str, &str)]) -> Value {
    let conditions: Vec<Value> = conditions
        .iter()
        .map(|(t, s, r)| json!({"type": t, "status": s, "reason": r, "message": format!("{r} says so")}))
        .collect();
    json!({"metadata": {"generation": generation}, "status": {"observedGeneration": observed, "conditions": conditions}})
}

#[test]
fn conditions_map_to_argo_cd_health() {
    let ok = [
        ("Ready", "True", "Available"),
        ("Synced", "True", "ReconcileSuccess"),
        ("Stalled", "False", "ReconcileSuccess"),
    ];
    let reconciling = ("Reconciling", "True", "Unavailable");
    let cases = [
        (json!({"metadata": {"generation": 1}}), "Progressing"),
        (json!({"metadata": {"generation": 1}, "status": {"observedGeneration": 0}}), "Progressing"),
        (resource(2, 1, &ok), "Progressing"),
        (resource(1, 1, &ok), "Healthy"),
        (resource(1, 1, &[("Ready", "False", "Creating"), ("Synced", "True", "ReconcileSuccess")]), "Progressing"),
        (resource(1, 1, &[("Ready", "False", "Throttled"), ("Synced", "False", "Throttled")]), "Progressing"),
        (resource(1, 1, &[("Ready", "False", "Unauthorized"), ("Synced", "False", "Unauthorized")]), "Degraded"),
        (resource(1, 1, &[("Ready", "False", "PlatformError"), ("Synced", "True", "ReconcileSuccess")]), "Degraded"),
        (
            resource(2, 2, &[("Ready", "True", "Available"), ("Synced", "False", "Unavailable"), reconciling]),
            "Progressing",
        ),
        (resource(2, 2, &[("Ready", "True", "Available"), ("Synced", "False", "ConnectionNotFound")]), "Degraded"),
        (resource(1, 1, &[("Ready", "True", "Available"), ("Synced", "False", "Unavailable")]), "Healthy"),
        (
            resource(
                1,
                1,
                &[
                    ("Ready", "True", "Available"),
                    ("Synced", "False", "InvalidSpec"),
                    ("Stalled", "True", "InvalidSpec"),
                ],
            ),
            "Degraded",
        ),
        (resource(1, 1, &[("Ready", "True", "Available"), ("Synced", "False", "Paused")]), "Suspended"),
        (
            json!({"metadata": {"generation": 1, "deletionTimestamp": "2026-01-01T00:00:00Z"},
                   "status": {"observedGeneration": 1, "conditions": []}}),
            "Progressing",
        ),
    ];
    // Ready=True kept from generation 1 while generation 2 is not applied is not Healthy.
    let mut older = resource(2, 2, &ok);
    older["status"]["conditions"][0]["observedGeneration"] = json!(1);
    assert_eq!(health(older).0, "Progressing");
    for (obj, want) in cases {
        let (status, message) = health(obj.clone());
        assert_eq!(status, want, "{obj} → {message}");
    }
    let (_, message) =
        health(resource(1, 1, &[("Ready", "False", "Unauthorized"), ("Synced", "False", "Unauthorized")]));
    assert_eq!(message, "Unauthorized: Unauthorized says so");
}

#[test]
fn the_config_map_embeds_the_script_for_every_kind() {
    let path = tether_testenv::repo_root().join("deploy/argocd/argocd-cm.yaml");
    let mut expected = String::from(
        "# Generated from health.lua and connection-health.lua by tests/e2e/tests/argocd_health.rs (TETHER_BLESS=1 rewrites it).\n\
         # Merge into Argo CD's argocd-cm ConfigMap, e.g. kubectl -n argocd patch configmap argocd-cm --patch-file this-file\n\
         data:\n",
    );
    let scripts =
        KINDS.map(|k| (k, "health.lua")).into_iter().chain(CONNECTION_KINDS.map(|k| (k, "connection-health.lua")));
    for (kind, file) in scripts {
        expected.push_str(&format!("  resource.customizations.health.tether.dev_{kind}: |\n"));
        for line in read(file).lines() {
            expected.push_str(&if line.is_empty() { "\n".to_string() } else { format!("    {line}\n") });
        }
    }
    if std::env::var_os("TETHER_BLESS").is_some() {
        std::fs::write(&path, &expected).unwrap();
    }
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        actual == expected,
        "{} is stale: run TETHER_BLESS=1 cargo test -p tether-e2e --test argocd_health",
        path.display()
    );
    let parsed: Value = serde_yaml_ng::from_str(&actual).unwrap();
    assert_eq!(parsed["data"].as_object().unwrap().len(), 7);
}
