//! One scenario on a real cluster: its namespace with the proxies, the fake upstreams and (once
//! the driver starts them) the workers inside the cluster; the promoter's kubeconfig with a
//! token of the namespace's `zai-promoter` ServiceAccount; the driver's view of it all
//! ([`Rig`]).
//!
//! The driver reaches what runs in the cluster only through the API server, with the user's
//! kubeconfig: the fakes' `/__fake/faults` and the workers' `/report` and `/stop` through the
//! pod proxy (`pods/NAME:PORT/proxy/PATH`), the Deployments' changes by reading them. The
//! promoter reaches the proxies' `/health` and `/metrics` through the same pod proxy, with
//! only its Role's rights (`get pods/proxy`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use zai_promoter::platform::kube::KubePlatform;
use zai_promoter::{Config, Variant};

use super::manifests::{self, FAKE_PORT, KindObjects, Upstream, WORKERS_PORT};
use super::preflight::KindTarget;
use crate::Error;
use crate::fake::Faults;
use crate::fake::state::lock;
use crate::platform::{Cluster, PlatformEvent};
use crate::rehearsal::rig::{LiveTargets, RemoteWorkers, Rig, Workers};
use crate::rehearsal::stack::{kube_settings_in, wait_canary_settled, wait_rolled_out};
use crate::service::Route;
use crate::workers::status::StatusReport;
use crate::workers::{Report, Snapshot, WorkersConfig};

/// How long a real cluster gets for each step (images are local; pods start in seconds,
/// rollouts with deploy/k8s's probes take tens of seconds).
pub mod timeouts {
    use std::time::Duration;

    /// The fakes' and the workers' Deployments available.
    pub const TOOLS_READY: Duration = Duration::from_secs(120);
    /// Production's rollout complete.
    pub const PRODUCTION_READY: Duration = Duration::from_secs(180);
    /// The canary ready or visibly failing.
    pub const CANARY_SETTLED: Duration = Duration::from_secs(120);
    /// A pod-proxy call.
    pub const POD_PROXY: Duration = Duration::from_secs(10);
    /// The workers' final report after `POST /stop` (requests in flight time out at 30 s).
    pub const WORKERS_FINISH: Duration = Duration::from_secs(45);
    /// The namespace gone after its deletion (the proxies drain for up to 35 s).
    pub const NAMESPACE_GONE: Duration = Duration::from_secs(90);
    /// Floors of the promoter's compressed deadlines: a real rollout of a few pods, or a
    /// rollback, takes tens of seconds whatever `--time-scale` says.
    pub const ROLLOUT_DEADLINE: Duration = Duration::from_secs(180);
    /// See [`ROLLOUT_DEADLINE`].
    pub const ROLLBACK_TIMEOUT: Duration = Duration::from_secs(180);
    /// The promoter's HTTP calls through the API server's pod proxy.
    pub const HTTP: Duration = Duration::from_secs(5);
}

/// A running scenario on kind.
pub struct KindStack {
    namespace: String,
    admin: kube::Client,
    platform: Arc<KubePlatform>,
    kubeconfig: PathBuf,
    repo: tempfile::TempDir,
    tools_image: String,
    events: broadcast::Sender<PlatformEvent>,
    watcher: tokio::task::JoinHandle<()>,
}

fn setup(what: &str) -> impl Fn(kube::Error) -> Error + '_ {
    move |e| Error::Setup(format!("{what}: {e}"))
}

