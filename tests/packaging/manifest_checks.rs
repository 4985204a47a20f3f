//! The checks over `deploy/kubernetes/` that no schema validator makes:
//! references between objects, and between the objects and the gateway's
//! own configuration. Each pushes what it finds onto `problems`.

use std::path::Path;

use serde_yaml::Value;

use super::{Manifests, Object, POD_NAME_LABEL, container_port, selects, selects_pod, seq, show, strings};

impl Manifests {
    /// Every namespaced object is in the namespace the manifests create.
    pub fn check_namespaces(&self, problems: &mut Vec<String>) {
        let namespaces: Vec<&str> = self.of_kind("Namespace").map(Object::name).collect();
        for o in self.objects.iter().filter(|o| o.kind() != "Namespace") {
            if !namespaces.contains(&o.namespace()) {
                problems.push(format!(
                    "{}: namespace `{}` is not created here",
                    o.describe(),
                    o.namespace()
                ));
            }
        }
    }

    /// Probes name ports the container declares; every container has a
    /// readiness and a liveness probe.
    pub fn check_probes(&self, problems: &mut Vec<String>) {
        for w in self.workloads() {
            for c in w.containers() {
                let name = c["name"].as_str().unwrap_or("");
                for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
                    let p = &c[probe];
                    if p.is_null() {
                        if probe != "startupProbe" {
                            problems.push(format!("{}: container {name} has no {probe}", w.describe()));
                        }
                        continue;
                    }
                    let port = ["httpGet", "tcpSocket", "grpc"]
                        .iter()
                        .map(|k| &p[*k]["port"])
                        .find(|v| !v.is_null());
                    if port.and_then(|port| container_port(c, port)).is_none() {
                        problems.push(format!(
                            "{}: {name}.{probe} port {} is not a container port",
                            w.describe(),
                            port.map_or("(none)".into(), show)
                        ));
                    }
                }
            }
        }
    }

    /// Readiness on /readyz and liveness on /healthz of the metrics
    /// listener, which Prometheus scrapes by the pod's annotations; each
    /// listener's port is a container port.
    pub fn check_gateway_endpoints(&self, problems: &mut Vec<String>) {
        let g = self.gateway();
        let metrics = g.config["metrics"]["address"].as_str().unwrap_or("");
        let (host, port) = metrics.rsplit_once(':').unwrap_or(("", ""));
        if ["127.0.0.1", "localhost", "[::1]"].contains(&host) {
            problems.push(format!(
                "metrics.address {metrics} is loopback: neither the kubelet nor Prometheus reach it"
            ));
        }
        let port: u64 = port.parse().unwrap_or(0);
        for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
            let get = &g.container[probe]["httpGet"];
            if get["path"].as_str() != Some(path) {
                problems.push(format!("gateway {probe} path is {}, not {path}", show(&get["path"])));
            }
            if container_port(g.container, &get["port"]) != Some(port) {
                problems.push(format!(
                    "gateway {probe} port {} is not metrics.address's {port}",
                    show(&get["port"])
                ));
            }
        }
        let annotations = &g.workload.pod()["metadata"]["annotations"];
        for (key, want) in [
            ("prometheus.io/scrape", "true".to_string()),
            ("prometheus.io/port", port.to_string()),
            ("prometheus.io/path", "/metrics".to_string()),
        ] {
            if annotations[key].as_str() != Some(want.as_str()) {
                problems.push(format!(
                    "pod annotation {key} is {}, not {want:?}",
                    show(&annotations[key])
                ));
            }
        }
        let declared: Vec<u64> = seq(&g.container["ports"])
            .filter_map(|p| p["containerPort"].as_u64())
            .collect();
        for l in seq(&g.config["listeners"]) {
            let addr = l["address"].as_str().unwrap_or("");
            let p: u64 = addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or(0);
            if !declared.contains(&p) {
                problems.push(format!(
                    "listener {addr} is not a container port of the gateway ({declared:?})"
                ));
            }
        }
    }

    /// Every `/etc/...` path in gateway.yaml is a key of a mounted Secret
    /// or ConfigMap (the image has nothing else there).
    pub fn check_gateway_files(&self, problems: &mut Vec<String>) {
        let g = self.gateway();
        let mut paths = Vec::new();
        strings(&g.config, &mut |s| {
            if s.starts_with("/etc/") {
                paths.push(s.to_string());
            }
        });
        for path in paths {
            let Some((volume, key)) = self.mounted(g.workload, g.container, Path::new(&path)) else {
                problems.push(format!("gateway.yaml names {path}, which no volume mount provides"));
                continue;
            };
            let ns = g.workload.namespace();
            let source = match (
                volume["secret"]["secretName"].as_str(),
                volume["configMap"]["name"].as_str(),
            ) {
                (Some(s), _) => self.find("Secret", ns, s),
                (None, Some(m)) => self.find("ConfigMap", ns, m),
                _ => None,
            };
            let has = source.is_some_and(|o| {
                ["data", "stringData"]
                    .iter()
                    .any(|d| !o.doc[*d][key.as_str()].is_null())
            });
            if !has {
                problems.push(format!(
                    "gateway.yaml names {path}: no key {key} in the volume's Secret or ConfigMap"
                ));
            }
        }
    }

    /// Workloads select their own pods; each is covered by exactly one PDB
    /// that lets a node drain; each Service selects a workload's pods and
    /// targets ports they declare.
    pub fn check_selectors(&self, problems: &mut Vec<String>) {
        for w in self.workloads() {
            if !selects(&w.doc["spec"]["selector"]["matchLabels"], w.pod_labels()) {
                problems.push(format!("{}: spec.selector does not match its pod labels", w.describe()));
            }
            let pdbs: Vec<&Object> = self
                .of_kind("PodDisruptionBudget")
                .filter(|p| p.namespace() == w.namespace())
                .filter(|p| selects(&p.doc["spec"]["selector"]["matchLabels"], w.pod_labels()))
                .collect();
            let [pdb] = pdbs.as_slice() else {
                problems.push(format!(
                    "{}: {} PodDisruptionBudgets select it, not 1",
                    w.describe(),
                    pdbs.len()
                ));
                continue;
            };
            let replicas = w.doc["spec"]["replicas"].as_u64().unwrap_or(1);
            let spec = &pdb.doc["spec"];
            if spec["minAvailable"].as_u64().is_some_and(|m| m >= replicas)
                || spec["maxUnavailable"].as_u64() == Some(0)
            {
                problems.push(format!("{} never lets one of {replicas} pods go", pdb.describe()));
            }
        }
        for s in self.of_kind("Service") {
            let selector = &s.doc["spec"]["selector"];
            let Some(w) = self
                .workloads()
                .find(|w| w.namespace() == s.namespace() && selects_pod(selector, w))
            else {
                problems.push(format!("{}: selects no workload's pods", s.describe()));
                continue;
            };
            for port in seq(&s.doc["spec"]["ports"]) {
                let target = if port["targetPort"].is_null() {
                    &port["port"]
                } else {
                    &port["targetPort"]
                };
                if !w.containers().any(|c| container_port(c, target).is_some()) {
                    problems.push(format!(
                        "{}: targetPort {} is not a port of {}",
                        s.describe(),
                        show(target),
                        w.describe()
                    ));
                }
            }
        }
    }

    /// Each StatefulSet replica N has its Service `NAME-N` (and no Service
    /// outlives a replica); one gateway upstream lists exactly those; the
    /// replicas share one `REGISTRY_HTTP_SECRET` from a Secret, as that
    /// upstream's `shared_secret: true` claims.
    pub fn check_replicas(&self, problems: &mut Vec<String>) {
        let g = self.gateway();
        for sts in self.of_kind("StatefulSet") {
            let (name, ns) = (sts.name(), sts.namespace());
            let replicas = sts.doc["spec"]["replicas"].as_u64().unwrap_or(1);
            let headless = sts.doc["spec"]["serviceName"]
                .as_str()
                .and_then(|s| self.find("Service", ns, s));
            if headless.is_none_or(|s| s.doc["spec"]["clusterIP"].as_str() != Some("None")) {
                problems.push(format!(
                    "{}: serviceName is not a headless Service here",
                    sts.describe()
                ));
            }
            let mut urls = Vec::new();
            for n in 0..=replicas {
                let service = format!("{name}-{n}");
                let found = self.find("Service", ns, &service);
                if n == replicas {
                    if found.is_some() {
                        problems.push(format!("Service {service} exists, but {name} has {replicas} replicas"));
                    }
                    break;
                }
                let Some(s) = found else {
                    problems.push(format!("no Service {service} for replica {n} of {}", sts.describe()));
                    continue;
                };
                if s.doc["spec"]["selector"][POD_NAME_LABEL].as_str() != Some(service.as_str()) {
                    problems.push(format!(
                        "{}: does not select pod {service} by {POD_NAME_LABEL}",
                        s.describe()
                    ));
                }
                let port = s.doc["spec"]["ports"][0]["port"].as_u64().unwrap_or(0);
                urls.push(format!("http://{service}.{ns}.svc.cluster.local:{port}"));
            }
            let upstream = g.config["upstreams"].as_mapping().and_then(|m| {
                m.iter().find(|(_, u)| {
                    let listed: Vec<&str> = seq(&u["urls"]).filter_map(Value::as_str).collect();
                    listed == urls
                })
            });
            let Some((upstream, section)) = upstream else {
                problems.push(format!("no gateway upstream has urls {urls:?}"));
                continue;
            };
            let env: Vec<&Value> = sts
                .containers()
                .flat_map(|c| seq(&c["env"]))
                .filter(|e| e["name"].as_str() == Some("REGISTRY_HTTP_SECRET"))
                .collect();
            let reference = &env.first().map_or(&Value::Null, |e| &e["valueFrom"])["secretKeyRef"];
            let key = reference["key"].as_str().unwrap_or("");
            let secret = reference["name"].as_str().and_then(|s| self.find("Secret", ns, s));
            if env.len() != 1
                || secret.is_none_or(|s| s.doc["stringData"][key].is_null() && s.doc["data"][key].is_null())
            {
                problems.push(format!(
                    "{}: REGISTRY_HTTP_SECRET is not one secretKeyRef to a Secret here",
                    sts.describe()
                ));
            }
            if section["shared_secret"].as_bool() != Some(true) {
                problems.push(format!(
                    "upstream {}: the replicas share http.secret, shared_secret is not true",
                    show(upstream)
                ));
            }
        }
    }
}
