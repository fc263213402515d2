//! The deployment files under `deploy/`: every kustomization renders (`kubectl kustomize`), passes
//! Kubernetes' schemas strictly (`kubernetes-validate --strict`, offline), keeps the invariants the
//! runtime depends on (non-root, gRPC probes, a grace period that covers the drain, autoscaler
//! bounds equal to the node counts, no secret value anywhere), and carries a configuration file
//! that the runtime's own `check-config` accepts. The Dockerfile parses (`dockerfile-parse`),
//! copies only files that exist and that `.dockerignore` admits, and its health check command
//! works against a real server.
//!
//! Needs `kubectl` (1.32, with its built-in kustomize), `kubernetes-validate` and Python's
//! `dockerfile-parse` (`.ci/run` installs the two Python packages). Without them a test fails under
//! `CI` and is skipped with a note elsewhere.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

/// The kustomizations, relative to `deploy/kubernetes/`.
const KUSTOMIZATIONS: [&str; 4] = [
    "base",
    "overlays/dev",
    "overlays/production",
    "overlays/keda",
];

/// The Kubernetes version the manifests are validated against (kubectl on these machines is 1.32).
const KUBERNETES_VERSION: &str = "1.32.0";

/// Custom resources, which Kubernetes' own schemas do not cover: each is checked field by field
/// by [`check_scaled_object`]; any other kind without a schema fails validation.
const CUSTOM_KINDS: [(&str, &str); 1] = [("keda.sh/v1alpha1", "ScaledObject")];

/// Strings that only a secret value contains: Stripe keys and webhook secrets, PEM keys.
const SECRET_MARKERS: [&str; 6] = [
    "sk_test_",
    "sk_live_",
    "rk_test_",
    "rk_live_",
    "whsec_",
    "-----BEGIN",
];

/// Settings sections the manifests use that the runtime does not have yet, with the problems
/// `check-config` reports about them (matched by their start). Empty: the runtime accepts every
/// section the manifests use (`metrics` came with the telemetry work).
const AWAITING_MERGE: [(&str, &[&str]); 0] = [];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn in_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// Whether `program args…` runs; under `CI` a missing tool fails the test.
fn tool(program: &str, args: &[&str], install: &str) -> bool {
    let ran = Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success());
    if !ran {
        assert!(
            !in_ci(),
            "CI must provide {program} ({install}; see .ci/run)"
        );
        println!("skipped: {program} is not available ({install})");
    }
    ran
}

fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Rendering and parsing

/// One kustomization, rendered.
struct Rendered {
    /// Relative to `deploy/kubernetes/`, e.g. `overlays/dev`.
    name: &'static str,
    /// `kubectl kustomize` output.
    text: String,
    /// Each YAML document as JSON.
    docs: Vec<Value>,
}

/// Every kustomization rendered once, or `None` (skipped) without kubectl outside CI.
fn rendered() -> Option<&'static [Rendered]> {
    static RENDERED: OnceLock<Option<Vec<Rendered>>> = OnceLock::new();
    RENDERED
        .get_or_init(|| {
            if !tool("kubectl", &["version", "--client"], "kubectl 1.32 or newer") {
                return None;
            }
            Some(KUSTOMIZATIONS.iter().map(|name| render(name)).collect())
        })
        .as_deref()
}

fn render(name: &'static str) -> Rendered {
    let dir = repo().join("deploy/kubernetes").join(name);
    let out = run(Command::new("kubectl").arg("kustomize").arg(&dir));
    assert!(
        out.status.success(),
        "kubectl kustomize {name} failed:\n{}",
        text(&out.stderr)
    );
    let text = text(&out.stdout);
    let docs = YamlLoader::load_from_str(&text)
        .unwrap_or_else(|e| panic!("{name}: rendered YAML does not parse: {e}"))
        .iter()
        .map(to_json)
        .collect();
    Rendered { name, text, docs }
}

fn to_json(yaml: &Yaml) -> Value {
    match yaml {
        Yaml::Real(s) => s
            .parse::<f64>()
            .map_or(Value::String(s.clone()), Value::from),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        Yaml::Hash(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) => s.clone(),
                        other => format!("{other:?}"),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Yaml::Alias(_) | Yaml::Null | Yaml::BadValue => Value::Null,
    }
}

/// The rendered output split into its documents' text, as `kubectl kustomize` separates them.
fn document_texts(text: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in text.lines() {
        if line == "---" {
            docs.push(String::new());
        } else if let Some(doc) = docs.last_mut() {
            doc.push_str(line);
            doc.push('\n');
        }
    }
    docs.retain(|d| !d.trim().is_empty());
    docs
}

impl Rendered {
    fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.docs.iter().filter(|d| d["kind"] == kind).collect()
    }

    fn get(&self, kind: &str, name: &str) -> Option<&Value> {
        self.docs
            .iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
    }

    fn deployment(&self) -> &Value {
        self.get("Deployment", "connector-runtime")
            .unwrap_or_else(|| panic!("{}: no Deployment connector-runtime", self.name))
    }

    fn hpa(&self) -> Option<&Value> {
        self.get("HorizontalPodAutoscaler", "connector-runtime")
    }

    /// The runtime's configuration file, from the ConfigMap the Deployment mounts.
    fn config(&self) -> RuntimeConfig {
        let deployment = self.deployment();
        let volume = pod_volume(deployment, "config");
        let map_name = volume["configMap"]["name"].as_str().expect("config volume");
        let map = self
            .get("ConfigMap", map_name)
            .unwrap_or_else(|| panic!("{}: no ConfigMap {map_name}", self.name));
        let text = map["data"]["config.toml"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: {map_name} has no config.toml", self.name))
            .to_owned();
        let table = toml::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: config.toml is not TOML: {e}", self.name));
        RuntimeConfig { text, table }
    }
}

