//! The operator against the real kube-apiserver (with kube-controller-manager
//! for garbage collection) and the real Kafka broker of the local stack
//! (`tests/stack/stack up`). Each test runs its own operator instance, scoped
//! to its own namespace (with its Lease there), and its own topic prefix.
//! There are no nodes, so Deployments never get ready pods: components show
//! 0/N ready and the Storefront stays Progressing.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use anyhow::{Context as _, bail};
use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        autoscaling::v2::HorizontalPodAutoscaler,
        coordination::v1::Lease,
        core::v1::{ConfigMap, Secret, Service, ServiceAccount},
        events::v1::Event,
        networking::v1::{Ingress, NetworkPolicy},
        policy::v1::PodDisruptionBudget,
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, CustomResourceExt, Resource, ResourceExt,
    api::{
        ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    },
    runtime::wait::{await_condition, conditions},
};
use rdkafka::{
    admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier},
    client::DefaultClientContext,
};
use serde_json::{Value, json};
use storefront_operator::{
    Component, Storefront,
    controller::{self, OperatorConfig},
    crd::KafkaBackend,
    topics,
};
use storefront_tests::{KubeNamespace, Stack, unique_name, wait_until};
use tokio::{sync::OnceCell, task::JoinHandle};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);

// ------------------------------------------------------------------ helpers

/// Server-side apply `crd` and wait until it is established and the apiserver serves its
/// resource (which may take a moment longer).
async fn apply_crd(client: &Client, crd: &CustomResourceDefinition) -> anyhow::Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd.name_any();
    api.patch(
        &name,
        &PatchParams::apply("storefront-tests").force(),
        &Patch::Apply(crd),
    )
    .await
    .with_context(|| format!("apply the CRD {name}"))?;
    tokio::time::timeout(
        WAIT,
        await_condition(api, &name, conditions::is_crd_established()),
    )
    .await
    .with_context(|| format!("CRD {name} not established"))??;
    let group_version = format!(
        "{}/{}",
        crd.spec.group,
        crd.spec.versions.first().map_or("", |v| v.name.as_str())
    );
    let plural = crd.spec.names.plural.clone();
    wait_until(WAIT, || async {
        Ok(client
            .list_api_group_resources(&group_version)
            .await
            .ok()
            .filter(|l| l.resources.iter().any(|r| r.name == plural)))
    })
    .await?;
    Ok(())
}

/// Install the Storefront CRD once per test process.
async fn install_crd(client: &Client) -> anyhow::Result<()> {
    static DONE: OnceCell<()> = OnceCell::const_new();
    DONE.get_or_try_init(|| async { apply_crd(client, &Storefront::crd()).await })
        .await?;
    Ok(())
}

struct Env {
    ns: KubeNamespace,
    client: Client,
    prefix: String,
}

async fn env() -> anyhow::Result<Env> {
    let stack = Stack::get();
    let ns = stack.kube_namespace().await?;
    let client = ns.client();
    install_crd(&client).await?;
    Ok(Env {
        client,
        prefix: format!("{}.", unique_name("op", '-')),
        ns,
    })
}

struct Operator {
    stop: CancellationToken,
    task: JoinHandle<Result<(), controller::LostLease>>,
}

impl Operator {
    fn start(env: &Env, identity: &str) -> Operator {
        let mut config = OperatorConfig::new(identity.to_owned(), env.ns.name().to_owned());
        config.namespace = Some(env.ns.name().to_owned());
        config.lease.lease_duration = Duration::from_secs(3);
        config.lease.renew_every = Duration::from_millis(500);
        config.kafka_timeout = Duration::from_secs(5);
        config.topic_deletion_timeout = Duration::from_secs(15);
        config.resync = Duration::from_secs(3);
        config.backoff_max = Duration::from_secs(3);
        let stop = CancellationToken::new();
        let task = tokio::spawn(controller::run(env.client.clone(), config, stop.clone()));
        Operator { stop, task }
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.task.await?.map_err(anyhow::Error::from)
    }
}

fn kafka_spec(env: &Env, policy: &str) -> Value {
    json!({
        "bootstrapServers": Stack::get().kafka_brokers,
        "topicPrefix": env.prefix,
        "topicManagement": "admin",
        "deletionPolicy": policy,
        "topics": {"partitions": 3, "retentionMs": 3_600_000}
    })
}

fn storefront(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "storefront.dev/v1alpha1",
        "kind": "Storefront",
        "metadata": {"name": name},
        "spec": spec
    })
}

