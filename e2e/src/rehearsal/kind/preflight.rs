//! Before anything starts on kind: which kubeconfig, which context, which kind cluster, and
//! whether the API server answers. Every refusal is a [`Refusal`] with a sentence saying what
//! to do; `zai-rehearse` exits 2 with it.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};

/// `--platform kind` cannot run as asked (`zai-rehearse` exits 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--platform kind: {0}")]
pub struct Refusal(pub String);

/// What the user asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KindRequest {
    /// `--kubeconfig PATH`.
    pub kubeconfig: Option<PathBuf>,
    /// `--kind-cluster NAME`.
    pub cluster: Option<String>,
    /// `--signals prometheus` was asked for.
    pub prometheus: bool,
}

/// The cluster a kind rehearsal runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindTarget {
    /// The kubeconfig file (the user's; never copied).
    pub kubeconfig: PathBuf,
    /// Its context for the cluster (`kind-NAME`).
    pub context: String,
    /// The kind cluster's name (`kind load docker-image --name NAME`).
    pub cluster: String,
    /// The cluster does not exist yet: create it, and delete it at the end.
    pub create: bool,
}

/// kind's context name for a cluster.
pub fn context_of(cluster: &str) -> String {
    format!("kind-{cluster}")
}

/// The kind cluster a context belongs to, by kind's naming (`kind-NAME`).
pub fn cluster_of_context(context: &str) -> Option<&str> {
    context.strip_prefix("kind-").filter(|n| !n.is_empty())
}

/// A kind cluster name kind accepts (lower-case letters, digits, `-`, `.`; at most 50).
pub fn check_cluster_name(name: &str) -> Result<(), Refusal> {
    let ok = !name.is_empty()
        && name.len() <= 50
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(Refusal(format!(
            "--kind-cluster {name:?} is not a kind cluster name (lower-case letters, digits, '-', '.', at most 50)"
        )))
    }
}

/// The kubeconfig file: `--kubeconfig`, else the first entry of `$KUBECONFIG`, else
/// `~/.kube/config` (as kubectl and kind pick it).
pub fn kubeconfig_path(
    flag: Option<&Path>,
    env: Option<&OsStr>,
    home: Option<&Path>,
) -> Result<PathBuf, Refusal> {
    if let Some(path) = flag {
        return Ok(path.to_path_buf());
    }
    if let Some(first) =
        env.and_then(|v| std::env::split_paths(v).find(|p| !p.as_os_str().is_empty()))
    {
        return Ok(first);
    }
    match home {
        Some(home) => Ok(home.join(".kube").join("config")),
        None => Err(Refusal(
            "no kubeconfig: give --kubeconfig PATH (neither $KUBECONFIG nor $HOME is set)"
                .to_owned(),
        )),
    }
}

/// Chooses the context of `kubeconfig` (read from `path`) for the request: the kind
/// cluster's context with `--kind-cluster`, else the current context, which must be a kind
/// cluster's. `exists`: whether `kind get clusters` lists the asked-for cluster.
pub fn choose(
    path: &Path,
    kubeconfig: Option<&Kubeconfig>,
    cluster: Option<&str>,
    exists: bool,
) -> Result<KindTarget, Refusal> {
    let has_context =
        |name: &str| kubeconfig.is_some_and(|k| k.contexts.iter().any(|c| c.name == name));
    if let Some(cluster) = cluster {
        check_cluster_name(cluster)?;
        let context = context_of(cluster);
        if exists && !has_context(&context) {
            return Err(Refusal(format!(
                "kind cluster {cluster} exists but {} has no context {context}; run `kind export kubeconfig --name {cluster} --kubeconfig {}` first",
                path.display(),
                path.display()
            )));
        }
        return Ok(KindTarget {
            kubeconfig: path.to_path_buf(),
            context,
            cluster: cluster.to_owned(),
            create: !exists,
        });
    }
    let Some(kubeconfig) = kubeconfig else {
        return Err(Refusal(format!(
            "no kubeconfig at {} (from --kubeconfig, $KUBECONFIG or ~/.kube/config); point --kubeconfig at a kind cluster's, or give --kind-cluster NAME to create one",
            path.display()
        )));
    };
    let Some(current) = kubeconfig
        .current_context
        .as_deref()
        .filter(|c| !c.is_empty())
    else {
        return Err(Refusal(format!(
            "{} has no current context; give --kind-cluster NAME",
            path.display()
        )));
    };
    if !has_context(current) {
        return Err(Refusal(format!(
            "{}: the current context {current} is not defined in the file",
            path.display()
        )));
    }
    match cluster_of_context(current) {
        Some(cluster) => Ok(KindTarget {
            kubeconfig: path.to_path_buf(),
            context: current.to_owned(),
            cluster: cluster.to_owned(),
            create: false,
        }),
        None => Err(Refusal(format!(
            "{}: the current context {current} is not a kind cluster's (kind-NAME): images are loaded with `kind load docker-image`, so the cluster must be kind; give --kind-cluster NAME",
            path.display()
        ))),
    }
}