fn pod_spec(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]
}

fn runtime_container(deployment: &Value) -> &Value {
    pod_spec(deployment)["containers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == "connector-runtime"))
        .expect("a container named connector-runtime")
}

fn pod_volume<'a>(deployment: &'a Value, name: &str) -> &'a Value {
    pod_spec(deployment)["volumes"]
        .as_array()
        .and_then(|vs| vs.iter().find(|v| v["name"] == name))
        .unwrap_or_else(|| panic!("no volume {name}"))
}

fn mount_path<'a>(container: &'a Value, volume: &str) -> &'a str {
    container["volumeMounts"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["name"] == volume))
        .and_then(|m| m["mountPath"].as_str())
        .unwrap_or_else(|| panic!("volume {volume} is not mounted"))
}

fn container_port(container: &Value, name: &str) -> i64 {
    container["ports"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == name))
        .and_then(|p| p["containerPort"].as_i64())
        .unwrap_or_else(|| panic!("no container port named {name}"))
}

/// Every `<secret>/<version>` path the secrets volume lays out (plain or projected Secrets).
fn mounted_secret_paths(deployment: &Value) -> Vec<String> {
    let volume = pod_volume(deployment, "secrets");
    let mut sources: Vec<&Value> = Vec::new();
    if volume["secret"].is_object() {
        sources.push(&volume["secret"]);
    }
    for source in volume["projected"]["sources"]
        .as_array()
        .into_iter()
        .flatten()
    {
        assert!(
            source["secret"].is_object(),
            "the secrets volume projects only Secrets: {source}"
        );
        sources.push(&source["secret"]);
    }
    sources
        .iter()
        .flat_map(|s| s["items"].as_array().cloned().unwrap_or_default())
        .map(|item| item["path"].as_str().expect("item path").to_owned())
        .collect()
}

/// A Kubernetes quantity (`800m`, `0.8`, `2`) as a number.
fn quantity(value: &Value) -> f64 {
    let s = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match s.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().expect("quantity") / 1000.0,
        None => s.parse().expect("quantity"),
    }
}

/// The runtime's configuration file as rendered into a ConfigMap.
struct RuntimeConfig {
    text: String,
    table: toml::Table,
}

impl RuntimeConfig {
    fn get(&self, path: &str) -> Option<&toml::Value> {
        let mut value: Option<&toml::Value> = None;
        for (i, key) in path.split('.').enumerate() {
            value = if i == 0 {
                self.table.get(key)
            } else {
                value?.get(key)
            };
        }
        value
    }

    fn str(&self, path: &str) -> Option<&str> {
        self.get(path).and_then(toml::Value::as_str)
    }

    /// A duration setting, or its default.
    fn duration(&self, path: &str, default: Duration) -> Duration {
        self.get(path).map_or(default, |v| {
            humantime_serde::deserialize(v.clone())
                .unwrap_or_else(|e| panic!("{path} is not a duration: {e}"))
        })
    }

    fn port(&self, path: &str) -> i64 {
        let listen = self.str(path).unwrap_or_else(|| panic!("{path} is unset"));
        let addr: std::net::SocketAddr = listen.parse().expect("an IP:port address");
        i64::from(addr.port())
    }

    fn connections(&self) -> Vec<&toml::Table> {
        self.get("connections")
            .and_then(toml::Value::as_array)
            .map(|cs| cs.iter().filter_map(toml::Value::as_table).collect())
            .unwrap_or_default()
    }

    /// Every secret reference (`{ secret = …, version = … }`) in the file.
    fn secret_refs(&self) -> Vec<String> {
        fn walk(value: &toml::Value, out: &mut Vec<String>) {
            match value {
                toml::Value::Table(t) if is_secret_ref(t) => {
                    out.push(t["secret"].as_str().unwrap_or_default().to_owned());
                }
                toml::Value::Table(t) => t.values().for_each(|v| walk(v, out)),
                toml::Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
                _ => {}
            }
        }
        let mut out = Vec::new();
        self.table.values().for_each(|v| walk(v, &mut out));
        out
    }
}

fn is_secret_ref(table: &toml::Table) -> bool {
    table.contains_key("secret") && table.keys().all(|k| k == "secret" || k == "version")
}

// ---------------------------------------------------------------------------------------------
// Schema validation

#[test]
fn every_kustomization_renders_and_passes_strict_schema_validation() {
    let Some(all) = rendered() else { return };
    if !tool(
        "kubernetes-validate",
        &["--version"],
        "pip install kubernetes-validate",
    ) {
        return;
    }
    for r in all {
        let mut standard = Vec::new();
        let mut custom = 0;
        for doc_text in document_texts(&r.text) {
            let doc = to_json(&YamlLoader::load_from_str(&doc_text).unwrap()[0]);
            let kind = (doc["apiVersion"].as_str(), doc["kind"].as_str());
            match CUSTOM_KINDS
                .iter()
                .find(|(a, k)| kind == (Some(*a), Some(*k)))
            {
                Some((_, "ScaledObject")) => {
                    check_scaled_object(r, &doc);
                    custom += 1;
                }
                Some((_, other)) => panic!("no check for custom kind {other}"),
                None => standard.push(doc_text),
            }
        }
        assert_eq!(standard.len() + custom, r.docs.len());
        validate_strictly(r.name, &standard);
    }
}