async fn apply_sf(env: &Env, obj: &Value) -> anyhow::Result<Storefront> {
    let api: Api<Storefront> = env.ns.api();
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    Ok(api
        .patch(
            name,
            &PatchParams::apply("storefront-tests").force(),
            &Patch::Apply(obj),
        )
        .await?)
}

fn condition(sf: &Storefront, type_: &str) -> Option<(String, String)> {
    sf.status
        .as_ref()?
        .condition(type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// Wait until the Storefront's status describes its current generation and `check` holds.
async fn wait_status(
    env: &Env,
    name: &str,
    check: impl Fn(&Storefront) -> bool,
) -> anyhow::Result<Storefront> {
    let api: Api<Storefront> = env.ns.api();
    wait_until(WAIT, || {
        let api = api.clone();
        let check = &check;
        async move {
            let sf = api.get(name).await?;
            let current =
                sf.status.as_ref().and_then(|s| s.observed_generation) == sf.metadata.generation;
            Ok((current && check(&sf)).then_some(sf))
        }
    })
    .await
    .with_context(|| format!("status of {name}"))
}

async fn wait_for<K>(env: &Env, name: &str) -> anyhow::Result<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = env.ns.api();
    wait_until(WAIT, || {
        let api = api.clone();
        async move { Ok(api.get_opt(name).await?) }
    })
    .await
    .with_context(|| format!("waiting for {} {name}", K::kind(&())))
}

fn owned_by(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    sf: &Storefront,
) -> bool {
    meta.owner_references.as_ref().is_some_and(|refs| {
        refs.iter().any(|o| {
            Some(&o.uid) == sf.metadata.uid.as_ref()
                && o.kind == "Storefront"
                && o.controller == Some(true)
        })
    })
}

fn admin() -> anyhow::Result<AdminClient<DefaultClientContext>> {
    Ok(Stack::get().kafka_config().create()?)
}

/// Partition count and config of a topic, or None when it does not exist.
async fn topic_state(name: &str) -> anyhow::Result<Option<(usize, BTreeMap<String, String>)>> {
    let name = name.to_owned();
    let admin = Arc::new(admin()?);
    let meta = {
        let admin = Arc::clone(&admin);
        let name = name.clone();
        tokio::task::spawn_blocking(move || {
            admin
                .inner()
                .fetch_metadata(Some(&name), Duration::from_secs(10))
        })
        .await??
    };
    let Some(topic) = meta
        .topics()
        .iter()
        .find(|t| t.name() == name && t.error().is_none())
    else {
        return Ok(None);
    };
    let partitions = topic.partitions().len();
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic(&name)], &AdminOptions::new())
        .await?;
    let resource = described
        .into_iter()
        .next()
        .context("no config result")?
        .map_err(|c| anyhow::anyhow!("describe {name}: {c}"))?;
    let config = resource
        .entries
        .iter()
        .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
        .collect();
    Ok(Some((partitions, config)))
}

async fn events_for(env: &Env, name: &str) -> anyhow::Result<Vec<(String, String)>> {
    let api: Api<Event> = env.ns.api();
    Ok(api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect())
}

/// Waits until events with every one of `reasons` were recorded for `name` (the operator
/// writes them after the status that shows the change, so a test that saw the status may
/// read the events a moment too early).
async fn wait_for_events(env: &Env, name: &str, reasons: &[&str]) -> anyhow::Result<()> {
    let seen = wait_until(WAIT, || async {
        let events = events_for(env, name).await?;
        Ok(reasons
            .iter()
            .all(|reason| events.iter().any(|(r, _)| r == reason))
            .then_some(()))
    })
    .await;
    if seen.is_err() {
        bail!(
            "no events {reasons:?} for {name} in {:?}",
            events_for(env, name).await?
        );
    }
    Ok(())
}

async fn drop_topics(env: &Env) {
    let kafka: KafkaBackend = serde_json::from_value(json!({
        "bootstrapServers": Stack::get().kafka_brokers, "topicPrefix": env.prefix
    }))
    .unwrap_or_else(|e| panic!("kafka backend: {e}"));
    let _ = topics::delete_topics(&kafka, Duration::from_secs(10)).await;
}

// ------------------------------------------------------------------ tests

