//! `spawn_app()`: the auth service on the local stack's MariaDB (a database of its own) or on
//! embedded SQLite in a temporary directory.

use std::time::Duration;

use anyhow::Context as _;
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use storefront_auth::Settings;
use storefront_auth::settings::SigningKey;
use storefront_kit::auth::Issuer;
use storefront_kit::backend::SqlUrl;
use storefront_kit::server::Platform;
use storefront_kit::settings::Secret;
use storefront_tests::{MysqlDatabase, Stack};

pub const PASSWORD: &str = "correct horse battery staple";

/// Which database a test app runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backends {
    /// MariaDB of the local stack.
    Real,
    /// SQLite in a temporary directory.
    Embedded,
}

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub platform: Platform,
    pub app_state: storefront_auth::service::AppState,
    _db: Option<MysqlDatabase>,
    _dir: tempfile::TempDir,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.platform.shutdown.trigger();
    }
}

/// Test settings: cheap password hashing, everything else default.
pub fn settings() -> Settings {
    Settings {
        listen: "127.0.0.1:0".into(),
        password_memory_kib: 1024,
        password_iterations: 1,
        ..Settings::default()
    }
}

/// A signing key setting with a fresh key.
pub fn signing_key(kid: &str) -> (SigningKey, Issuer) {
    let issuer = Issuer::generate(kid, "storefront", "storefront");
    let pem = issuer.to_pkcs8_pem().expect("pem");
    (
        SigningKey {
            kid: kid.into(),
            pem: Secret::new(pem),
        },
        issuer,
    )
}

pub async fn spawn_app(backends: Backends) -> TestApp {
    spawn_with(backends, settings()).await
}

/// The service on `backends` with `settings` (listen and database are set here; with MariaDB
/// a fresh key is configured unless the settings name keys).
pub async fn spawn_with(backends: Backends, settings: Settings) -> TestApp {
    try_spawn(backends, settings)
        .await
        .expect("spawn the auth service")
}

pub async fn mysql_settings(mut settings: Settings) -> anyhow::Result<(Settings, MysqlDatabase)> {
    let db = Stack::get().mysql_database().await?;
    settings.database_url = Some(SqlUrl::parse(db.url())?);
    Ok((settings, db))
}

async fn try_spawn(backends: Backends, mut settings: Settings) -> anyhow::Result<TestApp> {
    let dir = tempfile::tempdir()?;
    let mut db = None;
    if backends == Backends::Real {
        let (s, d) = mysql_settings(settings).await?;
        settings = s;
        db = Some(d);
        if settings.signing_keys.is_empty() {
            settings.signing_keys = vec![signing_key("test-key").0];
        }
    }
    let platform = Platform::new(dir.path(), Duration::from_secs(5));
    let app = storefront_auth::app::build(&settings, &platform)
        .await
        .context("build")?;
    let base = format!("http://127.0.0.1:{}", app.port());
    let app_state = app.state().clone();
    tokio::spawn(app.run_until_stopped(platform.clone()));
    Ok(TestApp {
        base,
        http: reqwest::Client::new(),
        platform,
        app_state,
        _db: db,
        _dir: dir,
    })
}

/// A response's status, headers and JSON body.
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    async fn from(r: Response) -> Self {
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Self {
            status,
            headers,
            body,
        }
    }

    /// The field names of a validation problem.
    pub fn fields(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e["field"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn is_problem(&self) -> bool {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            == Some("application/problem+json")
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let mut req = self.http.request(method, self.url(path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        Answer::from(req.send().await.expect("request")).await
    }

    pub async fn send_raw(&self, method: Method, path: &str, body: &str) -> Answer {
        let r = self
            .http
            .request(method, self.url(path))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("request");
        Answer::from(r).await
    }

    pub async fn get_with_token(&self, path: &str, token: &str) -> Answer {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request");
        Answer::from(r).await
    }

    pub async fn sign_up(&self, email: &str, password: &str, name: &str) -> Answer {
        self.send(
            Method::POST,
            "/v1/accounts",
            Some(json!({"email": email, "password": password, "name": name})),
        )
        .await
    }

    pub async fn login(&self, email: &str, password: &str) -> Answer {
        self.send(
            Method::POST,
            "/v1/sessions",
            Some(json!({"email": email, "password": password})),
        )
        .await
    }

    pub async fn refresh(&self, token: &str) -> Answer {
        self.send(
            Method::POST,
            "/v1/sessions/refresh",
            Some(json!({"refresh_token": token})),
        )
        .await
    }

    pub async fn logout(&self, token: &str) -> Answer {
        self.send(
            Method::DELETE,
            "/v1/sessions",
            Some(json!({"refresh_token": token})),
        )
        .await
    }

    pub async fn me(&self, access_token: &str) -> Answer {
        self.get_with_token("/v1/me", access_token).await
    }

    /// Signs up and logs in; returns the login body.
    pub async fn customer(&self, email: &str) -> Value {
        let r = self.sign_up(email, PASSWORD, "Ada Lovelace").await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let r = self.login(email, PASSWORD).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.body
    }
}

pub fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("{key} in {v}"))
}