/// Runs kubernetes-validate on the documents and requires each to pass: a document of a kind it
/// has no schema for only draws a warning, so passes are counted.
fn validate_strictly(name: &str, docs: &[String]) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("manifests.yaml");
    std::fs::write(&file, docs.join("---\n")).unwrap();
    let out = run(Command::new("kubernetes-validate")
        .args(["--strict", "--kubernetes-version", KUBERNETES_VERSION])
        .arg(&file));
    let report = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{name}: {report}");
    let passed = report
        .lines()
        .filter(|l| l.starts_with("INFO") && l.contains(" passed "))
        .count();
    let problems: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("WARN") || l.starts_with("ERROR"))
        .collect();
    assert!(problems.is_empty(), "{name}: {problems:#?}");
    assert_eq!(
        passed,
        docs.len(),
        "{name}: not every document passed:\n{report}"
    );
}

#[test]
fn strict_schema_validation_rejects_an_unknown_field() {
    let Some(all) = rendered() else { return };
    if !tool(
        "kubernetes-validate",
        &["--version"],
        "pip install kubernetes-validate",
    ) {
        return;
    }
    let base = &all[0];
    let deployment = document_texts(&base.text)
        .into_iter()
        .find(|d| d.contains("kind: Deployment"))
        .unwrap();
    let broken = deployment.replacen("spec:\n", "spec:\n  replicaz: 3\n", 1);
    assert_ne!(broken, deployment);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.yaml");
    std::fs::write(&file, broken).unwrap();
    let out = run(Command::new("kubernetes-validate")
        .args(["--strict", "--kubernetes-version", KUBERNETES_VERSION])
        .arg(&file));
    assert!(!out.status.success());
    assert!(
        text(&out.stdout).contains("'replicaz' was unexpected"),
        "{}",
        text(&out.stdout)
    );
}

// ---------------------------------------------------------------------------------------------
// Invariants

