//! Behaviour of the auth service, written once and run on MariaDB and on SQLite.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use storefront_kit::auth::testing::TestIssuer;
use storefront_kit::auth::{Role, Verifier, VerifierSettings};

use crate::helpers::{Backends, PASSWORD, settings, signing_key, spawn_app, spawn_with, str_of};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn kid_of(token: &str) -> String {
    let header = token.split('.').next().expect("header");
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("b64")).expect("json");
    header["kid"].as_str().expect("kid").to_string()
}

pub async fn sign_up_login_and_me(b: Backends) {
    let app = spawn_app(b).await;
    let r = app
        .sign_up("Ada@Example.com", PASSWORD, "Ada Lovelace")
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["email"], "ada@example.com");
    assert_eq!(r.body["roles"], json!(["customer"]));
    let id = str_of(&r.body, "id").to_string();

    let again = app.sign_up("ada@example.com", PASSWORD, "Ada").await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    assert!(again.is_problem());

    let login = app.login("ADA@example.com", PASSWORD).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    assert_eq!(login.body["token_type"], "Bearer");
    assert_eq!(login.body["expires_in"], 900);
    let access = str_of(&login.body, "access_token");
    assert!(!str_of(&login.body, "refresh_token").is_empty());

    let me = app.me(access).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    assert_eq!(me.body["id"], id.as_str());
    assert_eq!(me.body["name"], "Ada Lovelace");

    let anonymous = app.send(Method::GET, "/v1/me", None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert!(anonymous.is_problem());

    let doc = app.send(Method::GET, "/openapi.json", None).await;
    for path in [
        "/v1/accounts",
        "/v1/sessions",
        "/v1/sessions/refresh",
        "/v1/me",
        "/.well-known/jwks.json",
    ] {
        assert!(doc.body["paths"][path].is_object(), "{path} documented");
    }

    let ready = app.send(Method::GET, "/readyz", None).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    assert_eq!(ready.body["checks"]["database"]["status"], "up");
}

pub async fn refresh_rotates_the_token(b: Backends) {
    let app = spawn_app(b).await;
    let login = app.customer("rotate@example.com").await;
    let first = str_of(&login, "refresh_token");

    let r = app.refresh(first).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let second = str_of(&r.body, "refresh_token").to_string();
    assert_ne!(second, first, "a new refresh token on every use");
    let me = app.me(str_of(&r.body, "access_token")).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);

    let r = app.refresh(&second).await;
    assert_eq!(r.status, StatusCode::OK, "the new token works: {}", r.body);

    let unknown = app.refresh("no-such-token").await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert!(unknown.is_problem());
}

pub async fn reusing_a_spent_refresh_token_revokes_its_family(b: Backends) {
    let app = spawn_app(b).await;
    let login = app.customer("reuse@example.com").await;
    let first = str_of(&login, "refresh_token").to_string();
    let r = app.refresh(&first).await;
    assert_eq!(r.status, StatusCode::OK);
    let second = str_of(&r.body, "refresh_token").to_string();

    // A thief replays the spent token: refused, and the family is revoked...
    let replay = app.refresh(&first).await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED, "{}", replay.body);
    // ...so the newer token, the one the rightful owner holds, stops working too.
    let newer = app.refresh(&second).await;
    assert_eq!(newer.status, StatusCode::UNAUTHORIZED, "{}", newer.body);

    // Two concurrent uses of one live token: exactly one wins, the other is a reuse.
    let other = app.login("reuse@example.com", PASSWORD).await;
    let token = str_of(&other.body, "refresh_token").to_string();
    let (a, b) = tokio::join!(app.refresh(&token), app.refresh(&token));
    let wins = [a.status, b.status]
        .iter()
        .filter(|s| **s == StatusCode::OK)
        .count();
    assert_eq!(wins, 1, "{} / {}", a.body, b.body);

    // Another session of the same account is not affected.
    let other = app.login("reuse@example.com", PASSWORD).await;
    let r = app.refresh(str_of(&other.body, "refresh_token")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

pub async fn logout_revokes_the_session(b: Backends) {
    let app = spawn_app(b).await;
    let login = app.customer("logout@example.com").await;
    let refresh = str_of(&login, "refresh_token").to_string();
    let r = app.refresh(&refresh).await;
    let current = str_of(&r.body, "refresh_token").to_string();

    let out = app.logout(&current).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT, "{}", out.body);
    let r = app.refresh(&current).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    let unknown = app.logout("never-issued").await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);

    // Pruning deletes sessions once they expire (here: a month and a day from now).
    let live = app.login("logout@example.com", PASSWORD).await;
    let live = str_of(&live.body, "refresh_token").to_string();
    let later = i64::try_from(now()).expect("i64") + 31 * 24 * 3600;
    assert_eq!(app.app_state.repo.prune(0, 0).await.expect("prune"), 0);
    let deleted = app.app_state.repo.prune(later, later).await.expect("prune");
    assert!(deleted >= 4, "tokens and families: {deleted}");
    let r = app.refresh(&live).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
}

