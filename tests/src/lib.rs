//! Test kit for Storefront tests that talk to the **real** local stack.
//!
//! The servers are started by `tests/stack/stack up` (see `tests/stack/README.md`):
//! MariaDB, Redis, Kafka, OpenSearch, FerretDB (MongoDB protocol), mailpit (SMTP)
//! and a Kubernetes API server, all on fixed loopback ports. There are no fakes:
//! a test that uses this kit fails when its server is not there.
//!
//! [`Stack::get`] finds the servers from the `STOREFRONT_TEST_*` environment
//! variables, falling back to the env file that `stack up` writes to
//! `${STOREFRONT_CACHE:-$HOME/.cache/storefront}/stack/env`. It panics, telling the
//! developer to run `tests/stack/stack up`, when neither is there.
//!
//! Every test gets its own namespace so tests run in parallel and leave nothing
//! behind: a MariaDB database ([`Stack::mysql_database`]), a Redis key prefix
//! ([`Stack::redis_namespace`]), Kafka topics ([`Stack::kafka_topic`]), an
//! OpenSearch index name ([`Stack::opensearch_index`]), a Mongo database
//! ([`Stack::mongo_database`]), a mailbox address on mailpit ([`Stack::mailbox`])
//! and a Kubernetes namespace ([`Stack::kube_namespace`]).
//!
//! Each namespace value cleans up when it is dropped (even when the test panics),
//! on a helper thread with its own runtime, so it works from any async test.
//! Call its `cleanup().await` to clean up explicitly and see errors. Set
//! `STOREFRONT_TEST_KEEP=1` to keep everything for a post-mortem.
//!
//! ```no_run
//! use storefront_tests::Stack;
//!
//! #[tokio::test]
//! async fn saves_a_cart() -> anyhow::Result<()> {
//!     let stack = Stack::get();
//!     let db = stack.mysql_database().await?;
//!     let pool = db.pool().await?;
//!     sqlx::query("CREATE TABLE carts (id BIGINT PRIMARY KEY)").execute(&pool).await?;
//!     // ... exercise the service against db.url() ...
//!     pool.close().await;
//!     db.cleanup().await
//! }
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// How to bring the stack up, repeated in every "not found" message.
const HOW_TO_START: &str = "start the local stack with `tests/stack/stack up` \
(from the repository root), or export the STOREFRONT_TEST_* variables it prints with \
`eval \"$(tests/stack/stack env)\"`";

/// Where the servers of the local stack are, as `tests/stack/stack env` tells.
#[derive(Debug, Clone)]
pub struct Stack {
    /// `STOREFRONT_TEST_MYSQL_URL`: server URL without a database, e.g.
    /// `mysql://root:storefront@127.0.0.1:13306`. The user may create and drop databases.
    pub mysql_url: String,
    /// `STOREFRONT_TEST_REDIS_URL`, e.g. `redis://127.0.0.1:16379`.
    pub redis_url: String,
    /// `STOREFRONT_TEST_KAFKA_BROKERS`, a `bootstrap.servers` list, e.g. `127.0.0.1:19092`.
    pub kafka_brokers: String,
    /// `STOREFRONT_TEST_OPENSEARCH_URL`, the Elasticsearch-API endpoint, e.g. `http://127.0.0.1:19200`.
    pub opensearch_url: String,
    /// `STOREFRONT_TEST_MONGODB_URL`, e.g. `mongodb://127.0.0.1:27018` (FerretDB).
    pub mongodb_url: String,
    /// `STOREFRONT_TEST_SMTP_URL`, a lettre connection URL, e.g. `smtp://127.0.0.1:11025`.
    pub smtp_url: String,
    /// `STOREFRONT_TEST_MAILPIT_URL`, mailpit's REST API, e.g. `http://127.0.0.1:18025`.
    pub mailpit_url: String,
    /// `STOREFRONT_TEST_OTLP_URL`, the OTLP/HTTP receiver of the stack's Jaeger (an
    /// OpenTelemetry Collector distribution), e.g. `http://127.0.0.1:14318`; traces go to
    /// `<url>/v1/traces`.
    pub otlp_url: String,
    /// `STOREFRONT_TEST_JAEGER_URL`, the query API of that Jaeger (what arrived), e.g.
    /// `http://127.0.0.1:16686`.
    pub jaeger_url: String,
    /// `STOREFRONT_TEST_KUBECONFIG`, a kubeconfig with cluster-admin rights on the test API server.
    pub kubeconfig: PathBuf,
    /// `STOREFRONT_TEST_SERVICEMONITOR_CRD`, if set: the Prometheus operator's ServiceMonitor CRD
    /// (YAML) that `tests/stack/stack install` fetched.
    pub servicemonitor_crd: Option<PathBuf>,
    /// `STOREFRONT_TEST_KAFKA_HOME`, if set: the Kafka distribution (`libs/*.jar`) the broker runs from.
    pub kafka_home: Option<PathBuf>,
    /// `STOREFRONT_STACK_DIR`, if set: the stack's cache directory (logs, data, pid files).
    pub stack_dir: Option<PathBuf>,
}