#[test]
fn deployment_runs_as_a_locked_down_replica_with_grpc_probes() {
    let Some(all) = rendered() else { return };
    for r in all {
        let name = r.name;
        let deployment = r.deployment();
        let container = runtime_container(deployment);
        let config = r.config();

        assert_eq!(config.str("nodes.mode"), Some("replica"), "{name}");
        assert!(
            deployment["spec"]["replicas"].is_null(),
            "{name}: the autoscaler owns the replica count; `kubectl apply` must not reset it"
        );
        // Every Deployment (the runtime's, and production's Redis) is locked down alike.
        for any in r.of_kind("Deployment") {
            assert_locked_down(name, any);
        }

        // The ports the runtime listens on are the ones the pod declares and the probes use.
        let grpc = container_port(container, "grpc");
        assert_eq!(grpc, config.port("server.listen"), "{name}");
        assert_eq!(
            config
                .str("server.listen")
                .map(|l| l.starts_with("0.0.0.0:")),
            Some(true)
        );
        assert_eq!(
            container_port(container, "metrics"),
            config.port("metrics.listen"),
            "{name}"
        );
        assert_eq!(container_port(container, "metrics"), 9464, "{name}");
        assert_eq!(
            config.get("metrics.enabled").and_then(toml::Value::as_bool),
            Some(true),
            "{name}: the metrics port is off by default"
        );
        for probe in ["readinessProbe", "livenessProbe"] {
            assert_eq!(
                container[probe]["grpc"]["port"].as_i64(),
                Some(grpc),
                "{name}: {probe}"
            );
            assert!(
                container[probe]["grpc"]["service"]
                    .as_str()
                    .unwrap_or("")
                    .is_empty(),
                "{name}: {probe} asks about the server as a whole"
            );
        }

        // Files: the configuration where `--config` says, secrets and data where the config says.
        let args: Vec<&str> = container["args"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let config_file = format!("{}/config.toml", mount_path(container, "config"));
        assert!(
            args.windows(2)
                .any(|w| w == ["--config", config_file.as_str()]),
            "{name}: {args:?}"
        );
        assert_eq!(
            config.str("secrets.dir"),
            Some(mount_path(container, "secrets")),
            "{name}"
        );
        assert_eq!(
            config.str("data_dir"),
            Some(mount_path(container, "data")),
            "{name}"
        );
        assert!(
            pod_volume(deployment, "data")["emptyDir"].is_object(),
            "{name}"
        );
    }
}

/// Non-root, no token, seccomp, read-only root, no capabilities, requests and limits.
fn assert_locked_down(overlay: &str, deployment: &Value) {
    let name = format!("{overlay}: {}", deployment["metadata"]["name"]);
    let pod = pod_spec(deployment);
    assert_eq!(pod["automountServiceAccountToken"], false, "{name}");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
    assert!(
        pod["securityContext"]["runAsUser"].as_i64() > Some(0),
        "{name}"
    );
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
        "{name}"
    );
    for container in pod["containers"].as_array().unwrap() {
        let security = &container["securityContext"];
        assert_eq!(security["readOnlyRootFilesystem"], true, "{name}");
        assert_eq!(security["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(
            security["capabilities"]["drop"],
            serde_json::json!(["ALL"]),
            "{name}"
        );
        for bound in ["requests", "limits"] {
            for resource in ["cpu", "memory"] {
                assert!(
                    container["resources"][bound][resource].is_string(),
                    "{name}: {bound}.{resource}"
                );
            }
        }
    }
}

#[test]
fn shutdown_grace_covers_the_prestop_sleep_and_the_drain_timeout() {
    let Some(all) = rendered() else { return };
    for r in all {
        let name = r.name;
        let deployment = r.deployment();
        let container = runtime_container(deployment);
        let drain = r
            .config()
            .duration(
                "server.drain_timeout",
                connector_runtime::config::default_drain_timeout(),
            )
            .as_secs();
        let grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap();
        let pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
            .as_u64()
            .unwrap_or_else(|| panic!("{name}: preStop is a native sleep"));
        assert!(pre_stop > 0, "{name}");
        assert!(
            grace > pre_stop + drain,
            "{name}: terminationGracePeriodSeconds {grace} must exceed preStop {pre_stop}s + drain_timeout {drain}s"
        );
        // A draining server refuses new connections, probes included: liveness must not kill a pod
        // that is finishing its calls.
        let liveness = &container["livenessProbe"];
        let tolerated = liveness["periodSeconds"].as_u64().unwrap()
            * liveness["failureThreshold"].as_u64().unwrap();
        assert!(
            tolerated > drain,
            "{name}: liveness gives up after {tolerated}s < drain {drain}s"
        );
    }
}

/// The node counts of every connection in the file: (min, max), all equal.
fn node_counts(r: &Rendered) -> Option<(i64, i64)> {
    let config = r.config();
    let counts: BTreeSet<(i64, i64)> = config
        .connections()
        .iter()
        .map(|c| {
            let nodes = c.get("nodes").or_else(|| c.get("node_config"));
            let count = |key: &str, default: i64| {
                nodes
                    .and_then(|n| n.get(key))
                    .and_then(toml::Value::as_integer)
                    .unwrap_or(default)
            };
            (count("min_node_count", 2), count("max_node_count", 50))
        })
        .collect();
    assert!(
        counts.len() <= 1,
        "{}: in replica mode every connection has the fleet's node counts: {counts:?}",
        r.name
    );
    counts.into_iter().next()
}

#[test]
fn autoscaler_bounds_and_target_match_the_runtime_configuration() {
    let Some(all) = rendered() else { return };
    for r in all.iter().filter(|r| r.name != "overlays/keda") {
        let name = r.name;
        let config = r.config();
        let hpa = r.hpa().unwrap_or_else(|| panic!("{name}: no HPA"));
        let spec = &hpa["spec"];
        assert_eq!(hpa["apiVersion"], "autoscaling/v2");
        assert_eq!(spec["scaleTargetRef"]["kind"], "Deployment");
        assert_eq!(spec["scaleTargetRef"]["name"], "connector-runtime");
        let bounds = (
            spec["minReplicas"].as_i64().unwrap(),
            spec["maxReplicas"].as_i64().unwrap(),
        );
        match node_counts(r) {
            Some(counts) => assert_eq!(bounds, counts, "{name}: HPA bounds = node counts"),
            // dev: only the embedded sandbox connection; one or two nodes.
            None => assert_eq!(bounds, (1, 2), "{name}"),
        }
        if name == "base" {
            assert_eq!(bounds, (2, 50), "the defaults");
        }

        let window = config.duration(
            "nodes.stabilization_window",
            connector_runtime::throttle::default_stabilization_window(),
        );
        assert_eq!(
            spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"].as_u64(),
            Some(window.as_secs()),
            "{name}"
        );
        let metrics = spec["metrics"].as_array().unwrap();
        assert_eq!(metrics.len(), 1, "{name}");
        let pods = &metrics[0]["pods"];
        assert_eq!(metrics[0]["type"], "Pods");
        assert_eq!(pods["metric"]["name"], "connector_node_utilization");
        assert_eq!(pods["target"]["type"], "AverageValue");
        let target = config
            .get("nodes.target_utilization")
            .and_then(toml::Value::as_float)
            .unwrap_or(connector_runtime::throttle::default_target_utilization());
        assert!(
            (quantity(&pods["target"]["averageValue"]) - target).abs() < 1e-9,
            "{name}"
        );
    }
}

#[test]
fn keda_overlay_replaces_the_hpa_with_a_matching_scaled_object() {
    let Some(all) = rendered() else { return };
    let keda = all.iter().find(|r| r.name == "overlays/keda").unwrap();
    assert!(
        keda.hpa().is_none(),
        "two autoscalers would fight over the Deployment"
    );
    let objects: Vec<&Value> = keda.of_kind("ScaledObject");
    assert_eq!(objects.len(), 1);
    check_scaled_object(keda, objects[0]);
}

/// KEDA's ScaledObject, field by field (no Kubernetes schema covers it): only fields KEDA
/// defines, aimed at the Deployment, bounded by the node counts, scaling on the runtime's
/// utilisation towards its target, scaling down after its stabilization window.
fn check_scaled_object(r: &Rendered, object: &Value) {
    let allowed_top = ["apiVersion", "kind", "metadata", "spec"];
    let allowed_spec = [
        "scaleTargetRef",
        "pollingInterval",
        "cooldownPeriod",
        "initialCooldownPeriod",
        "idleReplicaCount",
        "minReplicaCount",
        "maxReplicaCount",
        "fallback",
        "advanced",
        "triggers",
    ];
    let allowed_trigger = [
        "type",
        "name",
        "metadata",
        "metricType",
        "authenticationRef",
        "useCachedMetrics",
    ];
    let allowed_prometheus = [
        "serverAddress",
        "query",
        "threshold",
        "activationThreshold",
        "namespace",
        "customHeaders",
        "ignoreNullValues",
        "unsafeSsl",
        "queryParameters",
    ];
    let keys = |v: &Value| -> Vec<String> {
        v.as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    };
    let only = |v: &Value, allowed: &[&str], what: &str| {
        for key in keys(v) {
            assert!(
                allowed.contains(&key.as_str()),
                "ScaledObject {what}: unknown field {key}"
            );
        }
    };
    only(object, &allowed_top, "");
    let spec = &object["spec"];
    only(spec, &allowed_spec, "spec");
    assert_eq!(object["apiVersion"], "keda.sh/v1alpha1");
    assert_eq!(
        object["metadata"]["namespace"],
        r.deployment()["metadata"]["namespace"],
        "a ScaledObject scales a Deployment in its own namespace"
    );
    only(
        &spec["scaleTargetRef"],
        &["apiVersion", "kind", "name", "envSourceContainerName"],
        "scaleTargetRef",
    );
    assert_eq!(spec["scaleTargetRef"]["name"], "connector-runtime");
    assert_eq!(spec["scaleTargetRef"]["kind"], "Deployment");

    let bounds = (
        spec["minReplicaCount"].as_i64().unwrap(),
        spec["maxReplicaCount"].as_i64().unwrap(),
    );
    assert_eq!(
        Some(bounds),
        node_counts(r),
        "ScaledObject bounds = node counts"
    );

    let config = r.config();
    let window = config.duration(
        "nodes.stabilization_window",
        connector_runtime::throttle::default_stabilization_window(),
    );
    let behavior = &spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"];
    assert_eq!(
        behavior["scaleDown"]["stabilizationWindowSeconds"].as_u64(),
        Some(window.as_secs())
    );

    let triggers = spec["triggers"].as_array().unwrap();
    assert_eq!(triggers.len(), 1);
    let trigger = &triggers[0];
    only(trigger, &allowed_trigger, "trigger");
    only(
        &trigger["metadata"],
        &allowed_prometheus,
        "prometheus trigger metadata",
    );
    assert_eq!(trigger["type"], "prometheus");
    assert_eq!(trigger["metricType"], "AverageValue");
    let meta = &trigger["metadata"];
    assert!(meta["serverAddress"].as_str().unwrap().starts_with("http"));
    let query = meta["query"].as_str().unwrap();
    assert!(query.contains("connector_node_utilization"), "{query}");
    // KEDA's metadata values are strings.
    let threshold: f64 = meta["threshold"].as_str().unwrap().parse().unwrap();
    let target = config
        .get("nodes.target_utilization")
        .and_then(toml::Value::as_float)
        .unwrap();
    assert!((threshold - target).abs() < 1e-9);
}

#[test]
fn disruption_budget_lets_drains_proceed_one_pod_at_a_time() {
    let Some(all) = rendered() else { return };
    for r in all {
        let pdbs: Vec<&Value> = r.of_kind("PodDisruptionBudget");
        assert_eq!(pdbs.len(), 1, "{}", r.name);
        let spec = &pdbs[0]["spec"];
        assert_eq!(
            spec["selector"]["matchLabels"]["app.kubernetes.io/name"],
            "connector-runtime"
        );
        // minAvailable equal to the minimum would allow no eviction at all at the minimum and
        // block every node drain.
        assert!(spec["minAvailable"].is_null(), "{}", r.name);
        assert_eq!(spec["maxUnavailable"].as_i64(), Some(1), "{}", r.name);
        assert_eq!(
            spec["unhealthyPodEvictionPolicy"], "AlwaysAllow",
            "{}",
            r.name
        );
    }
}

#[test]
fn network_policy_admits_only_grpc_and_metrics() {
    let Some(all) = rendered() else { return };
    for r in all {
        let policy = r
            .get("NetworkPolicy", "connector-runtime")
            .unwrap_or_else(|| panic!("{}: no NetworkPolicy", r.name));
        let spec = &policy["spec"];
        assert_eq!(
            spec["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
            "connector-runtime"
        );
        assert_eq!(spec["policyTypes"], serde_json::json!(["Ingress"]));
        let mut ports = BTreeSet::new();
        for rule in spec["ingress"].as_array().unwrap() {
            let rule_ports = rule["ports"]
                .as_array()
                .expect("every rule names its ports");
            assert!(!rule_ports.is_empty());
            for port in rule_ports {
                assert_eq!(port["protocol"], "TCP");
                ports.insert(port["port"].as_i64().expect("numeric port"));
            }
        }
        let container = runtime_container(r.deployment());
        let expected = BTreeSet::from([
            container_port(container, "grpc"),
            container_port(container, "metrics"),
        ]);
        assert_eq!(ports, expected, "{}", r.name);
        assert_eq!(ports, BTreeSet::from([50051, 9464]));
    }
}

#[test]
fn grpc_service_is_headless_and_metrics_has_its_own() {
    let Some(all) = rendered() else { return };
    for r in all {
        let grpc = r.get("Service", "connector-runtime").unwrap();
        assert_eq!(
            grpc["spec"]["clusterIP"], "None",
            "{}: headless, for per-call balancing",
            r.name
        );
        assert_eq!(grpc["spec"]["ports"][0]["port"], 50051);
        assert_eq!(grpc["spec"]["ports"][0]["targetPort"], "grpc");
        let metrics = r.get("Service", "connector-runtime-metrics").unwrap();
        assert_eq!(metrics["spec"]["ports"][0]["port"], 9464);
        assert_eq!(metrics["spec"]["ports"][0]["targetPort"], "metrics");
        assert_eq!(
            metrics["metadata"]["annotations"]["prometheus.io/path"],
            "/metrics"
        );
        for service in [grpc, metrics] {
            assert_eq!(
                service["spec"]["selector"]["app.kubernetes.io/name"],
                "connector-runtime"
            );
        }
    }
}

#[test]
fn no_secret_value_in_any_manifest() {
    // Every committed file under deploy/, rendered or not (comments included).
    let mut files = Vec::new();
    collect_files(&repo().join("deploy"), &mut files);
    assert!(files.len() >= 10, "{files:?}");
    for file in &files {
        let content = std::fs::read_to_string(file).unwrap();
        for marker in SECRET_MARKERS {
            assert!(
                !content.contains(marker),
                "{} contains {marker}",
                file.display()
            );
        }
    }

    let Some(all) = rendered() else { return };
    for r in all {
        let name = r.name;
        assert_eq!(
            r.of_kind("Secret").len(),
            0,
            "{name}: Secrets are created by the operator"
        );
        for marker in SECRET_MARKERS {
            assert!(!r.text.contains(marker), "{name}: {marker}");
        }
        // Containers take secret-looking variables from Secrets, never literally.
        for deployment in r.of_kind("Deployment") {
            for container in pod_spec(deployment)["containers"].as_array().unwrap() {
                for var in container["env"].as_array().into_iter().flatten() {
                    let var_name = var["name"].as_str().unwrap().to_ascii_uppercase();
                    if ["PASSWORD", "TOKEN", "SECRET", "KEY"]
                        .iter()
                        .any(|w| var_name.contains(w))
                    {
                        assert!(
                            var["value"].is_null(),
                            "{name}: {var_name} has a literal value"
                        );
                        assert!(
                            var["valueFrom"]["secretKeyRef"].is_object(),
                            "{name}: {var_name}"
                        );
                    }
                }
            }
        }
        // The configuration holds references only.
        let config = r.config();
        assert_no_literal_secret(&toml::Value::Table(config.table.clone()), name, "");
        // Every reference resolves in the directory the Secret is mounted as.
        let mounted: BTreeSet<String> = mounted_secret_paths(r.deployment())
            .iter()
            .map(|p| p.split('/').next().unwrap().to_owned())
            .collect();
        for secret in config.secret_refs() {
            assert!(
                mounted.contains(&secret),
                "{name}: secret {secret} is not mounted: {mounted:?}"
            );
        }
        for path in mounted_secret_paths(r.deployment()) {
            let parts: Vec<&str> = path.split('/').collect();
            assert!(
                parts.len() == 2 && parts[1].parse::<u32>().is_ok(),
                "{name}: {path} is not <secret>/<version>"
            );
        }
    }
}

fn assert_no_literal_secret(value: &toml::Value, overlay: &str, path: &str) {
    match value {
        toml::Value::Table(t) if is_secret_ref(t) => {}
        toml::Value::Table(t) => {
            for (key, v) in t {
                let lower = key.to_ascii_lowercase();
                let sensitive = ["password", "token", "api_key", "secret"]
                    .iter()
                    .any(|w| lower.contains(w));
                assert!(
                    !(sensitive && v.is_str()),
                    "{overlay}: {path}{key} is a literal, not a secret reference"
                );
                assert_no_literal_secret(v, overlay, &format!("{path}{key}."));
            }
        }
        toml::Value::Array(items) => items
            .iter()
            .for_each(|v| assert_no_literal_secret(v, overlay, path)),
        toml::Value::String(s) => assert!(
            !(s.contains("://") && s.contains('@')),
            "{overlay}: {path} holds credentials in a URL"
        ),
        _ => {}
    }
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The configuration the pods run with

#[test]
fn every_rendered_configuration_passes_check_config() {
    let Some(all) = rendered() else { return };
    for r in all {
        let problems = check_config(r);
        let awaiting = AWAITING_MERGE
            .iter()
            .find(|(name, _)| *name == r.name)
            .map_or(&[][..], |(_, p)| *p);
        let unexpected: Vec<&String> = problems
            .iter()
            .filter(|p| !awaiting.iter().any(|a| p.starts_with(a)))
            .collect();
        assert!(
            unexpected.is_empty(),
            "{}: check-config reports {unexpected:#?}",
            r.name
        );
        for expected in awaiting {
            assert!(
                problems.iter().any(|p| p.starts_with(expected)),
                "{}: the runtime now accepts what `{expected}` was about: remove it from AWAITING_MERGE",
                r.name
            );
        }
    }
}

/// Runs `connector-runtime check-config` on the rendered configuration as the pod would see it:
/// the Secret laid out as the Deployment mounts it (with stand-in values), the container's
/// environment; returns the problems it prints (none: it exits 0 and says OK).
fn check_config(r: &Rendered) -> Vec<String> {
    let deployment = r.deployment();
    let container = runtime_container(deployment);
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("config.toml");
    std::fs::write(&file, &r.config().text).unwrap();
    let secrets = home.path().join("secrets");
    for (i, path) in mounted_secret_paths(deployment).iter().enumerate() {
        let target = secrets.join(path);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(&target, stand_in_secret(path, i)).unwrap();
    }

    let mut command = Command::new(env!("CARGO_BIN_EXE_connector-runtime"));
    command.arg("check-config").arg(&file);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("CONNECTOR_RUNTIME") {
            command.env_remove(key);
        }
    }
    for var in container["env"].as_array().into_iter().flatten() {
        if let (Some(k), Some(v)) = (var["name"].as_str(), var["value"].as_str()) {
            command.env(k, v);
        }
    }
    // The mount path itself is checked against secrets.dir by the Deployment test.
    command.env("CONNECTOR_RUNTIME__SECRETS__DIR", &secrets);
    let out = run(&mut command);
    let stdout = text(&out.stdout);
    if out.status.success() {
        assert!(stdout.trim_end().ends_with(": OK"), "{}: {stdout}", r.name);
        return Vec::new();
    }
    let problems: Vec<String> = stdout.lines().map(str::to_owned).collect();
    assert!(!problems.is_empty(), "{}: {}", r.name, text(&out.stderr));
    problems
}

/// A value of the right shape for the secret at `<name>/<version>`, made up for the check.
fn stand_in_secret(path: &str, index: usize) -> String {
    let name = path.split('/').next().unwrap();
    let filler = format!("{index:02}deploymanifestcheck{}", "0".repeat(12));
    if name.contains("stripe-key") {
        format!("sk_test_{filler}")
    } else if name.contains("webhook") {
        format!("whsec_{filler}")
    } else {
        format!("{name}-{filler}")
    }
}

// ---------------------------------------------------------------------------------------------
// The Dockerfile

/// One Dockerfile instruction as dockerfile-parse reads it.
#[derive(Debug, serde::Deserialize)]
struct Instruction {
    instruction: String,
    value: String,
}

/// deploy/Dockerfile parsed by Python's dockerfile-parse, or `None` (skipped) without it.
fn dockerfile() -> Option<Vec<Instruction>> {
    const PARSE: &str = "import json, sys\n\
        from dockerfile_parse import DockerfileParser\n\
        print(json.dumps(DockerfileParser(path=sys.argv[1]).structure))\n";
    if !tool(
        "python3",
        &["-c", "import dockerfile_parse"],
        "pip install dockerfile-parse",
    ) {
        return None;
    }
    let out = run(Command::new("python3")
        .args(["-c", PARSE])
        .arg(repo().join("deploy/Dockerfile")));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let parsed: Vec<Instruction> = serde_json::from_slice(&out.stdout).unwrap();
    Some(
        parsed
            .into_iter()
            .filter(|i| i.instruction != "COMMENT")
            .collect(),
    )
}

/// Splits `--flag=value` options off the front of an instruction's value.
fn options_and_rest(value: &str) -> (BTreeMap<String, String>, Vec<String>) {
    let mut options = BTreeMap::new();
    let mut rest = Vec::new();
    for word in value.split_whitespace() {
        match word.strip_prefix("--") {
            Some(option) if rest.is_empty() => {
                let (k, v) = option.split_once('=').unwrap_or((option, ""));
                options.insert(k.to_owned(), v.to_owned());
            }
            _ => rest.push(word.to_owned()),
        }
    }
    (options, rest)
}

/// `.dockerignore` semantics for the patterns it may use here: each line excludes (or with `!`
/// re-admits) paths whose leading components match it, `*` matching within one component; the
/// last matching line wins.
fn docker_ignores(path: &str) -> bool {
    let rules = std::fs::read_to_string(repo().join(".dockerignore")).unwrap();
    let components: Vec<&str> = path.split('/').collect();
    let mut ignored = false;
    for line in rules.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (admit, pattern) = match line.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, line),
        };
        let parts: Vec<&str> = pattern.trim_matches('/').split('/').collect();
        let matches = parts.len() <= components.len()
            && parts
                .iter()
                .zip(&components)
                .all(|(p, c)| glob_component(p, c));
        if matches {
            ignored = !admit;
        }
    }
    ignored
}

