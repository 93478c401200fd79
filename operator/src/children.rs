//! Pure builders of every object the operator creates for a Storefront.
//!
//! Each function takes the Storefront (and a component where it is per
//! service) and returns the object as it is server-side applied: name,
//! namespace, labels, the controller owner reference, and only the fields the
//! operator owns. Nothing here talks to the cluster, so unit tests check the
//! objects directly.
//!
//! | object | name | notes |
//! |---|---|---|
//! | ServiceAccount | `<sf>` | token not mounted |
//! | Deployment, Service, PodDisruptionBudget | `<sf>-<component>` | one per service |
//! | HorizontalPodAutoscaler | `<sf>-<component>` | where autoscaling is enabled |
//! | ConfigMap | `<sf>-gateway` | `gateway.yaml`, see [`crate::gateway_config`] |
//! | Ingress | `<sf>` | when `gateway.ingress.enabled` |
//! | NetworkPolicy | `<sf>-gateway`, `<sf>-internal` | only the gateway takes outside traffic |
//! | Secret | `<sf>-jwt` | JWT signing key; created once, never overwritten |
//! | ServiceMonitor | `<sf>` | when the `monitoring.coreos.com` CRD is served |
//! | KafkaTopic | `<sf>-<topic>` | `topicManagement: strimzi` |

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment},
        autoscaling::v2::{
            CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec,
            MetricSpec, MetricTarget, ResourceMetricSource,
        },
        core::v1::{
            Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort,
            EmptyDirVolumeSource, EnvVar, EnvVarSource, HTTPGetAction, PodSecurityContext, PodSpec,
            PodTemplateSpec, Probe, SeccompProfile, Secret, SecretKeySelector, SecretVolumeSource,
            SecurityContext, Service, ServiceAccount, ServicePort, ServiceSpec, Volume,
            VolumeMount,
        },
        networking::v1::{
            HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
            IngressServiceBackend, IngressSpec, IngressTLS, NetworkPolicy,
            NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
            ServiceBackendPort,
        },
        policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec},
    },
    apimachinery::pkg::{
        apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference},
        util::intstr::IntOrString,
    },
};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use crate::{
    Component, Storefront,
    crd::{DatabaseBackend, KafkaBackend, SmtpBackend, UrlBackend},
    gateway_config::{self, GATEWAY_CONFIG_KEY},
};

/// The field manager every operator write uses.
pub const FIELD_MANAGER: &str = "storefront-operator";
/// Annotation on the gateway pod template holding the SHA-256 of `gateway.yaml`.
pub const CONFIG_CHECKSUM_ANNOTATION: &str = "storefront.dev/config-checksum";
/// Label every child carries: the Storefront it belongs to.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// Label of per-component children.
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// Namespaces with this label set to `"true"` may reach every service (for Prometheus scrapes).
pub const MONITORING_NAMESPACE_LABEL: &str = "storefront.dev/monitoring";
/// Where services keep embedded data (an emptyDir).
pub const DATA_DIR: &str = "/var/lib/storefront";
/// Where the JWT signing key Secret is mounted in the auth service.
pub const JWT_DIR: &str = "/etc/storefront/jwt";
/// Non-root user the containers run as.
const RUN_AS: i64 = 65532;

/// The Storefront's name (always set for objects read from the apiserver).
pub fn sf_name(sf: &Storefront) -> String {
    sf.name_any()
}

/// Name of a per-component child: `<sf>-<component>`.
pub fn component_name(sf: &Storefront, c: Component) -> String {
    gateway_config::service_name(&sf_name(sf), c)
}

/// Name of the JWT signing-key Secret.
pub fn jwt_secret_name(sf: &Storefront) -> String {
    format!("{}-jwt", sf_name(sf))
}

/// Name of the gateway ConfigMap.
pub fn gateway_configmap_name(sf: &Storefront) -> String {
    component_name(sf, Component::Gateway)
}

/// Labels on every child of a Storefront.
pub fn labels(sf: &Storefront) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "storefront".to_owned()),
        (INSTANCE_LABEL.to_owned(), sf_name(sf)),
        (
            "app.kubernetes.io/part-of".to_owned(),
            "storefront".to_owned(),
        ),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            FIELD_MANAGER.to_owned(),
        ),
    ])
}

/// Labels that select one component's pods.
pub fn selector_labels(sf: &Storefront, c: Component) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "storefront".to_owned()),
        (INSTANCE_LABEL.to_owned(), sf_name(sf)),
        (COMPONENT_LABEL.to_owned(), c.as_str().to_owned()),
    ])
}

fn component_labels(sf: &Storefront, c: Component) -> BTreeMap<String, String> {
    let mut l = labels(sf);
    l.insert(COMPONENT_LABEL.to_owned(), c.as_str().to_owned());
    l
}

/// The controller owner reference pointing at the Storefront.
pub fn owner_reference(sf: &Storefront) -> OwnerReference {
    let mut owner = sf.controller_owner_ref(&()).unwrap_or_default();
    owner.block_owner_deletion = Some(true);
    owner
}

fn meta(sf: &Storefront, name: String, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: sf.namespace(),
        labels: Some(labels),
        owner_references: Some(vec![owner_reference(sf)]),
        ..ObjectMeta::default()
    }
}

// ------------------------------------------------------------------ identity

/// The ServiceAccount the services run as (no API token is mounted).
pub fn service_account(sf: &Storefront) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(sf, sf_name(sf), labels(sf)),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

/// The JWT signing-key Secret, around a freshly generated Ed25519 PKCS#8 PEM,
/// stored under `<kid>.pem`: the auth service reads every `<kid>.pem` of the
/// mounted directory, signs with the greatest kid and publishes all of them, so
/// a platform engineer rotates by adding a key with a greater kid and removing
/// the old one after the access-token lifetime. The operator creates the Secret
/// once and never writes it again.
pub fn jwt_secret(sf: &Storefront, pem: &str, kid: &str) -> Secret {
    Secret {
        metadata: meta(sf, jwt_secret_name(sf), labels(sf)),
        type_: Some("Opaque".to_owned()),
        string_data: Some(BTreeMap::from([(format!("{kid}.pem"), pem.to_owned())])),
        ..Secret::default()
    }
}

