//! The kube platform against kube's mock service (tower_test::mock::pair), with realistic
//! API objects: what it requests, and how it reads the answers.
#![allow(clippy::unwrap_used)]

use http::{Method, Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock;
use zai_promoter::config::KubeSettings;
use zai_promoter::platform::kube::{KubePlatform, rollout_status_of};
use zai_promoter::{Platform, Variant};

type Handle = mock::Handle<Request<Body>, Response<Body>>;

fn platform() -> (KubePlatform, Handle) {
    let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(svc, "mcp");
    (KubePlatform::new(client, KubeSettings::default()), handle)
}

fn deployment(name: &str, variant: &str, image: &str, version: &str, revision: u32) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name, "namespace": "mcp", "uid": format!("uid-{name}"),
            "generation": 4,
            "labels": {"app": "zai-proxy", "variant": variant, "version": version},
            "annotations": {"deployment.kubernetes.io/revision": revision.to_string()}
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "zai-proxy", "variant": variant}},
            "template": {
                "metadata": {"labels": {"app": "zai-proxy", "variant": variant, "version": version}},
                "spec": {"containers": [{"name": "proxy", "image": image,
                    "ports": [{"containerPort": 8080, "name": "http"}]}]}
            },
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
        },
        "status": {
            "observedGeneration": 4, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2,
            "availableReplicas": 2,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}
            ]
        }
    })
}

fn pod(name: &str, version: &str, ready: bool, restarts: i32, waiting: Option<&str>) -> Value {
    let state = match waiting {
        Some(r) => {
            json!({"waiting": {"reason": r, "message": "back-off 40s restarting failed container"}})
        }
        None => json!({"running": {"startedAt": "2026-08-20T11:00:00Z"}}),
    };
    json!({
        "metadata": {"name": name, "namespace": "mcp",
            "labels": {"app": "zai-proxy", "variant": "production", "version": version, "pod-template-hash": "7d9f"}},
        "spec": {"containers": [{"name": "proxy", "image": format!("ronaldraygun/zai-proxy:{version}")}]},
        "status": {
            "phase": "Running",
            "startTime": "2026-08-20T11:00:00Z",
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
            "containerStatuses": [{"name": "proxy", "ready": ready, "restartCount": restarts,
                "image": format!("docker.io/ronaldraygun/zai-proxy:{version}"), "imageID": "sha256:abc",
                "started": ready, "state": state}]
        }
    })
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items})
}

async fn answer(
    handle: &mut Handle,
    method: Method,
    path_contains: &str,
    body: Value,
) -> (String, Vec<u8>) {
    let (req, send) = handle.next_request().await.expect("a request");
    assert_eq!(req.method(), method, "{}", req.uri());
    let uri = req.uri().to_string();
    assert!(
        uri.contains(path_contains),
        "{uri} should contain {path_contains}"
    );
    let ct = req
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    use http_body_util::BodyExt;
    let bytes = req.into_body().collect().await.unwrap().to_bytes().to_vec();
    send.send_response(
        Response::builder()
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap(),
    );
    (format!("{uri} {ct}"), bytes)
}

