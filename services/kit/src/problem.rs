//! Errors as RFC 9457 `application/problem+json`, and extractors whose rejections are problems
//! that name the offending field.

use std::error::Error as StdError;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub mod objects;

pub const PROBLEM_JSON: &str = "application/problem+json";
const TYPE_BASE: &str = "https://storefront.dev/problems/";

/// One invalid field of a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    /// JSON path or parameter name, e.g. `items[0].quantity` or `price_min`.
    pub field: String,
    /// What is wrong, for a person.
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// An RFC 9457 problem document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Field-level detail for validation problems.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// The error every handler returns. Each variant maps to one status code; `Internal` is logged
/// with its cause chain and answered as an opaque 500.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("conflict: {0}")]
    Conflict(String),
    /// A field's value must be unique and another resource has it: 409, with the field.
    #[error("taken: {} {}", .0.field, .0.message)]
    Taken(FieldError),
    #[error("precondition failed: {0}")]
    PreconditionFailed(String),
    #[error("payload too large: {0}")]
    PayloadTooLarge(String),
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    #[error("too many requests")]
    TooManyRequests { retry_after_secs: u64 },
    #[error("service unavailable: {0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(#[source] Box<dyn StdError + Send + Sync>),
}

impl ApiError {
    pub fn internal(err: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self::Internal(err.into())
    }

    /// A backend's failure: 503 when it could not be reached (`unavailable`; logged as a
    /// warning, so callers retry instead of waiting), else an opaque 500 with the cause logged.
    pub fn backend(unavailable: bool, err: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        if unavailable {
            let err = err.into();
            tracing::warn!(error = %err, "backend unavailable; answering 503");
            Self::Unavailable("A backend is not answering; retry shortly.".into())
        } else {
            Self::internal(err)
        }
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) | Self::Taken(_) => StatusCode::CONFLICT,
            Self::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A fixed label for metrics; never derived from error text.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Validation(_) => "validation",
            Self::BadRequest(_) => "bad_request",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Conflict(_) | Self::Taken(_) => "conflict",
            Self::PreconditionFailed(_) => "precondition_failed",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::TooManyRequests { .. } => "rate_limited",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }

    /// The problem document answered for this error.
    pub fn problem(&self) -> Problem {
        let status = self.status();
        let title = status.canonical_reason().unwrap_or("Error").to_string();
        let (detail, errors) = match self {
            Self::Validation(errors) => (
                Some("The request has invalid fields.".to_string()),
                errors.clone(),
            ),
            Self::BadRequest(d)
            | Self::Unauthorized(d)
            | Self::Forbidden(d)
            | Self::NotFound(d)
            | Self::Conflict(d)
            | Self::PreconditionFailed(d)
            | Self::PayloadTooLarge(d)
            | Self::UnsupportedMediaType(d)
            | Self::Unavailable(d) => (Some(d.clone()), Vec::new()),
            Self::Taken(error) => (
                Some(format!("The {} {}", error.field, error.message)),
                vec![error.clone()],
            ),
            Self::MethodNotAllowed => (None, Vec::new()),
            Self::TooManyRequests { retry_after_secs } => (
                Some(format!(
                    "Rate limit exceeded; retry in {retry_after_secs} s."
                )),
                Vec::new(),
            ),
            Self::Internal(_) => (
                Some("An unexpected error occurred; it has been logged.".to_string()),
                Vec::new(),
            ),
        };
        Problem {
            problem_type: format!("{TYPE_BASE}{}", self.kind().replace('_', "-")),
            title,
            status: status.as_u16(),
            detail,
            instance: None,
            errors,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(err) = &self {
            tracing::error!(error = %cause_chain(err.as_ref()), "unexpected error");
        }
        metrics::counter!("api_errors_total", "kind" => self.kind()).increment(1);
        let mut response = problem_response(&self.problem());
        if let Self::TooManyRequests { retry_after_secs } = self
            && let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}

/// Serializes a problem with its status and content type.
pub fn problem_response(problem: &Problem) -> Response {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(problem).unwrap_or_default();
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))],
        body,
    )
        .into_response()
}

