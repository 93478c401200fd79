//! The reconcile loop: children by server-side apply, Kafka topics, status,
//! events, the topic finalizer, leader election and metrics.

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Debug,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use futures::StreamExt;
use k8s_openapi::{
    NamespaceResourceScope,
    api::{
        apps::v1::Deployment,
        autoscaling::v2::HorizontalPodAutoscaler,
        core::v1::{ConfigMap, Secret, Service, ServiceAccount},
        networking::v1::{Ingress, NetworkPolicy},
        policy::v1::PodDisruptionBudget,
    },
    apimachinery::pkg::apis::meta::v1::Time,
    jiff::Timestamp,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams},
    runtime::{
        Controller,
        controller::Action,
        events::{Event, EventType, Recorder, Reporter},
        finalizer::{Event as FinalizerEvent, finalizer},
        watcher,
    },
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    Component, ComponentStatus, Storefront, StorefrontStatus,
    children::{self, FIELD_MANAGER},
    crd::{CONDITION_DEGRADED, CONDITION_PAUSED, CONDITION_READY, DeletionPolicy, TopicManagement},
    gateway_config,
    leader::{LeaderElector, LeaseConfig},
    status::{self, Problem},
    topics,
};

/// Finalizer that deletes the Kafka topics (`deletionPolicy: delete`, admin mode).
pub const TOPICS_FINALIZER: &str = "storefront.dev/topics";

/// Errors of one reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Kafka could not be brought to the spec.
    #[error(transparent)]
    Topics(#[from] topics::TopicError),
    /// Reconciled, but something is wrong (reported in the Degraded condition).
    #[error("degraded: {0}")]
    Degraded(String),
    /// The finalizer helper failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// The JWT signing key could not be generated.
    #[error("generate the JWT signing key: {0}")]
    SigningKey(String),
}

impl Error {
    /// A fixed label for the errors metric.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Topics(_) => "kafka",
            Error::Degraded(_) => "degraded",
            Error::Finalizer(_) => "finalizer",
            Error::SigningKey(_) => "signing_key",
        }
    }
}

/// Result of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Operator settings.
#[derive(Clone, Debug)]
pub struct OperatorConfig {
    /// Watch only this namespace; all namespaces when `None`.
    pub namespace: Option<String>,
    /// Leader election.
    pub lease: LeaseConfig,
    /// Bound on each Kafka admin request.
    pub kafka_timeout: Duration,
    /// How long after deletion the finalizer keeps retrying topic deletion
    /// before it gives up (with a Warning event) and lets the Storefront go.
    pub topic_deletion_timeout: Duration,
    /// Periodic re-reconcile (topic drift is only seen this way).
    pub resync: Duration,
    /// First retry delay after an error; doubles per consecutive failure.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
}

impl OperatorConfig {
    /// Defaults for a candidate with this identity and Lease namespace.
    pub fn new(identity: String, lease_namespace: String) -> Self {
        Self {
            namespace: None,
            lease: LeaseConfig {
                namespace: lease_namespace,
                name: "storefront-operator".to_owned(),
                identity,
                lease_duration: Duration::from_secs(15),
                renew_every: Duration::from_secs(5),
            },
            kafka_timeout: Duration::from_secs(10),
            topic_deletion_timeout: Duration::from_secs(300),
            resync: Duration::from_secs(300),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
        }
    }
}

/// Shared state of the reconciler.
pub struct Context {
    client: Client,
    recorder: Recorder,
    config: OperatorConfig,
    failures: RwLock<HashMap<String, u32>>,
    optional_apis: RwLock<Option<(Instant, OptionalApis)>>,
}

/// CRDs of other operators, present or not.
#[derive(Clone, Copy, Debug, Default)]
struct OptionalApis {
    service_monitor: bool,
    kafka_topic: bool,
}

fn service_monitor_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor"),
        "servicemonitors",
    )
}

fn kafka_topic_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kafka.strimzi.io", "v1beta2", "KafkaTopic"),
        "kafkatopics",
    )
}