#[tokio::test]
async fn cel_rules_reject_invalid_specs_with_their_messages() -> anyhow::Result<()> {
    let env = env().await?;
    let api: Api<Storefront> = env.ns.api();
    let cases = [
        (
            json!({"services": {"cart": {"autoscaling": {"minReplicas": 5, "maxReplicas": 2, "targetCPUUtilizationPercentage": 70}}}}),
            "minReplicas must be less than or equal to autoscaling.maxReplicas",
        ),
        (
            json!({"gateway": {"rateLimit": {"clusterWide": true}}}),
            "gateway.rateLimit.clusterWide needs backends.redis",
        ),
        (
            json!({"gateway": {"ingress": {"enabled": true}}}),
            "ingress.host is required when ingress.enabled is true",
        ),
        (
            json!({"backends": {"kafka": {"bootstrapServers": "k:9092", "topicPrefix": "bad prefix!"}}}),
            "topicPrefix",
        ),
    ];
    for (spec, message) in cases {
        let err = api
            .patch(
                "bad",
                &PatchParams::apply("storefront-tests"),
                &Patch::Apply(&storefront("bad", spec.clone())),
            )
            .await
            .expect_err("invalid spec accepted");
        let text = err.to_string();
        assert!(
            text.contains(message),
            "{spec}: expected {message:?} in {text}"
        );
    }
    // Partitions may grow but not shrink.
    let good = json!({"backends": {"kafka": {"bootstrapServers": "k:9092", "topicManagement": "none", "topics": {"partitions": 6}}}});
    apply_sf(&env, &storefront("shrink", good)).await?;
    let shrink = json!({"backends": {"kafka": {"bootstrapServers": "k:9092", "topicManagement": "none", "topics": {"partitions": 2}}}});
    let err = apply_sf(&env, &storefront("shrink", shrink))
        .await
        .expect_err("shrinking accepted");
    assert!(
        err.to_string().contains("partitions cannot be decreased"),
        "{err}"
    );
    env.ns.cleanup().await
}

