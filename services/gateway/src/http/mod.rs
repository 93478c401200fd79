//! The gateway's HTTP surface: every path not served by the kit (`/healthz`, `/readyz`,
//! `/metrics`, `/openapi.json`) goes through [`gateway`]: route by longest prefix (404/405),
//! authenticate by the route's policy (401/403), rate-limit (429/503), forward. Paths no route
//! takes are the web UI's, except under `/api`, which are 404 problems.

pub mod ui;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use futures::future::BoxFuture;
use http::{HeaderName, HeaderValue, Method, header};
use storefront_kit::auth::{AuthError, Identity};
use storefront_kit::context::{Credentials, REQUEST_ID, RequestContext, TRACEPARENT};
use storefront_kit::problem::ApiError;
use storefront_kit::server::{Front, Via, push_field};
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use utoipa::OpenApi;

use crate::domain::client_ip::{X_FORWARDED_FOR, forwarded_for};
use crate::domain::config::{AuthPolicy, LimitKey};
use crate::domain::routing::{has_dot_segments, rewrite_path};
use crate::limits::{self, Outcome};
use crate::proxy::{self, Outgoing};
use crate::runtime::Shared;
use crate::tokens::Tokens;
use crate::upstream::HttpClient;
use crate::wire::Wire;

/// Headers carrying the verified caller to upstreams; never taken from clients.
pub const USER_ID: HeaderName = HeaderName::from_static("x-user-id");
pub const USER_ROLES: HeaderName = HeaderName::from_static("x-user-roles");
const FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

#[derive(OpenApi)]
#[openapi(info(
    title = "Storefront gateway",
    description = "Routes `/api/...` to the services (see each service's own document), serves the web UI at `/`."
))]
pub struct ApiDoc;

/// What every request needs.
#[derive(Clone)]
pub struct AppState {
    pub shared: Arc<Shared>,
    pub tokens: Arc<Tokens>,
    pub client: HttpClient,
    /// The fast path's upstream connections ([`crate::fast`]).
    pub wire: Wire,
    pub max_body: usize,
}

/// The gateway's routes: everything, with CORS for the given origins.
pub fn router(state: Arc<AppState>, cors_origins: &[String]) -> Router {
    let router = Router::new()
        .route(ROOT, any(gateway))
        .route(ANY_PATH, any(gateway))
        // One Arc for the state: a request clones one pointer, not the client's internals.
        .with_state(state);
    match cors(cors_origins) {
        Some(layer) => router.layer(layer),
        None => router,
    }
}

/// The router's two routes, which are also the `route` labels of the requests [`Proxied`]
/// answers: the same `http_requests_total` series whichever way a request went.
const ROOT: &str = "/";
const ANY_PATH: &str = "/{*path}";

/// The gateway's requests, answered ahead of the router (see
/// [`storefront_kit::server::Front`]) by the same [`answer`] the router's two routes call, and
/// under the same `route` labels: the router would only match them to one of those routes.
/// It leaves the router what that would not match (a path not starting with `/`, such as
/// `OPTIONS *`), and everything when CORS is on: tower-http's CORS layer in the router
/// answers every `OPTIONS` and adds `Vary` and `Access-Control-Expose-Headers` to every
/// response, with an `Origin` or without.
pub struct Proxied {
    pub state: Arc<AppState>,
    /// Whether the router has a CORS layer.
    pub cors: bool,
}

impl Proxied {
    pub fn new(state: Arc<AppState>, cors_origins: &[String]) -> Self {
        Self {
            state,
            cors: !cors_origins.is_empty(),
        }
    }
}

impl Front for Proxied {
    fn takes(&self, request: &Request) -> Option<&'static str> {
        let path = request.uri().path();
        if self.cors || !path.starts_with('/') {
            return None;
        }
        Some(if path == ROOT { ROOT } else { ANY_PATH })
    }

    fn answer(
        &self,
        peer: SocketAddr,
        ctx: RequestContext,
        request: Request,
        via: Via,
    ) -> BoxFuture<'static, Response> {
        Box::pin(answer(
            self.state.clone(),
            peer,
            ctx,
            request.into_parts(),
            via,
        ))
    }

    /// Simple requests skip hyper ([`crate::fast`]) whenever the front takes requests at all.
    fn fast(&self) -> bool {
        !self.cors
    }
}

fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::from(Any)
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok()),
        )
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([
                Method::GET,
                Method::HEAD,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::IF_MATCH,
                header::IF_NONE_MATCH,
                REQUEST_ID,
            ])
            .expose_headers([
                header::RETRY_AFTER,
                header::ETAG,
                header::LOCATION,
                limits::RATELIMIT,
                limits::RATELIMIT_POLICY,
                REQUEST_ID,
            ])
            .max_age(Duration::from_secs(600)),
    )
}

fn unauthorized(err: AuthError) -> Response {
    let mut response = ApiError::from(err).into_response();
    if response.status() == http::StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"storefront\""),
        );
    }
    response
}

/// Counts a request no route took (the routes count theirs, [`crate::runtime::Route::requests`]).
fn count_unmatched(status: http::StatusCode) {
    metrics::counter!(
        "gateway_requests_total",
        "route" => "unmatched",
        "status" => status.as_u16().to_string()
    )
    .increment(1);
}

/// Every request the kit does not serve itself and [`Proxied`] did not take.
async fn gateway(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ctx: RequestContext,
    request: Request,
) -> Response {
    answer(state, peer, ctx, request.into_parts(), Via::Hyper).await
}

/// Sets `name` to `value`, or removes what the client sent under it when there is none.
fn replace(headers: &mut http::HeaderMap, name: HeaderName, value: Option<HeaderValue>) {
    match value {
        Some(v) => {
            headers.insert(name, v);
        }
        None => {
            headers.remove(name);
        }
    }
}