/// Whether `program args…` runs and succeeds; its stdout.
fn tool(program: &str, args: &[&str]) -> Result<String, String> {
    match Command::new(program).args(args).output() {
        Ok(out) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        Ok(out) => Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("{program} not found ({e})")),
    }
}

/// The API server of `context` in `path` answers `/version` within `timeout`.
pub async fn reachable(path: &Path, context: &str, timeout: Duration) -> Result<String, Refusal> {
    let client = admin_client(path, context)
        .await
        .map_err(|e| Refusal(format!("{e}")))?;
    match tokio::time::timeout(timeout, client.apiserver_version()).await {
        Ok(Ok(info)) => Ok(info.git_version),
        Ok(Err(e)) => Err(Refusal(format!(
            "the API server of context {context} in {} does not answer: {e}",
            path.display()
        ))),
        Err(_) => Err(Refusal(format!(
            "the API server of context {context} in {} did not answer within {timeout:?}",
            path.display()
        ))),
    }
}

/// A client for `context` of the kubeconfig at `path` (the user's rights).
pub async fn admin_client(path: &Path, context: &str) -> Result<kube::Client, Refusal> {
    let kubeconfig = Kubeconfig::read_from(path)
        .map_err(|e| Refusal(format!("cannot read kubeconfig {}: {e}", path.display())))?;
    let options = KubeConfigOptions {
        context: Some(context.to_owned()),
        ..KubeConfigOptions::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| {
            Refusal(format!(
                "kubeconfig {} context {context}: {e}",
                path.display()
            ))
        })?;
    kube::Client::try_from(config).map_err(|e| Refusal(format!("kube client: {e}")))
}