#[tokio::test]
async fn storefront_children_topics_updates_and_restores() -> anyhow::Result<()> {
    let env = env().await?;
    let operator = Operator::start(&env, "only");
    let spec = json!({
        "services": {
            "gateway": {"replicas": 2},
            "cart": {"autoscaling": {"minReplicas": 2, "maxReplicas": 4, "targetCPUUtilizationPercentage": 70}}
        },
        "gateway": {
            "ingress": {"enabled": true, "host": "shop.test", "className": "nginx"},
            "rateLimit": {"rules": [{"name": "login", "pathPrefix": "/api/sessions", "requestsPerMinute": 10}]}
        },
        "backends": {"kafka": kafka_spec(&env, "retain")}
    });
    let created = apply_sf(&env, &storefront("shop", spec.clone())).await?;

    // Every child exists, owned by the Storefront.
    let sf = wait_status(&env, "shop", |sf| {
        sf.status.as_ref().is_some_and(|s| s.components.len() == 7)
    })
    .await?;
    assert_eq!(sf.metadata.uid, created.metadata.uid);
    for c in Component::ALL {
        let name = format!("shop-{c}");
        let d: Deployment = wait_for(&env, &name).await?;
        assert!(owned_by(&d.metadata, &sf), "{name}");
        let container = &d.spec.template.spec.as_ref().expect("pod").containers[0];
        assert_eq!(
            container.command.as_deref(),
            Some(&["storefront".to_owned(), "run".to_owned(), c.to_string()][..])
        );
        let s: Service = wait_for(&env, &name).await?;
        assert!(owned_by(&s.metadata, &sf));
        assert_eq!(
            s.spec.and_then(|s| s.ports).expect("ports")[0].port,
            i32::from(c.default_port())
        );
        let p: PodDisruptionBudget = wait_for(&env, &name).await?;
        assert!(owned_by(&p.metadata, &sf));
        if c.is_backend() {
            // The headless Service the gateway balances over, one instance per ready pod.
            let pods = storefront_operator::gateway_config::pods_service_name("shop", c);
            let s: Service = wait_for(&env, &pods).await?;
            assert!(owned_by(&s.metadata, &sf), "{pods}");
            let spec = s.spec.expect("spec");
            assert_eq!(spec.cluster_ip.as_deref(), Some("None"), "{pods}");
            assert_eq!(
                spec.ports.expect("ports")[0].port,
                i32::from(c.default_port())
            );
        }
    }
    let hpa: HorizontalPodAutoscaler = wait_for(&env, "shop-cart").await?;
    assert!(owned_by(&hpa.metadata, &sf));
    assert_eq!(hpa.spec.max_replicas, 4);
    let hpas: Api<HorizontalPodAutoscaler> = env.ns.api();
    assert!(
        hpas.get_opt("shop-order").await?.is_none(),
        "no HPA without autoscaling"
    );
    let cart: Deployment = wait_for(&env, "shop-cart").await?;
    // The HPA owns replicas of an autoscaled Deployment: the operator's apply leaves them out.
    let operator_fields = cart
        .metadata
        .managed_fields
        .as_ref()
        .and_then(|m| {
            m.iter()
                .find(|f| f.manager.as_deref() == Some("storefront-operator"))
        })
        .and_then(|f| f.fields_v1.as_ref())
        .map(|f| serde_json::to_value(f).unwrap_or_default())
        .context("operator's managed fields")?;
    assert!(operator_fields["f:spec"].get("f:template").is_some());
    assert!(
        operator_fields["f:spec"].get("f:replicas").is_none(),
        "{operator_fields}"
    );
    let cm: ConfigMap = wait_for(&env, "shop-gateway").await?;
    assert!(owned_by(&cm.metadata, &sf));
    let gateway_yaml = cm.data.as_ref().expect("data")["gateway.yaml"].clone();
    assert!(
        gateway_yaml.contains("http://shop-cart-pods:8083"),
        "{gateway_yaml}"
    );
    assert!(gateway_yaml.contains("name: login"), "{gateway_yaml}");
    let ingress: Ingress = wait_for(&env, "shop").await?;
    assert!(owned_by(&ingress.metadata, &sf));
    for np in ["shop-gateway", "shop-internal"] {
        let n: NetworkPolicy = wait_for(&env, np).await?;
        assert!(owned_by(&n.metadata, &sf));
    }
    let sa: ServiceAccount = wait_for(&env, "shop").await?;
    assert!(owned_by(&sa.metadata, &sf));
    let secret: Secret = wait_for(&env, "shop-jwt").await?;
    assert!(owned_by(&secret.metadata, &sf));
    let key_before = secret.data.clone().expect("jwt data");
    let (file, pem) = key_before.iter().next().expect("one key");
    assert!(file.ends_with(".pem"), "{file}");
    let pem = String::from_utf8(pem.0.clone())?;
    assert!(pem.contains("BEGIN PRIVATE KEY"), "{pem}");

    // Conditions: no kubelet, so nothing is ready: Progressing, not Ready, not Degraded.
    assert_eq!(
        condition(&sf, "Progressing"),
        Some(("True".into(), "RollingOut".into()))
    );
    assert_eq!(
        condition(&sf, "Ready"),
        Some(("False".into(), "ComponentsNotReady".into()))
    );
    assert_eq!(
        condition(&sf, "Degraded").map(|c| c.0),
        Some("False".into())
    );
    assert_eq!(condition(&sf, "Paused").map(|c| c.0), Some("False".into()));
    let status = sf.status.clone().expect("status");
    assert_eq!(status.components["gateway"].desired_replicas, 2);
    assert_eq!(status.components["gateway"].ready_replicas, 0);
    assert_eq!(status.components["cart"].desired_replicas, 2);
    assert_eq!(status.gateway_url.as_deref(), Some("http://shop.test"));

    // Topics in the real Kafka, with the spec's partitions and config.
    for base in topics::BASE_TOPICS {
        let name = format!("{}{base}", env.prefix);
        let (partitions, config) = wait_until(WAIT, || async { topic_state(&name).await })
            .await
            .with_context(|| format!("topic {name}"))?;
        assert_eq!(partitions, 3, "{name}");
        assert_eq!(
            config.get("retention.ms").map(String::as_str),
            Some("3600000"),
            "{name}"
        );
    }
    wait_for_events(&env, "shop", &["SigningKeyCreated", "TopicsCreated"]).await?;

    // Another field manager's fields survive the operator's next apply.
    let deployments: Api<Deployment> = env.ns.api();
    deployments
        .patch(
            "shop-search",
            &PatchParams::apply("someone-else"),
            &Patch::Apply(json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "shop-search", "annotations": {"example.com/owner": "team-search"}}
            })),
        )
        .await?;
    let checksum = |d: &Deployment| {
        d.spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get("storefront.dev/config-checksum").cloned())
    };
    let gateway_before = checksum(&deployments.get("shop-gateway").await?);
    assert!(gateway_before.is_some());

    // Change the spec: replicas, a rate-limit rule, more partitions, drop the ingress.
    let mut changed = spec.clone();
    changed["services"]["search"] = json!({"replicas": 3});
    changed["gateway"]["rateLimit"]["rules"][0]["requestsPerMinute"] = json!(20);
    changed["gateway"]["ingress"] = json!({"enabled": false});
    changed["backends"]["kafka"]["topics"]["partitions"] = json!(5);
    apply_sf(&env, &storefront("shop", changed)).await?;
    let search = wait_until(WAIT, || async {
        let d = deployments.get("shop-search").await?;
        Ok((d.spec.replicas == Some(3)).then_some(d))
    })
    .await?;
    assert_eq!(
        search
            .annotations()
            .get("example.com/owner")
            .map(String::as_str),
        Some("team-search"),
        "another manager's annotation was dropped"
    );
    let gateway_after = wait_until(WAIT, || async {
        let c = checksum(&deployments.get("shop-gateway").await?);
        Ok((c != gateway_before).then_some(c))
    })
    .await?;
    assert!(gateway_after.is_some());
    let cms: Api<ConfigMap> = env.ns.api();
    let yaml = cms.get("shop-gateway").await?.data.expect("data")["gateway.yaml"].clone();
    assert!(yaml.contains("rate: 20"), "{yaml}");
    let ingresses: Api<Ingress> = env.ns.api();
    wait_until(WAIT, || async {
        Ok(ingresses.get_opt("shop").await?.is_none().then_some(()))
    })
    .await
    .context("ingress removed when disabled")?;
    for base in topics::BASE_TOPICS {
        let name = format!("{}{base}", env.prefix);
        wait_until(WAIT, || async {
            Ok(topic_state(&name).await?.filter(|(p, _)| *p == 5))
        })
        .await
        .with_context(|| format!("{name} grows to 5 partitions"))?;
    }
    wait_status(&env, "shop", |sf| {
        sf.status
            .as_ref()
            .is_some_and(|s| s.components["search"].desired_replicas == 3)
    })
    .await?;

    // Config drift in Kafka is corrected.
    let drifted = format!("{}orders.v1", env.prefix);
    let alter = AlterConfig::new(ResourceSpecifier::Topic(&drifted)).set("retention.ms", "1000");
    admin()?
        .alter_configs(&[alter], &AdminOptions::new())
        .await?;
    wait_until(WAIT, || async {
        Ok(topic_state(&drifted)
            .await?
            .filter(|(_, c)| c.get("retention.ms").map(String::as_str) == Some("3600000")))
    })
    .await
    .context("retention.ms drift corrected")?;

    // A deleted child comes back.
    let services: Api<Service> = env.ns.api();
    services
        .delete("shop-order", &DeleteParams::default())
        .await?;
    wait_until(WAIT, || async {
        Ok(services
            .get_opt("shop-order")
            .await?
            .filter(|s| s.metadata.deletion_timestamp.is_none()))
    })
    .await
    .context("deleted Service restored")?;
    deployments
        .delete("shop-delivery", &DeleteParams::default())
        .await?;
    wait_until(WAIT, || async {
        Ok(deployments
            .get_opt("shop-delivery")
            .await?
            .filter(|d| d.metadata.deletion_timestamp.is_none()))
    })
    .await
    .context("deleted Deployment restored")?;

    // The signing key was never rewritten.
    let secrets: Api<Secret> = env.ns.api();
    assert_eq!(
        secrets.get("shop-jwt").await?.data.expect("data"),
        key_before
    );

    // Retain: deleting the Storefront keeps the topics; children are garbage collected.
    let api: Api<Storefront> = env.ns.api();
    api.delete("shop", &DeleteParams::default()).await?;
    wait_until(WAIT, || async {
        Ok(api.get_opt("shop").await?.is_none().then_some(()))
    })
    .await?;
    assert!(
        topic_state(&format!("{}catalog.v1", env.prefix))
            .await?
            .is_some()
    );
    operator.stop().await?;
    drop_topics(&env).await;
    env.ns.cleanup().await
}

