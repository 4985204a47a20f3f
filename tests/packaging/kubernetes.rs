//! `deploy/kubernetes/`: every document of every file, and the references
//! between objects that no schema validator follows (probe ports, selectors,
//! mounted files, the gateway's `urls` against the per-replica Services).
//! Each check returns its problems instead of panicking, so one run lists
//! all of them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml::Value;

#[path = "manifest_checks.rs"]
mod checks;

pub const DIR: &str = "deploy/kubernetes";

const WORKLOADS: [&str; 3] = ["Deployment", "StatefulSet", "DaemonSet"];
const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";

/// The manifest files, in the order `kubectl apply -f DIR` reads them.
pub fn files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(DIR)
        .unwrap_or_else(|e| panic!("read {DIR}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
}

pub struct Object {
    pub file: String,
    pub doc: Value,
}

impl Object {
    pub fn kind(&self) -> &str {
        self.doc["kind"].as_str().unwrap_or("")
    }

    pub fn name(&self) -> &str {
        self.doc["metadata"]["name"].as_str().unwrap_or("")
    }

    pub fn namespace(&self) -> &str {
        self.doc["metadata"]["namespace"].as_str().unwrap_or("")
    }

    fn pod(&self) -> &Value {
        &self.doc["spec"]["template"]
    }

    fn pod_labels(&self) -> &Value {
        &self.pod()["metadata"]["labels"]
    }

    fn containers(&self) -> impl Iterator<Item = &Value> {
        let spec = &self.pod()["spec"];
        seq(&spec["containers"]).chain(seq(&spec["initContainers"]))
    }

    pub fn describe(&self) -> String {
        format!("{} {} ({})", self.kind(), self.name(), self.file)
    }
}

pub struct Manifests {
    pub objects: Vec<Object>,
}

/// The gateway's Deployment, its container, and the gateway.yaml of the
/// ConfigMap that `--config` reads.
pub struct Gateway<'a> {
    pub workload: &'a Object,
    pub container: &'a Value,
    pub config: Value,
}

impl Manifests {
    pub fn load() -> Manifests {
        let mut objects = Vec::new();
        for path in files() {
            let text = std::fs::read_to_string(&path).unwrap();
            for doc in serde_yaml::Deserializer::from_str(&text) {
                let doc = Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                if !doc.is_null() {
                    objects.push(Object {
                        file: path.display().to_string(),
                        doc,
                    });
                }
            }
        }
        Manifests { objects }
    }

    fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Object> {
        self.objects.iter().filter(move |o| o.kind() == kind)
    }

    fn find(&self, kind: &str, namespace: &str, name: &str) -> Option<&Object> {
        (self.objects.iter()).find(|o| o.kind() == kind && o.namespace() == namespace && o.name() == name)
    }

    fn workloads(&self) -> impl Iterator<Item = &Object> {
        self.objects.iter().filter(|o| WORKLOADS.contains(&o.kind()))
    }

    /// The workload whose container is started with `--config FILE`, and
    /// FILE read from the ConfigMap volume mounted at FILE's folder.
    pub fn gateway(&self) -> Gateway<'_> {
        for workload in self.workloads() {
            for container in workload.containers() {
                let args: Vec<&str> = seq(&container["args"]).filter_map(Value::as_str).collect();
                let Some(i) = args.iter().position(|a| *a == "--config") else {
                    continue;
                };
                let path = Path::new(args[i + 1]);
                let (volume, key) = self.mounted(workload, container, path).unwrap_or_else(|| {
                    panic!(
                        "{}: --config {} is not in a mounted volume",
                        workload.describe(),
                        path.display()
                    )
                });
                let map = volume["configMap"]["name"]
                    .as_str()
                    .and_then(|name| self.find("ConfigMap", workload.namespace(), name))
                    .unwrap_or_else(|| panic!("{}: --config is not read from a ConfigMap here", workload.describe()));
                let text = map.doc["data"][key.as_str()]
                    .as_str()
                    .unwrap_or_else(|| panic!("{} has no key {key}", map.describe()));
                let config = serde_yaml::from_str(text).unwrap_or_else(|e| panic!("{}: {key}: {e}", map.describe()));
                return Gateway {
                    workload,
                    container,
                    config,
                };
            }
        }
        panic!("no workload in {DIR} starts the gateway with --config");
    }

    /// The pod volume mounted where `path` lives, and `path`'s key in it.
    fn mounted<'a>(&'a self, workload: &'a Object, container: &Value, path: &Path) -> Option<(&'a Value, String)> {
        seq(&container["volumeMounts"]).find_map(|m| {
            let key = path.strip_prefix(m["mountPath"].as_str()?).ok()?;
            let volume = seq(&workload.pod()["spec"]["volumes"]).find(|v| v["name"] == m["name"])?;
            Some((volume, key.to_str()?.to_string()))
        })
    }
}