static STACK: OnceLock<Stack> = OnceLock::new();

impl Stack {
    /// The stack's Kafka as a service's events URL: `kafka://<brokers>`.
    pub fn kafka_url(&self) -> String {
        format!("kafka://{}", self.kafka_brokers)
    }

    /// The local stack, read once per process.
    ///
    /// # Panics
    /// When the stack's variables are neither in the environment nor in the env
    /// file written by `tests/stack/stack up`: a test must never pass without its server.
    pub fn get() -> &'static Stack {
        STACK.get_or_init(|| match Self::from_env() {
            Ok(stack) => stack,
            Err(e) => {
                panic!("storefront-tests: the local stack was not found: {e:#}\n=> {HOW_TO_START}")
            }
        })
    }

    /// Read the stack's location from the environment, then from the env file
    /// (`$STOREFRONT_STACK_DIR/env`, else `${STOREFRONT_CACHE:-$HOME/.cache/storefront}/stack/env`).
    /// A variable set in the environment wins over the file.
    pub fn from_env() -> anyhow::Result<Stack> {
        let file = env_file_path();
        let from_file = match &file {
            Some(path) if path.exists() => parse_env_file(path)?,
            _ => HashMap::new(),
        };
        let lookup = |name: &str| -> Option<String> {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .or_else(|| from_file.get(name).cloned())
        };
        let mut missing = Vec::new();
        let mut need = |name: &str| -> String {
            lookup(name).unwrap_or_else(|| {
                missing.push(name.to_owned());
                String::new()
            })
        };
        let stack = Stack {
            mysql_url: need("STOREFRONT_TEST_MYSQL_URL"),
            redis_url: need("STOREFRONT_TEST_REDIS_URL"),
            kafka_brokers: need("STOREFRONT_TEST_KAFKA_BROKERS"),
            opensearch_url: need("STOREFRONT_TEST_OPENSEARCH_URL"),
            mongodb_url: need("STOREFRONT_TEST_MONGODB_URL"),
            smtp_url: need("STOREFRONT_TEST_SMTP_URL"),
            mailpit_url: need("STOREFRONT_TEST_MAILPIT_URL"),
            otlp_url: need("STOREFRONT_TEST_OTLP_URL"),
            jaeger_url: need("STOREFRONT_TEST_JAEGER_URL"),
            kubeconfig: PathBuf::from(need("STOREFRONT_TEST_KUBECONFIG")),
            servicemonitor_crd: lookup("STOREFRONT_TEST_SERVICEMONITOR_CRD").map(PathBuf::from),
            kafka_home: lookup("STOREFRONT_TEST_KAFKA_HOME").map(PathBuf::from),
            stack_dir: lookup("STOREFRONT_STACK_DIR").map(PathBuf::from),
        };
        if !missing.is_empty() {
            let where_file = match &file {
                Some(p) => format!("{} (exists: {})", p.display(), p.exists()),
                None => "no env file location (HOME unset)".to_owned(),
            };
            bail!(
                "{} not set in the environment nor in {where_file}",
                missing.join(", ")
            );
        }
        Ok(stack)
    }

    // ---- MariaDB ---------------------------------------------------------------

    /// Create a fresh, empty MariaDB database for one test.
    ///
    /// The database is dropped by [`MysqlDatabase::cleanup`] or when the value is dropped.
    pub async fn mysql_database(&self) -> anyhow::Result<MysqlDatabase> {
        use sqlx::Connection as _;
        let name = unique_name("t", '_');
        let mut conn = sqlx::MySqlConnection::connect(&self.mysql_url)
            .await
            .with_context(|| {
                format!(
                    "connect to MariaDB at {} (is the stack up?)",
                    redact(&self.mysql_url)
                )
            })?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
        )))
        .execute(&mut conn)
        .await
        .with_context(|| format!("create database {name}"))?;
        conn.close().await.ok();
        let url = format!("{}/{name}", self.mysql_url.trim_end_matches('/'));
        let cleanup = CleanupOnDrop::new(format!("MariaDB database {name}"), {
            let server = self.mysql_url.clone();
            let name = name.clone();
            move || drop_mysql_database(server, name)
        });
        Ok(MysqlDatabase { name, url, cleanup })
    }

    // ---- Redis -------------------------------------------------------------------

    /// A unique key prefix (`t-<id>:`) for one test; every key under it is deleted at cleanup.
    pub async fn redis_namespace(&self) -> anyhow::Result<RedisNamespace> {
        let client = redis::Client::open(self.redis_url.as_str())
            .context("parse STOREFRONT_TEST_REDIS_URL")?;
        // Fail early and clearly when the server is not there.
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .with_context(|| {
                format!("connect to Redis at {} (is the stack up?)", self.redis_url)
            })?;
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .context("Redis PING")?;
        let prefix = format!("{}:", unique_name("t", '-'));
        let cleanup = CleanupOnDrop::new(format!("Redis keys {prefix}*"), {
            let url = self.redis_url.clone();
            let prefix = prefix.clone();
            move || delete_redis_prefix(url, prefix)
        });
        Ok(RedisNamespace {
            prefix,
            client,
            cleanup,
        })
    }

    // ---- Kafka -------------------------------------------------------------------

    /// An rdkafka client configuration pointing at the test broker.
    pub fn kafka_config(&self) -> rdkafka::ClientConfig {
        let mut config = rdkafka::ClientConfig::new();
        config.set("bootstrap.servers", &self.kafka_brokers);
        config
    }

    /// Create a uniquely named topic (`<label>-<id>`) with `partitions` partitions
    /// (replication factor 1; the broker does not auto-create topics).
    ///
    /// The topic is deleted by [`KafkaTopic::cleanup`] or when the value is dropped.
    pub async fn kafka_topic(&self, label: &str, partitions: i32) -> anyhow::Result<KafkaTopic> {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        use rdkafka::client::DefaultClientContext;
        let name = unique_name(&sanitize(label, '-', 100), '-');
        let admin: AdminClient<DefaultClientContext> = self
            .kafka_config()
            .create()
            .context("create Kafka admin client")?;
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = admin
            .create_topics(
                &[NewTopic::new(&name, partitions, TopicReplication::Fixed(1))],
                &opts,
            )
            .await
            .with_context(|| {
                format!(
                    "create Kafka topic {name} at {} (is the stack up?)",
                    self.kafka_brokers
                )
            })?;
        for result in results {
            if let Err((topic, code)) = result {
                bail!("create Kafka topic {topic}: {code}");
            }
        }
        let cleanup = CleanupOnDrop::new(format!("Kafka topic {name}"), {
            let brokers = self.kafka_brokers.clone();
            let name = name.clone();
            move || delete_kafka_topic(brokers, name)
        });
        Ok(KafkaTopic {
            name,
            partitions,
            cleanup,
        })
    }

    // ---- OpenSearch ----------------------------------------------------------------

    /// An `elasticsearch` client for the test OpenSearch node.
    pub fn elasticsearch(&self) -> anyhow::Result<elasticsearch::Elasticsearch> {
        let transport =
            elasticsearch::http::transport::Transport::single_node(&self.opensearch_url)
                .context("build elasticsearch transport")?;
        Ok(elasticsearch::Elasticsearch::new(transport))
    }

    /// A unique index name (`<label>-<id>`, lower case) for one test. Nothing is
    /// created: the test (or the code under test) creates the index. Cleanup deletes
    /// the index and every index whose name starts with `<name>-`
    /// (see [`OpenSearchIndex::derived`]).
    pub async fn opensearch_index(&self, label: &str) -> anyhow::Result<OpenSearchIndex> {
        let health = format!(
            "{}/_cluster/health",
            self.opensearch_url.trim_end_matches('/')
        );
        http()
            .get(&health)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .with_context(|| format!("reach OpenSearch at {health} (is the stack up?)"))?;
        let name = unique_name(&sanitize(&label.to_lowercase(), '-', 100), '-');
        let cleanup = CleanupOnDrop::new(format!("OpenSearch index {name}"), {
            let url = self.opensearch_url.clone();
            let name = name.clone();
            move || delete_opensearch_indices(url, name)
        });
        Ok(OpenSearchIndex { name, cleanup })
    }

    // ---- MongoDB (FerretDB) ---------------------------------------------------------

    /// A `mongodb` client for the test server.
    pub async fn mongo_client(&self) -> anyhow::Result<mongodb::Client> {
        mongodb::Client::with_uri_str(&self.mongodb_url)
            .await
            .with_context(|| format!("connect to MongoDB at {}", self.mongodb_url))
    }

    /// A uniquely named Mongo database for one test, dropped at cleanup.
    pub async fn mongo_database(&self) -> anyhow::Result<MongoDatabase> {
        let client = self.mongo_client().await?;
        client
            .database("admin")
            .run_command(mongodb::bson::doc! { "ping": 1 })
            .await
            .with_context(|| format!("ping MongoDB at {} (is the stack up?)", self.mongodb_url))?;
        let name = unique_name("t", '_');
        let cleanup = CleanupOnDrop::new(format!("Mongo database {name}"), {
            let url = self.mongodb_url.clone();
            let name = name.clone();
            move || drop_mongo_database(url, name)
        });
        Ok(MongoDatabase {
            name,
            client,
            cleanup,
        })
    }

    // ---- SMTP / mailpit ---------------------------------------------------------------

    /// A lettre SMTP transport for the test mail server (plain SMTP, no auth needed).
    pub fn smtp_transport(
        &self,
    ) -> anyhow::Result<lettre::AsyncSmtpTransport<lettre::Tokio1Executor>> {
        Ok(
            lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(&self.smtp_url)
                .with_context(|| format!("parse STOREFRONT_TEST_SMTP_URL {}", self.smtp_url))?
                .build(),
        )
    }

    /// A unique recipient address (`t-<id>@storefront.test`) whose messages a test
    /// can read back from mailpit. Cleanup deletes the messages sent to it.
    pub fn mailbox(&self) -> Mailbox {
        let address = format!("{}@storefront.test", unique_name("t", '-'));
        let cleanup = CleanupOnDrop::new(format!("mailpit messages to {address}"), {
            let url = self.mailpit_url.clone();
            let address = address.clone();
            move || delete_mailpit_messages(url, address)
        });
        Mailbox {
            address,
            api: self.mailpit_url.trim_end_matches('/').to_owned(),
            cleanup,
        }
    }

    // ---- Kubernetes --------------------------------------------------------------------

    /// A `kube` client with cluster-admin rights on the test API server.
    pub async fn kube_client(&self) -> anyhow::Result<kube::Client> {
        kube_client_from(&self.kubeconfig).await
    }

    /// Create a uniquely named Kubernetes namespace for one test, deleted at cleanup.
    pub async fn kube_namespace(&self) -> anyhow::Result<KubeNamespace> {
        use k8s_openapi::api::core::v1::Namespace;
        use kube::api::{Api, ObjectMeta, PostParams};
        let client = self.kube_client().await?;
        let name = unique_name("t", '-');
        let api: Api<Namespace> = Api::all(client.clone());
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(
                    [(
                        "storefront.test/owner".to_owned(),
                        "storefront-tests".to_owned(),
                    )]
                    .into(),
                ),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        api.create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("create namespace {name} (is the stack up?)"))?;
        let cleanup = CleanupOnDrop::new(format!("Kubernetes namespace {name}"), {
            let kubeconfig = self.kubeconfig.clone();
            let name = name.clone();
            move || delete_kube_namespace(kubeconfig, name)
        });
        Ok(KubeNamespace {
            name,
            client,
            cleanup,
        })
    }
}