// ------------------------------------------------------------------ environment

fn env_value(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn env_secret(name: &str, selector: &SecretKeySelector) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(selector.clone()),
            ..EnvVarSource::default()
        }),
    }
}

fn secret_key(name: &str, key: &str) -> SecretKeySelector {
    SecretKeySelector {
        name: name.to_owned(),
        key: key.to_owned(),
        optional: None,
    }
}

/// `STOREFRONT_<COMPONENT>__<KEY>`.
fn setting(c: Component, key: &str) -> String {
    format!(
        "STOREFRONT_{}__{}",
        c.as_str().to_ascii_uppercase(),
        key.to_ascii_uppercase()
    )
}

/// Env vars for a database reached by URL Secret or by host + credentials.
/// Credentials go into helper variables (`<PREFIX>_USERNAME`, `<PREFIX>_PASSWORD`,
/// outside the `STOREFRONT_` namespace so the services ignore them) that the URL
/// refers to with Kubernetes' `$(VAR)` expansion.
fn database_env(
    out: &mut Vec<EnvVar>,
    target: &str,
    prefix: &str,
    scheme: &str,
    default_port: i32,
    db: &DatabaseBackend,
) {
    if let Some(selector) = &db.url_secret_ref {
        out.push(env_secret(target, selector));
        return;
    }
    let host = db.host.as_deref().unwrap_or("localhost");
    let port = db.port.unwrap_or(default_port);
    let database = db.database.as_deref().unwrap_or("storefront");
    let auth = credentials_env(out, prefix, db.credentials_secret_ref.as_ref());
    out.push(env_value(
        target,
        format!("{scheme}://{auth}{host}:{port}/{database}"),
    ));
}

fn credentials_env(
    out: &mut Vec<EnvVar>,
    prefix: &str,
    creds: Option<&crate::crd::CredentialsSecretRef>,
) -> String {
    match creds {
        Some(creds) => {
            let user = format!("{prefix}_USERNAME");
            let pass = format!("{prefix}_PASSWORD");
            out.push(env_secret(
                &user,
                &secret_key(&creds.name, &creds.username_key),
            ));
            out.push(env_secret(
                &pass,
                &secret_key(&creds.name, &creds.password_key),
            ));
            format!("$({user}):$({pass})@")
        }
        None => String::new(),
    }
}

fn smtp_env(out: &mut Vec<EnvVar>, target: &str, smtp: &SmtpBackend) {
    if let Some(selector) = &smtp.url_secret_ref {
        out.push(env_secret(target, selector));
        return;
    }
    let host = smtp.host.as_deref().unwrap_or("localhost");
    let port = smtp.port.unwrap_or(587);
    let auth = credentials_env(out, "SMTP", smtp.credentials_secret_ref.as_ref());
    out.push(env_value(target, format!("smtp://{auth}{host}:{port}")));
}

fn url_env(out: &mut Vec<EnvVar>, target: &str, backend: &UrlBackend) {
    match (&backend.url, &backend.url_secret_ref) {
        (Some(url), _) => out.push(env_value(target, url.clone())),
        (None, Some(selector)) => out.push(env_secret(target, selector)),
        (None, None) => {}
    }
}

/// `kafka://host:port[,host:port]` from a bootstrap list.
pub fn kafka_url(kafka: &KafkaBackend) -> String {
    let brokers: Vec<&str> = kafka
        .bootstrap_servers
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    format!("kafka://{}", brokers.join(","))
}

/// The environment of one component's container: its listen address, data
/// directory, every backend it uses, then the spec's extra `env` (which
/// overrides a variable of the same name).
pub fn component_env(sf: &Storefront, c: Component) -> Vec<EnvVar> {
    let b = &sf.spec.backends;
    let mut env = vec![
        env_value("STOREFRONT_DATA_DIR", DATA_DIR),
        env_value("STOREFRONT_TELEMETRY__LOG_FORMAT", "json"),
        env_value(
            &setting(c, "listen"),
            format!("0.0.0.0:{}", c.default_port()),
        ),
    ];
    let uses_mysql = matches!(
        c,
        Component::Auth
            | Component::Cart
            | Component::Order
            | Component::Delivery
            | Component::Notification
    );
    let uses_redis = matches!(c, Component::Gateway | Component::Search | Component::Cart);
    let uses_kafka = matches!(
        c,
        Component::Search
            | Component::Cart
            | Component::Order
            | Component::Delivery
            | Component::Notification
    );
    if let (true, Some(mysql)) = (uses_mysql, &b.mysql) {
        database_env(
            &mut env,
            &setting(c, "database_url"),
            "MYSQL",
            "mysql",
            3306,
            mysql,
        );
    }
    if let (true, Some(redis)) = (uses_redis, &b.redis) {
        url_env(&mut env, &setting(c, "cache_url"), redis);
    }
    if let (true, Some(kafka)) = (uses_kafka, &b.kafka) {
        env.push(env_value(&setting(c, "events_url"), kafka_url(kafka)));
        if !kafka.topic_prefix.is_empty() {
            env.push(env_value(
                &setting(c, "topic_prefix"),
                kafka.topic_prefix.clone(),
            ));
        }
    }
    if c == Component::Search {
        if let Some(mongo) = &b.mongodb {
            database_env(
                &mut env,
                &setting(c, "catalog_url"),
                "MONGODB",
                "mongodb",
                27017,
                mongo,
            );
        }
        if let Some(es) = &b.elasticsearch {
            url_env(&mut env, &setting(c, "index_url"), es);
        }
    }
    // Auth signs with the mounted keys; every other service verifies tokens
    // against auth's JWKS (the gateway too, before it routes).
    if c == Component::Auth {
        env.push(env_value(&setting(c, "signing_keys_dir"), JWT_DIR));
    } else {
        env.push(env_value(
            &setting(c, "auth__jwks_url"),
            format!(
                "{}/.well-known/jwks.json",
                gateway_config::upstream_url(&sf_name(sf), Component::Auth)
            ),
        ));
    }
    if let (Component::Notification, Some(smtp)) = (c, &b.smtp) {
        smtp_env(&mut env, &setting(c, "mail_url"), smtp);
        if let Some(from) = &smtp.from {
            env.push(env_value(&setting(c, "from"), from.clone()));
        }
    }
    // Typed REST clients reach the services they call by their Service names.
    let upstream = |to: Component| gateway_config::upstream_url(&sf_name(sf), to);
    match c {
        Component::Cart => env.push(env_value(
            &setting(c, "search_url"),
            upstream(Component::Search),
        )),
        Component::Order => env.push(env_value(
            &setting(c, "cart_url"),
            upstream(Component::Cart),
        )),
        Component::Gateway => env.push(env_value(
            &setting(c, "config_path"),
            gateway_config::GATEWAY_CONFIG_PATH,
        )),
        _ => {}
    }
    for extra in &sf.spec.services.get(c).env {
        env.retain(|e| e.name != extra.name);
        env.push(extra.clone());
    }
    env
}

