//! The simulated cluster's Kubernetes API server: plain HTTP on 127.0.0.1, the subset of the
//! API that `zai-promoter`'s `KubePlatform`, the rehearsal driver and an operator's kubectl
//! use during a promotion, with the API server's semantics for each call:
//!
//! | path (under `/apis/apps/v1/namespaces/NS` or `/api/v1/namespaces/NS`) | verbs |
//! |---|---|
//! | `deployments` | list (label/field selectors, `watch`), create |
//! | `deployments/NAME` | get, patch (strategic, merge, JSON patch), update |
//! | `deployments/NAME/scale` | get, patch, update |
//! | `replicasets`, `replicasets/NAME` | list (selectors), get |
//! | `pods`, `pods/NAME` | list (selectors, `watch`), get |
//! | `pods/NAME/log` | get (`container`, `sinceTime`, `sinceSeconds`, `tailLines`, `timestamps`) |
//! | `pods/NAME[:PORT]/proxy/PATH` | get, forwarded to the pod's port |
//! | `services`, `services/NAME`, `endpoints/NAME` | create, list, get |
//! | `events` | list (always empty) |
//!
//! plus `/api/v1/namespaces[/NS]` and discovery ([`discovery`]). Failures are `Status`
//! objects ([`status`]); patches are in [`patch`]; objects are built in [`objects`] from the
//! [`Cluster`](super::Cluster), which holds the state. No authentication: the kubeconfig
//! ([`kubeconfig`]) names a user without credentials.

pub mod discovery;
pub mod kubeconfig;
pub mod objects;
pub mod patch;
pub mod status;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use self::objects::Selector;
use self::patch::PatchType;
use self::status::ApiError;
use super::Cluster;
use crate::Error;

type ApiResult = Result<Response, ApiError>;

#[derive(Clone)]
struct Ctx {
    cluster: Arc<Cluster>,
    addr: SocketAddr,
    proxy: reqwest::Client,
}

/// A running API server.
pub struct ApiServer {
    addr: SocketAddr,
    stop: CancellationToken,
}

impl ApiServer {
    /// Serves `cluster` on a free loopback port.
    pub async fn start(cluster: Arc<Cluster>) -> Result<Self, Error> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let proxy = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Error::Client(e.to_string()))?;
        let app = router(Ctx {
            cluster,
            addr,
            proxy,
        });
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { token.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "simulated API server stopped");
            }
        });
        Ok(ApiServer { addr, stop })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving (open watches end).
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn router(ctx: Ctx) -> Router {
    let apps = "/apis/apps/v1/namespaces/{ns}";
    let core = "/api/v1/namespaces/{ns}";
    Router::new()
        .route("/version", get(|| async { Json(discovery::version()) }))
        .route("/api", get(api_versions))
        .route("/apis", get(|| async { Json(discovery::groups()) }))
        .route("/api/v1", get(|| async { Json(discovery::core_v1()) }))
        .route(
            "/apis/apps/v1",
            get(|| async { Json(discovery::apps_v1()) }),
        )
        .route("/api/v1/namespaces", get(list_namespaces))
        .route(core, get(get_namespace))
        .route(
            &format!("{apps}/deployments"),
            get(list_deployments).post(create_deployment),
        )
        .route(
            &format!("{apps}/deployments/{{name}}"),
            get(get_deployment)
                .patch(patch_deployment)
                .put(put_deployment),
        )
        .route(
            &format!("{apps}/deployments/{{name}}/scale"),
            get(get_scale).patch(patch_scale).put(put_scale),
        )
        .route(&format!("{apps}/replicasets"), get(list_replica_sets))
        .route(
            &format!("{apps}/replicasets/{{name}}"),
            get(get_replica_set),
        )
        .route(&format!("{core}/pods"), get(list_pods))
        .route(&format!("{core}/pods/{{name}}"), get(get_pod))
        .route(&format!("{core}/pods/{{name}}/log"), get(pod_log))
        .route(&format!("{core}/pods/{{name}}/proxy"), get(pod_proxy_root))
        .route(
            &format!("{core}/pods/{{name}}/proxy/{{*path}}"),
            get(pod_proxy),
        )
        .route(
            &format!("{core}/services"),
            get(list_services).post(create_service),
        )
        .route(&format!("{core}/services/{{name}}"), get(get_service))
        .route(&format!("{core}/endpoints/{{name}}"), get(get_endpoints))
        .route(&format!("{core}/events"), get(list_events))
        .fallback(|| async {
            ApiError {
                code: 404,
                reason: "NotFound",
                message: "the server could not find the requested resource".to_owned(),
                details: None,
            }
        })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .with_state(ctx)
}