impl Context {
    /// Context for a controller using `client`.
    pub fn new(client: Client, config: OperatorConfig) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.to_owned(),
                instance: Some(config.lease.identity.clone()),
            },
        );
        Self {
            client,
            recorder,
            config,
            failures: RwLock::new(HashMap::new()),
            optional_apis: RwLock::new(None),
        }
    }

    async fn optional_apis(&self) -> OptionalApis {
        if let Ok(guard) = self.optional_apis.read()
            && let Some((at, apis)) = *guard
            && at.elapsed() < Duration::from_secs(30)
        {
            return apis;
        }
        let has =
            |list: Result<k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList, _>,
             plural: &str| {
                list.is_ok_and(|l| l.resources.iter().any(|r| r.name == plural))
            };
        let apis = OptionalApis {
            service_monitor: has(
                self.client
                    .list_api_group_resources("monitoring.coreos.com/v1")
                    .await,
                "servicemonitors",
            ),
            kafka_topic: has(
                self.client
                    .list_api_group_resources("kafka.strimzi.io/v1beta2")
                    .await,
                "kafkatopics",
            ),
        };
        if let Ok(mut guard) = self.optional_apis.write() {
            *guard = Some((Instant::now(), apis));
        }
        apis
    }

    async fn event(&self, sf: &Storefront, type_: EventType, reason: &str, note: String) {
        let ev = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &sf.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "could not publish event");
        }
    }
}

fn key(sf: &Storefront) -> String {
    format!("{}/{}", sf.namespace().unwrap_or_default(), sf.name_any())
}

// ------------------------------------------------------------------ applying

async fn apply<K>(client: &Client, ns: &str, obj: &K) -> Result<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Serialize
        + DeserializeOwned
        + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let name = obj.meta().name.clone().unwrap_or_default();
    Ok(api
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(obj),
        )
        .await?)
}

async fn apply_dynamic(
    client: &Client,
    ns: &str,
    resource: &ApiResource,
    obj: serde_json::Value,
) -> Result<()> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, resource);
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&obj),
    )
    .await?;
    Ok(())
}

/// Delete a child this Storefront owns, if it exists (a spec change turned it off).
async fn delete_owned<K>(client: &Client, sf: &Storefront, name: &str) -> Result<()>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug,
{
    let ns = sf.namespace().unwrap_or_default();
    let api: Api<K> = Api::namespaced(client.clone(), &ns);
    let uid = sf.uid().unwrap_or_default();
    if let Some(obj) = api.get_opt(name).await?
        && obj.owner_references().iter().any(|o| o.uid == uid)
    {
        api.delete(name, &Default::default()).await?;
    }
    Ok(())
}