// =====================================================================================
// Namespaces
// =====================================================================================

/// A MariaDB database of its own for one test. See [`Stack::mysql_database`].
#[derive(Debug)]
pub struct MysqlDatabase {
    name: String,
    url: String,
    cleanup: CleanupOnDrop,
}

impl MysqlDatabase {
    /// The database name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A URL for this database, e.g. `mysql://root:storefront@127.0.0.1:13306/t_0190...`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A small connection pool on this database. Close it before [`Self::cleanup`],
    /// or the drop waits for its connections to go.
    pub async fn pool(&self) -> anyhow::Result<sqlx::MySqlPool> {
        sqlx::mysql::MySqlPoolOptions::new()
            .max_connections(5)
            .connect(&self.url)
            .await
            .with_context(|| format!("connect to {}", redact(&self.url)))
    }

    /// Drop the database now.
    pub async fn cleanup(self) -> anyhow::Result<()> {
        self.cleanup.run_now().await
    }
}

/// A Redis key prefix of its own for one test. See [`Stack::redis_namespace`].
#[derive(Debug)]
pub struct RedisNamespace {
    prefix: String,
    client: redis::Client,
    cleanup: CleanupOnDrop,
}

impl RedisNamespace {
    /// The prefix, ending in `:`, e.g. `t-0190abcd1234:`. Give it to the code under test.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `prefix + suffix`: a key inside this namespace.
    pub fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    /// The client for the test server.
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// A reconnecting connection to the test server.
    pub async fn connection(&self) -> anyhow::Result<redis::aio::ConnectionManager> {
        self.client
            .get_connection_manager()
            .await
            .context("connect to Redis")
    }

