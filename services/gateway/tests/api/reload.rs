//! Hot reload: a valid new file takes effect without a restart; an invalid one keeps the
//! running configuration and shows in `/readyz` until it is fixed.

use std::time::Duration;

use crate::helpers::{Upstream, answer, config, route, spawn};

#[tokio::test]
async fn a_valid_file_is_applied_and_an_invalid_one_is_reported_and_ignored() {
    let up = Upstream::start("u");
    let first = config(
        &[route(
            "/api/products",
            "search",
            &[&up],
            "methods: [GET], auth: public",
        )],
        "",
    );
    let gw = spawn(&first).await;
    assert_eq!(gw.get("/api/new").await.status().as_u16(), 404);
    let (status, body) = gw.readyz().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"]["config"]["status"], "up");

    // A keep-alive connection opened before the reload keeps working after it.
    let client = reqwest::Client::new();
    assert_eq!(
        client
            .get(gw.url("/api/products"))
            .send()
            .await
            .expect("GET")
            .status()
            .as_u16(),
        200
    );

    let second = config(
        &[
            route(
                "/api/products",
                "search",
                &[&up],
                "methods: [GET], auth: public",
            ),
            route(
                "/api/new",
                "search",
                &[&up],
                "rewrite: /v1/fresh, methods: [GET], auth: public",
            ),
        ],
        "",
    );
    gw.write_config(&second);
    storefront_tests::wait_until(Duration::from_secs(10), || async {
        Ok((gw.get("/api/new").await.status().as_u16() == 200).then_some(()))
    })
    .await
    .expect("the new route is served");
    let (_, _, body) = answer(client.get(gw.url("/api/new/x")).send().await.expect("GET")).await;
    assert_eq!(body["path"], "/v1/fresh/x");

    // An invalid file: the running configuration stays, readyz names the problem but stays 200
    // (`degraded`), so a bad ConfigMap never takes every replica out of rotation.
    gw.write_config("version: 1\nroutes:\n- {pathPrefix: /api/broken, service: x, upstream: 'http://127.0.0.1:1', methods: [GET], auth: sometimes}\n");
    let body = storefront_tests::wait_until(Duration::from_secs(10), || async {
        let (status, body) = gw.readyz().await;
        assert_eq!(status, 200, "{body}");
        Ok((body["status"] == "degraded").then_some(body))
    })
    .await
    .expect("readyz reports the rejected file");
    let error = body["checks"]["config"]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(error.contains("routes[0].auth"), "{body}");
    assert_eq!(
        gw.get("/api/new").await.status().as_u16(),
        200,
        "the last good config serves"
    );
    assert_eq!(gw.get("/api/broken").await.status().as_u16(), 404);
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("gateway_config_reload_errors_total"),
        "{metrics}"
    );

    // Fixed again: ready.
    gw.write_config(&first);
    storefront_tests::wait_until(Duration::from_secs(10), || async {
        let (status, body) = gw.readyz().await;
        Ok((status == 200 && body["status"] == "ready").then_some(()))
    })
    .await
    .expect("ready again");
    assert_eq!(gw.get("/api/new").await.status().as_u16(), 404);
}

#[tokio::test]
async fn a_configmap_style_symlink_swap_is_noticed() {
    // Kubernetes mounts a ConfigMap as `gateway.yaml -> ..data/gateway.yaml` with
    // `..data -> ..<timestamp>/`, and updates it by re-pointing `..data`.
    let up = Upstream::start("u");
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let write_version = |name: &str, text: &str| {
        let version = root.join(name);
        std::fs::create_dir_all(&version).expect("mkdir");
        std::fs::write(version.join("gateway.yaml"), text).expect("write");
        let tmp = root.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(name, &tmp).expect("symlink");
        std::fs::rename(&tmp, root.join("..data")).expect("swap");
    };
    write_version(
        "..v1",
        &config(
            &[route(
                "/api/one",
                "x",
                &[&up],
                "methods: [GET], auth: public",
            )],
            "",
        ),
    );
    std::os::unix::fs::symlink("..data/gateway.yaml", root.join("gateway.yaml")).expect("link");
    let gw = crate::helpers::spawn_on(
        root.join("gateway.yaml"),
        crate::helpers::Options::default(),
        tempfile::tempdir().expect("tempdir"),
    )
    .await;
    assert_eq!(gw.get("/api/one").await.status().as_u16(), 200);
    write_version(
        "..v2",
        &config(
            &[route(
                "/api/two",
                "x",
                &[&up],
                "methods: [GET], auth: public",
            )],
            "",
        ),
    );
    storefront_tests::wait_until(Duration::from_secs(10), || async {
        Ok((gw.get("/api/two").await.status().as_u16() == 200).then_some(()))
    })
    .await
    .expect("the swapped file is applied");
    assert_eq!(gw.get("/api/one").await.status().as_u16(), 404);
    drop(dir);
}