async fn api_versions(State(ctx): State<Ctx>) -> Json<Value> {
    Json(discovery::core_versions(&ctx.addr.to_string()))
}

fn ok(value: impl serde::Serialize) -> ApiResult {
    Ok(
        Json(serde_json::to_value(value).map_err(|e| ApiError::bad_request(&e.to_string()))?)
            .into_response(),
    )
}

fn check_ns(ctx: &Ctx, ns: &str) -> Result<(), ApiError> {
    if ns == ctx.cluster.namespace() {
        Ok(())
    } else {
        Err(ApiError::not_found("namespaces", "", ns))
    }
}

fn namespace_object(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"}
    })
}

async fn list_namespaces(State(ctx): State<Ctx>) -> Json<Value> {
    Json(json!({
        "apiVersion": "v1",
        "kind": "NamespaceList",
        "metadata": {"resourceVersion": ctx.cluster.resource_version().to_string()},
        "items": [namespace_object(ctx.cluster.namespace())]
    }))
}

async fn get_namespace(State(ctx): State<Ctx>, Path(ns): Path<String>) -> ApiResult {
    check_ns(&ctx, &ns)?;
    ok(namespace_object(&ns))
}

/// The query of list calls.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    label_selector: Option<String>,
    field_selector: Option<String>,
    watch: Option<String>,
    resource_version: Option<String>,
    timeout_seconds: Option<u64>,
}

impl ListQuery {
    fn selector(&self) -> Result<Selector, ApiError> {
        Selector::parse(
            self.label_selector.as_deref(),
            self.field_selector.as_deref(),
        )
    }

    fn watching(&self) -> bool {
        matches!(self.watch.as_deref(), Some("true" | "1"))
    }
}

fn list_body(kind: &str, api_version: &str, rv: u64, items: Vec<Value>) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"resourceVersion": rv.to_string()},
        "items": items,
    })
}

fn to_values<T: serde::Serialize>(items: Vec<T>) -> Vec<Value> {
    items
        .into_iter()
        .filter_map(|i| serde_json::to_value(i).ok())
        .collect()
}

fn rv_of(v: &Value) -> u64 {
    v.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn name_of(v: &Value) -> String {
    v.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// A watch: newline-delimited `{"type": …, "object": …}` events for objects whose resource
/// version is newer than the one asked for, polled every 100 ms, until `timeoutSeconds` or
/// the client goes away.
fn watch_response(
    list: impl Fn() -> Vec<Value> + Send + 'static,
    since: u64,
    timeout: Duration,
) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut seen: BTreeMap<String, u64> = BTreeMap::new();
        let mut first = true;
        loop {
            let items = list();
            let names: Vec<String> = items.iter().map(name_of).collect();
            for item in items {
                let name = name_of(&item);
                let rv = rv_of(&item);
                let kind = match seen.get(&name) {
                    None if first && rv <= since => None,
                    None => Some("ADDED"),
                    Some(old) if *old != rv => Some("MODIFIED"),
                    Some(_) => None,
                };
                seen.insert(name, rv);
                if let Some(kind) = kind {
                    let mut line = json!({"type": kind, "object": item}).to_string();
                    line.push('\n');
                    if tx.send(Ok(Bytes::from(line))).await.is_err() {
                        return;
                    }
                }
            }
            let gone: Vec<String> = seen
                .keys()
                .filter(|n| !names.contains(n))
                .cloned()
                .collect();
            for name in gone {
                seen.remove(&name);
                let line = format!(
                    "{}\n",
                    json!({"type": "DELETED", "object": {"metadata": {"name": name}}})
                );
                if tx.send(Ok(Bytes::from(line))).await.is_err() {
                    return;
                }
            }
            first = false;
            if tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
                () = tx.closed() => return,
            }
        }
    });
    let stream = tokio_stream_from(rx);
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn list_or_watch(
    q: &ListQuery,
    kind: &'static str,
    api_version: &'static str,
    cluster: &Arc<Cluster>,
    list: impl Fn(&Cluster, &Selector) -> Vec<Value> + Send + Sync + 'static,
) -> ApiResult {
    let selector = q.selector()?;
    if q.watching() {
        let since = q
            .resource_version
            .as_deref()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let timeout = Duration::from_secs(q.timeout_seconds.unwrap_or(1800));
        let cluster = Arc::clone(cluster);
        return Ok(watch_response(
            move || list(&cluster, &selector),
            since,
            timeout,
        ));
    }
    let items = list(cluster, &selector);
    ok(list_body(
        kind,
        api_version,
        cluster.resource_version(),
        items,
    ))
}