#[tokio::test]
async fn paused_storefront_is_left_alone_until_resumed() -> anyhow::Result<()> {
    let env = env().await?;
    let operator = Operator::start(&env, "only");
    apply_sf(&env, &storefront("paused", json!({}))).await?;
    let _: Service = wait_for(&env, "paused-cart").await?;
    apply_sf(&env, &storefront("paused", json!({"paused": true}))).await?;
    let sf = wait_status(&env, "paused", |sf| {
        condition(sf, "Paused").is_some_and(|c| c.0 == "True")
    })
    .await?;
    assert_eq!(
        condition(&sf, "Paused"),
        Some(("True".into(), "Paused".into()))
    );

    let services: Api<Service> = env.ns.api();
    services
        .delete("paused-cart", &DeleteParams::default())
        .await?;
    apply_sf(
        &env,
        &storefront(
            "paused",
            json!({"paused": true, "services": {"order": {"replicas": 4}}}),
        ),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        services.get_opt("paused-cart").await?.is_none(),
        "paused, yet the Service was restored"
    );
    let deployments: Api<Deployment> = env.ns.api();
    assert_eq!(
        deployments.get("paused-order").await?.spec.replicas,
        Some(1)
    );

    apply_sf(
        &env,
        &storefront("paused", json!({"services": {"order": {"replicas": 4}}})),
    )
    .await?;
    let _: Service = wait_for(&env, "paused-cart").await?;
    wait_until(WAIT, || async {
        Ok((deployments.get("paused-order").await?.spec.replicas == Some(4)).then_some(()))
    })
    .await?;
    let sf = wait_status(&env, "paused", |sf| {
        condition(sf, "Paused").is_some_and(|c| c.0 == "False")
    })
    .await?;
    assert_eq!(
        condition(&sf, "Progressing").map(|c| c.0),
        Some("True".into())
    );
    wait_for_events(&env, "paused", &["Paused", "Resumed"]).await?;
    operator.stop().await?;
    env.ns.cleanup().await
}