    /// Delete every key under the prefix now.
    pub async fn cleanup(self) -> anyhow::Result<()> {
        self.cleanup.run_now().await
    }
}

/// A Kafka topic of its own for one test. See [`Stack::kafka_topic`].
#[derive(Debug)]
pub struct KafkaTopic {
    name: String,
    partitions: i32,
    cleanup: CleanupOnDrop,
}

impl KafkaTopic {
    /// The topic name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The number of partitions it was created with.
    pub fn partitions(&self) -> i32 {
        self.partitions
    }

    /// Delete the topic now.
    pub async fn cleanup(self) -> anyhow::Result<()> {
        self.cleanup.run_now().await
    }
}

/// An OpenSearch index name of its own for one test. See [`Stack::opensearch_index`].
#[derive(Debug)]
pub struct OpenSearchIndex {
    name: String,
    cleanup: CleanupOnDrop,
}

impl OpenSearchIndex {
    /// The index name (lower case, unique).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `<name>-<suffix>`: more indices (versions, aliases' targets) that cleanup also deletes.
    pub fn derived(&self, suffix: &str) -> String {
        format!("{}-{}", self.name, suffix.to_lowercase())
    }

    /// Delete the index and its derived indices now.
    pub async fn cleanup(self) -> anyhow::Result<()> {
        self.cleanup.run_now().await
    }
}