/// The headers a forwarded request carries that the gateway sets: the client's address
/// appended to `X-Forwarded-For`, `X-Forwarded-Proto` and `X-Forwarded-Host` (kept as they
/// came only from a trusted proxy), the request id, the trace context of this hop, and the
/// verified caller (`X-User-Id`, `X-User-Roles`; what a client sent under those names is
/// never forwarded). `Host` and the hop-by-hop headers are not forwarded. One list decides
/// each of them, whether it is then set in a header map (hyper's path, [`Forwarded::apply`])
/// or written as head lines (the fast path, [`Forwarded::write`]).
struct Forwarded<'a> {
    fields: [(HeaderName, Field<'a>); 7],
}

/// What a forwarded request carries under one of the names the gateway sets.
enum Field<'a> {
    /// This value, whatever the client sent: text a header value may hold (see
    /// [`Field::text`]), made a header value only on hyper's path (the fast path writes it as
    /// it is).
    To(std::borrow::Cow<'a, str>),
    /// This hop's trace context, whatever the client sent.
    Trace(storefront_kit::context::TraceParent),
    /// The client's `Host`, or nothing when it sent none.
    ClientHost,
    /// What the client sent, as it came (from a trusted proxy).
    Kept,
    /// Nothing, whatever the client sent.
    Removed,
}

impl<'a> Field<'a> {
    /// `value` as the field's value, or no field when a header value may not hold it (a
    /// control character: what `HeaderValue::from_str` refuses).
    fn text(value: impl Into<std::borrow::Cow<'a, str>>) -> Self {
        let value = value.into();
        if value
            .bytes()
            .all(|b| (b >= 0x20 && b != 0x7f) || b == b'\t')
        {
            Self::To(value)
        } else {
            Self::Removed
        }
    }
}

impl<'a> Forwarded<'a> {
    fn new(
        runtime: &crate::runtime::Runtime,
        peer: SocketAddr,
        ctx: &'a RequestContext,
        headers: &http::HeaderMap,
        identity: Option<&'a Identity>,
    ) -> Self {
        let xff = forwarded_for(peer.ip(), headers, &runtime.trusted);
        let peer_trusted = crate::domain::client_ip::is_trusted(peer.ip(), &runtime.trusted);
        let (user, roles) = match identity {
            Some(id) => {
                // A role's name as it is (most callers have one), or the names joined.
                let roles: std::borrow::Cow<'_, str> = match id.roles.as_slice() {
                    [role] => role.as_str().into(),
                    roles => roles
                        .iter()
                        .map(|r| r.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                        .into(),
                };
                // Role names are header text; a subject is whatever the issuer signed.
                (Field::text(id.subject.as_str()), Field::To(roles))
            }
            None => (Field::Removed, Field::Removed),
        };
        let trusted_sent = |name: &HeaderName| peer_trusted && headers.contains_key(name);
        Self {
            fields: [
                // Text a header value may hold by how it is made, so not checked again: the
                // client's address after the values a trusted proxy sent (taken only when
                // they were visible ASCII), and `http`.
                (X_FORWARDED_FOR, Field::To(xff.into())),
                (
                    FORWARDED_PROTO,
                    if trusted_sent(&FORWARDED_PROTO) {
                        Field::Kept
                    } else {
                        Field::To("http".into())
                    },
                ),
                (
                    FORWARDED_HOST,
                    if trusted_sent(&FORWARDED_HOST) {
                        Field::Kept
                    } else {
                        Field::ClientHost
                    },
                ),
                // Header text: taken only as visible ASCII, or made here.
                (REQUEST_ID, Field::To(ctx.request_id.as_str().into())),
                (TRACEPARENT, Field::Trace(ctx.outgoing_traceparent())),
                (USER_ID, user),
                (USER_ROLES, roles),
            ],
        }
    }

    /// Whether the client's own header `name` is forwarded as it came.
    fn keeps(&self, name: &HeaderName) -> bool {
        !(*name == header::HOST
            || proxy::is_hop_by_hop(name)
            || self
                .fields
                .iter()
                .any(|(set, field)| set == name && !matches!(field, Field::Kept)))
    }

    /// Sets the forwarded headers in `headers`, the client's request headers with the
    /// hop-by-hop ones removed (hyper's path). Each header is written once: an insert replaces
    /// what the client sent under that name, so a name is removed only where nothing replaces
    /// it (each map operation hashes the name).
    fn apply(self, headers: &mut http::HeaderMap) {
        let mut client_host = headers.remove(header::HOST);
        for (name, field) in self.fields {
            match field {
                Field::To(value) => replace(headers, name, HeaderValue::from_str(&value).ok()),
                Field::Trace(trace) => replace(headers, name, Some(trace.header_value())),
                Field::ClientHost => replace(headers, name, client_host.take()),
                Field::Removed => replace(headers, name, None),
                Field::Kept => {}
            }
        }
    }

    /// Writes the header fields of the forwarded request, `headers` being the client's, as
    /// request head lines into `out` (the fast path's): the same fields [`Forwarded::apply`]
    /// leaves in a header map.
    fn write(&self, headers: &http::HeaderMap, out: &mut Vec<u8>) {
        let mut line = |name: &HeaderName, value: &[u8]| {
            push_field(out, name.as_str().as_bytes(), value);
        };
        // The client's `Host` (its first), seen on the way rather than looked up.
        let mut host = None;
        for (name, value) in headers {
            if self.keeps(name) {
                line(name, value.as_bytes());
            } else if *name == header::HOST {
                host.get_or_insert(value);
            }
        }
        for (name, field) in &self.fields {
            match field {
                Field::To(value) => line(name, value.as_bytes()),
                Field::Trace(trace) => line(name, &trace.encoded()),
                Field::ClientHost => {
                    if let Some(host) = host {
                        line(name, host.as_bytes());
                    }
                }
                Field::Kept | Field::Removed => {}
            }
        }
    }
}

/// Routes, authenticates, limits and forwards one request, whose head is `parts`.
///
/// Not an `async fn`: its future would keep the arguments twice, as they came and as the
/// body's bindings of them (408 bytes, copied with the rest each time the future moves).
#[allow(clippy::manual_async_fn)]
fn answer(
    state: Arc<AppState>,
    peer: SocketAddr,
    ctx: RequestContext,
    (mut parts, body): (http::request::Parts, axum::body::Body),
    via: Via,
) -> impl Future<Output = Response> + Send + 'static {
    async move {
        let runtime = state.shared.current.load_full();
        let path = parts.uri.path();
        if has_dot_segments(path) {
            return ApiError::BadRequest("The path may not hold `.` or `..` segments.".into())
                .into_response();
        }
        let Some(route) = runtime.route(path) else {
            let is_api = path == "/api" || path.starts_with("/api/");
            if !is_api && matches!(parts.method, Method::GET | Method::HEAD) {
                return ui::serve(path, &parts.headers);
            }
            count_unmatched(http::StatusCode::NOT_FOUND);
            return ApiError::NotFound(format!("No route for {path}.")).into_response();
        };
        if !route.allows(&parts.method) {
            route
                .requests
                .increment(http::StatusCode::METHOD_NOT_ALLOWED);
            let mut response = ApiError::MethodNotAllowed.into_response();
            response
                .headers_mut()
                .insert(header::ALLOW, route.allow.clone());
            return response;
        }

        // Who is calling.
        let rule = runtime.limits.rule_for(path, &route.service);
        let client_ip = runtime.client_ip(peer.ip(), &parts.headers);
        // The request context holds the `Authorization` value already.
        let token = ctx.credentials.as_ref().and_then(Credentials::bearer_bytes);
        let refused = match (route.auth, token) {
            (AuthPolicy::Public, Some(token)) if rule.is_some_and(|r| r.key == LimitKey::User) => {
                // Only to count a signed-in caller per user; the service decides on the token.
                Ok(state.tokens.verify(token).await.ok())
            }
            (AuthPolicy::Public, _) => Ok(None),
            (_, None) => Err(AuthError::Missing),
            (_, Some(token)) => state.tokens.verify(token).await.map(Some),
        };
        let identity: Option<Arc<Identity>> = match refused {
            Ok(identity) => identity,
            Err(e) => {
                tracing::debug!(error = %e, route = %route.prefix, "token refused");
                // A refused request still spends the client address's budget under the route's
                // rule (a per-user rule counts it per address), so guessing tokens, or a client
                // stuck on an expired one, is limited like any other traffic.
                if let Some(rule) = rule
                    && let Outcome::Refuse(response) =
                        limits::check(&runtime.limits, rule, client_ip, None).await
                {
                    route.requests.increment(response.status());
                    return response;
                }
                let response = unauthorized(e);
                route.requests.increment(response.status());
                return response;
            }
        };
        if route.auth == AuthPolicy::Role
            && let (Some(role), Some(identity)) = (route.role, identity.as_deref())
            && let Err(e) = identity.require(role)
        {
            route.requests.increment(http::StatusCode::FORBIDDEN);
            return e.into_response();
        }

        // How often.
        let mut extra = None;
        if let Some(rule) = rule {
            match limits::check(&runtime.limits, rule, client_ip, identity.as_deref()).await {
                Outcome::Admit(fields) => extra = fields,
                Outcome::Refuse(response) => {
                    route.requests.increment(response.status());
                    return response;
                }
            }
        }

        // Forward.
        let upstream_path = rewrite_path(&route.prefix, route.rewrite.as_deref(), path);
        let mut path_and_query = upstream_path;
        if let Some(q) = parts.uri.query() {
            path_and_query.push('?');
            path_and_query.push_str(q);
        }
        // Changed where they are: moved to a local, the future would keep them twice.
        let headers = &mut parts.headers;
        if !via.is_fast() {
            // Before anything is read from them: a header the `Connection` header names is gone.
            // (The fast path takes no `Connection` header but `keep-alive`, which names none.)
            proxy::strip_hop_by_hop(headers);
        }
        let forwarded = |headers: &http::HeaderMap| {
            Forwarded::new(&runtime, peer, &ctx, headers, identity.as_deref())
        };
        let mut response = if let Via::FastPath(slot) = via {
            // Written straight into the request head: no header map to change. A bearer token and
            // the fields the gateway sets take about 600 bytes. (The `Forwarded`, 448 bytes, is a
            // temporary gone before the forward is awaited, so the future does not keep it.)
            let mut fields = Vec::with_capacity(1024);
            forwarded(headers).write(headers, &mut fields);
            crate::fast::forward(
                &state.wire,
                route,
                &runtime.outlier,
                crate::fast::Bodyless {
                    method: &parts.method,
                    path_and_query: &path_and_query,
                    fields: &fields,
                },
                extra.take(),
                slot,
            )
            .await
        } else {
            forwarded(headers).apply(headers);
            let outgoing = Outgoing {
                method: parts.method,
                path_and_query,
                headers: parts.headers,
                body,
            };
            // Boxed: its state is large, and would make every request's future (the fast path's
            // too) as large, copied each time the future moves.
            Box::pin(proxy::forward(
                &state.client,
                route,
                &runtime.outlier,
                outgoing,
                state.max_body,
            ))
            .await
        };
        route.requests.increment(response.status());
        if let Some(fields) = extra {
            fields.insert_into(response.headers_mut());
        }
        response
    }
}