/// Install (server-side apply) the Prometheus operator's ServiceMonitor CRD that the stack
/// fetched, and wait until the apiserver serves it.
async fn install_service_monitor_crd(client: &Client) -> anyhow::Result<ApiResource> {
    let path = Stack::get().servicemonitor_crd.clone().context(
        "STOREFRONT_TEST_SERVICEMONITOR_CRD is not set: run tests/stack/stack up (it fetches the CRD)",
    )?;
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "read {} (tests/stack/stack install fetches it)",
            path.display()
        )
    })?;
    let crd: CustomResourceDefinition = serde_yaml::from_str(&text).context("parse the CRD")?;
    apply_crd(client, &crd).await?;
    Ok(ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor"),
        "servicemonitors",
    ))
}

#[tokio::test]
async fn a_service_monitor_scrapes_every_service_when_the_prometheus_operator_crd_is_served()
-> anyhow::Result<()> {
    let env = env().await?;
    let resource = install_service_monitor_crd(&env.client).await?;
    let operator = Operator::start(&env, "only");
    let sf = apply_sf(&env, &storefront("watched", json!({}))).await?;
    let monitors: Api<DynamicObject> =
        Api::namespaced_with(env.client.clone(), env.ns.name(), &resource);
    // Stored by the apiserver under the Prometheus operator's own schema.
    let monitor = wait_until(WAIT, || async { Ok(monitors.get_opt("watched").await?) })
        .await
        .context("waiting for ServiceMonitor watched")?;
    assert!(owned_by(&monitor.metadata, &sf), "{:?}", monitor.metadata);
    let spec = &monitor.data["spec"];
    assert_eq!(spec["endpoints"][0]["port"], "http", "{spec}");
    assert_eq!(spec["endpoints"][0]["path"], "/metrics", "{spec}");
    let selector: BTreeMap<String, String> =
        serde_json::from_value(spec["selector"]["matchLabels"].clone())?;
    assert!(!selector.is_empty(), "{spec}");
    // It selects every component's Service, each of which has a port of that name.
    let services: Api<Service> = env.ns.api();
    for component in Component::ALL {
        let name = storefront_operator::children::component_name(&sf, component);
        let service: Service = wait_for(&env, &name).await?;
        let labels = service.metadata.labels.clone().unwrap_or_default();
        for (k, v) in &selector {
            assert_eq!(labels.get(k), Some(v), "{name}: label {k}");
        }
        let ports = service.spec.and_then(|s| s.ports).unwrap_or_default();
        assert!(
            ports.iter().any(|p| p.name.as_deref() == Some("http")),
            "{name}: no port named http in {ports:?}"
        );
    }
    // The headless Services it also selects have no port named http: no pod is scraped twice.
    let listed = services
        .list(&ListParams::default().labels(&labels_selector(&selector)))
        .await?;
    let scraped = listed
        .items
        .iter()
        .filter(|s| {
            s.spec
                .as_ref()
                .and_then(|s| s.ports.as_ref())
                .is_some_and(|ports| ports.iter().any(|p| p.name.as_deref() == Some("http")))
        })
        .count();
    assert_eq!(scraped, Component::ALL.len());

    // A deleted ServiceMonitor comes back; deleting the Storefront collects it.
    monitors.delete("watched", &DeleteParams::default()).await?;
    wait_until(WAIT, || async { Ok(monitors.get_opt("watched").await?) })
        .await
        .context("deleted ServiceMonitor restored")?;
    let api: Api<Storefront> = env.ns.api();
    api.delete("watched", &DeleteParams::default()).await?;
    wait_until(WAIT, || async {
        Ok(monitors.get_opt("watched").await?.is_none().then_some(()))
    })
    .await
    .context("ServiceMonitor garbage-collected with its Storefront")?;
    operator.stop().await?;
    env.ns.cleanup().await
}