/// A Mongo database of its own for one test. See [`Stack::mongo_database`].
#[derive(Debug)]
pub struct MongoDatabase {
    name: String,
    client: mongodb::Client,
    cleanup: CleanupOnDrop,
}

impl MongoDatabase {
    /// The database name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The database handle.
    pub fn database(&self) -> mongodb::Database {
        self.client.database(&self.name)
    }

    /// The client it came from.
    pub fn client(&self) -> &mongodb::Client {
        &self.client
    }

    /// Drop the database now.
    pub async fn cleanup(self) -> anyhow::Result<()> {
        self.cleanup.run_now().await
    }
}

/// A recipient address of its own for one test, with mailpit's API to read what it got.
/// See [`Stack::mailbox`].
#[derive(Debug)]
pub struct Mailbox {
    address: String,
    api: String,
    cleanup: CleanupOnDrop,
}

/// One message as mailpit's `GET /api/v1/message/{ID}` returns it (fields used by tests).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MailMessage {
    /// mailpit's message id.
    #[serde(rename = "ID")]
    pub id: String,
    /// The Subject header.
    pub subject: String,
    /// From address.
    pub from: MailAddress,
    /// To addresses.
    #[serde(default)]
    pub to: Vec<MailAddress>,
    /// The text/plain part, empty if none.
    #[serde(default)]
    pub text: String,
    /// The text/html part, empty if none.
    #[serde(rename = "HTML", default)]
    pub html: String,
}