#[tokio::test]
async fn lists_pods_by_the_deployment_selector_and_reads_crash_loops() {
    let (p, mut h) = platform();
    let server = tokio::spawn(async move {
        answer(
            &mut h,
            Method::GET,
            "/apis/apps/v1/namespaces/mcp/deployments/zai-proxy",
            deployment(
                "zai-proxy",
                "production",
                "ronaldraygun/zai-proxy:1.2.1",
                "1.2.1",
                5,
            ),
        )
        .await;
        let (uri, _) = answer(
            &mut h,
            Method::GET,
            "/api/v1/namespaces/mcp/pods",
            list(
                "PodList",
                vec![
                    pod("zai-proxy-7d9f-a", "1.2.1", true, 0, None),
                    pod(
                        "zai-proxy-7d9f-b",
                        "1.2.1",
                        false,
                        4,
                        Some("CrashLoopBackOff"),
                    ),
                ],
            ),
        )
        .await;
        assert!(
            uri.contains("labelSelector=app%3Dzai-proxy%2Cvariant%3Dproduction"),
            "{uri}"
        );
    });
    let pods = p.list_pods(Variant::Production).await.unwrap();
    server.await.unwrap();
    assert_eq!(pods.len(), 2);
    assert!(pods[0].ready && pods[0].restarts == 0 && pods[0].waiting_reason.is_none());
    assert_eq!(pods[1].waiting_reason.as_deref(), Some("CrashLoopBackOff"));
    assert_eq!(pods[1].restarts, 4);
    assert!(!pods[1].ready);
    assert_eq!(pods[0].version.as_deref(), Some("1.2.1"));
    assert_eq!(pods[0].image, "ronaldraygun/zai-proxy:1.2.1");
    assert!(pods[0].base_url.is_none());
}

#[tokio::test]
async fn set_image_patches_the_container_and_the_version_label() {
    let (p, mut h) = platform();
    let server = tokio::spawn(async move {
        let (uri, body) = answer(
            &mut h,
            Method::PATCH,
            "/apis/apps/v1/namespaces/mcp/deployments/zai-proxy?",
            deployment(
                "zai-proxy",
                "production",
                "ronaldraygun/zai-proxy:1.2.1",
                "1.2.1",
                6,
            ),
        )
        .await;
        assert!(
            uri.contains("application/strategic-merge-patch+json"),
            "{uri}"
        );
        assert!(uri.contains("fieldManager=zai-promoter"), "{uri}");
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v["spec"]["template"]["spec"]["containers"][0]["name"],
            "proxy"
        );
        assert_eq!(
            v["spec"]["template"]["spec"]["containers"][0]["image"],
            "ronaldraygun/zai-proxy:1.2.1"
        );
        assert_eq!(
            v["spec"]["template"]["metadata"]["labels"]["version"],
            "1.2.1"
        );
    });
    p.set_image(Variant::Production, "ronaldraygun/zai-proxy:1.2.1", "1.2.1")
        .await
        .unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn undo_applies_the_previous_replicaset_template() {
    let (p, mut h) = platform();
    let rs = |rev: u32, version: &str, owner: &str| {
        json!({
            "metadata": {"name": format!("zai-proxy-{rev}"), "namespace": "mcp",
                "annotations": {"deployment.kubernetes.io/revision": rev.to_string()},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "zai-proxy",
                    "uid": owner, "controller": true}]},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "zai-proxy"}},
                "template": {"metadata": {"labels": {"app": "zai-proxy", "variant": "production",
                        "version": version, "pod-template-hash": format!("h{rev}")}},
                    "spec": {"containers": [{"name": "proxy", "image": format!("ronaldraygun/zai-proxy:{version}")}]}}}
        })
    };
    let server = tokio::spawn(async move {
        answer(
            &mut h,
            Method::GET,
            "deployments/zai-proxy",
            deployment(
                "zai-proxy",
                "production",
                "ronaldraygun/zai-proxy:1.2.1",
                "1.2.1",
                6,
            ),
        )
        .await;
        answer(
            &mut h,
            Method::GET,
            "/apis/apps/v1/namespaces/mcp/replicasets",
            list(
                "ReplicaSetList",
                vec![
                    rs(4, "1.1.0", "uid-zai-proxy"),
                    rs(5, "1.2.0", "uid-zai-proxy"),
                    rs(6, "1.2.1", "uid-zai-proxy"),
                    rs(9, "9.9.9", "uid-someone-else"),
                ],
            ),
        )
        .await;
        let (uri, body) = answer(
            &mut h,
            Method::PATCH,
            "deployments/zai-proxy",
            deployment(
                "zai-proxy",
                "production",
                "ronaldraygun/zai-proxy:1.2.0",
                "1.2.0",
                7,
            ),
        )
        .await;
        assert!(uri.contains("application/merge-patch+json"), "{uri}");
        let v: Value = serde_json::from_slice(&body).unwrap();
        let t = &v["spec"]["template"];
        assert_eq!(
            t["spec"]["containers"][0]["image"],
            "ronaldraygun/zai-proxy:1.2.0"
        );
        assert_eq!(t["metadata"]["labels"]["version"], "1.2.0");
        assert!(
            t["metadata"]["labels"].get("pod-template-hash").is_none(),
            "{t}"
        );
        assert_eq!(v["metadata"]["labels"]["version"], "1.2.0");
    });
    p.undo(Variant::Production).await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn undo_without_an_earlier_revision_is_a_clear_error() {
    let (p, mut h) = platform();
    let server = tokio::spawn(async move {
        answer(
            &mut h,
            Method::GET,
            "deployments/zai-proxy",
            deployment(
                "zai-proxy",
                "production",
                "ronaldraygun/zai-proxy:1.2.1",
                "1.2.1",
                1,
            ),
        )
        .await;
        answer(
            &mut h,
            Method::GET,
            "replicasets",
            list("ReplicaSetList", vec![]),
        )
        .await;
    });
    let e = p.undo(Variant::Production).await.unwrap_err();
    server.await.unwrap();
    assert!(e.to_string().contains("no revision before 1"), "{e}");
}

