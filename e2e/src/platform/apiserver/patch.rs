//! The three patch types the API server takes for built-in objects (pure):
//! - JSON merge patch (RFC 7386, `application/merge-patch+json`): objects merge, `null`
//!   deletes, lists are replaced;
//! - strategic merge patch (`application/strategic-merge-patch+json`): like a merge patch,
//!   but lists with a merge key (`containers`, `env`, `volumes`, … by `name`; `ports` by
//!   `containerPort`) are merged element by element, so patching one container by name leaves
//!   the others; `$patch: delete|replace` and `$setElementOrder`/`$retainKeys` directives are
//!   understood (the order directives are accepted and ignored);
//! - JSON patch (RFC 6902, `application/json-patch+json`, what `kubectl rollout undo` sends):
//!   `add`, `remove`, `replace`, `test`, `copy`, `move`.

use serde_json::{Map, Value};

/// The patch types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// RFC 7386.
    Merge,
    /// Kubernetes' strategic merge patch.
    Strategic,
    /// RFC 6902.
    Json,
}

impl PatchType {
    /// From the request's `Content-Type`; `None` for anything else (→ 415).
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let media = content_type.split(';').next().unwrap_or_default().trim();
        match media {
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/json-patch+json" => Some(PatchType::Json),
            _ => None,
        }
    }
}

/// Applies a patch of the given type; the error is the reason for a 422 (or 400).
pub fn apply(kind: PatchType, target: &Value, patch: &Value) -> Result<Value, String> {
    match kind {
        PatchType::Merge => Ok(merge(target, patch)),
        PatchType::Strategic => strategic(target, patch),
        PatchType::Json => json_patch(target, patch),
    }
}

/// RFC 7386.
pub fn merge(target: &Value, patch: &Value) -> Value {
    let Value::Object(p) = patch else {
        return patch.clone();
    };
    let mut out = match target {
        Value::Object(t) => t.clone(),
        _ => Map::new(),
    };
    for (k, v) in p {
        if v.is_null() {
            out.remove(k);
        } else {
            let merged = merge(out.get(k).unwrap_or(&Value::Null), v);
            out.insert(k.clone(), merged);
        }
    }
    Value::Object(out)
}

/// The merge key of a list field, as in the Kubernetes API's `patchMergeKey`.
fn merge_key(field: &str) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "hostAliases" => Some(match field {
            "hostAliases" => "ip",
            _ => "name",
        }),
        "ports" => Some("containerPort"),
        "volumeMounts" => Some("mountPath"),
        "volumeDevices" => Some("devicePath"),
        "conditions" => Some("type"),
        "ownerReferences" => Some("uid"),
        _ => None,
    }
}

/// Kubernetes' strategic merge patch.
pub fn strategic(target: &Value, patch: &Value) -> Result<Value, String> {
    let Value::Object(p) = patch else {
        return Ok(patch.clone());
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut p = p.clone();
        p.remove("$patch");
        return Ok(Value::Object(p));
    }
    let mut out = match target {
        Value::Object(t) => t.clone(),
        _ => Map::new(),
    };
    for (k, v) in p {
        if k.starts_with('$') {
            match k.as_str() {
                "$retainKeys" => {}
                "$patch" => {
                    return Err(format!("unknown patch directive {v} on an object"));
                }
                _ if k.starts_with("$setElementOrder/")
                    || k.starts_with("$deleteFromPrimitiveList/") => {}
                _ => return Err(format!("unknown patch directive {k}")),
            }
            continue;
        }
        if v.is_null() {
            out.remove(k);
            continue;
        }
        let merged = match (out.get(k), v, merge_key(k)) {
            (Some(Value::Array(cur)), Value::Array(items), Some(key)) => {
                Value::Array(merge_list(cur, items, key)?)
            }
            (None, Value::Array(items), Some(key)) => Value::Array(merge_list(&[], items, key)?),
            (_, Value::Array(items), None) => Value::Array(items.clone()),
            (Some(cur), Value::Object(_), _) => strategic(cur, v)?,
            (None, Value::Object(_), _) => strategic(&Value::Null, v)?,
            (_, other, _) => other.clone(),
        };
        out.insert(k.clone(), merged);
    }
    Ok(Value::Object(out))
}

