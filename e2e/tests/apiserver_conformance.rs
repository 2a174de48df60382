//! Conformance of the simulated Kubernetes API server for every call the promoter's
//! `KubePlatform` and the rehearsal driver make, with the API server's semantics: pods are
//! real `zai-proxy` processes, the client is kube-rs (what kube.rs uses) or plain HTTP where
//! the exact status code and `Status` body matter.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use zai_e2e::fake::{FakeConfig, FakeZai};
use zai_e2e::platform::apiserver::kubeconfig;
use zai_e2e::platform::local::LocalRuntime;
use zai_e2e::platform::local::binary::proxy_binary;
use zai_e2e::platform::spec::{Artifact, Backoff, ReadinessProbe, Timing, VersionSpec};
use zai_e2e::platform::{ApiServer, Cluster};
use zai_e2e::rehearsal::manifests;
use zai_e2e::rehearsal::stack::{kube_client, kube_settings};
use zai_e2e::service::Endpoints;
use zai_promoter::platform::RecordWrite;
use zai_promoter::platform::kube::KubePlatform;
use zai_promoter::{Error, Platform, Variant};

const NS: &str = "rehearsal";

struct Env {
    _fake: FakeZai,
    cluster: Arc<Cluster>,
    api: ApiServer,
    _dir: tempfile::TempDir,
    kubeconfig: std::path::PathBuf,
    client: kube::Client,
    http: reqwest::Client,
}