/// A mail address as mailpit reports it.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MailAddress {
    /// Display name, may be empty.
    #[serde(default)]
    pub name: String,
    /// The address.
    pub address: String,
}

impl Mailbox {
    /// The unique recipient address.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The ids of the messages delivered to this address so far (newest first).
    pub async fn message_ids(&self) -> anyhow::Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct Summary {
            #[serde(rename = "ID")]
            id: String,
        }
        #[derive(serde::Deserialize)]
        struct Search {
            messages: Vec<Summary>,
        }
        let search: Search = http()
            .get(format!("{}/api/v1/search", self.api))
            .query(&[
                ("query", format!("to:\"{}\"", self.address)),
                ("limit", "500".to_owned()),
            ])
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .context("mailpit search")?
            .json()
            .await
            .context("mailpit search reply")?;
        Ok(search.messages.into_iter().map(|m| m.id).collect())
    }

    /// One message with its text and HTML parts.
    pub async fn message(&self, id: &str) -> anyhow::Result<MailMessage> {
        http()
            .get(format!("{}/api/v1/message/{id}", self.api))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .with_context(|| format!("mailpit message {id}"))?
            .json()
            .await
            .context("mailpit message reply")
    }

    /// Wait until at least `count` messages arrived (polling mailpit), then return
    /// them all, newest first.
    pub async fn wait_for(
        &self,
        count: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<MailMessage>> {
        let ids = wait_until(timeout, || async {
            let ids = self.message_ids().await?;
            Ok((ids.len() >= count).then_some(ids))
        })
        .await
        .with_context(|| format!("waiting for {count} message(s) to {}", self.address))?;
        let mut messages = Vec::with_capacity(ids.len());
        for id in ids {
            messages.push(self.message(&id).await?);
        }
        Ok(messages)
    }

    /// Delete this mailbox's messages now.
    pub async fn cleanup(self) -> anyhow::Result<()> {
        self.cleanup.run_now().await
    }
}

/// A Kubernetes namespace of its own for one test. See [`Stack::kube_namespace`].
pub struct KubeNamespace {
    name: String,
    client: kube::Client,
    cleanup: CleanupOnDrop,
}

impl std::fmt::Debug for KubeNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeNamespace")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl KubeNamespace {
    /// The namespace name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The client it was created with (cluster-admin).
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// An `Api` for namespaced resources of kind `K` in this namespace.
    pub fn api<K>(&self) -> kube::Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        kube::Api::namespaced(self.client.clone(), &self.name)
    }

    /// Delete the namespace now (the API server finishes deleting its content
    /// in the background).
    pub async fn cleanup(self) -> anyhow::Result<()> {
        self.cleanup.run_now().await
    }
}

// =====================================================================================
// Helpers
// =====================================================================================

/// A unique name: `<prefix><sep><12 hex digits of a UUIDv7 + v4 mix>`; time-ordered,
/// so leftovers from an interrupted run are easy to spot and sort.
pub fn unique_name(prefix: &str, sep: char) -> String {
    let v7 = uuid::Uuid::now_v7().simple().to_string();
    let v4 = uuid::Uuid::new_v4().simple().to_string();
    // 8 hex digits of time (v7, ms resolution) + 6 random hex digits.
    format!("{prefix}{sep}{}{}", &v7[..8], &v4[..6])
}