fn merge_list(current: &[Value], items: &[Value], key: &str) -> Result<Vec<Value>, String> {
    let mut out: Vec<Value> = current.to_vec();
    for item in items {
        let id = item
            .get(key)
            .ok_or_else(|| format!("map: {item} does not contain declared merge key: {key}"))?;
        let position = out.iter().position(|e| e.get(key) == Some(id));
        let directive = item.get("$patch").and_then(Value::as_str);
        match (directive, position) {
            (Some("delete"), Some(i)) => {
                out.remove(i);
            }
            (Some("delete"), None) => {}
            (Some("replace"), _) | (_, None) => {
                let mut item = item.clone();
                if let Some(o) = item.as_object_mut() {
                    o.remove("$patch");
                }
                match position {
                    Some(i) => out[i] = item,
                    None => out.push(item),
                }
            }
            (_, Some(i)) => out[i] = strategic(&out[i], item)?,
        }
    }
    Ok(out)
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn split_pointer(path: &str) -> Result<(String, String), String> {
    if !path.starts_with('/') {
        return Err(format!("invalid JSON pointer {path:?}"));
    }
    let (parent, last) = path.rsplit_once('/').unwrap_or(("", path));
    Ok((parent.to_owned(), unescape(last)))
}

fn add_at(doc: &mut Value, path: &str, value: Value, replace: bool) -> Result<(), String> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, last) = split_pointer(path)?;
    let target = doc
        .pointer_mut(&parent)
        .ok_or_else(|| format!("doc is missing path: {parent:?}"))?;
    match target {
        Value::Object(o) => {
            if replace && !o.contains_key(&last) {
                return Err(format!(
                    "replace operation does not apply: doc is missing key: {path}"
                ));
            }
            o.insert(last, value);
        }
        Value::Array(a) => {
            if last == "-" && !replace {
                a.push(value);
            } else {
                let i: usize = last
                    .parse()
                    .map_err(|_| format!("invalid array index {last:?}"))?;
                if replace {
                    let slot = a
                        .get_mut(i)
                        .ok_or_else(|| format!("index {i} out of bounds"))?;
                    *slot = value;
                } else if i <= a.len() {
                    a.insert(i, value);
                } else {
                    return Err(format!("index {i} out of bounds"));
                }
            }
        }
        _ => return Err(format!("doc is missing path: {path:?}")),
    }
    Ok(())
}

fn remove_at(doc: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split_pointer(path)?;
    let target = doc
        .pointer_mut(&parent)
        .ok_or_else(|| format!("doc is missing path: {parent:?}"))?;
    match target {
        Value::Object(o) => o
            .remove(&last)
            .ok_or_else(|| format!("remove operation does not apply: doc is missing key: {path}")),
        Value::Array(a) => {
            let i: usize = last
                .parse()
                .map_err(|_| format!("invalid array index {last:?}"))?;
            if i < a.len() {
                Ok(a.remove(i))
            } else {
                Err(format!("index {i} out of bounds"))
            }
        }
        _ => Err(format!("doc is missing path: {path:?}")),
    }
}