fn version(tag: &str, binary: &std::path::Path, url: &str, extra: &[(&str, &str)]) -> VersionSpec {
    let mut env: BTreeMap<String, String> = [
        ("ZAI_API_KEY", "conformance-key"),
        ("ZAI_TARGET_URL", url),
        ("MAX_WORKERS", "4"),
        ("SHUTDOWN_READINESS_DELAY", "0s"),
        ("SHUTDOWN_GRACE_PERIOD", "1s"),
        ("RATE_LIMIT_STATE_FILE", ""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (k, v) in extra {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    VersionSpec {
        tag: tag.to_owned(),
        artifact: Artifact::Binary(binary.to_path_buf()),
        env,
        probe: ReadinessProbe::default(),
    }
}

async fn env() -> Env {
    let binary = proxy_binary(false).expect("zai-proxy binary");
    let fake = FakeZai::start(FakeConfig::with_key("conformance-key"))
        .await
        .expect("fake upstream");
    let url = fake.url();
    let timing = Timing {
        probe_period: Duration::from_millis(100),
        termination_grace: Duration::from_secs(2),
        backoff: Backoff {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(2),
            reset_after: Duration::from_secs(30),
        },
        ..Timing::default()
    };
    let catalog = vec![
        version("1.0.0", &binary, &url, &[]),
        version("1.1.0", &binary, &url, &[]),
        version("9.9.9-crash", &binary, &url, &[("MAX_WORKERS", "0")]),
    ];
    let cluster = Arc::new(Cluster::new(
        Arc::new(LocalRuntime::new(timing.backoff)),
        NS,
        catalog,
        Endpoints::new(),
        timing,
    ));
    let api = ApiServer::start(Arc::clone(&cluster))
        .await
        .expect("api server");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("kubeconfig");
    kubeconfig::write(&path, &api.url(), NS).expect("kubeconfig");
    let client = kube_client(&path).await.expect("client");
    Env {
        _fake: fake,
        cluster,
        api,
        _dir: dir,
        kubeconfig: path,
        client,
        http: reqwest::Client::builder().no_proxy().build().expect("http"),
    }
}

async fn wait_for<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn image_of(d: &Deployment, container: &str) -> Option<String> {
    d.spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == container)?
        .image
        .clone()
}

/// A production Deployment like deploy/k8s with a second container beside `proxy`.
fn production(image: &str, replicas: u32) -> Deployment {
    let mut d = manifests::deployment(Variant::Production, image, replicas).expect("renders");
    if let Some(pod) = d.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
        pod.containers.push(Container {
            name: "sidecar".to_owned(),
            image: Some("busybox:1.36".to_owned()),
            ..Container::default()
        });
    }
    d
}

async fn status_of(response: reqwest::Response) -> (u16, Value) {
    let code = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (code, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_platform_calls_have_api_server_semantics() {
    let env = env().await;
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), NS);
    let pp = PostParams::default();
    deployments
        .create(&pp, &production("zai-proxy:1.0.0", 2))
        .await
        .expect("create production");
    deployments
        .create(
            &pp,
            &manifests::deployment(Variant::Test, "zai-proxy:1.0.0", 1).expect("renders"),
        )
        .await
        .expect("create canary");
    let platform = KubePlatform::from_kubeconfig(&env.kubeconfig, kube_settings())
        .await
        .expect("platform");

    // Rollout of the initial revision: observedGeneration catches up, status counts pods.
    wait_for("production rolled out", || async {
        platform
            .rollout_status(Variant::Production)
            .await
            .is_ok_and(|s| s.complete)
    })
    .await;
    let d = deployments.get("zai-proxy").await.expect("get");
    assert_eq!(d.metadata.generation, Some(1));
    let st = d.status.clone().expect("status");
    assert_eq!(st.observed_generation, Some(1));
    assert_eq!(st.ready_replicas, Some(2));
    assert_eq!(st.updated_replicas, Some(2));
    assert!(
        st.conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Available" && c.status == "True")
    );

    // Pods by selector: only production's, with container statuses and versions.
    let prod_pods = platform.list_pods(Variant::Production).await.expect("pods");
    assert_eq!(prod_pods.len(), 2);
    assert!(prod_pods.iter().all(|p| p.ready && p.restarts == 0));
    assert!(
        prod_pods
            .iter()
            .all(|p| p.version.as_deref() == Some("1.0.0"))
    );
    let listed = pods
        .list(&ListParams::default().labels("app=zai-proxy,variant=test"))
        .await
        .expect("list");
    assert_eq!(listed.items.len(), 1, "the selector picks the canary only");

    // /health and /metrics through the pod proxy; a pod-proxy answer passes through.
    let health = platform
        .pod_get(&prod_pods[0], "/health", Duration::from_secs(5))
        .await
        .expect("health");
    assert_eq!(health.status, 200, "{}", health.body);
    assert!(health.body.contains("\"status\""), "{}", health.body);
    let metrics = platform
        .pod_get(&prod_pods[0], "/metrics", Duration::from_secs(5))
        .await
        .expect("metrics");
    assert!(metrics.body.contains("zai_proxy_"), "{}", metrics.body);
    let unreachable = platform
        .clone()
        .with_pod_proxy(false)
        .pod_get(&prod_pods[0], "/health", Duration::from_secs(5))
        .await;
    assert!(matches!(unreachable, Err(Error::PodUnreachable { .. })));

    // Logs: sinceTime and tailLines.
    let before = chrono::Utc::now() - chrono::Duration::minutes(5);
    let lines = platform
        .logs_since(Variant::Production, before)
        .await
        .expect("logs");
    assert!(!lines.is_empty(), "the proxies logged their start-up");
    assert!(lines.iter().all(|l| l.timestamp.is_some()));
    let future = chrono::Utc::now() + chrono::Duration::minutes(5);
    assert!(
        platform
            .logs_since(Variant::Production, future)
            .await
            .expect("logs")
            .is_empty(),
        "sinceTime in the future gives nothing"
    );
    let pod_name = &prod_pods[0].name;
    let tail = env
        .http
        .get(format!(
            "{}/api/v1/namespaces/{NS}/pods/{pod_name}/log?container=proxy&tailLines=1",
            env.api.url()
        ))
        .send()
        .await
        .expect("log")
        .text()
        .await
        .expect("text");
    assert_eq!(tail.lines().count(), 1, "{tail}");

    // Set image: a strategic-merge patch of one container by name leaves the other one.
    platform
        .set_image(Variant::Production, "zai-proxy:1.1.0", "1.1.0")
        .await
        .expect("set image");
    let d = deployments.get("zai-proxy").await.expect("get");
    assert_eq!(d.metadata.generation, Some(2));
    assert_eq!(image_of(&d, "proxy").as_deref(), Some("zai-proxy:1.1.0"));
    assert_eq!(image_of(&d, "sidecar").as_deref(), Some("busybox:1.36"));
    assert_eq!(
        d.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("version"))
            .map(String::as_str),
        Some("1.1.0")
    );
    wait_for("rollout of 1.1.0", || async {
        let s = platform.rollout_status(Variant::Production).await;
        let pods = platform.list_pods(Variant::Production).await;
        s.is_ok_and(|s| s.complete)
            && pods.is_ok_and(|p| {
                p.len() == 2 && p.iter().all(|p| p.version.as_deref() == Some("1.1.0"))
            })
    })
    .await;
    let d = deployments.get("zai-proxy").await.expect("get");
    assert_eq!(d.status.and_then(|s| s.observed_generation), Some(2));

    // ReplicaSets: one per revision, owned by the Deployment, revisions 1 and 2.
    let rs: Api<ReplicaSet> = Api::namespaced(env.client.clone(), NS);
    let sets = rs
        .list(&ListParams::default().labels("app=zai-proxy,variant=production"))
        .await
        .expect("list rs");
    let mut revisions: Vec<(String, String)> = sets
        .items
        .iter()
        .map(|r| {
            let rev = r.metadata.annotations.clone().unwrap_or_default()
                ["deployment.kubernetes.io/revision"]
                .clone();
            let image = r
                .spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .and_then(|t| t.spec.as_ref())
                .and_then(|s| s.containers[0].image.clone())
                .unwrap_or_default();
            (rev, image)
        })
        .collect();
    revisions.sort();
    assert_eq!(
        revisions,
        [
            ("1".to_owned(), "zai-proxy:1.0.0".to_owned()),
            ("2".to_owned(), "zai-proxy:1.1.0".to_owned())
        ]
    );
    assert!(sets.items.iter().all(|r| {
        r.metadata.owner_references.as_ref().is_some_and(|o| {
            o.iter().any(|o| {
                o.kind == "Deployment" && o.uid == d.metadata.uid.clone().unwrap_or_default()
            })
        })
    }));

    // Undo: back to revision 1's template, which becomes revision 3 (its ReplicaSet reused).
    platform.undo(Variant::Production).await.expect("undo");
    assert_eq!(
        platform.image(Variant::Production).await.expect("image"),
        "zai-proxy:1.0.0"
    );
    wait_for("rollback to 1.0.0", || async {
        let pods = platform.list_pods(Variant::Production).await;
        platform
            .rollout_status(Variant::Production)
            .await
            .is_ok_and(|s| s.complete)
            && pods.is_ok_and(|p| {
                p.len() == 2 && p.iter().all(|p| p.version.as_deref() == Some("1.0.0"))
            })
    })
    .await;
    let d = deployments.get("zai-proxy").await.expect("get");
    assert_eq!(
        d.metadata.annotations.clone().unwrap_or_default()["deployment.kubernetes.io/revision"],
        "3"
    );
    assert_eq!(image_of(&d, "sidecar").as_deref(), Some("busybox:1.36"));
    let sets = rs
        .list(&ListParams::default().labels("variant=production"))
        .await
        .expect("rs");
    assert_eq!(sets.items.len(), 2, "the old ReplicaSet was reused");

    // Scale subresource.
    platform.scale(Variant::Test, 0).await.expect("scale");
    assert_eq!(platform.replicas(Variant::Test).await.expect("replicas"), 0);
    wait_for("canary scaled to 0", || async {
        platform
            .list_pods(Variant::Test)
            .await
            .is_ok_and(|p| p.is_empty())
    })
    .await;
    let scale = env
        .http
        .get(format!(
            "{}/apis/apps/v1/namespaces/{NS}/deployments/zai-proxy-test/scale",
            env.api.url()
        ))
        .send()
        .await
        .expect("scale");
    let (code, body) = status_of(scale).await;
    assert_eq!(code, 200);
    assert_eq!(body["kind"], "Scale");
    assert_eq!(body["spec"]["replicas"], 0);
    assert_eq!(body["status"]["selector"], "app=zai-proxy,variant=test");

    // The run record: two promoters that read the same version race to write it; the API
    // server's resourceVersion precondition lets exactly one through (409 for the other).
    let other = KubePlatform::from_kubeconfig(&env.kubeconfig, kube_settings())
        .await
        .expect("second platform");
    let a = platform.read_record().await.expect("read record");
    let b = other.read_record().await.expect("read record");
    assert_eq!(a.text, None);
    assert_eq!(a.version, b.version);
    let first = platform
        .write_record(Some("{\"by\":\"a\"}"), &a.version)
        .await
        .expect("write");
    let second = other
        .write_record(Some("{\"by\":\"b\"}"), &b.version)
        .await
        .expect("write");
    assert!(matches!(first, RecordWrite::Written(_)), "{first:?}");
    assert_eq!(second, RecordWrite::Conflict);
    let now = other.read_record().await.expect("read record");
    assert_eq!(now.text.as_deref(), Some("{\"by\":\"a\"}"));
    // Writing the record changes neither the spec nor the rollout (no new revision).
    let d = deployments.get("zai-proxy").await.expect("get");
    assert_eq!(
        d.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(zai_promoter::runstate::ANNOTATION)),
        Some(&"{\"by\":\"a\"}".to_owned())
    );
    assert!(
        platform
            .rollout_status(Variant::Production)
            .await
            .expect("status")
            .complete
    );
    let removed = other
        .write_record(None, &now.version)
        .await
        .expect("remove");
    assert!(matches!(removed, RecordWrite::Written(_)), "{removed:?}");
    assert_eq!(platform.read_record().await.expect("read").text, None);

    env.cluster.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_status_objects_with_the_api_servers_codes() {
    let env = env().await;
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), NS);
    let base = format!("{}/apis/apps/v1/namespaces/{NS}/deployments", env.api.url());
    deployments
        .create(&PostParams::default(), &production("zai-proxy:1.0.0", 1))
        .await
        .expect("create");

    // 404 with a Status body.
    let (code, body) = status_of(
        env.http
            .get(format!("{base}/nope"))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(code, 404);
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["reason"], "NotFound");
    assert_eq!(body["message"], "deployments.apps \"nope\" not found");
    let err = deployments.get("nope").await.expect_err("missing");
    assert!(matches!(err, kube::Error::Api(s) if s.code == 404 && s.reason == "NotFound"));

    // 409 AlreadyExists on create.
    let err = deployments
        .create(&PostParams::default(), &production("zai-proxy:1.0.0", 1))
        .await
        .expect_err("duplicate");
    assert!(matches!(err, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists"));

    // 415 for a patch in a content type the API server does not take.
    let (code, body) = status_of(
        env.http
            .patch(format!("{base}/zai-proxy"))
            .header("content-type", "application/json")
            .body(r#"{"spec":{"replicas":3}}"#)
            .send()
            .await
            .expect("patch"),
    )
    .await;
    assert_eq!(code, 415);
    assert_eq!(body["reason"], "UnsupportedMediaType");

    // 422: the selector is immutable; a negative replica count is invalid.
    let err = deployments
        .patch(
            "zai-proxy",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"selector": {"matchLabels": {"app": "other"}}}})),
        )
        .await
        .expect_err("immutable selector");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 422 && s.reason == "Invalid"),
        "{err}"
    );
    let err = deployments
        .patch_scale(
            "zai-proxy",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": -1}})),
        )
        .await
        .expect_err("negative replicas");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 422),
        "{err}"
    );

    // A stale resourceVersion: 409 Conflict, for an update and for a patch that sends one.
    let d = deployments.get("zai-proxy").await.expect("get");
    let stale = d
        .metadata
        .resource_version
        .clone()
        .expect("resource version");
    deployments
        .patch(
            "zai-proxy",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}})),
        )
        .await
        .expect("label patch");
    let fresh = deployments.get("zai-proxy").await.expect("get");
    assert_ne!(
        fresh.metadata.resource_version.as_deref(),
        Some(stale.as_str())
    );
    assert_eq!(
        fresh.metadata.generation,
        Some(1),
        "labels do not raise the generation"
    );
    let mut old = d.clone();
    old.status = None;
    let err = deployments
        .replace("zai-proxy", &PostParams::default(), &old)
        .await
        .expect_err("stale update");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409 && s.reason == "Conflict"),
        "{err}"
    );
    let err = deployments
        .patch(
            "zai-proxy",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"resourceVersion": stale}, "spec": {"replicas": 2}})),
        )
        .await
        .expect_err("stale patch");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409),
        "{err}"
    );

    // A container that crashes at start: restartCount grows, CrashLoopBackOff is reported.
    let platform = KubePlatform::from_kubeconfig(&env.kubeconfig, kube_settings())
        .await
        .expect("platform");
    deployments
        .create(
            &PostParams::default(),
            &manifests::deployment(Variant::Test, "zai-proxy:9.9.9-crash", 1).expect("renders"),
        )
        .await
        .expect("create crashing canary");
    wait_for("CrashLoopBackOff", || async {
        platform.list_pods(Variant::Test).await.is_ok_and(|p| {
            p.iter().any(|p| {
                p.restarts >= 1
                    && !p.ready
                    && p.waiting_reason.as_deref() == Some("CrashLoopBackOff")
            })
        })
    })
    .await;
    let status = platform
        .rollout_status(Variant::Test)
        .await
        .expect("status");
    assert!(!status.complete, "{status:?}");

    env.cluster.shutdown(Duration::from_secs(2)).await;
}