/// Create the JWT signing-key Secret unless it exists; never overwrite it.
async fn ensure_signing_key(ctx: &Context, sf: &Storefront) -> Result<()> {
    let ns = sf.namespace().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let name = children::jwt_secret_name(sf);
    if api.get_metadata_opt(&name).await?.is_some() {
        return Ok(());
    }
    // Time-ordered, so a key added later with a fresh kid sorts greater and signs.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let kid = format!(
        "k{secs}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    );
    let issuer = storefront_kit::auth::Issuer::generate(&kid, "storefront", "storefront");
    let pem = issuer
        .to_pkcs8_pem()
        .map_err(|e| Error::SigningKey(e.to_string()))?;
    let mut secret = children::jwt_secret(sf, &pem, &kid);
    secret.metadata.namespace = Some(ns);
    match api
        .create(
            &PostParams {
                field_manager: Some(FIELD_MANAGER.to_owned()),
                ..PostParams::default()
            },
            &secret,
        )
        .await
    {
        Ok(_) => {
            ctx.event(
                sf,
                EventType::Normal,
                "SigningKeyCreated",
                format!("generated the JWT signing key in Secret {name} (kid {kid})"),
            )
            .await;
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Apply every child; returns the readiness of each component.
async fn apply_children(
    ctx: &Context,
    sf: &Storefront,
    problems: &mut Vec<Problem>,
) -> Result<BTreeMap<String, ComponentStatus>> {
    let client = &ctx.client;
    let ns = sf.namespace().unwrap_or_default();
    apply(client, &ns, &children::service_account(sf)).await?;
    ensure_signing_key(ctx, sf).await?;

    let rendered = gateway_config::render(&gateway_config::gateway_config(sf));
    let checksum = gateway_config::checksum(&rendered);
    apply(client, &ns, &children::gateway_configmap(sf, &rendered)).await?;

    let mut components = BTreeMap::new();
    for c in Component::ALL {
        let deployment = apply(client, &ns, &children::deployment(sf, c, &checksum)).await?;
        apply(client, &ns, &children::service(sf, c)).await?;
        if c.is_backend() {
            apply(client, &ns, &children::pods_service(sf, c)).await?;
        }
        apply(client, &ns, &children::pdb(sf, c)).await?;
        match children::hpa(sf, c) {
            Some(hpa) => {
                apply(client, &ns, &hpa).await?;
            }
            None => {
                delete_owned::<HorizontalPodAutoscaler>(
                    client,
                    sf,
                    &children::component_name(sf, c),
                )
                .await?;
            }
        }
        let ready = deployment
            .status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0);
        components.insert(
            c.as_str().to_owned(),
            ComponentStatus {
                ready_replicas: ready,
                desired_replicas: children::desired_replicas(sf, c),
            },
        );
    }
    match children::ingress(sf) {
        Some(ingress) => {
            apply(client, &ns, &ingress).await?;
        }
        None => delete_owned::<Ingress>(client, sf, &children::sf_name(sf)).await?,
    }
    for policy in children::network_policies(sf) {
        apply(client, &ns, &policy).await?;
    }

    let apis = ctx.optional_apis().await;
    if apis.service_monitor {
        apply_dynamic(
            client,
            &ns,
            &service_monitor_resource(),
            children::service_monitor(sf),
        )
        .await?;
    }
    if let Some(kafka) = &sf.spec.backends.kafka {
        match kafka.topic_management {
            TopicManagement::Admin => match topics::ensure_topics(kafka, ctx.config.kafka_timeout).await {
                Ok(changes) => topic_events(ctx, sf, &changes).await,
                Err(e) => problems.push(Problem {
                    reason: "KafkaUnavailable",
                    message: e.to_string(),
                }),
            },
            TopicManagement::Strimzi if apis.kafka_topic => {
                for base in topics::BASE_TOPICS {
                    apply_dynamic(client, &ns, &kafka_topic_resource(), children::kafka_topic(sf, kafka, base))
                        .await?;
                }
            }
            TopicManagement::Strimzi => problems.push(Problem {
                reason: "KafkaTopicCRDMissing",
                message: "topicManagement is strimzi but the kafka.strimzi.io/v1beta2 KafkaTopic API is not served".to_owned(),
            }),
            TopicManagement::None => {}
        }
    }
    Ok(components)
}

async fn topic_events(ctx: &Context, sf: &Storefront, changes: &topics::TopicChanges) {
    if !changes.created.is_empty() {
        ctx.event(
            sf,
            EventType::Normal,
            "TopicsCreated",
            format!("created Kafka topics {}", changes.created.join(", ")),
        )
        .await;
    }
    if !changes.grown.is_empty() {
        let list: Vec<String> = changes
            .grown
            .iter()
            .map(|(t, n)| format!("{t} to {n}"))
            .collect();
        ctx.event(
            sf,
            EventType::Normal,
            "PartitionsIncreased",
            format!("grew partitions of {}", list.join(", ")),
        )
        .await;
    }
    if !changes.reconfigured.is_empty() {
        ctx.event(
            sf,
            EventType::Normal,
            "TopicConfigCorrected",
            format!(
                "set the configuration of {} back to the spec",
                changes.reconfigured.join(", ")
            ),
        )
        .await;
    }
}

async fn write_status(ctx: &Context, sf: &Storefront, status: &StorefrontStatus) -> Result<()> {
    let api: Api<Storefront> =
        Api::namespaced(ctx.client.clone(), &sf.namespace().unwrap_or_default());
    let patch = json!({
        "apiVersion": "storefront.dev/v1alpha1",
        "kind": "Storefront",
        "status": status,
    });
    api.patch_status(
        &sf.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

async fn transition_events(
    ctx: &Context,
    sf: &Storefront,
    before: &StorefrontStatus,
    after: &StorefrontStatus,
) {
    let was = |t: &str, s: &str| status::is(&before.conditions, t, s);
    let now = |t: &str, s: &str| status::is(&after.conditions, t, s);
    if now(CONDITION_READY, "True") && !was(CONDITION_READY, "True") {
        ctx.event(
            sf,
            EventType::Normal,
            "Ready",
            "every component is available".to_owned(),
        )
        .await;
    }
    if now(CONDITION_DEGRADED, "True")
        && !was(CONDITION_DEGRADED, "True")
        && let Some(c) = after.condition(CONDITION_DEGRADED)
    {
        ctx.event(sf, EventType::Warning, &c.reason, c.message.clone())
            .await;
    }
    if now(CONDITION_DEGRADED, "False") && was(CONDITION_DEGRADED, "True") {
        ctx.event(
            sf,
            EventType::Normal,
            "Recovered",
            "no longer degraded".to_owned(),
        )
        .await;
    }
    if now(CONDITION_PAUSED, "True") && !was(CONDITION_PAUSED, "True") {
        ctx.event(
            sf,
            EventType::Normal,
            "Paused",
            "reconciliation paused by spec.paused".to_owned(),
        )
        .await;
    }
    if now(CONDITION_PAUSED, "False") && was(CONDITION_PAUSED, "True") {
        ctx.event(
            sf,
            EventType::Normal,
            "Resumed",
            "reconciliation resumed".to_owned(),
        )
        .await;
    }
}

fn now() -> Time {
    Time(Timestamp::now())
}

/// Whether this Storefront needs the topic finalizer.
fn needs_finalizer(sf: &Storefront) -> bool {
    sf.spec.backends.kafka.as_ref().is_some_and(|k| {
        k.topic_management == TopicManagement::Admin && k.deletion_policy == DeletionPolicy::Delete
    })
}

async fn remove_finalizer(ctx: &Context, sf: &Storefront) -> Result<()> {
    let finalizers = sf.finalizers();
    let Some(index) = finalizers.iter().position(|f| f == TOPICS_FINALIZER) else {
        return Ok(());
    };
    let api: Api<Storefront> =
        Api::namespaced(ctx.client.clone(), &sf.namespace().unwrap_or_default());
    let mut kept = finalizers.to_vec();
    kept.remove(index);
    // The resourceVersion makes this fail rather than drop a finalizer added meanwhile.
    let patch = json!({"metadata": {
        "finalizers": kept,
        "resourceVersion": sf.resource_version(),
    }});
    api.patch(
        &sf.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

async fn apply_storefront(sf: Arc<Storefront>, ctx: &Context) -> Result<Action> {
    let before = sf.status.clone().unwrap_or_default();
    let generation = sf.metadata.generation;
    if sf.spec.paused {
        let after = StorefrontStatus {
            observed_generation: generation,
            conditions: status::paused_conditions(&before.conditions, generation, &now()),
            ..before.clone()
        };
        if after != before {
            write_status(ctx, &sf, &after).await?;
            transition_events(ctx, &sf, &before, &after).await;
        }
        return Ok(Action::await_change());
    }
    if !needs_finalizer(&sf) {
        remove_finalizer(ctx, &sf).await?;
    }
    let mut problems = Vec::new();
    let applied = apply_children(ctx, &sf, &mut problems).await;
    let components = match &applied {
        Ok(c) => c.clone(),
        Err(e) => {
            problems.push(Problem {
                reason: "ApplyFailed",
                message: e.to_string(),
            });
            before.components.clone()
        }
    };
    let after = StorefrontStatus {
        observed_generation: generation,
        conditions: status::reconciled_conditions(
            &before.conditions,
            &components,
            &problems,
            generation,
            &now(),
        ),
        components,
        gateway_url: Some(children::gateway_url(&sf)),
    };
    if after != before {
        write_status(ctx, &sf, &after).await?;
        transition_events(ctx, &sf, &before, &after).await;
    }
    applied?;
    if !problems.is_empty() {
        let messages: Vec<String> = problems.into_iter().map(|p| p.message).collect();
        return Err(Error::Degraded(messages.join("; ")));
    }
    Ok(Action::requeue(ctx.config.resync))
}

async fn cleanup_storefront(sf: Arc<Storefront>, ctx: &Context) -> Result<Action> {
    let Some(kafka) = sf
        .spec
        .backends
        .kafka
        .as_ref()
        .filter(|_| needs_finalizer(&sf))
    else {
        return Ok(Action::await_change());
    };
    match topics::delete_topics(kafka, ctx.config.kafka_timeout).await {
        Ok(deleted) => {
            ctx.event(
                &sf,
                EventType::Normal,
                "TopicsDeleted",
                format!("deleted Kafka topics {}", deleted.join(", ")),
            )
            .await;
            Ok(Action::await_change())
        }
        Err(e) => {
            let deleted_at = sf
                .metadata
                .deletion_timestamp
                .as_ref()
                .map_or_else(Timestamp::now, |t| t.0);
            let waited = Timestamp::now().duration_since(deleted_at);
            let limit = ctx.config.topic_deletion_timeout;
            let before = sf.status.clone().unwrap_or_default();
            let gave_up = waited.as_secs() >= i64::try_from(limit.as_secs()).unwrap_or(i64::MAX);
            let (reason, message) = if gave_up {
                (
                    "TopicDeletionAbandoned",
                    format!(
                        "gave up deleting Kafka topics after {}s; they may remain: {e}",
                        limit.as_secs()
                    ),
                )
            } else {
                (
                    "TopicDeletionFailed",
                    format!(
                        "could not delete Kafka topics (retrying until {}s after deletion): {e}",
                        limit.as_secs()
                    ),
                )
            };
            let mut conditions = before.conditions.clone();
            status::set_condition(
                &mut conditions,
                CONDITION_DEGRADED,
                true,
                reason,
                &message,
                sf.metadata.generation,
                &now(),
            );
            let after = StorefrontStatus {
                conditions,
                ..before.clone()
            };
            if after != before {
                // Best effort: the object is going away.
                let _ = write_status(ctx, &sf, &after).await;
            }
            ctx.event(&sf, EventType::Warning, reason, message).await;
            if gave_up {
                Ok(Action::await_change())
            } else {
                Err(e.into())
            }
        }
    }
}

/// Reconcile one Storefront.
pub async fn reconcile(sf: Arc<Storefront>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let k = key(&sf);
    let span = tracing::info_span!("reconcile", storefront = %k);
    let use_finalizer = needs_finalizer(&sf)
        || (sf.meta().deletion_timestamp.is_some()
            && sf.finalizers().iter().any(|f| f == TOPICS_FINALIZER));
    let result = async {
        if use_finalizer {
            let api: Api<Storefront> =
                Api::namespaced(ctx.client.clone(), &sf.namespace().unwrap_or_default());
            finalizer(&api, TOPICS_FINALIZER, sf, |event| async {
                match event {
                    FinalizerEvent::Apply(sf) => apply_storefront(sf, &ctx).await,
                    FinalizerEvent::Cleanup(sf) => cleanup_storefront(sf, &ctx).await,
                }
            })
            .await
            .map_err(|e| Error::Finalizer(Box::new(e)))
        } else if sf.meta().deletion_timestamp.is_some() {
            Ok(Action::await_change())
        } else {
            apply_storefront(sf, &ctx).await
        }
    }
    .instrument(span)
    .await;
    metrics::histogram!("storefront_operator_reconcile_duration_seconds")
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("storefront_operator_reconciles_total").increment(1);
    match &result {
        Ok(_) => {
            if let Ok(mut f) = ctx.failures.write() {
                f.remove(&k);
            }
        }
        Err(e) => {
            metrics::counter!("storefront_operator_reconcile_errors_total", "kind" => e.kind())
                .increment(1);
            tracing::warn!(storefront = %k, error = %e, "reconcile failed");
        }
    }
    result
}

/// Retry with exponential backoff per Storefront: base × 2^(failures-1), capped.
pub fn error_policy(sf: Arc<Storefront>, _error: &Error, ctx: Arc<Context>) -> Action {
    let failures = ctx
        .failures
        .write()
        .map(|mut f| {
            let n = f.entry(key(&sf)).or_insert(0);
            *n = n.saturating_add(1);
            *n
        })
        .unwrap_or(1);
    Action::requeue(backoff(
        ctx.config.backoff_base,
        ctx.config.backoff_max,
        failures,
    ))
}

/// The delay after `failures` consecutive failures.
pub fn backoff(base: Duration, max: Duration, failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(20));
    base.saturating_mul(factor).min(max)
}

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Run the controller until `stop` is cancelled.
pub async fn run_controller(client: Client, config: OperatorConfig, stop: CancellationToken) {
    let ns = config.namespace.clone();
    let ns = ns.as_deref();
    let children =
        watcher::Config::default().labels("app.kubernetes.io/managed-by=storefront-operator");
    let ctx = Arc::new(Context::new(client.clone(), config));
    Controller::new(
        scoped::<Storefront>(&client, ns),
        watcher::Config::default().any_semantic(),
    )
    .owns(scoped::<Deployment>(&client, ns), children.clone())
    .owns(scoped::<Service>(&client, ns), children.clone())
    .owns(scoped::<ConfigMap>(&client, ns), children.clone())
    .owns(scoped::<ServiceAccount>(&client, ns), children.clone())
    .owns(scoped::<Secret>(&client, ns), children.clone())
    .owns(scoped::<PodDisruptionBudget>(&client, ns), children.clone())
    .owns(
        scoped::<HorizontalPodAutoscaler>(&client, ns),
        children.clone(),
    )
    .owns(scoped::<Ingress>(&client, ns), children.clone())
    .owns(scoped::<NetworkPolicy>(&client, ns), children)
    .graceful_shutdown_on(async move { stop.cancelled().await })
    .run(reconcile, error_policy, ctx)
    .for_each(|result| async move {
        if let Err(e) = result {
            tracing::debug!(error = %e, "controller event");
        }
    })
    .await;
}

/// Why the operator stopped leading.
#[derive(Debug, thiserror::Error)]
#[error("lost the leader Lease {0}")]
pub struct LostLease(pub String);

/// Run as one candidate: stand by until this instance holds the Lease, then
/// reconcile until `shutdown` is cancelled (releasing the Lease) or the Lease
/// is lost (an error: the process should exit and restart as a candidate).
pub async fn run(
    client: Client,
    config: OperatorConfig,
    shutdown: CancellationToken,
) -> Result<(), LostLease> {
    let mut elector = LeaderElector::new(client.clone(), config.lease.clone());
    let renew = config.lease.renew_every;
    metrics::gauge!("storefront_operator_leader").set(0.0);
    // Stand by.
    loop {
        match elector.try_acquire_or_renew().await {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "leader election: could not read or write the Lease")
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(renew) => {}
        }
    }
    tracing::info!(identity = %config.lease.identity, "leading: reconciling Storefronts");
    metrics::gauge!("storefront_operator_leader").set(1.0);
    let leading = shutdown.child_token();
    let controller = tokio::spawn(run_controller(client, config.clone(), leading.clone()));
    let mut last_renewed = Instant::now();
    let outcome = loop {
        tokio::select! {
            () = shutdown.cancelled() => break Ok(()),
            () = tokio::time::sleep(renew) => {}
        }
        match elector.try_acquire_or_renew().await {
            Ok(true) => last_renewed = Instant::now(),
            Ok(false) => break Err(LostLease(config.lease.name.clone())),
            Err(e) if last_renewed.elapsed() < config.lease.lease_duration => {
                tracing::warn!(error = %e, "leader election: renewal failed, retrying");
            }
            Err(_) => break Err(LostLease(config.lease.name.clone())),
        }
    };
    leading.cancel();
    let _ = controller.await;
    metrics::gauge!("storefront_operator_leader").set(0.0);
    if outcome.is_ok()
        && let Err(e) = elector.release().await
    {
        tracing::warn!(error = %e, "could not release the Lease");
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let base = Duration::from_secs(1);
        let max = Duration::from_secs(60);
        assert_eq!(backoff(base, max, 1), Duration::from_secs(1));
        assert_eq!(backoff(base, max, 2), Duration::from_secs(2));
        assert_eq!(backoff(base, max, 5), Duration::from_secs(16));
        assert_eq!(backoff(base, max, 7), max);
        assert_eq!(backoff(base, max, u32::MAX), max);
    }
}