fn labels_selector(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[tokio::test]
async fn delete_policy_deletes_the_topics_with_the_storefront() -> anyhow::Result<()> {
    let env = env().await?;
    let operator = Operator::start(&env, "only");
    apply_sf(
        &env,
        &storefront(
            "gone",
            json!({"backends": {"kafka": kafka_spec(&env, "delete")}}),
        ),
    )
    .await?;
    let sf = wait_status(&env, "gone", |sf| {
        condition(sf, "Degraded").is_some_and(|c| c.0 == "False")
    })
    .await?;
    assert!(
        sf.finalizers()
            .iter()
            .any(|f| f == controller::TOPICS_FINALIZER)
    );
    for base in topics::BASE_TOPICS {
        let name = format!("{}{base}", env.prefix);
        wait_until(WAIT, || async { topic_state(&name).await }).await?;
    }
    let api: Api<Storefront> = env.ns.api();
    api.delete("gone", &DeleteParams::default()).await?;
    wait_until(WAIT, || async {
        Ok(api.get_opt("gone").await?.is_none().then_some(()))
    })
    .await
    .context("Storefront deleted")?;
    for base in topics::BASE_TOPICS {
        let name = format!("{}{base}", env.prefix);
        wait_until(WAIT, || async {
            Ok(topic_state(&name).await?.is_none().then_some(()))
        })
        .await
        .with_context(|| format!("{name} deleted"))?;
    }
    operator.stop().await?;
    env.ns.cleanup().await
}

#[tokio::test]
async fn unreachable_kafka_degrades_and_does_not_block_deletion_forever() -> anyhow::Result<()> {
    let env = env().await?;
    let operator = Operator::start(&env, "only");
    // Nothing listens on port 1.
    let kafka = json!({"bootstrapServers": "127.0.0.1:1", "topicManagement": "admin", "deletionPolicy": "delete"});
    apply_sf(
        &env,
        &storefront("nokafka", json!({"backends": {"kafka": kafka}})),
    )
    .await?;
    let sf = wait_status(&env, "nokafka", |sf| {
        condition(sf, "Degraded").is_some_and(|c| c.0 == "True")
    })
    .await?;
    assert_eq!(
        condition(&sf, "Degraded").map(|c| c.1),
        Some("KafkaUnavailable".into())
    );
    assert_eq!(condition(&sf, "Ready").map(|c| c.0), Some("False".into()));
    // Children are applied even though Kafka is down.
    let _: Deployment = wait_for(&env, "nokafka-gateway").await?;

    let api: Api<Storefront> = env.ns.api();
    api.delete("nokafka", &DeleteParams::default()).await?;
    wait_until(Duration::from_secs(60), || async {
        Ok(api.get_opt("nokafka").await?.is_none().then_some(()))
    })
    .await
    .context("deletion blocked by unreachable Kafka")?;
    wait_for_events(
        &env,
        "nokafka",
        &[
            "KafkaUnavailable",
            "TopicDeletionFailed",
            "TopicDeletionAbandoned",
        ],
    )
    .await?;
    operator.stop().await?;
    env.ns.cleanup().await
}

async fn lease_holder(env: &Env) -> anyhow::Result<Option<String>> {
    let leases: Api<Lease> = env.ns.api();
    Ok(leases
        .get_opt("storefront-operator")
        .await?
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity))
}

#[tokio::test]
async fn second_instance_stays_idle_while_the_leader_lives_then_takes_over() -> anyhow::Result<()> {
    let env = env().await?;
    let first = Operator::start(&env, "first");
    wait_until(WAIT, || async {
        Ok((lease_holder(&env).await?.as_deref() == Some("first")).then_some(()))
    })
    .await?;
    let second = Operator::start(&env, "second");
    apply_sf(&env, &storefront("ha", json!({}))).await?;
    let _: Deployment = wait_for(&env, "ha-gateway").await?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(lease_holder(&env).await?.as_deref(), Some("first"));
    let events = events_for(&env, "ha").await?;
    assert!(!events.is_empty());

    first.stop().await?;
    wait_until(WAIT, || async {
        Ok((lease_holder(&env).await?.as_deref() == Some("second")).then_some(()))
    })
    .await
    .context("second instance took over")?;
    let services: Api<Service> = env.ns.api();
    services.delete("ha-auth", &DeleteParams::default()).await?;
    wait_until(WAIT, || async {
        Ok(services
            .get_opt("ha-auth")
            .await?
            .filter(|s| s.metadata.deletion_timestamp.is_none()))
    })
    .await
    .context("the new leader reconciles")?;
    second.stop().await?;
    if lease_holder(&env).await?.is_some() {
        bail!("the Lease was not released on shutdown");
    }
    env.ns.cleanup().await
}

fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("operator/ sits in the repository root")
        .to_path_buf()
}

async fn kubectl(args: &[&str], stdin: Option<String>) -> anyhow::Result<String> {
    use tokio::io::AsyncWriteExt;
    let kubeconfig = Stack::get().kubeconfig.display().to_string();
    let mut child = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(args)
        .current_dir(repo_root())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("run kubectl (Debian kubernetes-client)")?;
    let mut input = child.stdin.take().context("stdin")?;
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).await?;
    }
    drop(input);
    let out = child.wait_with_output().await?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "kubectl {args:?} failed: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(text)
}

#[tokio::test]
async fn every_manifest_passes_a_server_side_dry_run() -> anyhow::Result<()> {
    let env = env().await?;
    let ns = env.ns.name().to_owned();
    let out = kubectl(
        &["apply", "--dry-run=server", "-f", "crds/storefront.yaml"],
        None,
    )
    .await?;
    assert!(out.contains("storefronts.storefront.dev"), "{out}");
    // The operator's manifests, moved into the test namespace (which exists).
    let rendered = kubectl(&["kustomize", "manifests/operator"], None).await?;
    let rendered = rendered.replace("storefront-system", &ns);
    let out = kubectl(&["apply", "--dry-run=server", "-f", "-"], Some(rendered)).await?;
    for kind in [
        "deployment.apps",
        "clusterrole",
        "serviceaccount",
        "role.rbac",
    ] {
        assert!(out.contains(kind), "{kind} missing from {out}");
    }
    let out = kubectl(
        &[
            "apply",
            "--dry-run=server",
            "-n",
            &ns,
            "-f",
            "manifests/samples/storefront.yaml",
        ],
        None,
    )
    .await?;
    assert!(out.contains("storefront.storefront.dev/shop"), "{out}");
    env.ns.cleanup().await
}

#[tokio::test]
async fn operator_binary_serves_metrics_leads_and_releases_on_sigterm() -> anyhow::Result<()> {
    let env = env().await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_storefront-operator"))
        .arg("run")
        .args(["--lease-duration-secs", "3", "--renew-secs", "1"])
        .env("KUBECONFIG", &Stack::get().kubeconfig)
        .env("WATCH_NAMESPACE", env.ns.name())
        .env("POD_NAMESPACE", env.ns.name())
        .env("POD_NAME", "binary")
        .env("METRICS_ADDR", format!("127.0.0.1:{port}"))
        .kill_on_drop(true)
        .spawn()
        .context("start storefront-operator")?;
    apply_sf(&env, &storefront("bin", json!({}))).await?;
    wait_status(&env, "bin", |sf| condition(sf, "Progressing").is_some()).await?;
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    assert!(
        http.get(format!("{base}/healthz"))
            .send()
            .await?
            .status()
            .is_success()
    );
    assert!(
        http.get(format!("{base}/readyz"))
            .send()
            .await?
            .status()
            .is_success()
    );
    // The status can be visible before the reconcile that wrote it has recorded its metrics.
    let wanted = [
        "storefront_operator_reconcile_duration_seconds",
        "storefront_operator_reconciles_total",
        "storefront_operator_leader 1",
    ];
    let metrics = storefront_tests::wait_until(Duration::from_secs(15), || {
        let http = http.clone();
        let url = format!("{base}/metrics");
        async move {
            let text = http.get(url).send().await?.text().await?;
            Ok(wanted.iter().all(|l| text.contains(l)).then_some(text))
        }
    })
    .await;
    assert!(
        metrics.is_ok(),
        "metrics never showed {wanted:?}: {metrics:?}"
    );
    assert_eq!(lease_holder(&env).await?.as_deref(), Some("binary"));
    let pid = child.id().context("pid")?;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(20), child.wait()).await??;
    assert!(exit.success(), "{exit}");
    assert_eq!(lease_holder(&env).await?, None, "Lease not released");
    let api: Api<Storefront> = env.ns.api();
    api.delete("bin", &DeleteParams::default()).await?;
    env.ns.cleanup().await
}