/// `METHOD pods/POD:PORT/proxy/PATH` in `namespace`: the status and body the pod answered
/// (an API server `Status` for a refused or unreachable pod comes back as its status too).
pub async fn pod_proxy(
    client: &kube::Client,
    namespace: &str,
    pod: &str,
    port: u16,
    method: http::Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<(u16, Vec<u8>), Error> {
    let url = format!("/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy{path}");
    let what = format!("{method} {path} on pod {pod}");
    let mut request = http::Request::builder().method(method).uri(url);
    if body.is_some() {
        request = request.header(http::header::CONTENT_TYPE, "application/json");
    }
    let request = request
        .body(body.map_or_else(kube::client::Body::empty, kube::client::Body::from))
        .map_err(|e| Error::Setup(format!("{what}: {e}")))?;
    let exchange = async {
        let response = client.send(request).await.map_err(setup(&what))?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect_bytes()
            .await
            .map_err(setup(&what))?;
        Ok::<_, Error>((status, bytes.to_vec()))
    };
    tokio::time::timeout(timeouts::POD_PROXY, exchange)
        .await
        .map_err(|_| {
            Error::Setup(format!(
                "{what}: no answer within {:?}",
                timeouts::POD_PROXY
            ))
        })?
}

/// The name of a running pod matching `selector`, waiting up to `timeout`.
async fn running_pod(
    client: &kube::Client,
    namespace: &str,
    selector: &str,
    timeout: Duration,
) -> Result<String, Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let list = pods
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(setup("list pods"))?;
        let ready = list.items.iter().find(|p| {
            p.metadata.deletion_timestamp.is_none()
                && p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        });
        if let Some(name) = ready.and_then(|p| p.metadata.name.clone()) {
            return Ok(name);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Setup(format!(
                "no ready pod {selector} in {namespace} within {timeout:?}: {}",
                describe_pods(client, namespace).await
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One line per pod of `namespace`: phase and each container's waiting reason — what an
/// operator would look at first (`ErrImageNeverPull`, `CrashLoopBackOff`, …).
pub async fn describe_pods(client: &kube::Client, namespace: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    match pods.list(&ListParams::default()).await {
        Ok(list) => list
            .items
            .iter()
            .map(|p| {
                let status = p.status.clone().unwrap_or_default();
                let waiting: Vec<String> = status
                    .container_statuses
                    .iter()
                    .flatten()
                    .filter_map(|c| {
                        let w = c.state.as_ref()?.waiting.as_ref()?;
                        Some(format!(
                            "{}: {} {}",
                            c.name,
                            w.reason.clone().unwrap_or_default(),
                            w.message.clone().unwrap_or_default()
                        ))
                    })
                    .collect();
                format!(
                    "{} {} [{}]",
                    p.metadata.name.clone().unwrap_or_default(),
                    status.phase.unwrap_or_default(),
                    waiting.join("; ")
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
        Err(e) => format!("(pods not listed: {e})"),
    }
}

/// Deletes `namespace` and waits (up to `wait`) until it is gone.
pub async fn delete_namespace(client: &kube::Client, namespace: &str, wait: Duration) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if let Err(e) = namespaces
        .delete(namespace, &DeleteParams::background())
        .await
    {
        if !matches!(&e, kube::Error::Api(s) if s.code == 404) {
            tracing::warn!(namespace, error = %e, "deleting the namespace failed");
        }
        return;
    }
    let deadline = tokio::time::Instant::now() + wait;
    while tokio::time::Instant::now() < deadline {
        match namespaces.get_opt(namespace).await {
            Ok(None) => return,
            Ok(Some(_)) | Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
    tracing::warn!(
        namespace,
        "namespace still terminating after {wait:?}; going on"
    );
}

async fn create_objects(client: &kube::Client, objects: &KindObjects) -> Result<(), Error> {
    let ns = objects.namespace.metadata.name.clone().unwrap_or_default();
    let pp = PostParams::default();
    Api::<Namespace>::all(client.clone())
        .create(&pp, &objects.namespace)
        .await
        .map_err(setup("create namespace"))?;
    Api::<Secret>::namespaced(client.clone(), &ns)
        .create(&pp, &objects.secret)
        .await
        .map_err(setup("create secret zai-api-key"))?;
    Api::<ServiceAccount>::namespaced(client.clone(), &ns)
        .create(&pp, &objects.service_account)
        .await
        .map_err(setup("create serviceaccount zai-promoter"))?;
    Api::<Role>::namespaced(client.clone(), &ns)
        .create(&pp, &objects.role)
        .await
        .map_err(setup("create role zai-promoter"))?;
    Api::<RoleBinding>::namespaced(client.clone(), &ns)
        .create(&pp, &objects.role_binding)
        .await
        .map_err(setup("create rolebinding zai-promoter"))?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    for s in objects.fake_services.iter().chain(&objects.services) {
        services
            .create(&pp, s)
            .await
            .map_err(setup("create service"))?;
    }
    for d in objects.fakes.iter().chain(&objects.proxies) {
        deployments
            .create(&pp, d)
            .await
            .map_err(setup("create deployment"))?;
    }
    Ok(())
}

/// A kubeconfig for `namespace` with `token`, on the cluster of `target`'s context.
fn promoter_kubeconfig(target: &KindTarget, namespace: &str, token: &str) -> Result<String, Error> {
    let kubeconfig = kube::config::Kubeconfig::read_from(&target.kubeconfig)
        .map_err(|e| Error::Setup(format!("kubeconfig {}: {e}", target.kubeconfig.display())))?;
    let cluster_name = kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == target.context)
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone())
        .ok_or_else(|| Error::Setup(format!("no context {}", target.context)))?;
    let cluster = kubeconfig
        .clusters
        .iter()
        .find(|c| c.name == cluster_name)
        .and_then(|c| c.cluster.clone())
        .ok_or_else(|| Error::Setup(format!("no cluster {cluster_name}")))?;
    let text = serde_yaml_ng::to_string(&json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster_name, "cluster": serde_json::to_value(&cluster)?}],
        "users": [{"name": "zai-promoter", "user": {"token": token}}],
        "contexts": [{
            "name": "zai-promoter",
            "context": {"cluster": cluster_name, "user": "zai-promoter", "namespace": namespace}
        }],
        "current-context": "zai-promoter"
    }))
    .map_err(|e| Error::Setup(e.to_string()))?;
    Ok(text)
}

fn write_private(path: &Path, text: &str) -> Result<(), Error> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

/// The proxy container's image and the replicas of a Deployment.
fn deployment_state(d: &Deployment) -> (Option<String>, Option<i32>) {
    let spec = d.spec.as_ref();
    let image = spec
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.iter().find(|c| c.name == "proxy"))
        .and_then(|c| c.image.clone());
    (image, spec.and_then(|s| s.replicas))
}

/// Reads both Deployments every 250 ms and reports changes of production's image and of
/// either's replicas as the simulated cluster's events.
fn watch(
    client: kube::Client,
    namespace: String,
    events: broadcast::Sender<PlatformEvent>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let api: Api<Deployment> = Api::namespaced(client, &namespace);
        let mut last: BTreeMap<&'static str, (Option<String>, Option<i32>)> = BTreeMap::new();
        loop {
            for (name, variant) in [
                ("zai-proxy", Variant::Production),
                ("zai-proxy-test", Variant::Test),
            ] {
                let Ok(d) = api.get(name).await else { continue };
                let now = deployment_state(&d);
                if let Some(before) = last.get(name) {
                    if now.0 != before.0
                        && let Some(image) = now.0.clone()
                    {
                        let _ = events.send(PlatformEvent::SetImage { variant, image });
                    }
                    if now.1 != before.1 {
                        let replicas = u32::try_from(now.1.unwrap_or(1)).unwrap_or(0);
                        let _ = events.send(PlatformEvent::Scale { variant, replicas });
                    }
                }
                last.insert(name, now);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
}

/// What the kind session gives a scenario.
pub struct StackInput<'a> {
    /// The cluster.
    pub target: &'a KindTarget,
    /// A client with the user's rights.
    pub admin: kube::Client,
    /// The scenario's namespace.
    pub namespace: String,
    /// Its objects.
    pub objects: KindObjects,
    /// The tools image.
    pub tools_image: String,
    /// Where the promoter's kubeconfig goes.
    pub kubeconfig: PathBuf,
}

impl KindStack {
    /// Creates the scenario's objects and waits until the fakes run, production is rolled out
    /// and the canary ready or visibly failing. On failure the namespace is deleted.
    pub async fn start(input: StackInput<'_>) -> Result<KindStack, Error> {
        let admin = input.admin.clone();
        let namespace = input.namespace.clone();
        match Self::start_inner(input).await {
            Ok(stack) => Ok(stack),
            Err(e) => {
                delete_namespace(&admin, &namespace, timeouts::NAMESPACE_GONE).await;
                Err(e)
            }
        }
    }

    async fn start_inner(input: StackInput<'_>) -> Result<KindStack, Error> {
        let StackInput {
            target,
            admin,
            namespace,
            objects,
            tools_image,
            kubeconfig,
        } = input;
        create_objects(&admin, &objects).await?;
        // The fakes run and answer through the pod proxy (what the phase switch uses).
        for which in [Upstream::Old, Upstream::New] {
            let selector = format!("app=fake-zai,upstream={}", which.label());
            let pod = running_pod(&admin, &namespace, &selector, timeouts::TOOLS_READY).await?;
            let (status, body) = pod_proxy(
                &admin,
                &namespace,
                &pod,
                FAKE_PORT,
                http::Method::GET,
                "/__fake/faults",
                None,
            )
            .await?;
            if status != 200 {
                return Err(Error::Setup(format!(
                    "{} through the pod proxy answered {status}: {}",
                    which.name(),
                    String::from_utf8_lossy(&body)
                )));
            }
        }
        // The promoter's credentials: its ServiceAccount's token, only its Role's rights.
        let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), &namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: Vec::new(),
                bound_object_ref: None,
                expiration_seconds: Some(2 * 3600),
            },
            ..TokenRequest::default()
        };
        let token = accounts
            .create_token_request("zai-promoter", &PostParams::default(), &request)
            .await
            .map_err(setup("token of serviceaccount zai-promoter"))?
            .status
            .map(|s| s.token)
            .ok_or_else(|| Error::Setup("the token request returned no token".to_owned()))?;
        write_private(
            &kubeconfig,
            &promoter_kubeconfig(target, &namespace, &token)?,
        )?;
        let platform = Arc::new(
            KubePlatform::from_kubeconfig(&kubeconfig, kube_settings_in(&namespace))
                .await
                .map_err(|e| Error::Setup(e.to_string()))?,
        );
        if let Err(e) =
            wait_rolled_out(&platform, Variant::Production, timeouts::PRODUCTION_READY).await
        {
            return Err(Error::Setup(format!(
                "{e}; pods: {}",
                describe_pods(&admin, &namespace).await
            )));
        }
        wait_canary_settled(&platform, timeouts::CANARY_SETTLED).await;
        let repo = crate::rehearsal::stack::release_repo()?;
        let (events, _) = broadcast::channel(64);
        let watcher = watch(admin.clone(), namespace.clone(), events.clone());
        Ok(KindStack {
            namespace,
            admin,
            platform,
            kubeconfig,
            repo,
            tools_image,
            events,
            watcher,
        })
    }

    /// Stops watching and deletes the namespace.
    pub async fn shutdown(&self) {
        self.watcher.abort();
        delete_namespace(&self.admin, &self.namespace, timeouts::NAMESPACE_GONE).await;
    }
}