/// Runs kubectl against the simulated API server; its stdout, or a panic with stderr.
fn kubectl(kubeconfig: &std::path::Path, cache: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(cache)
        .arg("--request-timeout=30s")
        .args(args)
        .output()
        .expect("kubectl runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "kubectl {}: {}\n{stdout}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn kubectl_available() -> Result<(), String> {
    match std::process::Command::new("kubectl")
        .args(["version", "--client"])
        .output()
    {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "kubectl version --client failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("kubectl not found: {e}")),
    }
}

/// What an operator does with kubectl during a promotion works against the simulated API
/// server: get/describe deployments, replicasets and pods, rollout status, set image, rollout
/// undo, scale, logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_works_against_the_simulated_api_server() {
    if !zai_e2e::rehearsal::suite::dependency_gate("kubectl suite", kubectl_available()) {
        return;
    }
    let env = env().await;
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), NS);
    deployments
        .create(&PostParams::default(), &production("zai-proxy:1.0.0", 2))
        .await
        .expect("create");
    let cfg = env.kubeconfig.clone();
    let cache = env._dir.path().join("kube-cache");
    let k = move |args: &[&str]| kubectl(&cfg, &cache, args);
    let k = Arc::new(k);
    // kubectl blocks: run it off the runtime the API server and the pods live on.
    let run = |args: &[&str]| {
        let k = Arc::clone(&k);
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        async move {
            tokio::task::spawn_blocking(move || {
                let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                k(&refs)
            })
            .await
            .expect("join")
        }
    };

    let out = run(&["rollout", "status", "deployment/zai-proxy", "--timeout=60s"]).await;
    assert!(out.contains("successfully rolled out"), "{out}");
    let out = run(&["get", "deployments"]).await;
    assert!(out.contains("zai-proxy"), "{out}");
    let out = run(&["get", "replicasets", "-o", "name"]).await;
    assert_eq!(out.lines().count(), 1, "{out}");
    let pods = run(&["get", "pods", "-l", "app=zai-proxy", "-o", "name"]).await;
    assert_eq!(pods.lines().count(), 2, "{pods}");
    let out = run(&["describe", "deployment", "zai-proxy"]).await;
    assert!(out.contains("zai-proxy:1.0.0"), "{out}");
    assert!(out.contains("RollingUpdate"), "{out}");
    let out = run(&["describe", "replicasets"]).await;
    assert!(out.contains("zai-proxy:1.0.0"), "{out}");
    let out = run(&["describe", "pods"]).await;
    assert!(out.contains("Ready"), "{out}");

    let out = run(&[
        "set",
        "image",
        "deployment/zai-proxy",
        "proxy=zai-proxy:1.1.0",
    ])
    .await;
    assert!(out.contains("image updated"), "{out}");
    let out = run(&["rollout", "status", "deployment/zai-proxy", "--timeout=60s"]).await;
    assert!(out.contains("successfully rolled out"), "{out}");
    let d = deployments.get("zai-proxy").await.expect("get");
    assert_eq!(image_of(&d, "proxy").as_deref(), Some("zai-proxy:1.1.0"));
    assert_eq!(image_of(&d, "sidecar").as_deref(), Some("busybox:1.36"));

    let out = run(&["rollout", "undo", "deployment/zai-proxy"]).await;
    assert!(out.contains("rolled back"), "{out}");
    let out = run(&["rollout", "status", "deployment/zai-proxy", "--timeout=60s"]).await;
    assert!(out.contains("successfully rolled out"), "{out}");
    let d = deployments.get("zai-proxy").await.expect("get");
    assert_eq!(image_of(&d, "proxy").as_deref(), Some("zai-proxy:1.0.0"));

    let out = run(&["scale", "deployment/zai-proxy", "--replicas=1"]).await;
    assert!(out.contains("scaled"), "{out}");
    let d = deployments.get("zai-proxy").await.expect("get");
    assert_eq!(d.spec.and_then(|s| s.replicas), Some(1));
    let out = run(&["rollout", "status", "deployment/zai-proxy", "--timeout=60s"]).await;
    assert!(out.contains("successfully rolled out"), "{out}");

    let pods = run(&["get", "pods", "-o", "name"]).await;
    let pod = pods
        .lines()
        .next()
        .expect("a pod")
        .trim_start_matches("pod/");
    let out = run(&["logs", pod]).await;
    assert!(!out.trim().is_empty(), "kubectl logs printed nothing");

    env.cluster.shutdown(Duration::from_secs(2)).await;
}