fn glob_component(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((prefix, suffix)) => {
            name.len() >= prefix.len() + suffix.len()
                && name.starts_with(prefix)
                && name.ends_with(suffix)
                && !suffix.contains('*')
        }
    }
}

#[test]
fn dockerignore_matcher_follows_the_last_matching_rule() {
    // The matcher the Dockerfile test relies on, against the real file.
    assert!(docker_ignores("target"));
    assert!(docker_ignores("target/debug/connector-runtime"));
    assert!(docker_ignores("README.md"));
    assert!(docker_ignores("deploy/Dockerfile"));
    assert!(!docker_ignores("src/main.rs"));
    assert!(!docker_ignores("connector-spec/stripe/entities.toml"));
    assert!(!docker_ignores("Cargo.lock"));
}

#[test]
fn dockerfile_parses_and_copies_only_existing_admitted_files() {
    let Some(instructions) = dockerfile() else {
        return;
    };
    const KNOWN: [&str; 17] = [
        "FROM",
        "RUN",
        "COPY",
        "ADD",
        "WORKDIR",
        "USER",
        "ENV",
        "ARG",
        "EXPOSE",
        "HEALTHCHECK",
        "ENTRYPOINT",
        "CMD",
        "LABEL",
        "STOPSIGNAL",
        "VOLUME",
        "SHELL",
        "ONBUILD",
    ];
    for i in &instructions {
        assert!(
            KNOWN.contains(&i.instruction.as_str()),
            "unknown instruction {i:?}"
        );
    }

    // Stages: a named build stage, then the runtime image.
    let stages: Vec<Vec<String>> = instructions
        .iter()
        .filter(|i| i.instruction == "FROM")
        .map(|i| i.value.split_whitespace().map(str::to_owned).collect())
        .collect();
    assert!(stages.len() >= 2, "multi-stage: {stages:?}");
    assert_eq!(
        stages[0].get(1).map(|s| s.to_ascii_uppercase()),
        Some("AS".to_owned())
    );
    let build_stage = stages[0][2].clone();
    assert!(stages[0][0].starts_with("rust:"), "{stages:?}");
    let runtime = &stages.last().unwrap()[0];
    assert!(
        runtime.starts_with("gcr.io/distroless/cc") || runtime.contains("-slim"),
        "a small runtime image: {runtime}"
    );
    // The builder's Rust is at least the crate's rust-version.
    let manifest: toml::Table =
        toml::from_str(&std::fs::read_to_string(repo().join("Cargo.toml")).unwrap()).unwrap();
    let msrv = manifest["package"]["rust-version"].as_str().unwrap();
    let builder_rust = stages[0][0]
        .trim_start_matches("rust:")
        .split('-')
        .next()
        .unwrap()
        .to_owned();
    let version = |v: &str| -> Vec<u32> { v.split('.').map(|n| n.parse().unwrap()).collect() };
    assert!(
        version(&builder_rust) >= version(msrv),
        "rust:{builder_rust} < {msrv}"
    );

    assert!(
        instructions
            .iter()
            .any(|i| i.instruction == "RUN" && i.value.contains("cargo build --release --locked")),
        "the image builds with the locked dependencies"
    );

    // COPY: from an earlier stage, or from the context, existing and admitted by .dockerignore.
    let mut copied = Vec::new();
    let mut stage_names = BTreeSet::new();
    for i in &instructions {
        if i.instruction == "FROM" {
            if let Some(name) = i.value.split_whitespace().nth(2) {
                stage_names.insert(name.to_owned());
            }
            continue;
        }
        assert_ne!(i.instruction, "ADD", "COPY says what it does: {i:?}");
        if i.instruction != "COPY" {
            continue;
        }
        let (options, mut words) = options_and_rest(&i.value);
        words.pop(); // the destination
        match options.get("from") {
            Some(stage) => assert!(
                stage_names.contains(stage),
                "COPY --from={stage}: no such stage"
            ),
            None => {
                for source in words {
                    let source = source.trim_end_matches('/').to_owned();
                    assert!(repo().join(&source).exists(), "COPY {source}: no such file");
                    assert!(
                        !docker_ignores(&source),
                        "COPY {source}: excluded by .dockerignore"
                    );
                    copied.push(source);
                }
            }
        }
    }
    assert!(stage_names.contains(&build_stage));

    // Everything the build reads is copied: Cargo's declared targets, build.rs and the API it
    // compiles, and the connector spec the binary embeds.
    let mut needed = vec![
        "Cargo.toml".to_owned(),
        "Cargo.lock".to_owned(),
        "build.rs".to_owned(),
        "src/main.rs".to_owned(),
        "src/lib.rs".to_owned(),
        "connector-spec/stripe".to_owned(),
    ];
    for bench in manifest["bench"].as_array().into_iter().flatten() {
        needed.push(format!("benches/{}.rs", bench["name"].as_str().unwrap()));
    }
    let build_rs = std::fs::read_to_string(repo().join("build.rs")).unwrap();
    needed.extend(
        build_rs
            .split('"')
            .filter(|s| s.starts_with("proto/") && s.ends_with(".proto"))
            .map(str::to_owned),
    );
    assert!(needed.iter().any(|n| n.ends_with(".proto")));
    let embedded = std::fs::read_to_string(repo().join("src/spec/files.rs")).unwrap();
    assert!(embedded.contains("include_dir!(\"$CARGO_MANIFEST_DIR/connector-spec/stripe\")"));
    for path in &needed {
        assert!(
            copied
                .iter()
                .any(|c| path == c || path.starts_with(&format!("{c}/"))),
            "the build needs {path}, which no COPY brings: {copied:?}"
        );
    }

    // The runtime image: non-root, the binary as entrypoint, a health check over gRPC.
    let last_from = instructions
        .iter()
        .rposition(|i| i.instruction == "FROM")
        .unwrap();
    let runtime_stage = &instructions[last_from..];
    let user = runtime_stage
        .iter()
        .rev()
        .find(|i| i.instruction == "USER")
        .expect("the runtime stage sets USER");
    let uid = user.value.split(':').next().unwrap();
    assert!(uid != "root" && uid != "0", "non-root: {}", user.value);
    let entrypoint = runtime_stage
        .iter()
        .find(|i| i.instruction == "ENTRYPOINT")
        .unwrap();
    assert_eq!(entrypoint.value, r#"["/usr/local/bin/connector-runtime"]"#);
    let command = health_check_command(&instructions);
    assert_eq!(command[0], "/usr/local/bin/connector-runtime");
    assert_eq!(command.last().map(String::as_str), Some("health"));
}

/// The exec-form command of the Dockerfile's HEALTHCHECK.
fn health_check_command(instructions: &[Instruction]) -> Vec<String> {
    let check = instructions
        .iter()
        .find(|i| i.instruction == "HEALTHCHECK")
        .expect("a HEALTHCHECK");
    let json = check
        .value
        .split_once("CMD ")
        .map(|(_, cmd)| cmd.trim())
        .expect("HEALTHCHECK … CMD [...]");
    serde_json::from_str(json).expect("exec form: a JSON array")
}

/// A `connector-runtime serve` process, killed on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn dockerfile_health_check_command_reports_serving_and_fails_without_a_server() {
    let Some(instructions) = dockerfile() else {
        return;
    };
    let command = health_check_command(&instructions);
    let data = tempfile::tempdir().unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_connector-runtime"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("CONNECTOR_RUNTIME__DATA_DIR", data.path())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = server.stderr.take().unwrap();
    let mut server = Server(server);
    // The log line that says the server is serving carries its address.
    let mut lines = BufReader::new(stderr).lines();
    let addr = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|line| {
            line.contains("serving gRPC")
                .then(|| {
                    line.split_whitespace()
                        .find_map(|w| w.strip_prefix("addr="))
                        .map(str::to_owned)
                })
                .flatten()
        })
        .expect("the server logs its address");
    // Keep reading, so the server never writes to a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));

    // The image's command, pointed at this server instead of 127.0.0.1:50051.
    let health = |addr: &str| {
        let mut args = command[1..].to_vec();
        let at = args.iter().position(|a| a == "--addr").expect("--addr");
        args[at + 1] = format!("http://{addr}");
        run(Command::new(env!("CARGO_BIN_EXE_connector-runtime")).args(&args))
    };
    let out = health(&addr);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("\"SERVING\""),
        "{}",
        text(&out.stdout)
    );

    server.0.kill().unwrap();
    server.0.wait().unwrap();
    let out = health(&addr);
    assert!(!out.status.success(), "no server, no health");
}