/// Everything checked before a kind rehearsal starts, cheapest first: signals, kubeconfig and
/// context, `kind` (when a cluster must be listed or created), the API server, Docker.
pub async fn preflight(request: &KindRequest) -> Result<KindTarget, Refusal> {
    if request.prometheus {
        return Err(Refusal(
            "--signals prometheus is not supported: the rehearsal's Prometheus is a loopback process that discovers the simulated cluster's pods; on a real cluster use --signals scrape (the promoter scrapes /metrics through the API server's pod proxy), or deploy/kind/demo.sh for Prometheus inside the cluster".to_owned(),
        ));
    }
    if let Some(cluster) = &request.cluster {
        check_cluster_name(cluster)?;
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let path = kubeconfig_path(
        request.kubeconfig.as_deref(),
        std::env::var_os("KUBECONFIG").as_deref(),
        home.as_deref(),
    )?;
    let kubeconfig = if path.exists() {
        Some(
            Kubeconfig::read_from(&path)
                .map_err(|e| Refusal(format!("cannot read kubeconfig {}: {e}", path.display())))?,
        )
    } else {
        None
    };
    let exists = match &request.cluster {
        Some(cluster) => {
            let listed = tool("kind", &["get", "clusters"]).map_err(|e| {
                Refusal(format!(
                    "--kind-cluster needs kind (https://kind.sigs.k8s.io): {e}"
                ))
            })?;
            listed.lines().any(|l| l.trim() == cluster)
        }
        None => false,
    };
    let target = choose(
        &path,
        kubeconfig.as_ref(),
        request.cluster.as_deref(),
        exists,
    )?;
    if !target.create {
        reachable(&target.kubeconfig, &target.context, Duration::from_secs(10)).await?;
        tool("kind", &["version"])
            .map_err(|e| Refusal(format!("images are loaded with kind: {e}")))?;
    }
    tool("docker", &["info", "--format", "{{.ServerVersion}}"])
        .map_err(|e| Refusal(format!("images are built with Docker: {e}")))?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kubeconfig(current: Option<&str>, contexts: &[&str]) -> Kubeconfig {
        let contexts: String = contexts
            .iter()
            .map(|c| format!("  - name: {c}\n    context:\n      cluster: {c}\n"))
            .collect();
        let current = current
            .map(|c| format!("current-context: {c}\n"))
            .unwrap_or_default();
        Kubeconfig::from_yaml(&format!(
            "apiVersion: v1\nkind: Config\nclusters: []\nusers: []\ncontexts:\n{contexts}{current}"
        ))
        .expect("kubeconfig")
    }

    #[test]
    fn the_kubeconfig_comes_from_the_flag_then_kubeconfig_then_home() {
        let flag = Path::new("/x/flag");
        let env = std::ffi::OsString::from("/x/first:/x/second");
        let home = Path::new("/home/u");
        assert_eq!(
            kubeconfig_path(Some(flag), Some(&env), Some(home)),
            Ok(flag.to_path_buf())
        );
        assert_eq!(
            kubeconfig_path(None, Some(&env), Some(home)),
            Ok(PathBuf::from("/x/first"))
        );
        assert_eq!(
            kubeconfig_path(None, Some(OsStr::new("")), Some(home)),
            Ok(PathBuf::from("/home/u/.kube/config"))
        );
        assert!(kubeconfig_path(None, None, None).is_err());
    }

    #[test]
    fn the_current_context_must_be_a_kind_clusters() {
        let path = Path::new("/k");
        let k = kubeconfig(Some("kind-rehearsal"), &["kind-rehearsal", "prod"]);
        let target = choose(path, Some(&k), None, false).expect("kind context");
        assert_eq!(target.cluster, "rehearsal");
        assert_eq!(target.context, "kind-rehearsal");
        assert!(!target.create);

        let k = kubeconfig(Some("prod"), &["kind-rehearsal", "prod"]);
        let refused = choose(path, Some(&k), None, false).expect_err("not kind");
        assert!(refused.0.contains("not a kind cluster's"), "{refused}");

        let k = kubeconfig(None, &["kind-rehearsal"]);
        assert!(choose(path, Some(&k), None, false).is_err());
        let refused = choose(path, None, None, false).expect_err("no file");
        assert!(refused.0.starts_with("no kubeconfig at /k"), "{refused}");
    }

    #[test]
    fn a_named_cluster_is_created_when_missing_and_needs_its_context_when_present() {
        let path = Path::new("/k");
        let target = choose(path, None, Some("zai-rehearsal"), false).expect("create");
        assert!(target.create);
        assert_eq!(target.context, "kind-zai-rehearsal");
        let k = kubeconfig(Some("prod"), &["prod", "kind-zai-rehearsal"]);
        let target = choose(path, Some(&k), Some("zai-rehearsal"), true).expect("reuse");
        assert!(!target.create);
        let refused = choose(path, None, Some("zai-rehearsal"), true).expect_err("no context");
        assert!(refused.0.contains("kind export kubeconfig"), "{refused}");
        assert!(choose(path, None, Some("Bad_Name"), false).is_err());
    }

    #[tokio::test]
    async fn prometheus_signals_and_an_unreachable_server_are_refused() {
        let refused = preflight(&KindRequest {
            prometheus: true,
            ..KindRequest::default()
        })
        .await
        .expect_err("prometheus");
        assert!(refused.0.contains("--signals prometheus"), "{refused}");

        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("config");
        // Port 9 (discard) on loopback: nothing answers the API.
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\nclusters:\n  - name: c\n    cluster:\n      server: https://127.0.0.1:9\nusers:\n  - name: u\n    user: {}\ncontexts:\n  - name: kind-gone\n    context:\n      cluster: c\n      user: u\ncurrent-context: kind-gone\n",
        )
        .expect("write");
        let refused = preflight(&KindRequest {
            kubeconfig: Some(path),
            ..KindRequest::default()
        })
        .await
        .expect_err("unreachable");
        assert!(refused.0.contains("does not answer"), "{refused}");
    }
}