/// gateway.yaml made checkable on this machine: `*.svc.cluster.local`
/// upstreams and `0.0.0.0` listeners move to loopback ports, and files
/// under `/etc/` to `files` (key → local path).
pub fn localize(config: &Value, files: &BTreeMap<String, PathBuf>, port: &mut impl FnMut() -> u16) -> Value {
    match config {
        Value::Mapping(m) => Value::Mapping(m.iter().map(|(k, v)| (k.clone(), localize(v, files, port))).collect()),
        Value::Sequence(s) => Value::Sequence(s.iter().map(|v| localize(v, files, port)).collect()),
        Value::String(s) if s.starts_with("0.0.0.0:") => Value::from(format!("127.0.0.1:{}", port())),
        Value::String(s) if s.contains(".svc.cluster.local:") => {
            let scheme = &s[..s.find("://").map_or(0, |i| i + 3)];
            Value::from(format!("{scheme}127.0.0.1:{}", port()))
        }
        Value::String(s) if s.starts_with("/etc/") => {
            let key = Path::new(s).file_name().unwrap().to_str().unwrap();
            let local = files.get(key).unwrap_or_else(|| panic!("no local file for {s}"));
            Value::from(local.display().to_string())
        }
        other => other.clone(),
    }
}

/// A value as YAML shows it (`9145`, `metrics`, `~`), for messages.
fn show(v: &Value) -> String {
    serde_yaml::to_string(v).unwrap_or_default().trim().to_string()
}

fn seq(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_sequence().into_iter().flatten()
}

fn strings<'a>(v: &'a Value, f: &mut impl FnMut(&'a str)) {
    match v {
        Value::String(s) => f(s),
        Value::Sequence(s) => s.iter().for_each(|v| strings(v, f)),
        Value::Mapping(m) => m.values().for_each(|v| strings(v, f)),
        _ => {}
    }
}

/// The container's port number for a probe or Service port (a name or a
/// number), when it declares it.
fn container_port(container: &Value, port: &Value) -> Option<u64> {
    seq(&container["ports"]).find_map(|p| {
        let number = p["containerPort"].as_u64()?;
        let hit = match port {
            Value::String(name) => p["name"].as_str() == Some(name),
            Value::Number(n) => n.as_u64() == Some(number),
            _ => false,
        };
        hit.then_some(number)
    })
}

/// A non-empty label selector whose labels all appear in `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    selector
        .as_mapping()
        .is_some_and(|m| !m.is_empty() && m.iter().all(|(k, v)| labels[k.as_str().unwrap_or("")] == *v))
}

/// Like [`selects`], where a StatefulSet's pods also carry their pod name.
fn selects_pod(selector: &Value, w: &Object) -> bool {
    let Some(m) = selector.as_mapping() else { return false };
    let replicas = w.doc["spec"]["replicas"].as_u64().unwrap_or(1);
    let own: Value = m
        .iter()
        .filter(|(k, _)| k.as_str() != Some(POD_NAME_LABEL))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect::<serde_yaml::Mapping>()
        .into();
    let pod_ok = match m.get(POD_NAME_LABEL).and_then(Value::as_str) {
        None => true,
        Some(pod) => w.kind() == "StatefulSet" && (0..replicas).any(|n| pod == format!("{}-{n}", w.name())),
    };
    pod_ok && selects(&own, w.pod_labels())
}