impl Drop for KindStack {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

#[async_trait]
impl Rig for KindStack {
    fn platform(&self) -> Arc<KubePlatform> {
        Arc::clone(&self.platform)
    }

    fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    fn namespace(&self) -> &str {
        &self.namespace
    }

    fn repo_path(&self) -> PathBuf {
        self.repo.path().to_path_buf()
    }

    fn events(&self) -> broadcast::Receiver<PlatformEvent> {
        self.events.subscribe()
    }

    fn service_url(&self, route: Route) -> String {
        manifests::service_url(route)
    }

    async fn set_faults(&self, old: Faults, new: Faults) -> Result<(), Error> {
        for (which, faults) in [(Upstream::Old, old), (Upstream::New, new)] {
            let selector = format!("app=fake-zai,upstream={}", which.label());
            let pod =
                running_pod(&self.admin, &self.namespace, &selector, timeouts::POD_PROXY).await?;
            let (status, body) = pod_proxy(
                &self.admin,
                &self.namespace,
                &pod,
                FAKE_PORT,
                http::Method::POST,
                "/__fake/faults",
                Some(serde_json::to_vec(&faults)?),
            )
            .await?;
            if status != 200 {
                return Err(Error::Setup(format!(
                    "POST /__fake/faults on {pod}: {status} {}",
                    String::from_utf8_lossy(&body)
                )));
            }
        }
        Ok(())
    }