pub async fn failed_logins_look_the_same_whether_or_not_the_account_exists(b: Backends) {
    let app = spawn_app(b).await;
    app.customer("exists@example.com").await;
    let wrong = app.login("exists@example.com", "wrong password!").await;
    let unknown = app.login("nobody@example.com", "wrong password!").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.body, unknown.body);
    assert_eq!(
        wrong.headers.get("content-type"),
        unknown.headers.get("content-type")
    );
}

pub async fn login_is_limited_per_account_with_growing_back_off(b: Backends) {
    let app = spawn_with(
        b,
        storefront_auth::Settings {
            login_max_failures_per_account: 3,
            login_max_failures_per_ip: 1000,
            ..settings()
        },
    )
    .await;
    app.customer("locked@example.com").await;
    for _ in 0..3 {
        let r = app.login("locked@example.com", "wrong password!").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    }
    // Locked now, even for the right password.
    let r = app.login("locked@example.com", PASSWORD).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert!(r.is_problem());
    let retry: u64 = r.headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=2).contains(&retry), "first lock is 2 s: {retry}");
    // An unknown account locks the same way: the limit does not reveal existence.
    for _ in 0..3 {
        app.login("ghost@example.com", "wrong password!").await;
    }
    let ghost = app.login("ghost@example.com", PASSWORD).await;
    assert_eq!(ghost.status, StatusCode::TOO_MANY_REQUESTS);
    // Other accounts are not affected.
    app.customer("free@example.com").await;

    tokio::time::sleep(Duration::from_secs(retry + 1)).await;
    let r = app.login("locked@example.com", "wrong password!").await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "lock expired: {}",
        r.body
    );
    let r = app.login("locked@example.com", PASSWORD).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let longer: u64 = r.headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(longer > 2, "the next lock is longer: {longer}");
}

pub async fn login_is_limited_per_ip(b: Backends) {
    let app = spawn_with(
        b,
        storefront_auth::Settings {
            login_max_failures_per_account: 1000,
            login_max_failures_per_ip: 3,
            ..settings()
        },
    )
    .await;
    app.customer("victim@example.com").await;
    for i in 0..3 {
        let r = app
            .login(&format!("spray{i}@example.com"), "wrong password!")
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    }
    let r = app.login("victim@example.com", PASSWORD).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert!(r.headers.contains_key("retry-after"));
}