// ------------------------------------------------------------------ workloads

fn http_probe(path: &str, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("http".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(3),
        failure_threshold: Some(3),
        ..Probe::default()
    }
}

/// Whether a component's HorizontalPodAutoscaler exists.
pub fn autoscaled(sf: &Storefront, c: Component) -> bool {
    sf.spec
        .services
        .get(c)
        .autoscaling
        .as_ref()
        .is_some_and(|a| a.enabled)
}

/// The replicas a component should have (the autoscaler's minimum when autoscaled).
pub fn desired_replicas(sf: &Storefront, c: Component) -> i32 {
    let spec = sf.spec.services.get(c);
    match &spec.autoscaling {
        Some(a) if a.enabled => a.min_replicas,
        _ => spec.replicas,
    }
}

/// The Deployment of one component. Autoscaled components leave `replicas` to
/// the HorizontalPodAutoscaler. The gateway's pod template carries the
/// checksum of its configuration, so a config change rolls it.
pub fn deployment(sf: &Storefront, c: Component, gateway_checksum: &str) -> Deployment {
    let spec = sf.spec.services.get(c);
    let port = i32::from(c.default_port());
    let mut annotations = BTreeMap::from([
        ("prometheus.io/scrape".to_owned(), "true".to_owned()),
        ("prometheus.io/port".to_owned(), port.to_string()),
        ("prometheus.io/path".to_owned(), "/metrics".to_owned()),
    ]);
    let mut volumes = vec![Volume {
        name: "data".to_owned(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }];
    let mut mounts = vec![VolumeMount {
        name: "data".to_owned(),
        mount_path: DATA_DIR.to_owned(),
        ..VolumeMount::default()
    }];
    match c {
        Component::Gateway => {
            annotations.insert(
                CONFIG_CHECKSUM_ANNOTATION.to_owned(),
                gateway_checksum.to_owned(),
            );
            volumes.push(Volume {
                name: "config".to_owned(),
                config_map: Some(ConfigMapVolumeSource {
                    name: gateway_configmap_name(sf),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            });
            mounts.push(VolumeMount {
                name: "config".to_owned(),
                mount_path: "/etc/storefront/gateway".to_owned(),
                read_only: Some(true),
                ..VolumeMount::default()
            });
        }
        Component::Auth => {
            volumes.push(Volume {
                name: "jwt".to_owned(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(jwt_secret_name(sf)),
                    default_mode: Some(0o440),
                    ..SecretVolumeSource::default()
                }),
                ..Volume::default()
            });
            mounts.push(VolumeMount {
                name: "jwt".to_owned(),
                mount_path: JWT_DIR.to_owned(),
                read_only: Some(true),
                ..VolumeMount::default()
            });
        }
        _ => {}
    }
    let container = Container {
        name: c.as_str().to_owned(),
        image: Some(sf.spec.image.reference()),
        image_pull_policy: Some(sf.spec.image.pull_policy.as_str().to_owned()),
        command: Some(vec![
            "storefront".to_owned(),
            "run".to_owned(),
            c.as_str().to_owned(),
        ]),
        ports: Some(vec![ContainerPort {
            name: Some("http".to_owned()),
            container_port: port,
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        env: Some(component_env(sf, c)),
        resources: spec.resources.clone(),
        liveness_probe: Some(http_probe("/healthz", 10)),
        readiness_probe: Some(http_probe("/readyz", 5)),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(mounts),
        ..Container::default()
    };
    Deployment {
        metadata: meta(sf, component_name(sf, c), component_labels(sf, c)),
        spec: DeploymentSpec {
            replicas: (!autoscaled(sf, c)).then_some(spec.replicas),
            selector: LabelSelector {
                match_labels: Some(selector_labels(sf, c)),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(component_labels(sf, c)),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(sf_name(sf)),
                    automount_service_account_token: Some(false),
                    termination_grace_period_seconds: Some(30),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(RUN_AS),
                        run_as_group: Some(RUN_AS),
                        fs_group: Some(RUN_AS),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_owned(),
                            ..SeccompProfile::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
                    containers: vec![container],
                    volumes: Some(volumes),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        status: None,
    }
}

/// The ClusterIP Service of one component, port `http`.
pub fn service(sf: &Storefront, c: Component) -> Service {
    component_service(sf, c, component_name(sf, c), "http", None)
}

/// The headless Service of a component the gateway routes to (`<name>-<short>-pods`): its
/// DNS name resolves to each ready pod, which the gateway balances over. Its port is named
/// `upstream`, not `http`, so the ServiceMonitor (port `http`) does not scrape each pod twice.
pub fn pods_service(sf: &Storefront, c: Component) -> Service {
    let name = gateway_config::pods_service_name(&sf_name(sf), c);
    component_service(sf, c, name, "upstream", Some("None"))
}

/// A Service selecting the pods of `c` on their `http` port, named `port_name` here.
fn component_service(
    sf: &Storefront,
    c: Component,
    name: String,
    port_name: &str,
    cluster_ip: Option<&str>,
) -> Service {
    Service {
        metadata: meta(sf, name, component_labels(sf, c)),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            cluster_ip: cluster_ip.map(str::to_owned),
            selector: Some(selector_labels(sf, c)),
            publish_not_ready_addresses: cluster_ip.map(|_| false),
            ports: Some(vec![ServicePort {
                name: Some(port_name.to_owned()),
                port: i32::from(c.default_port()),
                target_port: Some(IntOrString::String("http".to_owned())),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// The autoscaling/v2 HorizontalPodAutoscaler of one component, if enabled.
pub fn hpa(sf: &Storefront, c: Component) -> Option<HorizontalPodAutoscaler> {
    let a = sf
        .spec
        .services
        .get(c)
        .autoscaling
        .as_ref()
        .filter(|a| a.enabled)?;
    let target = |name: &str, percent: i32| MetricSpec {
        type_: "Resource".to_owned(),
        resource: Some(ResourceMetricSource {
            name: name.to_owned(),
            target: MetricTarget {
                type_: "Utilization".to_owned(),
                average_utilization: Some(percent),
                ..MetricTarget::default()
            },
        }),
        ..MetricSpec::default()
    };
    let metrics: Vec<MetricSpec> = [
        a.target_cpu_utilization_percentage
            .map(|p| target("cpu", p)),
        a.target_memory_utilization_percentage
            .map(|p| target("memory", p)),
    ]
    .into_iter()
    .flatten()
    .collect();
    Some(HorizontalPodAutoscaler {
        metadata: meta(sf, component_name(sf, c), component_labels(sf, c)),
        spec: HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".to_owned()),
                kind: "Deployment".to_owned(),
                name: component_name(sf, c),
            },
            min_replicas: Some(a.min_replicas),
            max_replicas: a.max_replicas,
            metrics: Some(metrics),
            ..HorizontalPodAutoscalerSpec::default()
        },
        status: None,
    })
}

/// The PodDisruptionBudget of one component: at most one pod down at a time.
pub fn pdb(sf: &Storefront, c: Component) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta(sf, component_name(sf, c), component_labels(sf, c)),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(sf, c)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    }
}

// ------------------------------------------------------------------ gateway

/// The gateway ConfigMap holding the rendered `gateway.yaml`.
pub fn gateway_configmap(sf: &Storefront, rendered: &str) -> ConfigMap {
    ConfigMap {
        metadata: meta(
            sf,
            gateway_configmap_name(sf),
            component_labels(sf, Component::Gateway),
        ),
        data: Some(BTreeMap::from([(
            GATEWAY_CONFIG_KEY.to_owned(),
            rendered.to_owned(),
        )])),
        ..ConfigMap::default()
    }
}

/// The gateway's Ingress, when enabled.
pub fn ingress(sf: &Storefront) -> Option<Ingress> {
    let spec = &sf.spec.gateway.ingress;
    if !spec.enabled {
        return None;
    }
    let mut metadata = meta(sf, sf_name(sf), component_labels(sf, Component::Gateway));
    if !spec.annotations.is_empty() {
        metadata.annotations = Some(spec.annotations.clone());
    }
    Some(Ingress {
        metadata,
        spec: Some(IngressSpec {
            ingress_class_name: spec.class_name.clone(),
            tls: spec.tls_secret_name.as_ref().map(|secret| {
                vec![IngressTLS {
                    hosts: spec.host.clone().map(|h| vec![h]),
                    secret_name: Some(secret.clone()),
                }]
            }),
            rules: Some(vec![IngressRule {
                host: spec.host.clone(),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some("/".to_owned()),
                        path_type: "Prefix".to_owned(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: component_name(sf, Component::Gateway),
                                port: Some(ServiceBackendPort {
                                    name: Some("http".to_owned()),
                                    number: None,
                                }),
                            }),
                            resource: None,
                        },
                    }],
                }),
            }]),
            ..IngressSpec::default()
        }),
        status: None,
    })
}

/// The URL the platform is served at.
pub fn gateway_url(sf: &Storefront) -> String {
    let ingress = &sf.spec.gateway.ingress;
    match (&ingress.host, ingress.enabled) {
        (Some(host), true) if ingress.tls_secret_name.is_some() => format!("https://{host}"),
        (Some(host), true) => format!("http://{host}"),
        _ => format!(
            "http://{}.{}.svc:{}",
            component_name(sf, Component::Gateway),
            sf.namespace().unwrap_or_default(),
            Component::Gateway.default_port()
        ),
    }
}

/// NetworkPolicies: the gateway accepts traffic from anywhere on its port;
/// every other service only from this Storefront's own pods and from
/// namespaces labelled `storefront.dev/monitoring: "true"` (Prometheus).
pub fn network_policies(sf: &Storefront) -> Vec<NetworkPolicy> {
    let name = sf_name(sf);
    let gateway_port = NetworkPolicyPort {
        port: Some(IntOrString::Int(i32::from(
            Component::Gateway.default_port(),
        ))),
        protocol: Some("TCP".to_owned()),
        ..NetworkPolicyPort::default()
    };
    let gateway = NetworkPolicy {
        metadata: meta(sf, format!("{name}-gateway"), labels(sf)),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(sf, Component::Gateway)),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".to_owned()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: None,
                ports: Some(vec![gateway_port]),
            }]),
            ..NetworkPolicySpec::default()
        }),
    };
    let backends: Vec<String> = Component::ALL
        .into_iter()
        .filter(|c| c.is_backend())
        .map(|c| c.as_str().to_owned())
        .collect();
    let internal = NetworkPolicy {
        metadata: meta(sf, format!("{name}-internal"), labels(sf)),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(INSTANCE_LABEL.to_owned(), name.clone())])),
                match_expressions: Some(vec![
                    k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement {
                        key: COMPONENT_LABEL.to_owned(),
                        operator: "In".to_owned(),
                        values: Some(backends),
                    },
                ]),
            }),
            policy_types: Some(vec!["Ingress".to_owned()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![
                    NetworkPolicyPeer {
                        pod_selector: Some(LabelSelector {
                            match_labels: Some(BTreeMap::from([(
                                INSTANCE_LABEL.to_owned(),
                                name.clone(),
                            )])),
                            ..LabelSelector::default()
                        }),
                        ..NetworkPolicyPeer::default()
                    },
                    NetworkPolicyPeer {
                        namespace_selector: Some(LabelSelector {
                            match_labels: Some(BTreeMap::from([(
                                MONITORING_NAMESPACE_LABEL.to_owned(),
                                "true".to_owned(),
                            )])),
                            ..LabelSelector::default()
                        }),
                        ..NetworkPolicyPeer::default()
                    },
                ]),
                ports: None,
            }]),
            ..NetworkPolicySpec::default()
        }),
    };
    vec![gateway, internal]
}