async fn list_deployments(
    State(ctx): State<Ctx>,
    Path(ns): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    if check_ns(&ctx, &ns).is_err() {
        return ok(list_body("DeploymentList", "apps/v1", 0, Vec::new()));
    }
    list_or_watch(&q, "DeploymentList", "apps/v1", &ctx.cluster, |c, s| {
        to_values(c.deployments(s))
    })
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(&format!(
            "the body of the request could not be decoded: {e}"
        ))
    })
}

async fn create_deployment(
    State(ctx): State<Ctx>,
    Path(ns): Path<String>,
    body: Bytes,
) -> ApiResult {
    check_ns(&ctx, &ns)?;
    let d: Deployment = parse_body(&body)?;
    let created = ctx.cluster.create_deployment(d)?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::to_value(created).unwrap_or_default()),
    )
        .into_response())
}

async fn get_deployment(
    State(ctx): State<Ctx>,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult {
    check_ns(&ctx, &ns).map_err(|_| ApiError::not_found("deployments", "apps", &name))?;
    ok(ctx.cluster.deployment(&name)?)
}

fn patch_type(headers: &HeaderMap) -> Result<PatchType, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    PatchType::from_content_type(ct).ok_or_else(|| ApiError::unsupported_media_type(ct))
}

/// Applies a patch to an object's JSON. The object's own `resourceVersion` is a
/// precondition only when the patch sets one (as a real API server treats it).
fn patched(
    kind: &str,
    name: &str,
    current: &Value,
    pt: PatchType,
    body: &[u8],
) -> Result<Value, ApiError> {
    let patch: Value = parse_body(body)?;
    let mut out = patch::apply(pt, current, &patch)
        .map_err(|why| ApiError::invalid(kind, name, "patch", &why))?;
    if out.pointer("/metadata/resourceVersion") == current.pointer("/metadata/resourceVersion")
        && let Some(meta) = out.get_mut("metadata").and_then(Value::as_object_mut)
    {
        meta.remove("resourceVersion");
    }
    Ok(out)
}

fn typed<T: serde::de::DeserializeOwned>(kind: &str, name: &str, v: Value) -> Result<T, ApiError> {
    serde_json::from_value(v).map_err(|e| ApiError::invalid(kind, name, "body", &e.to_string()))
}

async fn patch_deployment(
    State(ctx): State<Ctx>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    check_ns(&ctx, &ns).map_err(|_| ApiError::not_found("deployments", "apps", &name))?;
    let pt = patch_type(&headers)?;
    let current = serde_json::to_value(ctx.cluster.deployment(&name)?).unwrap_or_default();
    let new = patched("deployments", &name, &current, pt, &body)?;
    let new: Deployment = typed("deployments", &name, new)?;
    ok(ctx.cluster.replace_deployment(&name, new)?)
}

async fn put_deployment(
    State(ctx): State<Ctx>,
    Path((ns, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    check_ns(&ctx, &ns).map_err(|_| ApiError::not_found("deployments", "apps", &name))?;
    let new: Deployment = parse_body(&body)?;
    ok(ctx.cluster.replace_deployment(&name, new)?)
}

fn scale_of(d: &Deployment) -> Value {
    let selector = d
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": d.metadata.name,
            "namespace": d.metadata.namespace,
            "uid": d.metadata.uid,
            "resourceVersion": d.metadata.resource_version,
            "creationTimestamp": d.metadata.creation_timestamp,
        },
        "spec": {"replicas": d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)},
        "status": {
            "replicas": d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0),
            "selector": selector,
        }
    })
}

async fn get_scale(State(ctx): State<Ctx>, Path((ns, name)): Path<(String, String)>) -> ApiResult {
    check_ns(&ctx, &ns).map_err(|_| ApiError::not_found("deployments", "apps", &name))?;
    ok(scale_of(&ctx.cluster.deployment(&name)?))
}