    async fn spawn_workers(&self, config: WorkersConfig) -> Result<Workers, Error> {
        config.validate().map_err(|e| Error::Setup(e.to_string()))?;
        let mut d = manifests::workers(&config, &self.tools_image)?;
        d.metadata.namespace = Some(self.namespace.clone());
        Api::<Deployment>::namespaced(self.admin.clone(), &self.namespace)
            .create(&PostParams::default(), &d)
            .await
            .map_err(setup("create deployment zai-workers"))?;
        let pod = running_pod(
            &self.admin,
            &self.namespace,
            "app=zai-workers",
            timeouts::TOOLS_READY,
        )
        .await?;
        let remote = PodWorkers::start(self.admin.clone(), self.namespace.clone(), pod).await?;
        Ok(Workers::Remote(Box::new(remote)))
    }

    fn simulated(&self) -> Option<Arc<Cluster>> {
        None
    }

    fn adjust(&self, config: &mut Config) {
        config.rollout_deadline = config.rollout_deadline.max(timeouts::ROLLOUT_DEADLINE);
        config.rollback_timeout = config.rollback_timeout.max(timeouts::ROLLBACK_TIMEOUT);
        config.http_timeout = config.http_timeout.max(timeouts::HTTP);
    }
}

/// The last report the workers' pod gave.
#[derive(Default)]
struct RemoteLive {
    last: Mutex<Option<StatusReport>>,
}

impl LiveTargets for RemoteLive {
    fn target(&self, label: &str) -> Option<Snapshot> {
        lock(&self.last)
            .as_ref()
            .and_then(|s| s.report.targets.get(label).cloned())
    }
}

/// The workers' pod, read every 500 ms through the pod proxy.
struct PodWorkers {
    client: kube::Client,
    namespace: String,
    pod: String,
    live: Arc<RemoteLive>,
    poller: tokio::task::JoinHandle<()>,
}

async fn read_report(
    client: &kube::Client,
    namespace: &str,
    pod: &str,
) -> Result<StatusReport, Error> {
    let (status, body) = pod_proxy(
        client,
        namespace,
        pod,
        WORKERS_PORT,
        http::Method::GET,
        "/report",
        None,
    )
    .await?;
    if status != 200 {
        return Err(Error::Setup(format!(
            "GET /report on {pod}: {status} {}",
            String::from_utf8_lossy(&body)
        )));
    }
    Ok(serde_json::from_slice(&body)?)
}

impl PodWorkers {
    async fn start(client: kube::Client, namespace: String, pod: String) -> Result<Self, Error> {
        let first = read_report(&client, &namespace, &pod).await?;
        let live = Arc::new(RemoteLive {
            last: Mutex::new(Some(first)),
        });
        let poller = {
            let (client, namespace, pod, live) = (
                client.clone(),
                namespace.clone(),
                pod.clone(),
                Arc::clone(&live),
            );
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    match read_report(&client, &namespace, &pod).await {
                        Ok(report) => *lock(&live.last) = Some(report),
                        Err(e) => tracing::debug!(error = %e, "workers report"),
                    }
                }
            })
        };
        Ok(PodWorkers {
            client,
            namespace,
            pod,
            live,
            poller,
        })
    }
}