/// `error: cause: cause` for logs.
pub fn cause_chain(err: &(dyn StdError + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// A JSON request body whose rejections are problems naming the field:
/// 415 without a JSON content type, 400 for malformed JSON, 422 for a wrong or missing field.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|ct| {
                let essence = ct.split(';').next().unwrap_or_default().trim();
                essence.eq_ignore_ascii_case("application/json")
                    || essence.to_ascii_lowercase().ends_with("+json")
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::UnsupportedMediaType(
                "Expected a body with Content-Type: application/json.".into(),
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|rejection| match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => {
                    ApiError::PayloadTooLarge("The request body is too large.".into())
                }
                _ => ApiError::BadRequest(rejection.body_text()),
            })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Deserializes JSON, naming the failing field. A body is an object (or `null` where one is
/// optional), and so is every struct in it: serde would also take an array for a struct, its
/// fields in order, so `[null, null]` would be a patch that clears two fields (see
/// [`objects`]). Nothing may follow the value but whitespace.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(ApiError::Validation(vec![FieldError::new(
            "body",
            objects::NOT_AN_ARRAY,
        )]));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(objects::Objects(&mut *de)).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let field = if path == "." {
                    "body".to_string()
                } else {
                    path
                };
                ApiError::Validation(vec![FieldError::new(field, strip_position(&inner))])
            }
            _ => ApiError::BadRequest(format!("Malformed JSON: {inner}")),
        }
    })?;
    de.end()
        .map_err(|e| ApiError::BadRequest(format!("Malformed JSON: {e}")))?;
    Ok(value)
}

fn strip_position(err: &serde_json::Error) -> String {
    let text = err.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// Query parameters whose rejections are 400 problems naming the parameter.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueryParams<T>(pub T);

impl<S, T> FromRequestParts<S> for QueryParams<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parse_query(parts.uri.query().unwrap_or_default()).map(QueryParams)
    }
}

/// Deserializes a query string, naming the failing parameter.
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(url::form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let message = err.into_inner().to_string();
        let field = if path == "." {
            // serde reports a missing or unknown field at the root; name it from the message.
            message
                .split('`')
                .nth(1)
                .map(str::to_owned)
                .unwrap_or_else(|| "query".to_string())
        } else {
            path
        };
        ApiError::Validation(vec![FieldError::new(field, message)])
    })
}

/// Adds to each operation of `doc` the problem responses the kit's extractors give and the
/// operation does not name itself, so that a document lists every status its service can
/// answer (schemathesis checks it does):
///
/// - an operation with a body: 400 (malformed JSON, [`JsonBody`]), 413 (over the body limit),
///   415 (not JSON) and 422 (a wrong or missing field);
/// - an operation with parameters: 400 and 422 (a parameter that does not parse or validate);
/// - an operation that needs a token (`security`): 401 (no valid token) and 403 (a role it
///   does not have).
pub fn document_common_responses(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::PartialSchema as _;
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};

    let mut named = false;
    for item in doc.paths.paths.values_mut() {
        let shared_parameters = item.parameters.as_ref().is_some_and(|p| !p.is_empty());
        for operation in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
            &mut item.options,
            &mut item.trace,
        ]
        .into_iter()
        .flatten()
        {
            let mut statuses: Vec<(&str, &str)> = Vec::new();
            if operation.request_body.is_some() {
                statuses.extend([
                    ("400", "The body is not well-formed JSON"),
                    ("413", "The body is larger than the service accepts"),
                    ("415", "The body is not `application/json`"),
                    ("422", "Invalid fields, each named"),
                ]);
            }
            if shared_parameters || operation.parameters.as_ref().is_some_and(|p| !p.is_empty()) {
                statuses.extend([
                    ("400", "A parameter could not be read"),
                    ("422", "Invalid fields, each named"),
                ]);
            }
            if operation.security.as_ref().is_some_and(|s| !s.is_empty()) {
                statuses.extend([
                    ("401", "No valid token"),
                    ("403", "The token's roles do not allow this"),
                ]);
            }
            for (status, description) in statuses {
                if operation.responses.responses.contains_key(status) {
                    continue;
                }
                let response = ResponseBuilder::new()
                    .description(description)
                    .content(
                        PROBLEM_JSON,
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("Problem")))
                            .build(),
                    )
                    .build();
                operation
                    .responses
                    .responses
                    .insert(status.to_string(), response.into());
                named = true;
            }
        }
    }
    if named {
        let components = doc.components.get_or_insert_with(Default::default);
        for (name, schema) in [
            ("Problem", Problem::schema()),
            ("FieldError", FieldError::schema()),
        ] {
            components.schemas.entry(name.to_string()).or_insert(schema);
        }
    }
}