pub async fn issued_tokens_verify_against_the_jwks_and_forgeries_fail(b: Backends) {
    let app = spawn_app(b).await;
    let login = app.customer("jwks@example.com").await;
    let access = str_of(&login, "access_token").to_string();

    let jwks = app.send(Method::GET, "/.well-known/jwks.json", None).await;
    assert_eq!(jwks.status, StatusCode::OK);
    let kid = kid_of(&access);
    let keys = jwks.body["keys"].as_array().expect("keys");
    assert!(
        keys.iter().any(|k| k["kid"] == kid.as_str()),
        "{}",
        jwks.body
    );
    assert!(
        keys.iter().all(|k| k.get("d").is_none()),
        "no private parts"
    );

    let verifier = Verifier::from_settings(&VerifierSettings {
        jwks_url: app.url("/.well-known/jwks.json"),
        ..VerifierSettings::default()
    });
    let identity = verifier.verify(&access).await.expect("verifies");
    assert_eq!(identity.roles, vec![Role::Customer]);
    let me = app.me(&access).await;
    assert_eq!(identity.subject, str_of(&me.body, "id"));
    assert!(identity.expires_at <= now() + 900 && identity.expires_at > now() + 800);

    let signer = app.app_state.keys.signer().clone();
    let parts: Vec<&str> = access.split('.').collect();
    let mut corpus: Vec<(&str, String)> = Vec::new();
    let mut c = signer.claims(
        &identity.subject,
        &[Role::Customer],
        Duration::from_secs(60),
    );
    c.exp = now() - 120;
    c.nbf = now() - 600;
    c.iat = now() - 600;
    corpus.push(("expired", signer.sign(&c).expect("sign")));
    let mut c = signer.claims(
        &identity.subject,
        &[Role::Customer],
        Duration::from_secs(60),
    );
    c.aud = "elsewhere".into();
    corpus.push(("wrong audience", signer.sign(&c).expect("sign")));
    let mut c = signer.claims(
        &identity.subject,
        &[Role::Customer],
        Duration::from_secs(60),
    );
    c.iss = "evil".into();
    corpus.push(("wrong issuer", signer.sign(&c).expect("sign")));
    let escalated = signer.claims(&identity.subject, &[Role::Admin], Duration::from_secs(60));
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&escalated).expect("json"));
    corpus.push((
        "tampered payload",
        format!("{}.{payload}.{}", parts[0], parts[2]),
    ));
    let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).expect("sig");
    sig[0] ^= 1;
    corpus.push((
        "tampered signature",
        format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(sig)),
    ));
    let none = URL_SAFE_NO_PAD.encode(
        serde_json::to_vec(&json!({"alg": "none", "typ": "JWT", "kid": kid})).expect("json"),
    );
    corpus.push(("alg none", format!("{none}.{}.", parts[1])));
    corpus.push((
        "unknown key",
        TestIssuer::new().token(&identity.subject, &[Role::Admin]),
    ));
    corpus.push(("garbage", "not.a.token".into()));
    corpus.push(("empty", String::new()));

    for (name, token) in corpus {
        let r = app.me(&token).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{name}: {}", r.body);
        assert!(r.is_problem(), "{name}");
        if !token.is_empty() {
            assert!(verifier.verify(&token).await.is_err(), "{name}");
        }
    }
}

