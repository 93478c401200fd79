//! Checks on the files this crate owns outside `src/`: the committed CRD, the
//! sample Storefront, the operator manifests and the kind cluster config.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use kube::CustomResourceExt;
use serde::Deserialize;
use serde_json::Value;
use storefront_operator::{Component, Storefront, crd_yaml};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("operator/ sits in the repository root")
        .to_path_buf()
}

fn read(relative: &str) -> String {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Every YAML document in a file, as JSON values (empty documents skipped).
fn documents(relative: &str) -> Vec<Value> {
    let text = read(relative);
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            Value::deserialize(doc).unwrap_or_else(|e| panic!("{relative} is not valid YAML: {e}"))
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn only_document(relative: &str) -> Value {
    let mut docs = documents(relative);
    assert_eq!(docs.len(), 1, "{relative} should hold one document");
    docs.remove(0)
}

fn crd_schema() -> Value {
    let crd = serde_json::to_value(Storefront::crd()).expect("CRD serializes");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

#[test]
fn committed_crd_matches_crdgen_output() {
    let committed = read("crds/storefront.yaml");
    let generated = crd_yaml().expect("CRD renders");
    assert!(
        committed == generated,
        "crds/storefront.yaml is stale; regenerate it with\n  \
         cargo run -q -p storefront-operator --bin crdgen > crds/storefront.yaml"
    );
}

#[test]
fn sample_storefront_deserializes_and_passes_the_crd_rules() {
    let sample = only_document("manifests/samples/storefront.yaml");
    assert_eq!(sample["apiVersion"], "storefront.dev/v1alpha1");
    assert_eq!(sample["kind"], "Storefront");

    let sf: Storefront = serde_json::from_value(sample.clone()).expect("sample is a Storefront");
    assert_eq!(sf.spec.image.reference(), "storefront:dev");
    assert_eq!(sf.spec.services.get(Component::Gateway).replicas, 2);
    assert!(sf.spec.gateway.ingress.enabled);
    assert!(sf.spec.gateway.rate_limit.cluster_wide);
    assert_eq!(sf.spec.gateway.rate_limit.rules.len(), 3);
    let kafka = sf
        .spec
        .backends
        .kafka
        .as_ref()
        .expect("sample configures kafka");
    assert_eq!(kafka.topics.partitions, 3);

    // Every section of the spec is shown.
    let spec = sample["spec"].as_object().expect("spec");
    for key in ["paused", "image", "services", "gateway", "backends"] {
        assert!(spec.contains_key(key), "sample omits spec.{key}");
    }
    let services = sample["spec"]["services"].as_object().expect("services");
    for c in Component::ALL {
        assert!(
            services.contains_key(c.as_str()),
            "sample omits services.{c}"
        );
    }
    let backends = sample["spec"]["backends"].as_object().expect("backends");
    for key in [
        "mysql",
        "mongodb",
        "smtp",
        "redis",
        "elasticsearch",
        "kafka",
    ] {
        assert!(backends.contains_key(key), "sample omits backends.{key}");
    }

    if let Err(errors) = kube_cel::Validator::new().validate(&crd_schema(), &sample, None) {
        let messages: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        panic!("sample breaks CRD rules: {messages:#?}");
    }
}

#[test]
fn sample_has_no_field_the_types_drop() {
    // The apiserver prunes fields the schema does not know, so a typo in the
    // sample would silently vanish; every value written must survive a round trip.
    fn missing(written: &Value, kept: &Value, path: &str, out: &mut Vec<String>) {
        match (written, kept) {
            (Value::Object(w), Value::Object(k)) => {
                for (key, value) in w {
                    match k.get(key) {
                        Some(kept) => missing(value, kept, &format!("{path}.{key}"), out),
                        None => out.push(format!("{path}.{key}")),
                    }
                }
            }
            (Value::Array(w), Value::Array(k)) if w.len() == k.len() => {
                for (i, (w, k)) in w.iter().zip(k).enumerate() {
                    missing(w, k, &format!("{path}[{i}]"), out);
                }
            }
            (w, k) if w == k => {}
            (w, k) => out.push(format!("{path}: wrote {w}, kept {k}")),
        }
    }
    let sample = only_document("manifests/samples/storefront.yaml");
    let sf: Storefront = serde_json::from_value(sample.clone()).expect("sample is a Storefront");
    let kept = serde_json::to_value(&sf).expect("serializes");
    let mut out = Vec::new();
    missing(&sample["spec"], &kept["spec"], "spec", &mut out);
    assert!(
        out.is_empty(),
        "sample fields the Storefront types drop or rewrite: {out:#?}"
    );
}

#[test]
fn every_manifest_is_yaml_with_api_version_and_kind() {
    let files = [
        "crds/storefront.yaml",
        "crds/Kustomization",
        "manifests/kustomization.yaml",
        "manifests/operator/kustomization.yaml",
        "manifests/operator/namespace.yaml",
        "manifests/operator/serviceaccount.yaml",
        "manifests/operator/rbac.yaml",
        "manifests/operator/deployment.yaml",
        "manifests/samples/storefront.yaml",
        "kind-config.yaml",
    ];
    for file in files {
        let docs = documents(file);
        assert!(!docs.is_empty(), "{file} is empty");
        for doc in docs {
            assert!(
                doc["apiVersion"].is_string(),
                "{file}: document without apiVersion"
            );
            assert!(doc["kind"].is_string(), "{file}: document without kind");
        }
    }
}

#[test]
fn kustomizations_list_files_that_exist() {
    for dir in ["crds", "manifests", "manifests/operator"] {
        let file = if dir == "crds" {
            format!("{dir}/Kustomization")
        } else {
            format!("{dir}/kustomization.yaml")
        };
        let k = only_document(&file);
        for resource in k["resources"].as_array().expect("resources") {
            let path = repo_root().join(dir).join(resource.as_str().expect("path"));
            assert!(path.exists(), "{file} lists missing {}", path.display());
        }
    }
}

#[test]
fn cluster_role_grants_exactly_what_the_operator_manages() {
    let docs = documents("manifests/operator/rbac.yaml");
    let role = find(&docs, "ClusterRole", "storefront-operator");
    let mut granted = BTreeSet::new();
    for rule in role["rules"].as_array().expect("rules") {
        for group in rule["apiGroups"].as_array().expect("apiGroups") {
            for resource in rule["resources"].as_array().expect("resources") {
                let (group, resource) = (
                    group.as_str().expect("group"),
                    resource.as_str().expect("resource"),
                );
                assert_ne!(group, "*", "wildcard API group");
                assert_ne!(resource, "*", "wildcard resource");
                granted.insert(format!("{group}/{resource}"));
            }
        }
        for verb in rule["verbs"].as_array().expect("verbs") {
            assert_ne!(verb, "*", "wildcard verb");
        }
    }
    let expected: BTreeSet<String> = [
        "storefront.dev/storefronts",
        "storefront.dev/storefronts/status",
        "storefront.dev/storefronts/finalizers",
        "apps/deployments",
        "/services",
        "/configmaps",
        "/secrets",
        "/serviceaccounts",
        "autoscaling/horizontalpodautoscalers",
        "policy/poddisruptionbudgets",
        "networking.k8s.io/ingresses",
        "networking.k8s.io/networkpolicies",
        "kafka.strimzi.io/kafkatopics",
        "monitoring.coreos.com/servicemonitors",
        "/events",
        "events.k8s.io/events",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(granted, expected);

    let binding = find(&docs, "ClusterRoleBinding", "storefront-operator");
    assert_eq!(binding["roleRef"]["name"], "storefront-operator");
    assert_eq!(binding["subjects"][0]["name"], "storefront-operator");
    assert_eq!(binding["subjects"][0]["namespace"], "storefront-system");

    // Leases only in the operator's own namespace.
    let lease_role = find(&docs, "Role", "storefront-operator-leader-election");
    assert_eq!(lease_role["metadata"]["namespace"], "storefront-system");
    assert_eq!(
        lease_role["rules"][0]["resources"],
        serde_json::json!(["leases"])
    );
}

#[test]
fn operator_deployment_runs_the_operator_binary_as_its_service_account() {
    let deployment = only_document("manifests/operator/deployment.yaml");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "storefront-operator");
    let container = &pod["containers"][0];
    assert_eq!(container["image"], "storefront:dev");
    assert_eq!(
        container["command"],
        serde_json::json!(["storefront-operator", "run"])
    );
    assert_eq!(container["ports"][0]["containerPort"], 8090);
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["readinessProbe"]["httpGet"]["port"], "metrics");
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        deployment["spec"]["selector"]["matchLabels"],
        deployment["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
            .as_str()
            .map(|name| serde_json::json!({"app.kubernetes.io/name": name}))
            .expect("pod name label")
    );
    let sa = only_document("manifests/operator/serviceaccount.yaml");
    assert_eq!(
        sa["metadata"]["namespace"],
        deployment["metadata"]["namespace"]
    );
}

#[test]
fn kind_config_has_one_control_plane_with_ingress_ports() {
    let kind = only_document("kind-config.yaml");
    assert_eq!(kind["apiVersion"], "kind.x-k8s.io/v1alpha4");
    let nodes = kind["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0]["role"], "control-plane");
    let ports: BTreeSet<i64> = nodes[0]["extraPortMappings"]
        .as_array()
        .expect("port mappings")
        .iter()
        .map(|m| {
            assert_eq!(m["containerPort"], m["hostPort"]);
            m["hostPort"].as_i64().expect("port")
        })
        .collect();
    assert_eq!(ports, BTreeSet::from([80, 443]));
}