/// Fallback for unknown routes.
pub async fn not_found() -> ApiError {
    ApiError::NotFound("No such resource.".into())
}

/// Fallback for a known route with another method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;

    async fn body_of(response: Response) -> (StatusCode, String, Problem) {
        let status = response.status();
        let ct = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = to_bytes(response.into_body(), 1 << 20).await.expect("body");
        let problem: Problem = serde_json::from_slice(&bytes).expect("problem json");
        (status, ct, problem)
    }

    #[tokio::test]
    async fn validation_maps_to_422_with_fields() {
        let err = ApiError::Validation(vec![FieldError::new("quantity", "must be 1..=99")]);
        let (status, ct, problem) = body_of(err.into_response()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(ct, PROBLEM_JSON);
        assert_eq!(problem.status, 422);
        assert_eq!(
            problem.errors,
            vec![FieldError::new("quantity", "must be 1..=99")]
        );
        assert!(problem.problem_type.ends_with("/validation"));
    }

    #[tokio::test]
    async fn every_variant_has_its_status() {
        let cases: Vec<(ApiError, u16)> = vec![
            (ApiError::BadRequest("x".into()), 400),
            (ApiError::Unauthorized("x".into()), 401),
            (ApiError::Forbidden("x".into()), 403),
            (ApiError::NotFound("x".into()), 404),
            (ApiError::MethodNotAllowed, 405),
            (ApiError::Conflict("x".into()), 409),
            (ApiError::Taken(FieldError::new("sku", "is taken")), 409),
            (ApiError::PreconditionFailed("x".into()), 412),
            (ApiError::PayloadTooLarge("x".into()), 413),
            (ApiError::UnsupportedMediaType("x".into()), 415),
            (ApiError::Unavailable("x".into()), 503),
        ];
        for (err, expected) in cases {
            let (status, ct, problem) = body_of(err.into_response()).await;
            assert_eq!(status.as_u16(), expected);
            assert_eq!(problem.status, expected);
            assert_eq!(ct, PROBLEM_JSON);
        }
    }

    #[tokio::test]
    async fn rate_limited_sets_retry_after() {
        let response = ApiError::TooManyRequests {
            retry_after_secs: 3,
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
    }

    #[tokio::test]
    async fn internal_errors_are_opaque() {
        #[derive(Debug, thiserror::Error)]
        #[error("connection to mysql://shop:secret@db refused")]
        struct Leaky;
        let (status, _, problem) = body_of(ApiError::internal(Leaky).into_response()).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        let text = serde_json::to_string(&problem).expect("json");
        assert!(
            !text.contains("secret") && !text.contains("mysql"),
            "{text}"
        );
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        product_id: String,
        quantity: u8,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Order {
        items: Vec<Item>,
    }

    #[test]
    fn json_errors_name_the_field() {
        let err = parse_json::<Order>(
            br#"{"items":[{"product_id":"p","quantity":1},{"product_id":"q","quantity":-3}]}"#,
        )
        .expect_err("negative quantity");
        let ApiError::Validation(fields) = err else {
            panic!("expected validation, got {err:?}")
        };
        assert_eq!(fields[0].field, "items[1].quantity");

        let err =
            parse_json::<Order>(br#"{"items":[{"product_id":"p","quantity":1,"colour":"red"}]}"#)
                .expect_err("unknown field");
        let ApiError::Validation(fields) = err else {
            panic!("expected validation")
        };
        assert!(fields[0].message.contains("colour"), "{fields:?}");

        let err = parse_json::<Order>(b"{\"items\": [").expect_err("malformed");
        assert!(matches!(err, ApiError::BadRequest(_)), "{err:?}");

        // serde would read a struct from an array of its fields in order.
        let err = parse_json::<Item>(br#" [ "p", 1 ]"#).expect_err("an array");
        let ApiError::Validation(fields) = err else {
            panic!("expected validation, got {err:?}")
        };
        assert_eq!(fields[0].field, "body");
        assert!(fields[0].message.contains("object"), "{fields:?}");
        assert!(parse_json::<Option<Item>>(b"null").expect("null").is_none());

        // Nor is a struct deeper in the body read from an array; the field is named.
        let err = parse_json::<Order>(br#"{"items":[{"product_id":"p","quantity":1},["q",2]]}"#)
            .expect_err("a nested array");
        let ApiError::Validation(fields) = err else {
            panic!("expected validation, got {err:?}")
        };
        assert_eq!(fields[0].field, "items[1]");
        assert_eq!(fields[0].message, objects::NOT_AN_ARRAY);

        // Nothing but whitespace after the value.
        assert!(parse_json::<Order>(b"{\"items\": []} \n").is_ok());
        let err = parse_json::<Order>(br#"{"items": []} {"items": []}"#).expect_err("two values");
        assert!(
            matches!(&err, ApiError::BadRequest(m) if m.contains("trailing")),
            "{err:?}"
        );
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Search {
        q: Option<String>,
        page: Option<u32>,
    }

    #[test]
    fn query_errors_name_the_parameter() {
        let ok: Search = parse_query("q=shoes&page=2").expect("valid");
        assert_eq!(ok.page, Some(2));
        let ApiError::Validation(fields) = parse_query::<Search>("page=-1").expect_err("bad page")
        else {
            panic!("expected validation")
        };
        assert_eq!(fields[0].field, "page");
        let ApiError::Validation(fields) =
            parse_query::<Search>("sort=up").expect_err("unknown parameter")
        else {
            panic!("expected validation")
        };
        assert_eq!(fields[0].field, "sort");
    }

    #[test]
    fn common_problem_responses_are_documented_where_the_extractors_give_them() {
        use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
        use utoipa::openapi::request_body::RequestBodyBuilder;
        use utoipa::openapi::security::SecurityRequirement;
        use utoipa::openapi::{OpenApiBuilder, PathItem, PathsBuilder, ResponseBuilder};

        let ok = || ResponseBuilder::new().description("ok").build();
        let post = OperationBuilder::new()
            .request_body(Some(RequestBodyBuilder::new().build()))
            .security(SecurityRequirement::new("bearer", Vec::<String>::new()))
            .response("200", ok())
            .response(
                "422",
                ResponseBuilder::new().description("own words").build(),
            )
            .build();
        let get = OperationBuilder::new()
            .parameter(
                ParameterBuilder::new()
                    .name("limit")
                    .parameter_in(ParameterIn::Query),
            )
            .response("200", ok())
            .build();
        let plain = OperationBuilder::new().response("200", ok()).build();
        let mut doc = OpenApiBuilder::new()
            .paths(
                PathsBuilder::new()
                    .path("/v1/things", PathItem::new(HttpMethod::Post, post))
                    .path("/v1/list", PathItem::new(HttpMethod::Get, get))
                    .path("/healthz", PathItem::new(HttpMethod::Get, plain)),
            )
            .build();
        document_common_responses(&mut doc);

        let statuses = |path: &str| -> Vec<String> {
            let item = &doc.paths.paths[path];
            let op = item.post.as_ref().or(item.get.as_ref()).expect("operation");
            op.responses.responses.keys().cloned().collect()
        };
        assert_eq!(
            statuses("/v1/things"),
            ["200", "400", "401", "403", "413", "415", "422"]
        );
        assert_eq!(statuses("/v1/list"), ["200", "400", "422"]);
        assert_eq!(statuses("/healthz"), ["200"]);
        // What an operation says itself stays.
        let json = serde_json::to_value(&doc).expect("json");
        let things = &json["paths"]["/v1/things"]["post"]["responses"];
        assert_eq!(things["422"]["description"], "own words");
        assert_eq!(
            things["415"]["content"][PROBLEM_JSON]["schema"]["$ref"],
            "#/components/schemas/Problem"
        );
        let schemas = &json["components"]["schemas"];
        assert!(schemas["Problem"].is_object() && schemas["FieldError"].is_object());
    }
}