#[tokio::test]
async fn scale_patches_the_scale_subresource_and_logs_are_parsed() {
    let (p, mut h) = platform();
    let server = tokio::spawn(async move {
        let (uri, body) = answer(
            &mut h,
            Method::PATCH,
            "/apis/apps/v1/namespaces/mcp/deployments/zai-proxy-test/scale",
            json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "zai-proxy-test"},
                "spec": {"replicas": 0}, "status": {"replicas": 1}}),
        )
        .await;
        assert!(uri.contains("merge-patch"), "{uri}");
        assert_eq!(
            serde_json::from_slice::<Value>(&body).unwrap()["spec"]["replicas"],
            0
        );
        // logs: deployment, pods, then one log request per pod
        answer(
            &mut h,
            Method::GET,
            "deployments/zai-proxy",
            deployment(
                "zai-proxy",
                "production",
                "ronaldraygun/zai-proxy:1.2.1",
                "1.2.1",
                6,
            ),
        )
        .await;
        answer(
            &mut h,
            Method::GET,
            "/pods",
            list(
                "PodList",
                vec![pod("zai-proxy-7d9f-a", "1.2.1", true, 0, None)],
            ),
        )
        .await;
        let (req, send) = h.next_request().await.unwrap();
        let uri = req.uri().to_string();
        assert!(uri.contains("/pods/zai-proxy-7d9f-a/log"), "{uri}");
        assert!(
            uri.contains("container=proxy") && uri.contains("timestamps=true"),
            "{uri}"
        );
        assert!(uri.contains("sinceTime=2026-08-20T12"), "{uri}");
        let text = "2026-08-20T12:00:01.123456789Z Token counting enabled (tiktoken)\n\
                    2026-08-20T12:00:02Z DEPLOYMENT_VARIANT=production\n";
        send.send_response(
            Response::builder()
                .body(Body::from(text.as_bytes().to_vec()))
                .unwrap(),
        );
    });
    p.scale(Variant::Test, 0).await.unwrap();
    let since = chrono::DateTime::parse_from_rfc3339("2026-08-20T12:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let logs = p.logs_since(Variant::Production, since).await.unwrap();
    server.await.unwrap();
    assert_eq!(logs.len(), 2);
    assert_eq!(logs[0].line, "Token counting enabled (tiktoken)");
    assert_eq!(logs[1].pod, "zai-proxy-7d9f-a");
    assert!(logs[0].timestamp.is_some());
}