impl Drop for PodWorkers {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

#[async_trait]
impl RemoteWorkers for PodWorkers {
    fn live(&self) -> Arc<dyn LiveTargets> {
        Arc::clone(&self.live) as Arc<dyn LiveTargets>
    }

    async fn finish(self: Box<Self>) -> Report {
        self.poller.abort();
        if let Err(e) = pod_proxy(
            &self.client,
            &self.namespace,
            &self.pod,
            WORKERS_PORT,
            http::Method::POST,
            "/stop",
            Some(Vec::new()),
        )
        .await
        {
            tracing::warn!(error = %e, "stopping the workers failed");
        }
        let deadline = tokio::time::Instant::now() + timeouts::WORKERS_FINISH;
        loop {
            match read_report(&self.client, &self.namespace, &self.pod).await {
                Ok(status) if status.finished => return status.report,
                Ok(status) => *lock(&self.live.last) = Some(status),
                Err(e) => tracing::debug!(error = %e, "workers report"),
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    "the workers did not finish within {:?}; using their last report",
                    timeouts::WORKERS_FINISH
                );
                let last = lock(&self.live.last).clone();
                return last.map(|s| s.report).unwrap_or_else(empty_report);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

fn empty_report() -> Report {
    serde_json::from_value::<Report>(json!({
        "sent": 0, "ok": 0, "failed": 0, "lost": 0, "outcomes": {},
        "latency_ms": {"p50": 0.0, "p95": 0.0, "p99": 0.0, "count": 0},
        "ttfb_ms": {"p50": 0.0, "p95": 0.0, "p99": 0.0, "count": 0},
        "elapsed_s": 0.0, "skipped": 0, "targets": {}
    }))
    .unwrap_or_else(|_| unreachable!("a fixed, valid report"))
}

/// The objects' YAML with the workers of `config` (what the render test validates).
pub fn render_all(objects: &KindObjects, workers: &Deployment) -> Result<String, Error> {
    let mut workers = workers.clone();
    workers.metadata.namespace = objects.namespace.metadata.name.clone();
    let extra: Vec<Value> = vec![serde_json::to_value(&workers)?];
    objects.to_yaml(&extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_promoters_kubeconfig_has_the_clusters_server_and_ca_its_token_and_namespace() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("config");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\nclusters:\n  - name: kind-r\n    cluster:\n      server: https://127.0.0.1:6443\n      certificate-authority-data: Q0EK\n  - name: other\n    cluster:\n      server: https://10.0.0.1\nusers:\n  - name: kind-r\n    user:\n      client-certificate-data: Q0VSVAo=\n      client-key-data: S0VZCg==\ncontexts:\n  - name: kind-r\n    context:\n      cluster: kind-r\n      user: kind-r\n  - name: other\n    context:\n      cluster: other\n      user: kind-r\ncurrent-context: other\n",
        )
        .expect("write");
        let target = KindTarget {
            kubeconfig: path,
            context: "kind-r".to_owned(),
            cluster: "r".to_owned(),
            create: false,
        };
        let text = promoter_kubeconfig(&target, "zr-abc-0-healthy", "tok3n").expect("renders");
        let written = dir.path().join("promoter");
        write_private(&written, &text).expect("writes");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&written)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let parsed = kube::config::Kubeconfig::from_yaml(&text).expect("a kubeconfig");
        assert_eq!(parsed.current_context.as_deref(), Some("zai-promoter"));
        assert_eq!(parsed.clusters.len(), 1, "{text}");
        let cluster = parsed.clusters[0].cluster.clone().expect("cluster");
        assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:6443"));
        assert_eq!(cluster.certificate_authority_data.as_deref(), Some("Q0EK"));
        assert!(!text.contains("client-key-data"), "{text}");
        let config = kube::Config::from_custom_kubeconfig(
            parsed,
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .expect("loads");
        assert_eq!(config.default_namespace, "zr-abc-0-healthy");
        assert_eq!(config.cluster_url.to_string(), "https://127.0.0.1:6443/");
        assert!(text.contains("token: tok3n"), "{text}");
        assert!(!text.contains("null"), "{text}");
    }
}