/// `zai-promoter approve` against the simulated API server: it writes an approval into the
/// run record of a run waiting at its gate, and refuses with exit 1 when there is none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_approve_command_records_an_approval_in_the_run_record() {
    use zai_promoter::runstate::{Lease, RunRecord, Stage};
    let env = env().await;
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), NS);
    deployments
        .create(
            &PostParams::default(),
            &manifests::deployment(Variant::Production, "zai-proxy:1.0.0", 1).expect("renders"),
        )
        .await
        .expect("create production");
    let platform = KubePlatform::from_kubeconfig(&env.kubeconfig, kube_settings())
        .await
        .expect("platform");
    let bin = zai_e2e::platform::local::binary::workspace_binary(
        "zai-promoter",
        "zai-promoter",
        Some("ZAI_PROMOTER_BIN"),
        false,
    )
    .expect("zai-promoter binary");
    let approve = || {
        std::process::Command::new(&bin)
            .args(["--namespace", NS, "approve", "--by", "release-manager"])
            .env("KUBECONFIG", &env.kubeconfig)
            .output()
            .expect("runs")
    };

    // Nothing recorded: refused.
    let out = approve();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to approve"));

    // A run waiting at its gate: approved, and recorded.
    let mut record = RunRecord::new(
        "run-7".into(),
        Lease {
            holder: "ci/1/run-7".into(),
            renewed_at: chrono::Utc::now(),
            duration: Duration::from_secs(120),
        },
        chrono::Utc::now(),
    );
    record.stage = Stage::Gate;
    let slot = platform.read_record().await.expect("read");
    platform
        .write_record(Some(&record.to_text()), &slot.version)
        .await
        .expect("write");
    let out = approve();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("approved run run-7"));
    let stored = platform
        .read_record()
        .await
        .expect("read")
        .text
        .expect("record");
    let stored = RunRecord::parse(&stored).expect("parses");
    assert_eq!(
        stored.approval.as_ref().expect("approval").by,
        "release-manager"
    );
    assert_eq!(
        stored.lease, record.lease,
        "the holder's lease is untouched"
    );

    // Past the gate: nothing to approve.
    let mut past = stored.clone();
    past.stage = Stage::Post;
    past.approval = None;
    let slot = platform.read_record().await.expect("read");
    platform
        .write_record(Some(&past.to_text()), &slot.version)
        .await
        .expect("write");
    let out = approve();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("past the gate"));

    env.cluster.shutdown(Duration::from_secs(2)).await;
}