/// An HTTP server (an axum app) on a runtime and thread of its own, so that [`kill`] closes
/// its listener and every connection it has open, as the death of a process would: a server
/// on the test's runtime would keep serving the connections it already accepted.
///
/// [`kill`]: IsolatedServer::kill
pub struct IsolatedServer {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl IsolatedServer {
    /// Serves `app` on `listener` until killed or dropped.
    pub fn start(listener: std::net::TcpListener, app: axum::Router) -> Self {
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                tokio::select! {
                    _ = axum::serve(listener, app) => {}
                    _ = rx => {}
                }
            });
            // Dropping the runtime drops every connection task: the server is gone.
            rt.shutdown_background();
        });
        Self {
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    /// Stops serving and closes every open connection.
    pub fn kill(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for IsolatedServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The Prometheus text a service serves at `{base}/metrics` (panics unless it answers 200).
pub async fn metrics_text(http: &reqwest::Client, base: &str) -> String {
    let response = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(response.status(), 200, "GET {base}/metrics");
    response.text().await.expect("the metrics text")
}

/// The machine's 1, 5 and 15 minute load averages as `/proc/loadavg` gives them (`unknown`
/// where it cannot be read): benches print it beside their figures.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Poll `check` every 100 ms until it returns `Some`, or fail after `timeout`.
pub async fn wait_until<T, F, Fut>(timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = check().await;
        match last {
            Ok(Some(value)) => return Ok(value),
            Ok(None) if Instant::now() >= deadline => bail!("condition not met within {timeout:?}"),
            Err(e) if Instant::now() >= deadline => {
                return Err(e.context(format!("still failing after {timeout:?}")));
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Build a `kube::Client` from a kubeconfig file.
pub async fn kube_client_from(path: &Path) -> anyhow::Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("read kubeconfig {} (is the stack up?)", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .context("load kubeconfig")?;
    kube::Client::try_from(config).context("build kube client")
}

fn sanitize(label: &str, sep: char, max: usize) -> String {
    let mut out: String = label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { sep })
        .take(max)
        .collect();
    if out.is_empty() {
        out.push('t');
    }
    out
}

fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// The helpers' HTTP client, shared by every test in a process. Each `#[tokio::test]` has a
/// runtime of its own, and a pooled connection is driven by a task of the runtime that opened
/// it, so a connection kept idle would fail the next test's request once its runtime is gone
/// ("runtime dropped the dispatch task", seen in CI): none is kept.
fn http() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(0)
            .build()
            .unwrap_or_else(|e| panic!("build reqwest client: {e}"))
    })
}

fn env_file_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("STOREFRONT_STACK_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("env"));
    }
    let cache = match std::env::var_os("STOREFRONT_CACHE").filter(|d| !d.is_empty()) {
        Some(c) => PathBuf::from(c),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".cache/storefront"),
    };
    Some(cache.join("stack/env"))
}

/// Parse `export NAME=value` / `NAME=value` lines (values optionally quoted).
fn parse_env_file(path: &Path) -> anyhow::Result<HashMap<String, String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let l = l.strip_prefix("export ").unwrap_or(l);
            let (k, v) = l.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .or_else(|| v.strip_prefix('"').and_then(|v| v.strip_suffix('"')))
                .unwrap_or(v);
            Some((k.trim().to_owned(), v.to_owned()))
        })
        .collect())
}

// ---- cleanup machinery ----------------------------------------------------------------

type CleanupFn =
    Box<dyn FnOnce() -> futures::future::BoxFuture<'static, anyhow::Result<()>> + Send>;

/// Runs a cleanup exactly once: explicitly via `run_now`, else on drop on a helper
/// thread with its own Tokio runtime (so it also runs while a test panics, and from
/// inside any runtime). Cleanups make their own connections for that reason.
struct CleanupOnDrop {
    what: String,
    action: Option<CleanupFn>,
}

impl std::fmt::Debug for CleanupOnDrop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CleanupOnDrop")
            .field("what", &self.what)
            .finish_non_exhaustive()
    }
}

fn keep_requested() -> bool {
    std::env::var("STOREFRONT_TEST_KEEP").is_ok_and(|v| !v.is_empty() && v != "0")
}

impl CleanupOnDrop {
    fn new<F, Fut>(what: String, action: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let action: CleanupFn = Box::new(move || Box::pin(action()));
        CleanupOnDrop {
            what,
            action: Some(action),
        }
    }

    async fn run_now(mut self) -> anyhow::Result<()> {
        match self.action.take() {
            Some(_) if keep_requested() => {
                eprintln!(
                    "storefront-tests: STOREFRONT_TEST_KEEP set, keeping {}",
                    self.what
                );
                Ok(())
            }
            Some(action) => action()
                .await
                .with_context(|| format!("clean up {}", self.what)),
            None => Ok(()),
        }
    }
}