#[test]
fn rollout_status_follows_kubectl() {
    let mut d: k8s_openapi::api::apps::v1::Deployment =
        serde_json::from_value(deployment("zai-proxy", "production", "x:1", "1", 2)).unwrap();
    assert!(rollout_status_of(&d).complete);
    d.metadata.generation = Some(5);
    let s = rollout_status_of(&d);
    assert!(!s.complete && s.message.contains("observed"), "{s:?}");
    let st = d.status.as_mut().unwrap();
    st.observed_generation = Some(5);
    st.updated_replicas = Some(1);
    assert!(
        rollout_status_of(&d)
            .message
            .contains("1 of 2 new replicas updated")
    );
    let st = d.status.as_mut().unwrap();
    st.updated_replicas = Some(2);
    st.replicas = Some(3);
    assert!(
        rollout_status_of(&d)
            .message
            .contains("1 old replicas pending termination")
    );
    let st = d.status.as_mut().unwrap();
    st.replicas = Some(2);
    st.available_replicas = Some(1);
    assert!(!rollout_status_of(&d).complete);
    let st = d.status.as_mut().unwrap();
    st.conditions.as_mut().unwrap()[1].reason = Some("ProgressDeadlineExceeded".into());
    assert!(rollout_status_of(&d).failure.is_some());
}

fn canary_pod_info() -> zai_promoter::PodInfo {
    zai_promoter::PodInfo {
        name: "zai-proxy-test-1".into(),
        variant: Variant::Test,
        phase: "Running".into(),
        ready: true,
        restarts: 0,
        waiting_reason: None,
        version: Some("1.2.1-canary".into()),
        image: "ronaldraygun/zai-proxy:1.2.1-canary".into(),
        base_url: None,
        started_at: None,
    }
}

/// Answers one pod-proxy request with `status` and `body`.
fn proxy_answers(mut h: Handle, status: u16, body: &'static [u8]) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let (req, send) = h.next_request().await.unwrap();
        assert_eq!(
            req.uri().path(),
            "/api/v1/namespaces/mcp/pods/zai-proxy-test-1:8080/proxy/health"
        );
        send.send_response(
            Response::builder()
                .status(status)
                .body(Body::from(body.to_vec()))
                .unwrap(),
        );
    })
}

#[tokio::test]
async fn health_comes_through_the_pod_proxy_never_from_readiness() {
    let pod_info = canary_pod_info();
    let t = std::time::Duration::from_secs(2);

    // By default through the pod proxy; the pod's own answer passes through, 503 included.
    let (p, h) = platform();
    let server = proxy_answers(h, 200, br#"{"status":"ok","variant":"test"}"#);
    let r = p.pod_get(&pod_info, "/health", t).await.unwrap();
    server.await.unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body.contains("\"variant\":\"test\""));
    let (p, h) = platform();
    let server = proxy_answers(h, 503, br#"{"status":"draining"}"#);
    let r = p.pod_get(&pod_info, "/health", t).await.unwrap();
    server.await.unwrap();
    assert_eq!(
        (r.status, r.body.as_str()),
        (503, r#"{"status":"draining"}"#)
    );

    // Forbidden by RBAC: unreachable with the reason, not a made-up answer.
    let (p, h) = platform();
    let server = proxy_answers(
        h,
        403,
        br#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods \"zai-proxy-test-1\" is forbidden: User \"system:serviceaccount:mcp:zai-promoter\" cannot get resource \"pods/proxy\"","reason":"Forbidden","code":403}"#,
    );
    let e = p.pod_get(&pod_info, "/health", t).await.unwrap_err();
    server.await.unwrap();
    assert!(
        matches!(&e, zai_promoter::Error::PodUnreachable { reason, .. } if reason.contains("pods/proxy")),
        "{e}"
    );

    // Turned off: unreachable, no request sent, whatever the pod's readiness.
    let (p, _h) = platform();
    let p = p.with_pod_proxy(false);
    let e = p.pod_get(&pod_info, "/health", t).await.unwrap_err();
    assert!(
        matches!(e, zai_promoter::Error::PodUnreachable { .. }),
        "{e}"
    );
    assert!(p.pod_get(&pod_info, "/metrics", t).await.is_err());
}
