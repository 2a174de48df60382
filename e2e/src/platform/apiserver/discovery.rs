//! Discovery documents (`/api`, `/apis`, `/api/v1`, `/apis/apps/v1`, `/version`): what a
//! client such as kubectl reads to map `deployments`, `deploy`, `rs`, `po` to URLs. Only the
//! resources the simulated API server serves are listed.

use serde_json::{Value, json};

/// `/version`.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0-zai-rehearsal",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}

/// `/api`.
pub fn core_versions(server: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server}]
    })
}

/// `/apis`.
pub fn groups() -> Value {
    let apps = json!({"groupVersion": "apps/v1", "version": "v1"});
    json!({
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [{"name": "apps", "versions": [apps], "preferredVersion": apps}]
    })
}

fn resource(name: &str, kind: &str, short: &[&str], verbs: &[&str], namespaced: bool) -> Value {
    let singular = if name.contains('/') {
        String::new()
    } else {
        kind.to_lowercase()
    };
    let mut v = json!({
        "name": name,
        "singularName": singular,
        "namespaced": namespaced,
        "kind": kind,
        "verbs": verbs,
    });
    if !short.is_empty() {
        v["shortNames"] = json!(short);
    }
    v
}

/// `/api/v1`.
pub fn core_v1() -> Value {
    let read = ["get", "list", "watch"];
    json!({
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [
            resource("namespaces", "Namespace", &["ns"], &read, false),
            resource("pods", "Pod", &["po"], &read, true),
            resource("pods/log", "Pod", &[], &["get"], true),
            resource("pods/proxy", "PodProxyOptions", &[], &["get"], true),
            resource("services", "Service", &["svc"], &["create", "get", "list"], true),
            resource("endpoints", "Endpoints", &["ep"], &["get", "list"], true),
            resource("events", "Event", &["ev"], &["list"], true),
        ]
    })
}

/// `/apis/apps/v1`.
pub fn apps_v1() -> Value {
    let mut scale = resource(
        "deployments/scale",
        "Scale",
        &[],
        &["get", "patch", "update"],
        true,
    );
    scale["group"] = json!("autoscaling");
    scale["version"] = json!("v1");
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "apps/v1",
        "resources": [
            resource(
                "deployments",
                "Deployment",
                &["deploy"],
                &["create", "get", "list", "patch", "update", "watch"],
                true
            ),
            scale,
            resource("replicasets", "ReplicaSet", &["rs"], &["get", "list", "watch"], true),
        ]
    })
}
