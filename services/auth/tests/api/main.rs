//! Integration tests of the auth service. Behavioural tests are written once and run on the
//! local stack's MariaDB and on embedded SQLite.

mod behaviour;
mod helpers;
mod startup;

/// Runs one behavioural test (an `async fn(Backends)`) on both backends.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use crate::helpers::Backends;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn mariadb() {
                    crate::behaviour::$name(Backends::Real).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    crate::behaviour::$name(Backends::Embedded).await;
                }
            }
        )*
    };
}

on_both!(
    sign_up_login_and_me,
    refresh_rotates_the_token,
    reusing_a_spent_refresh_token_revokes_its_family,
    logout_revokes_the_session,
    failed_logins_look_the_same_whether_or_not_the_account_exists,
    login_is_limited_per_account_with_growing_back_off,
    login_is_limited_per_ip,
    issued_tokens_verify_against_the_jwks_and_forgeries_fail,
    tokens_of_the_previous_key_verify_during_rotation,
    admins_grant_roles_and_seeding_is_idempotent,
    bad_input_is_a_problem_naming_the_field,
);
