//! The objects a rehearsal creates, rendered from the repository's own manifests
//! (`deploy/k8s/base/deployment.yaml`, `service.yaml`, `shared/service-canary-split.yaml`) the
//! way the kustomize overlays do: production keeps the base names and labels; the canary gets
//! the `-test` suffix, `variant=test` (selectors included) and `DEPLOYMENT_VARIANT=test`. The
//! image and replica count are the scenario's.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{EnvVar, Service};
use zai_promoter::Variant;

use crate::Error;

// The manifests are compiled in: `zai-rehearse` runs where there is no source tree (the CI
// image), and the rehearsal must render what was built, not whatever is on disk.
const DEPLOYMENT: (&str, &str) = (
    "deploy/k8s/base/deployment.yaml",
    include_str!("../../../deploy/k8s/base/deployment.yaml"),
);
const SERVICE: (&str, &str) = (
    "deploy/k8s/base/service.yaml",
    include_str!("../../../deploy/k8s/base/service.yaml"),
);
const CANARY_SPLIT: (&str, &str) = (
    "deploy/k8s/shared/service-canary-split.yaml",
    include_str!("../../../deploy/k8s/shared/service-canary-split.yaml"),
);

fn read<T: serde::de::DeserializeOwned>((name, text): (&str, &str)) -> Result<T, Error> {
    serde_yaml_ng::from_str(text).map_err(|e| Error::Setup(format!("{name}: {e}")))
}

fn suffix(variant: Variant) -> &'static str {
    match variant {
        Variant::Production => "",
        Variant::Test => "-test",
    }
}

fn set_variant(labels: &mut Option<std::collections::BTreeMap<String, String>>, v: Variant) {
    if let Some(l) = labels.as_mut()
        && l.contains_key("variant")
    {
        l.insert("variant".to_owned(), v.label().to_owned());
    }
}

/// The Deployment of one variant running `image` (`version` label = its tag).
pub fn deployment(variant: Variant, image: &str, replicas: u32) -> Result<Deployment, Error> {
    let mut d: Deployment = read(DEPLOYMENT)?;
    let version = zai_promoter::platform::image_tag(image)
        .unwrap_or(image)
        .to_owned();
    d.metadata.name = d.metadata.name.map(|n| format!("{n}{}", suffix(variant)));
    set_variant(&mut d.metadata.labels, variant);
    if let Some(l) = d.metadata.labels.as_mut() {
        l.insert("version".to_owned(), version.clone());
    }
    let spec = d
        .spec
        .as_mut()
        .ok_or_else(|| Error::Setup("deployment.yaml has no spec".to_owned()))?;
    spec.replicas = Some(i32::try_from(replicas).unwrap_or(i32::MAX));
    set_variant(&mut spec.selector.match_labels, variant);
    if let Some(meta) = spec.template.metadata.as_mut() {
        set_variant(&mut meta.labels, variant);
        if let Some(l) = meta.labels.as_mut() {
            l.insert("version".to_owned(), version);
        }
    }
    let pod = spec
        .template
        .spec
        .as_mut()
        .ok_or_else(|| Error::Setup("deployment.yaml has no pod spec".to_owned()))?;
    for c in &mut pod.containers {
        c.image = Some(image.to_owned());
        for e in c.env.iter_mut().flatten() {
            if e.name == "DEPLOYMENT_VARIANT" {
                *e = EnvVar {
                    name: e.name.clone(),
                    value: Some(variant.label().to_owned()),
                    value_from: None,
                };
            }
        }
    }
    Ok(d)
}

/// The per-variant Services (`zai-proxy`, `zai-proxy-test`) and the split one.
pub fn services() -> Result<Vec<Service>, Error> {
    let mut out = Vec::new();
    for variant in Variant::ALL {
        let mut s: Service = read(SERVICE)?;
        s.metadata.name = s.metadata.name.map(|n| format!("{n}{}", suffix(variant)));
        set_variant(&mut s.metadata.labels, variant);
        if let Some(spec) = s.spec.as_mut() {
            set_variant(&mut spec.selector, variant);
        }
        out.push(s);
    }
    out.push(read(CANARY_SPLIT)?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_canary_is_rendered_like_the_overlay() {
        let d = deployment(Variant::Test, "zai-proxy:1.2.1-canary", 1).expect("renders");
        assert_eq!(d.metadata.name.as_deref(), Some("zai-proxy-test"));
        let spec = d.spec.expect("spec");
        let selector = spec.selector.match_labels.expect("selector");
        assert_eq!(selector["variant"], "test");
        assert!(!selector.contains_key("version"));
        let labels = spec
            .template
            .metadata
            .and_then(|m| m.labels)
            .expect("labels");
        assert_eq!(labels["version"], "1.2.1-canary");
        let pod = spec.template.spec.expect("pod spec");
        assert_eq!(pod.containers[0].name, "proxy");
        assert_eq!(
            pod.containers[0].image.as_deref(),
            Some("zai-proxy:1.2.1-canary")
        );
        let env = pod.containers[0].env.clone().unwrap_or_default();
        let variant = env.iter().find(|e| e.name == "DEPLOYMENT_VARIANT");
        assert_eq!(variant.and_then(|e| e.value.as_deref()), Some("test"));
        let names: Vec<String> = services()
            .expect("renders")
            .into_iter()
            .filter_map(|s| s.metadata.name)
            .collect();
        assert_eq!(names, ["zai-proxy", "zai-proxy-test", "zai-proxy-canary"]);
    }
}
