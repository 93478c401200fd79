//! `GET /v1/search` and `GET /v1/suggest`.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use storefront_kit::problem::{ApiError, QueryParams};
use utoipa::ToSchema;

use crate::domain::{SearchParams, SearchResult, SuggestParams, Suggestion};
use crate::service::{AppResult, AppState};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/search", get(search))
        .route("/v1/suggest", get(suggest))
}

/// Full-text search with filters, facet counts, sorting and highlights.
#[utoipa::path(get, path = "/v1/search", tag = "search", params(SearchParams), responses(
    (status = 200, description = "A page of results", body = SearchResult),
    (status = 422, description = "Invalid parameter (named in `errors`)", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
))]
pub async fn search(
    State(state): State<AppState>,
    QueryParams(params): QueryParams<SearchParams>,
) -> AppResult<Json<SearchResult>> {
    let query = params.validate().map_err(ApiError::Validation)?;
    Ok(Json(state.search(&query).await?))
}

/// Completions for what the shopper typed so far.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Suggestions {
    pub suggestions: Vec<Suggestion>,
}

/// Autocomplete: product titles whose words start with the typed words.
#[utoipa::path(get, path = "/v1/suggest", tag = "search", params(SuggestParams), responses(
    (status = 200, description = "Suggestions", body = Suggestions),
    (status = 422, description = "Invalid parameter", body = storefront_kit::problem::Problem, content_type = "application/problem+json"),
))]
pub async fn suggest(
    State(state): State<AppState>,
    QueryParams(params): QueryParams<SuggestParams>,
) -> AppResult<Json<Suggestions>> {
    let query = params.validate().map_err(ApiError::Validation)?;
    Ok(Json(Suggestions {
        suggestions: state.suggest(&query).await?,
    }))
}