// ------------------------------------------------------------------ custom resources of other operators

fn meta_json(sf: &Storefront, name: String, labels: BTreeMap<String, String>) -> Value {
    serde_json::to_value(meta(sf, name, labels)).unwrap_or(Value::Null)
}

/// A Prometheus-operator ServiceMonitor scraping `/metrics` of every service.
pub fn service_monitor(sf: &Storefront) -> Value {
    json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": meta_json(sf, sf_name(sf), labels(sf)),
        "spec": {
            "selector": {"matchLabels": {
                "app.kubernetes.io/name": "storefront",
                INSTANCE_LABEL: sf_name(sf),
            }},
            "endpoints": [{"port": "http", "path": "/metrics", "interval": "30s"}]
        }
    })
}

/// Name of the KafkaTopic resource for a topic: `<sf>-<topic with '.' and '_' as '-'>`.
pub fn kafka_topic_resource_name(sf: &Storefront, base_topic: &str) -> String {
    let suffix: String = base_topic
        .chars()
        .map(|ch| {
            if ch.is_ascii_alphanumeric() {
                ch.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("{}-{suffix}", sf_name(sf))
}

/// A Strimzi KafkaTopic for one of the platform's topics.
pub fn kafka_topic(sf: &Storefront, kafka: &KafkaBackend, base_topic: &str) -> Value {
    let mut l = labels(sf);
    l.insert(
        "strimzi.io/cluster".to_owned(),
        kafka.strimzi_cluster.clone().unwrap_or_default(),
    );
    let t = &kafka.topics;
    json!({
        "apiVersion": "kafka.strimzi.io/v1beta2",
        "kind": "KafkaTopic",
        "metadata": meta_json(sf, kafka_topic_resource_name(sf, base_topic), l),
        "spec": {
            "topicName": format!("{}{base_topic}", kafka.topic_prefix),
            "partitions": t.partitions,
            "replicas": t.replication_factor,
            "config": {
                "retention.ms": t.retention_ms,
                "min.insync.replicas": t.min_insync_replicas,
            }
        }
    })
}

// ------------------------------------------------------------------ rendering

/// Every child object the operator applies for a Storefront, in apply order, as
/// it would send them (Kafka topics and the optional ServiceMonitor aside):
/// what `storefront-operator render` prints and what bench/operator feeds to
/// `kubectl apply --server-side` to compare against the operator.
pub fn rendered_children(sf: &Storefront, jwt_pem: &str, jwt_kid: &str) -> Vec<Value> {
    fn value(obj: impl serde::Serialize) -> Value {
        serde_json::to_value(obj).expect("Kubernetes objects serialize")
    }
    let rendered = gateway_config::render(&gateway_config::gateway_config(sf));
    let checksum = gateway_config::checksum(&rendered);
    let mut out = vec![
        value(service_account(sf)),
        value(jwt_secret(sf, jwt_pem, jwt_kid)),
        value(gateway_configmap(sf, &rendered)),
    ];
    for c in Component::ALL {
        out.push(value(deployment(sf, c, &checksum)));
        out.push(value(service(sf, c)));
        if c.is_backend() {
            out.push(value(pods_service(sf, c)));
        }
        out.push(value(pdb(sf, c)));
        if let Some(h) = hpa(sf, c) {
            out.push(value(h));
        }
    }
    if let Some(i) = ingress(sf) {
        out.push(value(i));
    }
    out.extend(network_policies(sf).into_iter().map(value));
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn storefront(spec: Value) -> Storefront {
        serde_json::from_value(json!({
            "apiVersion": "storefront.dev/v1alpha1",
            "kind": "Storefront",
            "metadata": {"name": "shop", "namespace": "ns", "uid": "1234-5678"},
            "spec": spec
        }))
        .expect("valid storefront")
    }

    fn full() -> Storefront {
        storefront(json!({
            "image": {"registry": "reg:5000", "repository": "acme/sf", "tag": "1.0", "pullPolicy": "Always"},
            "services": {
                "gateway": {"replicas": 2},
                "cart": {"autoscaling": {"minReplicas": 2, "maxReplicas": 5, "targetCPUUtilizationPercentage": 75},
                         "env": [{"name": "RUST_LOG", "value": "debug"},
                                 {"name": "STOREFRONT_CART__LISTEN", "value": "0.0.0.0:9999"}]}
            },
            "gateway": {"ingress": {"enabled": true, "host": "shop.example.com", "tlsSecretName": "tls",
                                    "className": "nginx", "annotations": {"a": "b"}}},
            "backends": {
                "mysql": {"host": "mysql", "credentialsSecretRef": {"name": "mysql-creds"}},
                "mongodb": {"urlSecretRef": {"name": "mongo", "key": "url"}},
                "smtp": {"host": "mail", "port": 1025, "from": "Shop <no-reply@shop.test>"},
                "redis": {"url": "redis://redis:6379"},
                "elasticsearch": {"urlSecretRef": {"name": "es", "key": "url"}},
                "kafka": {"bootstrapServers": "k1:9092, k2:9092", "topicPrefix": "shop.",
                          "topicManagement": "strimzi", "strimziCluster": "events"}
            }
        }))
    }

    fn env_of(sf: &Storefront, c: Component) -> BTreeMap<String, EnvVar> {
        component_env(sf, c)
            .into_iter()
            .map(|e| (e.name.clone(), e))
            .collect()
    }

    fn value<'a>(env: &'a BTreeMap<String, EnvVar>, name: &str) -> &'a str {
        env.get(name)
            .and_then(|e| e.value.as_deref())
            .unwrap_or_else(|| panic!("{name} has no plain value: {env:#?}"))
    }

    fn secret_ref<'a>(env: &'a BTreeMap<String, EnvVar>, name: &str) -> &'a SecretKeySelector {
        env.get(name)
            .and_then(|e| e.value_from.as_ref())
            .and_then(|v| v.secret_key_ref.as_ref())
            .unwrap_or_else(|| panic!("{name} is not from a Secret: {env:#?}"))
    }

    #[test]
    fn every_child_is_owned_by_the_storefront_and_labelled() {
        let sf = full();
        let metas: Vec<ObjectMeta> = [
            service_account(&sf).metadata,
            deployment(&sf, Component::Cart, "x").metadata,
            service(&sf, Component::Cart).metadata,
            pdb(&sf, Component::Cart).metadata,
            hpa(&sf, Component::Cart).expect("hpa").metadata,
            gateway_configmap(&sf, "").metadata,
            ingress(&sf).expect("ingress").metadata,
            jwt_secret(&sf, "pem", "kid").metadata,
        ]
        .into_iter()
        .chain(network_policies(&sf).into_iter().map(|n| n.metadata))
        .collect();
        for m in metas {
            let owner = &m.owner_references.as_ref().expect("owner refs")[0];
            assert_eq!(owner.kind, "Storefront");
            assert_eq!(owner.name, "shop");
            assert_eq!(owner.uid, "1234-5678");
            assert_eq!(owner.controller, Some(true));
            assert_eq!(m.namespace.as_deref(), Some("ns"));
            assert_eq!(m.labels.as_ref().expect("labels")[INSTANCE_LABEL], "shop");
        }
    }

    #[test]
    fn deployment_runs_the_component_with_probes_port_and_scrape_annotations() {
        let sf = full();
        let d = deployment(&sf, Component::Order, "sum");
        assert_eq!(d.metadata.name.as_deref(), Some("shop-order"));
        let spec = d.spec;
        assert_eq!(spec.replicas, Some(1));
        let template = spec.template;
        let annotations = template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.clone())
            .expect("annotations");
        assert_eq!(annotations["prometheus.io/scrape"], "true");
        assert_eq!(annotations["prometheus.io/port"], "8084");
        assert_eq!(annotations["prometheus.io/path"], "/metrics");
        assert!(!annotations.contains_key(CONFIG_CHECKSUM_ANNOTATION));
        assert_eq!(
            spec.selector.match_labels.as_ref(),
            template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.as_ref())
                .map(|l| {
                    l.iter()
                        .filter(|(k, _)| {
                            spec.selector
                                .match_labels
                                .as_ref()
                                .is_some_and(|s| s.contains_key(*k))
                        })
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect::<BTreeMap<_, _>>()
                })
                .as_ref()
        );
        let pod = template.spec.expect("pod");
        assert_eq!(pod.service_account_name.as_deref(), Some("shop"));
        let c = &pod.containers[0];
        assert_eq!(c.image.as_deref(), Some("reg:5000/acme/sf:1.0"));
        assert_eq!(c.image_pull_policy.as_deref(), Some("Always"));
        assert_eq!(
            c.command,
            Some(vec!["storefront".into(), "run".into(), "order".into()])
        );
        let port = &c.ports.as_ref().expect("ports")[0];
        assert_eq!(
            (port.name.as_deref(), port.container_port),
            (Some("http"), 8084)
        );
        let live = c
            .liveness_probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .expect("liveness");
        assert_eq!(live.path.as_deref(), Some("/healthz"));
        let ready = c
            .readiness_probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .expect("readiness");
        assert_eq!(ready.path.as_deref(), Some("/readyz"));
        assert_eq!(ready.port, IntOrString::String("http".into()));
        assert_eq!(
            c.security_context
                .as_ref()
                .and_then(|s| s.read_only_root_filesystem),
            Some(true)
        );
    }

    #[test]
    fn gateway_deployment_carries_the_config_checksum_and_mounts_the_config() {
        let sf = full();
        let d = deployment(&sf, Component::Gateway, "abc123");
        let spec = d.spec;
        assert_eq!(spec.replicas, Some(2));
        let annotations = spec
            .template
            .metadata
            .and_then(|m| m.annotations)
            .expect("annotations");
        assert_eq!(annotations[CONFIG_CHECKSUM_ANNOTATION], "abc123");
        let pod = spec.template.spec.expect("pod");
        let volume = pod
            .volumes
            .expect("volumes")
            .into_iter()
            .find(|v| v.name == "config")
            .expect("config volume");
        assert_eq!(volume.config_map.expect("configmap").name, "shop-gateway");
        let mount = pod.containers[0]
            .volume_mounts
            .clone()
            .expect("mounts")
            .into_iter()
            .find(|m| m.name == "config")
            .expect("mount");
        assert_eq!(
            format!("{}/{}", mount.mount_path, GATEWAY_CONFIG_KEY),
            gateway_config::GATEWAY_CONFIG_PATH
        );
    }

    #[test]
    fn auth_mounts_the_jwt_secret() {
        let pod = deployment(&full(), Component::Auth, "")
            .spec
            .template
            .spec
            .expect("pod");
        let volume = pod
            .volumes
            .expect("volumes")
            .into_iter()
            .find(|v| v.name == "jwt")
            .expect("jwt volume");
        assert_eq!(
            volume.secret.and_then(|s| s.secret_name).as_deref(),
            Some("shop-jwt")
        );
        // The auth service reads the `<kid>.pem` files of the mounted directory.
        let env = component_env(&full(), Component::Auth);
        let dir = env
            .iter()
            .find(|e| e.name == "STOREFRONT_AUTH__SIGNING_KEYS_DIR")
            .and_then(|e| e.value.as_deref());
        assert_eq!(dir, Some(JWT_DIR));
    }

    #[test]
    fn autoscaled_deployment_leaves_replicas_to_the_hpa() {
        let sf = full();
        let d = deployment(&sf, Component::Cart, "");
        assert_eq!(d.spec.replicas, None);
        assert_eq!(desired_replicas(&sf, Component::Cart), 2);
        let h = hpa(&sf, Component::Cart).expect("hpa");
        let spec = h.spec;
        assert_eq!(spec.scale_target_ref.name, "shop-cart");
        assert_eq!(spec.scale_target_ref.kind, "Deployment");
        assert_eq!((spec.min_replicas, spec.max_replicas), (Some(2), 5));
        let metrics = spec.metrics.expect("metrics");
        assert_eq!(metrics.len(), 1);
        let resource = metrics[0].resource.as_ref().expect("resource");
        assert_eq!(resource.name, "cpu");
        assert_eq!(resource.target.average_utilization, Some(75));
        assert!(hpa(&sf, Component::Order).is_none());
    }

    #[test]
    fn env_wires_backends_from_values_and_secrets() {
        let sf = full();
        let cart = env_of(&sf, Component::Cart);
        // The spec's env overrides the operator's variable of the same name.
        assert_eq!(value(&cart, "STOREFRONT_CART__LISTEN"), "0.0.0.0:9999");
        assert_eq!(value(&cart, "RUST_LOG"), "debug");
        assert_eq!(
            value(&cart, "STOREFRONT_CART__DATABASE_URL"),
            "mysql://$(MYSQL_USERNAME):$(MYSQL_PASSWORD)@mysql:3306/storefront"
        );
        let user = secret_ref(&cart, "MYSQL_USERNAME");
        assert_eq!(
            (user.name.as_str(), user.key.as_str()),
            ("mysql-creds", "username")
        );
        assert_eq!(secret_ref(&cart, "MYSQL_PASSWORD").key, "password");
        assert_eq!(
            value(&cart, "STOREFRONT_CART__CACHE_URL"),
            "redis://redis:6379"
        );
        // The cart follows the order service's events (placed orders leave their carts).
        assert_eq!(
            value(&cart, "STOREFRONT_CART__EVENTS_URL"),
            "kafka://k1:9092,k2:9092"
        );
        assert_eq!(value(&cart, "STOREFRONT_CART__TOPIC_PREFIX"), "shop.");
        // $(VAR) expansion only sees variables defined earlier in the list.
        let names: Vec<String> = component_env(&sf, Component::Cart)
            .into_iter()
            .map(|e| e.name)
            .collect();
        let pos = |n: &str| names.iter().position(|x| x == n).expect(n);
        assert!(pos("MYSQL_PASSWORD") < pos("STOREFRONT_CART__DATABASE_URL"));

        let search = env_of(&sf, Component::Search);
        assert_eq!(value(&search, "STOREFRONT_SEARCH__LISTEN"), "0.0.0.0:8082");
        assert_eq!(
            secret_ref(&search, "STOREFRONT_SEARCH__CATALOG_URL").name,
            "mongo"
        );
        assert_eq!(
            secret_ref(&search, "STOREFRONT_SEARCH__INDEX_URL").name,
            "es"
        );
        assert_eq!(
            value(&search, "STOREFRONT_SEARCH__EVENTS_URL"),
            "kafka://k1:9092,k2:9092"
        );
        assert_eq!(value(&search, "STOREFRONT_SEARCH__TOPIC_PREFIX"), "shop.");
        assert!(!search.contains_key("STOREFRONT_SEARCH__DATABASE_URL"));

        let notification = env_of(&sf, Component::Notification);
        assert_eq!(
            value(&notification, "STOREFRONT_NOTIFICATION__MAIL_URL"),
            "smtp://mail:1025"
        );
        assert_eq!(
            value(&notification, "STOREFRONT_NOTIFICATION__FROM"),
            "Shop <no-reply@shop.test>"
        );
        let gateway = env_of(&sf, Component::Gateway);
        assert_eq!(
            value(&gateway, "STOREFRONT_GATEWAY__CACHE_URL"),
            "redis://redis:6379"
        );
        assert!(!gateway.contains_key("STOREFRONT_GATEWAY__DATABASE_URL"));
    }

    #[test]
    fn env_without_backends_sets_only_listen_data_dir_and_token_wiring() {
        let sf = storefront(json!({}));
        for c in Component::ALL {
            let env = env_of(&sf, c);
            let mut expected = vec![
                "STOREFRONT_DATA_DIR".to_owned(),
                "STOREFRONT_TELEMETRY__LOG_FORMAT".to_owned(),
                setting(c, "listen"),
            ];
            if c == Component::Auth {
                expected.push(setting(c, "signing_keys_dir"));
            } else {
                expected.push(setting(c, "auth__jwks_url"));
            }
            match c {
                Component::Cart => expected.push(setting(c, "search_url")),
                Component::Order => expected.push(setting(c, "cart_url")),
                Component::Gateway => expected.push(setting(c, "config_path")),
                _ => {}
            }
            expected.sort();
            assert_eq!(env.keys().cloned().collect::<Vec<_>>(), expected, "{c}");
        }
        let cart = env_of(&sf, Component::Cart);
        assert_eq!(
            value(&cart, "STOREFRONT_CART__AUTH__JWKS_URL"),
            "http://shop-auth:8081/.well-known/jwks.json"
        );
        assert_eq!(
            value(&cart, "STOREFRONT_CART__SEARCH_URL"),
            "http://shop-search:8082"
        );
        let gateway = env_of(&sf, Component::Gateway);
        assert_eq!(
            value(&gateway, "STOREFRONT_GATEWAY__CONFIG_PATH"),
            "/etc/storefront/gateway/gateway.yaml"
        );
    }

    #[test]
    fn service_exposes_the_component_port_as_http() {
        let s = service(&full(), Component::Delivery);
        let spec = s.spec.expect("spec");
        let port = &spec.ports.expect("ports")[0];
        assert_eq!((port.name.as_deref(), port.port), (Some("http"), 8085));
        assert_eq!(
            spec.selector.expect("selector")[COMPONENT_LABEL],
            "delivery"
        );
    }

    #[test]
    fn pdb_allows_one_pod_down() {
        let p = pdb(&full(), Component::Search).spec.expect("spec");
        assert_eq!(p.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(
            p.selector.and_then(|s| s.match_labels).expect("labels")[COMPONENT_LABEL],
            "search"
        );
    }

    #[test]
    fn ingress_routes_the_host_to_the_gateway_service_with_tls() {
        let sf = full();
        let i = ingress(&sf).expect("enabled");
        assert_eq!(
            i.metadata.annotations.as_ref().expect("annotations")["a"],
            "b"
        );
        let spec = i.spec.expect("spec");
        assert_eq!(spec.ingress_class_name.as_deref(), Some("nginx"));
        assert_eq!(
            spec.tls.expect("tls")[0].secret_name.as_deref(),
            Some("tls")
        );
        let rule = &spec.rules.expect("rules")[0];
        assert_eq!(rule.host.as_deref(), Some("shop.example.com"));
        let backend = rule.http.as_ref().expect("http").paths[0]
            .backend
            .service
            .as_ref()
            .expect("svc");
        assert_eq!(backend.name, "shop-gateway");
        assert_eq!(gateway_url(&sf), "https://shop.example.com");
        let plain = storefront(json!({}));
        assert!(ingress(&plain).is_none());
        assert_eq!(gateway_url(&plain), "http://shop-gateway.ns.svc:8080");
    }

    #[test]
    fn only_the_gateway_takes_outside_traffic() {
        let policies = network_policies(&full());
        assert_eq!(policies.len(), 2);
        let gateway = policies[0].spec.as_ref().expect("spec");
        let rule = &gateway.ingress.as_ref().expect("ingress")[0];
        assert!(rule.from.is_none(), "gateway open to all sources");
        assert_eq!(
            rule.ports.as_ref().expect("ports")[0].port,
            Some(IntOrString::Int(8080))
        );
        let internal = policies[1].spec.as_ref().expect("spec");
        let selected = internal
            .pod_selector
            .as_ref()
            .and_then(|s| s.match_expressions.as_ref())
            .expect("expr");
        let values = selected[0].values.as_ref().expect("values");
        assert_eq!(values.len(), 6);
        assert!(!values.contains(&"gateway".to_owned()));
        let from = internal.ingress.as_ref().expect("ingress")[0]
            .from
            .as_ref()
            .expect("from");
        assert_eq!(
            from[0]
                .pod_selector
                .as_ref()
                .and_then(|s| s.match_labels.as_ref())
                .expect("labels")[INSTANCE_LABEL],
            "shop"
        );
    }

    #[test]
    fn each_backend_has_a_headless_service_for_the_gateway_whose_name_fits() {
        let sf = full();
        for c in Component::ALL.into_iter().filter(|c| c.is_backend()) {
            let s = pods_service(&sf, c);
            let spec = s.spec.expect("spec");
            assert_eq!(spec.cluster_ip.as_deref(), Some("None"), "{c}: headless");
            assert_eq!(spec.selector, service(&sf, c).spec.expect("spec").selector);
            let ports = spec.ports.expect("ports");
            assert_eq!(ports[0].port, i32::from(c.default_port()));
            assert_eq!(
                ports[0].name.as_deref(),
                Some("upstream"),
                "not scraped twice"
            );
            let longest = "a".repeat(crate::crd::MAX_NAME_LENGTH);
            assert!(
                gateway_config::pods_service_name(&longest, c).len() <= 63,
                "{c}"
            );
        }
        assert_eq!(
            pods_service(&sf, Component::Notification)
                .metadata
                .name
                .as_deref(),
            Some("shop-notif-pods")
        );
    }

    #[test]
    fn rendered_children_are_complete_typed_objects() {
        let sf = full();
        let objects = rendered_children(&sf, "PEM", "k1");
        let kinds: Vec<&str> = objects
            .iter()
            .map(|o| o["kind"].as_str().expect("kind"))
            .collect();
        for c in Component::ALL {
            let name = component_name(&sf, c);
            for kind in ["Deployment", "Service", "PodDisruptionBudget"] {
                assert!(
                    objects
                        .iter()
                        .any(|o| o["kind"] == kind && o["metadata"]["name"] == name.as_str()),
                    "{kind} {name} missing"
                );
            }
        }
        assert_eq!(kinds[..3], ["ServiceAccount", "Secret", "ConfigMap"]);
        assert!(kinds.contains(&"HorizontalPodAutoscaler"));
        assert!(kinds.contains(&"NetworkPolicy"));
        assert!(objects.iter().all(|o| o["apiVersion"].is_string()));
    }

    #[test]
    fn jwt_secret_holds_the_pem_and_kid() {
        let s = jwt_secret(&full(), "-----BEGIN PRIVATE KEY-----", "k1");
        let data = s.string_data.expect("data");
        assert_eq!(data.len(), 1);
        assert_eq!(data["k1.pem"], "-----BEGIN PRIVATE KEY-----");
        assert_eq!(s.metadata.name.as_deref(), Some("shop-jwt"));
    }

    #[test]
    fn service_account_mounts_no_token() {
        assert_eq!(
            service_account(&full()).automount_service_account_token,
            Some(false)
        );
    }

    #[test]
    fn service_monitor_and_kafka_topic_are_owned_and_shaped() {
        let sf = full();
        let sm = service_monitor(&sf);
        assert_eq!(sm["kind"], "ServiceMonitor");
        assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
        assert_eq!(sm["metadata"]["ownerReferences"][0]["name"], "shop");
        let kafka = sf.spec.backends.kafka.clone().expect("kafka");
        let t = kafka_topic(&sf, &kafka, "orders.v1");
        assert_eq!(t["metadata"]["name"], "shop-orders-v1");
        assert_eq!(t["metadata"]["labels"]["strimzi.io/cluster"], "events");
        assert_eq!(t["spec"]["topicName"], "shop.orders.v1");
        assert_eq!(t["spec"]["partitions"], 3);
        assert_eq!(t["spec"]["config"]["retention.ms"], 604_800_000_i64);
    }
}