pub async fn tokens_of_the_previous_key_verify_during_rotation(b: Backends) {
    let (new_key, _) = signing_key("key-2");
    let (old_key, old) = signing_key("key-1");
    let app = spawn_with(
        b,
        storefront_auth::Settings {
            signing_keys: vec![new_key, old_key],
            ..settings()
        },
    )
    .await;
    let login = app.customer("rotation@example.com").await;
    let access = str_of(&login, "access_token");
    assert_eq!(kid_of(access), "key-2", "the first key signs");
    let me = app.me(access).await;
    let id = str_of(&me.body, "id");

    let jwks = app.send(Method::GET, "/.well-known/jwks.json", None).await;
    let kids: Vec<&str> = jwks.body["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert_eq!(kids, vec!["key-2", "key-1"]);

    // A token the old key signed before the rotation still works.
    let old_token = old
        .token(id, &[Role::Customer], Duration::from_secs(900))
        .expect("sign");
    let r = app.me(&old_token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let verifier = Verifier::from_settings(&VerifierSettings {
        jwks_url: app.url("/.well-known/jwks.json"),
        ..VerifierSettings::default()
    });
    verifier.verify(&old_token).await.expect("old key verifies");
}

pub async fn admins_grant_roles_and_seeding_is_idempotent(b: Backends) {
    let app = spawn_app(b).await;
    let state = &app.app_state;
    let admin_id = storefront_auth::seed_account(
        state,
        "admin@example.com",
        PASSWORD,
        "Admin",
        &[Role::Admin],
    )
    .await
    .expect("seed");
    let again = storefront_auth::seed_account(
        state,
        "admin@example.com",
        "another password!",
        "Admin",
        &[Role::Admin],
    )
    .await
    .expect("seed again");
    assert_eq!(admin_id, again);
    let admin = app.login("admin@example.com", PASSWORD).await;
    assert_eq!(admin.status, StatusCode::OK, "seeding kept the password");
    let admin_token = str_of(&admin.body, "access_token").to_string();

    let customer = app.customer("partner@example.com").await;
    let customer_token = str_of(&customer, "access_token").to_string();
    let customer_id = str_of(&app.me(&customer_token).await.body, "id").to_string();
    let path = format!("/v1/accounts/{customer_id}/roles");

    let forbidden = app
        .http
        .post(app.url(&path))
        .bearer_auth(&customer_token)
        .json(&json!({"roles": ["admin"]}))
        .send()
        .await
        .expect("request");
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);

    let granted = app
        .http
        .post(app.url(&path))
        .bearer_auth(&admin_token)
        .json(&json!({"roles": ["partner"]}))
        .send()
        .await
        .expect("request");
    assert_eq!(granted.status(), StatusCode::OK);
    let body: Value = granted.json().await.expect("json");
    assert_eq!(body["roles"], json!(["customer", "partner"]));

    let missing = app
        .http
        .post(app.url("/v1/accounts/no-such-id/roles"))
        .bearer_auth(&admin_token)
        .json(&json!({"roles": ["partner"]}))
        .send()
        .await
        .expect("request");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    // The next refresh carries the new role.
    let r = app.refresh(str_of(&customer, "refresh_token")).await;
    let id = Verifier::new("storefront", "storefront", None, app.app_state.keys.jwks())
        .verify(str_of(&r.body, "access_token"))
        .await
        .expect("verify");
    assert!(id.has(Role::Partner));
}

pub async fn bad_input_is_a_problem_naming_the_field(b: Backends) {
    let app = spawn_app(b).await;
    let admin = {
        storefront_auth::seed_account(
            &app.app_state,
            "root@example.com",
            PASSWORD,
            "Root",
            &[Role::Admin],
        )
        .await
        .expect("seed");
        let r = app.login("root@example.com", PASSWORD).await;
        str_of(&r.body, "access_token").to_string()
    };
    let cases: Vec<(Method, &str, Value, &str)> = vec![
        (
            Method::POST,
            "/v1/accounts",
            json!({"password": PASSWORD, "name": "A"}),
            "email",
        ),
        (
            Method::POST,
            "/v1/accounts",
            json!({"email": "no-at-sign", "password": PASSWORD, "name": "A"}),
            "email",
        ),
        (
            Method::POST,
            "/v1/accounts",
            json!({"email": "a@example.com", "password": "short", "name": "A"}),
            "password",
        ),
        (
            Method::POST,
            "/v1/accounts",
            json!({"email": "a@example.com", "password": PASSWORD, "name": "  "}),
            "name",
        ),
        (
            Method::POST,
            "/v1/accounts",
            json!({"email": 7, "password": PASSWORD, "name": "A"}),
            "email",
        ),
        (
            Method::POST,
            "/v1/sessions",
            json!({"email": "a@example.com"}),
            "password",
        ),
        (
            Method::POST,
            "/v1/sessions",
            json!({"email": "a@", "password": "x"}),
            "email",
        ),
        (
            Method::POST,
            "/v1/sessions",
            json!({"email": "a@example.com", "password": ["x"]}),
            "password",
        ),
        (
            Method::POST,
            "/v1/sessions/refresh",
            json!({}),
            "refresh_token",
        ),
        (
            Method::POST,
            "/v1/sessions/refresh",
            json!({"refresh_token": 42}),
            "refresh_token",
        ),
        (
            Method::DELETE,
            "/v1/sessions",
            json!({"refresh_token": ""}),
            "refresh_token",
        ),
    ];
    for (method, path, body, field) in cases {
        let r = app.send(method.clone(), path, Some(body.clone())).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{method} {path} {body}: {}",
            r.body
        );
        assert!(r.is_problem());
        assert!(
            r.fields().iter().any(|f| f == field),
            "{path} {body}: {}",
            r.body
        );
    }
    let roles = format!("/v1/accounts/{}/roles", "x");
    for (body, field) in [
        (json!({}), "roles"),
        (json!({"roles": ["admin", "king"]}), "roles[1]"),
    ] {
        let r = app
            .http
            .post(app.url(&roles))
            .bearer_auth(&admin)
            .json(&body)
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let problem: Value = r.json().await.expect("json");
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    for path in ["/v1/accounts", "/v1/sessions", "/v1/sessions/refresh"] {
        let r = app.send_raw(Method::POST, path, "{").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(r.is_problem());
        let r = app
            .http
            .post(app.url(path))
            .body("email=a")
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{path}");
        let r = app
            .send_raw(Method::POST, path, "{\"unexpected\": 1}")
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{path}: {}",
            r.body
        );
    }
}
