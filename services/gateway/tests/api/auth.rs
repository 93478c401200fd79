//! Token verification at the edge, with the real auth service's JWKS: the negative corpus is
//! refused with 401, role routes answer 403 to the wrong role, and the verified identity is
//! passed on with the token.

use storefront_kit::auth::Role;
use storefront_kit::auth::testing::negative_corpus;

use crate::helpers::{Upstream, answer, auth, config, route, spawn};

#[tokio::test]
async fn the_negative_corpus_is_refused_with_401() {
    let up = Upstream::start("cart");
    let gw = spawn(&config(
        &[route(
            "/api/cart",
            "cart",
            &[&up],
            "rewrite: /v1/cart, methods: [GET], auth: authenticated",
        )],
        "",
    ))
    .await;
    let issuer = &auth().issuer;
    // A valid token first (so the key is fetched and cached), then the corpus.
    let ok = gw
        .get_as("/api/cart", &auth().token("u-1", &[Role::Customer]))
        .await;
    assert_eq!(ok.status().as_u16(), 200);
    for (name, token) in negative_corpus(issuer) {
        let r = gw.get_as("/api/cart", &token).await;
        assert_eq!(r.status().as_u16(), 401, "{name}");
        assert!(r.headers().contains_key("www-authenticate"), "{name}");
        let (_, ct, _) = answer(r).await;
        assert_eq!(ct, "application/problem+json", "{name}");
    }
    let r = gw.get("/api/cart").await;
    assert_eq!(r.status().as_u16(), 401, "no token");
    assert_eq!(
        up.hits.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "only the valid call got through"
    );
}

#[tokio::test]
async fn role_routes_need_the_role_and_the_identity_is_passed_on() {
    let search = Upstream::start("search");
    let gw = spawn(&config(
        &[
            route(
                "/api/admin/products",
                "search",
                &[&search],
                "rewrite: /v1/products, methods: [GET, POST], auth: role, role: admin",
            ),
            route(
                "/api/products",
                "search",
                &[&search],
                "rewrite: /v1/products, methods: [GET], auth: public",
            ),
        ],
        "",
    ))
    .await;
    let customer = auth().token("c-1", &[Role::Customer]);
    let admin = auth().token("a-1", &[Role::Admin, Role::Customer]);

    let (status, ct, _) = answer(gw.get_as("/api/admin/products", &customer).await).await;
    assert_eq!((status, ct.as_str()), (403, "application/problem+json"));
    assert_eq!(gw.get("/api/admin/products").await.status().as_u16(), 401);

    let (status, _, body) = answer(gw.get_as("/api/admin/products/9", &admin).await).await;
    assert_eq!(status, 200);
    assert_eq!(body["path"], "/v1/products/9");
    assert_eq!(body["headers"]["x-user-id"], "a-1");
    assert_eq!(body["headers"]["x-user-roles"], "admin,customer");
    assert_eq!(
        body["headers"]["authorization"],
        format!("Bearer {admin}"),
        "the token goes on"
    );

    // Public routes need no token, and a spoofed identity header never reaches the service.
    let r = gw
        .http
        .get(gw.url("/api/products"))
        .header("x-user-roles", "admin")
        .send()
        .await
        .expect("GET");
    let (status, _, body) = answer(r).await;
    assert_eq!(status, 200);
    assert!(body["headers"].get("x-user-roles").is_none());
}