fn apply_scale(ctx: &Ctx, name: &str, scale: &Value) -> ApiResult {
    let replicas = scale
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .ok_or_else(|| ApiError::invalid("scale", name, "spec.replicas", "Required value"))?;
    let replicas = i32::try_from(replicas)
        .ok()
        .filter(|r| *r >= 0)
        .ok_or_else(|| {
            ApiError::invalid(
                "scale",
                name,
                "spec.replicas",
                &format!("Invalid value: {replicas}: must be greater than or equal to 0"),
            )
        })?;
    let mut d = ctx.cluster.deployment(name)?;
    d.metadata.resource_version = scale
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if let Some(spec) = d.spec.as_mut() {
        spec.replicas = Some(replicas);
    }
    let d = ctx.cluster.replace_deployment(name, d)?;
    ok(scale_of(&d))
}

async fn patch_scale(
    State(ctx): State<Ctx>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    check_ns(&ctx, &ns).map_err(|_| ApiError::not_found("deployments", "apps", &name))?;
    let pt = patch_type(&headers)?;
    let current = scale_of(&ctx.cluster.deployment(&name)?);
    let new = patched("scale", &name, &current, pt, &body)?;
    apply_scale(&ctx, &name, &new)
}

async fn put_scale(
    State(ctx): State<Ctx>,
    Path((ns, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    check_ns(&ctx, &ns).map_err(|_| ApiError::not_found("deployments", "apps", &name))?;
    let new: Value = parse_body(&body)?;
    apply_scale(&ctx, &name, &new)
}

async fn list_replica_sets(
    State(ctx): State<Ctx>,
    Path(ns): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    if check_ns(&ctx, &ns).is_err() {
        return ok(list_body("ReplicaSetList", "apps/v1", 0, Vec::new()));
    }
    list_or_watch(&q, "ReplicaSetList", "apps/v1", &ctx.cluster, |c, s| {
        to_values(c.replica_sets(s))
    })
}

async fn get_replica_set(
    State(ctx): State<Ctx>,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult {
    check_ns(&ctx, &ns).map_err(|_| ApiError::not_found("replicasets", "apps", &name))?;
    ctx.cluster
        .replica_sets(&Selector::default())
        .into_iter()
        .find(|rs| rs.metadata.name.as_deref() == Some(name.as_str()))
        .map_or_else(
            || Err(ApiError::not_found("replicasets", "apps", &name)),
            ok,
        )
}

async fn list_pods(
    State(ctx): State<Ctx>,
    Path(ns): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    if check_ns(&ctx, &ns).is_err() {
        return ok(list_body("PodList", "v1", 0, Vec::new()));
    }
    list_or_watch(&q, "PodList", "v1", &ctx.cluster, |c, s| {
        to_values(c.pods(s))
    })
}

async fn get_pod(State(ctx): State<Ctx>, Path((ns, name)): Path<(String, String)>) -> ApiResult {
    check_ns(&ctx, &ns).map_err(|_| ApiError::not_found("pods", "", &name))?;
    ok(ctx.cluster.pod(&name)?)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogQuery {
    container: Option<String>,
    since_time: Option<String>,
    since_seconds: Option<i64>,
    tail_lines: Option<i64>,
    timestamps: Option<bool>,
    follow: Option<bool>,
}

async fn pod_log(
    State(ctx): State<Ctx>,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<LogQuery>,
) -> ApiResult {
    check_ns(&ctx, &ns).map_err(|_| ApiError::not_found("pods", "", &name))?;
    let pod = ctx.cluster.pod(&name)?;
    let containers: Vec<String> = pod
        .spec
        .as_ref()
        .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default();
    if let Some(c) = &q.container
        && !containers.contains(c)
    {
        return Err(ApiError::bad_request(&format!(
            "container {c} is not valid for pod {name}"
        )));
    }
    if q.follow == Some(true) {
        return Err(ApiError::bad_request(
            "follow is not supported by the simulated API server",
        ));
    }
    if q.since_time.is_some() && q.since_seconds.is_some() {
        return Err(ApiError::invalid(
            "pods",
            &name,
            "sinceSeconds",
            "at most one of sinceTime or sinceSeconds may be specified",
        ));
    }
    let since: DateTime<Utc> = match (&q.since_time, q.since_seconds) {
        (Some(t), _) => DateTime::parse_from_rfc3339(t)
            .map_err(|e| ApiError::bad_request(&format!("sinceTime {t:?}: {e}")))?
            .with_timezone(&Utc),
        (None, Some(s)) if s > 0 => Utc::now() - chrono::Duration::seconds(s),
        (None, Some(s)) => {
            return Err(ApiError::invalid(
                "pods",
                &name,
                "sinceSeconds",
                &format!("Invalid value: {s}: must be greater than 0"),
            ));
        }
        (None, None) => DateTime::<Utc>::MIN_UTC,
    };
    let mut lines = ctx.cluster.pod_logs(&name, since).await?;
    if let Some(tail) = q.tail_lines {
        let keep = usize::try_from(tail.max(0)).unwrap_or(0);
        let skip = lines.len().saturating_sub(keep);
        lines.drain(..skip);
    }
    let mut text = String::new();
    for l in lines {
        if q.timestamps == Some(true) {
            let ts = l.timestamp.unwrap_or(since);
            text.push_str(&ts.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true));
            text.push(' ');
        }
        text.push_str(&l.line);
        text.push('\n');
    }
    Ok(([(header::CONTENT_TYPE, "text/plain")], text).into_response())
}

async fn pod_proxy_root(
    State(ctx): State<Ctx>,
    Path((ns, name)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> ApiResult {
    forward(&ctx, &ns, &name, "", query).await
}

async fn pod_proxy(
    State(ctx): State<Ctx>,
    Path((ns, name, path)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> ApiResult {
    forward(&ctx, &ns, &name, &path, query).await
}

/// `pods/NAME[:PORT]/proxy/PATH`: the pod's answer as it is, status included; the API
/// server's own failure (no such pod, cannot connect) is a `Status`.
async fn forward(
    ctx: &Ctx,
    ns: &str,
    name_port: &str,
    path: &str,
    query: Option<String>,
) -> ApiResult {
    // `name:port` (or `scheme:name:port`); every pod listens on its one container port.
    let name = name_port
        .strip_prefix("http:")
        .unwrap_or(name_port)
        .split(':')
        .next()
        .unwrap_or_default();
    check_ns(ctx, ns).map_err(|_| ApiError::not_found("pods", "", name))?;
    let port = ctx.cluster.pod_port(name)?;
    let mut url = format!("http://127.0.0.1:{port}/{}", path.trim_start_matches('/'));
    if let Some(q) = query {
        url.push('?');
        url.push_str(&q);
    }
    let answer = ctx.proxy.get(&url).send().await.map_err(|e| {
        ApiError::unavailable(&format!(
            "error trying to reach service: dial tcp 127.0.0.1:{port}: {e}"
        ))
    })?;
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = answer
        .headers()
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or_else(|| header::HeaderValue::from_static("text/plain"));
    let body = answer
        .bytes()
        .await
        .map_err(|e| ApiError::unavailable(&format!("error reading from the pod: {e}")))?;
    Ok((status, [(header::CONTENT_TYPE, content_type)], body).into_response())
}

async fn list_services(
    State(ctx): State<Ctx>,
    Path(ns): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    if check_ns(&ctx, &ns).is_err() {
        return ok(list_body("ServiceList", "v1", 0, Vec::new()));
    }
    list_or_watch(&q, "ServiceList", "v1", &ctx.cluster, |c, s| {
        to_values(c.services(s))
    })
}

async fn create_service(State(ctx): State<Ctx>, Path(ns): Path<String>, body: Bytes) -> ApiResult {
    check_ns(&ctx, &ns)?;
    let s: Service = parse_body(&body)?;
    let created = ctx.cluster.create_service(s)?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::to_value(created).unwrap_or_default()),
    )
        .into_response())
}

async fn get_service(
    State(ctx): State<Ctx>,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult {
    check_ns(&ctx, &ns).map_err(|_| ApiError::not_found("services", "", &name))?;
    ok(ctx.cluster.service(&name)?)
}

async fn get_endpoints(
    State(ctx): State<Ctx>,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult {
    check_ns(&ctx, &ns).map_err(|_| ApiError::not_found("endpoints", "", &name))?;
    ok(ctx.cluster.service_endpoints(&name)?)
}

async fn list_events(State(ctx): State<Ctx>) -> Json<Value> {
    Json(list_body(
        "EventList",
        "v1",
        ctx.cluster.resource_version(),
        Vec::new(),
    ))
}
