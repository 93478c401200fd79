//! Integration tests of the search service. Behavioural tests are written once and run on
//! both the real engines of the local stack and the embedded twins; port contracts are written
//! once over the port traits and run against each adapter.

mod behaviour;
mod contracts;
mod helpers;
mod real_only;

/// Runs one behavioural test (an `async fn(Backends)`) on both backend sets.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use crate::helpers::Backends;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn real() {
                    crate::behaviour::$name(Backends::Real).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn embedded() {
                    crate::behaviour::$name(Backends::Embedded).await;
                }
            }
        )*
    };
}

on_both!(
    crud_with_version_conflicts,
    typo_tolerant_relevance,
    facet_counts_are_exact,
    update_is_searchable_once_consumed_and_never_stale,
    reindex_under_query_load_drops_no_query,
    bad_input_is_a_problem_naming_the_field,
    suggestions_complete_prefixes,
    stock_reports_show_availability_in_order,
    products_by_ids_in_one_call,
);