impl Drop for CleanupOnDrop {
    fn drop(&mut self) {
        let Some(action) = self.action.take() else {
            return;
        };
        if keep_requested() {
            eprintln!(
                "storefront-tests: STOREFRONT_TEST_KEEP set, keeping {}",
                self.what
            );
            return;
        }
        let what = std::mem::take(&mut self.what);
        let outcome = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("build cleanup runtime")?;
            runtime
                .block_on(async { tokio::time::timeout(Duration::from_secs(60), action()).await })?
        })
        .join();
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("storefront-tests: could not clean up {what}: {e:#}"),
            Err(_) => eprintln!("storefront-tests: cleanup of {what} panicked"),
        }
    }
}

async fn drop_mysql_database(server_url: String, name: String) -> anyhow::Result<()> {
    use sqlx::Connection as _;
    let mut conn = sqlx::MySqlConnection::connect(&server_url).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS `{name}`"
    )))
    .execute(&mut conn)
    .await?;
    conn.close().await.ok();
    Ok(())
}

async fn delete_redis_prefix(url: String, prefix: String) -> anyhow::Result<()> {
    let client = redis::Client::open(url.as_str())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let pattern = format!("{prefix}*");
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            let _: i64 = redis::cmd("UNLINK")
                .arg(&keys)
                .query_async(&mut conn)
                .await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

async fn delete_kafka_topic(brokers: String, name: String) -> anyhow::Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::types::RDKafkaErrorCode;
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.delete_topics(&[&name], &opts).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((topic, code)) => bail!("delete topic {topic}: {code}"),
        }
    }
    Ok(())
}

async fn delete_opensearch_indices(url: String, name: String) -> anyhow::Result<()> {
    let base = url.trim_end_matches('/');
    // exact name, then derived names; wildcards expand to nothing when absent
    for target in [name.clone(), format!("{name}-*")] {
        let response = reqwest::Client::new()
            .delete(format!("{base}/{target}"))
            .query(&[("ignore_unavailable", "true"), ("allow_no_indices", "true")])
            .send()
            .await?;
        let status = response.status();
        if !(status.is_success() || status == reqwest::StatusCode::NOT_FOUND) {
            bail!(
                "DELETE /{target}: {status}: {}",
                response.text().await.unwrap_or_default()
            );
        }
    }
    Ok(())
}

async fn drop_mongo_database(url: String, name: String) -> anyhow::Result<()> {
    let client = mongodb::Client::with_uri_str(&url).await?;
    client.database(&name).drop().await?;
    client.shutdown().await;
    Ok(())
}

async fn delete_mailpit_messages(url: String, address: String) -> anyhow::Result<()> {
    reqwest::Client::new()
        .delete(format!("{}/api/v1/search", url.trim_end_matches('/')))
        .query(&[("query", format!("to:\"{address}\""))])
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

async fn delete_kube_namespace(kubeconfig: PathBuf, name: String) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::{Api, DeleteParams};
    let client = kube_client_from(&kubeconfig).await?;
    let api: Api<Namespace> = Api::all(client);
    match api.delete(&name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_file_lines_parse_with_and_without_export_and_quotes() {
        let dir = std::env::temp_dir().join(unique_name("storefront-tests-env", '-'));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("env");
        std::fs::write(
            &path,
            "# comment\nexport A=mysql://root:x@127.0.0.1:1\nB='quoted value'\nexport C=\"dq\"\n\n",
        )
        .expect("write env");
        let vars = parse_env_file(&path).expect("parse");
        assert_eq!(vars["A"], "mysql://root:x@127.0.0.1:1");
        assert_eq!(vars["B"], "quoted value");
        assert_eq!(vars["C"], "dq");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn unique_names_differ_and_keep_the_prefix() {
        let a = unique_name("orders", '-');
        let b = unique_name("orders", '-');
        assert_ne!(a, b);
        assert!(
            a.starts_with("orders-") && a.len() == "orders-".len() + 14,
            "{a}"
        );
    }

    #[test]
    fn sanitize_keeps_only_safe_characters() {
        assert_eq!(sanitize("Cart Events/v1", '-', 100), "Cart-Events-v1");
        assert_eq!(sanitize("", '_', 10), "t");
    }

    #[test]
    fn redact_hides_the_password() {
        assert_eq!(
            redact("mysql://root:secret@127.0.0.1:13306"),
            "mysql://root:***@127.0.0.1:13306"
        );
    }
}