/// RFC 6902.
pub fn json_patch(target: &Value, patch: &Value) -> Result<Value, String> {
    let ops = patch
        .as_array()
        .ok_or("a JSON patch is an array of operations")?;
    let mut doc = target.clone();
    for op in ops {
        let name = op.get("op").and_then(Value::as_str).unwrap_or_default();
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("operation {op} has no path"))?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| format!("operation {op} has no value"))
        };
        let from = || {
            op.get("from")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("operation {op} has no from"))
        };
        match name {
            "add" => add_at(&mut doc, path, value()?, false)?,
            "replace" => add_at(&mut doc, path, value()?, true)?,
            "remove" => {
                remove_at(&mut doc, path)?;
            }
            "test" => {
                if doc.pointer(path) != Some(&value()?) {
                    return Err(format!("testing value {path} failed"));
                }
            }
            "copy" => {
                let v = doc
                    .pointer(from()?)
                    .cloned()
                    .ok_or_else(|| format!("copy from missing path {op}"))?;
                add_at(&mut doc, path, v, false)?;
            }
            "move" => {
                let v = remove_at(&mut doc, from()?)?;
                add_at(&mut doc, path, v, false)?;
            }
            other => return Err(format!("unexpected kind of operation {other:?}")),
        }
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn two_containers() -> Value {
        json!({"spec": {"template": {"spec": {"containers": [
            {"name": "proxy", "image": "zai-proxy:1.2.0", "env": [{"name": "A", "value": "1"}]},
            {"name": "sidecar", "image": "envoy:1"}
        ]}}}})
    }

    #[test]
    fn strategic_patch_of_one_container_by_name_leaves_the_others() {
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "proxy"}, {"name": "sidecar"}],
            "containers": [{"name": "proxy", "image": "zai-proxy:1.2.1"}]
        }}}});
        let out = strategic(&two_containers(), &patch).expect("applies");
        let containers = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers[0]["image"], "zai-proxy:1.2.1");
        assert_eq!(
            containers[0]["env"][0]["name"], "A",
            "fields not in the patch stay"
        );
        assert_eq!(containers[1]["image"], "envoy:1");
        assert_eq!(containers.as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn merge_patch_replaces_lists_and_deletes_nulls() {
        let patch = json!({"spec": {"template": {"spec": {
            "containers": [{"name": "proxy", "image": "zai-proxy:1.2.1"}]
        }}}, "metadata": {"labels": {"gone": null, "version": "1.2.1"}}});
        let mut target = two_containers();
        target["metadata"] = json!({"labels": {"gone": "x", "app": "zai-proxy"}});
        let out = merge(&target, &patch);
        let containers = out["spec"]["template"]["spec"]["containers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(containers.len(), 1, "a merge patch replaces the list");
        assert!(containers[0].get("env").is_none());
        assert_eq!(
            out["metadata"]["labels"],
            json!({"app": "zai-proxy", "version": "1.2.1"})
        );
    }

    #[test]
    fn strategic_directives_delete_and_replace() {
        let patch = json!({"spec": {"template": {"spec": {
            "containers": [{"name": "sidecar", "$patch": "delete"}]
        }}}});
        let out = strategic(&two_containers(), &patch).expect("applies");
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"]
                .as_array()
                .map(Vec::len),
            Some(1)
        );
        let missing_key = json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}});
        assert!(strategic(&two_containers(), &missing_key).is_err());
    }

    #[test]
    fn json_patch_replaces_adds_removes_and_tests() {
        let patch = json!([
            {"op": "test", "path": "/spec/template/spec/containers/1/name", "value": "sidecar"},
            {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "b"},
            {"op": "add", "path": "/metadata", "value": {"annotations": {"a~b/c": "1"}}},
            {"op": "remove", "path": "/spec/template/spec/containers/1"}
        ]);
        let out = json_patch(&two_containers(), &patch).expect("applies");
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][0]["image"],
            "b"
        );
        assert_eq!(out["metadata"]["annotations"]["a~b/c"], "1");
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"]
                .as_array()
                .map(Vec::len),
            Some(1)
        );
        let bad = json!([{"op": "replace", "path": "/nope/x", "value": 1}]);
        assert!(json_patch(&two_containers(), &bad).is_err());
        let failed_test = json!([{"op": "test", "path": "/spec", "value": 1}]);
        assert!(json_patch(&two_containers(), &failed_test).is_err());
    }

    #[test]
    fn content_types_map_to_patch_types() {
        assert_eq!(
            PatchType::from_content_type("application/strategic-merge-patch+json; charset=utf-8"),
            Some(PatchType::Strategic)
        );
        assert_eq!(
            PatchType::from_content_type("application/merge-patch+json"),
            Some(PatchType::Merge)
        );
        assert_eq!(
            PatchType::from_content_type("application/apply-patch+yaml"),
            None
        );
        assert_eq!(PatchType::from_content_type("application/json"), None);
    }
}
