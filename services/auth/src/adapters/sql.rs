//! The one SQL implementation of [`AccountRepo`](crate::ports::AccountRepo), instantiated for
//! MySQL/MariaDB and SQLite: the statements are portable (`?` placeholders, no upserts), so
//! the two adapters differ only in how they connect.

/// Implements `AccountRepo` for `$repo`, a struct with a `pool: $pool` field.
macro_rules! sql_account_repo {
    ($repo:ty, $row:ty, $backend:expr) => {
        use futures::FutureExt as _;
        use futures::future::BoxFuture;
        use sqlx::Row as _;
        use storefront_kit::auth::Role;

        use crate::domain::{Account, LockPolicy, roles_from_string, roles_to_string};
        use crate::ports::{
            AccountRepo, BackendError, CreateError, NewRefreshToken, Result, Rotation,
        };

        fn err(e: impl std::fmt::Display + 'static) -> BackendError {
            BackendError::new($backend, e)
        }

        fn account_from_row(row: &$row) -> Result<Account> {
            Ok(Account {
                id: row.try_get("id").map_err(err)?,
                email: row.try_get("email").map_err(err)?,
                name: row.try_get("name").map_err(err)?,
                password_hash: row.try_get("password_hash").map_err(err)?,
                roles: roles_from_string(&row.try_get::<String, _>("roles").map_err(err)?),
                created_at: row.try_get("created_at").map_err(err)?,
            })
        }

        async fn insert_token(
            tx: &mut sqlx::Transaction<'_, <$row as sqlx::Row>::Database>,
            t: &NewRefreshToken,
        ) -> Result<()> {
            sqlx::query(
                "INSERT INTO refresh_tokens (token_hash, family_id, account_id, expires_at, \
                 spent_at) VALUES (?, ?, ?, ?, NULL)",
            )
            .bind(&t.hash)
            .bind(&t.family_id)
            .bind(&t.account_id)
            .bind(t.expires_at)
            .execute(&mut **tx)
            .await
            .map_err(err)?;
            Ok(())
        }

        const ACCOUNT_COLUMNS: &str = "id, email, name, password_hash, roles, created_at";

        impl AccountRepo for $repo {
            fn check(&self) -> BoxFuture<'_, Result<()>> {
                async move {
                    sqlx::query("SELECT COUNT(*) FROM accounts")
                        .fetch_one(&self.pool)
                        .await
                        .map_err(err)?;
                    Ok(())
                }
                .boxed()
            }

            fn create_account<'a>(
                &'a self,
                a: &'a Account,
            ) -> BoxFuture<'a, Result<(), CreateError>> {
                async move {
                    let result = sqlx::query(
                        "INSERT INTO accounts (id, email, name, password_hash, roles, created_at) \
                         VALUES (?, ?, ?, ?, ?, ?)",
                    )
                    .bind(&a.id)
                    .bind(&a.email)
                    .bind(&a.name)
                    .bind(&a.password_hash)
                    .bind(roles_to_string(&a.roles))
                    .bind(a.created_at)
                    .execute(&self.pool)
                    .await;
                    match result {
                        Ok(_) => Ok(()),
                        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                            Err(CreateError::EmailTaken)
                        }
                        Err(e) => Err(CreateError::Backend(err(e))),
                    }
                }
                .boxed()
            }

            fn account_by_email<'a>(
                &'a self,
                email: &'a str,
            ) -> BoxFuture<'a, Result<Option<Account>>> {
                async move {
                    let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE email = ?");
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(email)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(err)?
                        .as_ref()
                        .map(account_from_row)
                        .transpose()
                }
                .boxed()
            }

            fn account_by_id<'a>(
                &'a self,
                id: &'a str,
            ) -> BoxFuture<'a, Result<Option<Account>>> {
                async move {
                    let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?");
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(err)?
                        .as_ref()
                        .map(account_from_row)
                        .transpose()
                }
                .boxed()
            }

            fn set_roles<'a>(
                &'a self,
                id: &'a str,
                roles: &'a [Role],
            ) -> BoxFuture<'a, Result<bool>> {
                async move {
                    let done = sqlx::query("UPDATE accounts SET roles = ? WHERE id = ?")
                        .bind(roles_to_string(roles))
                        .bind(id)
                        .execute(&self.pool)
                        .await
                        .map_err(err)?;
                    Ok(done.rows_affected() > 0)
                }
                .boxed()
            }

            fn start_family<'a>(
                &'a self,
                t: &'a NewRefreshToken,
            ) -> BoxFuture<'a, Result<()>> {
                async move {
                    let mut tx = self.pool.begin().await.map_err(err)?;
                    sqlx::query(
                        "INSERT INTO refresh_families (id, account_id, created_at, revoked_at) \
                         VALUES (?, ?, ?, NULL)",
                    )
                    .bind(&t.family_id)
                    .bind(&t.account_id)
                    .bind(t.issued_at)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                    insert_token(&mut tx, t).await?;
                    tx.commit().await.map_err(err)
                }
                .boxed()
            }

            fn rotate<'a>(
                &'a self,
                old_hash: &'a str,
                new: &'a NewRefreshToken,
                now: i64,
            ) -> BoxFuture<'a, Result<Rotation>> {
                async move {
                    let mut tx = self.pool.begin().await.map_err(err)?;
                    // Spending is one conditional UPDATE, so of two concurrent uses of the
                    // same token exactly one wins and the other counts as reuse.
                    let spent = sqlx::query(
                        "UPDATE refresh_tokens SET spent_at = ? \
                         WHERE token_hash = ? AND spent_at IS NULL",
                    )
                    .bind(now)
                    .bind(old_hash)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?
                    .rows_affected()
                        == 1;
                    let row = sqlx::query(
                        "SELECT t.family_id, t.account_id, t.expires_at, f.revoked_at \
                         FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id \
                         WHERE t.token_hash = ?",
                    )
                    .bind(old_hash)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(err)?;
                    let Some(row) = row else {
                        return Ok(Rotation::Invalid);
                    };
                    let family: String = row.try_get("family_id").map_err(err)?;
                    let account_id: String = row.try_get("account_id").map_err(err)?;
                    let expires_at: i64 = row.try_get("expires_at").map_err(err)?;
                    let revoked_at: Option<i64> = row.try_get("revoked_at").map_err(err)?;
                    if !spent {
                        // Reuse of a spent token: someone holds a copy. Revoke the family.
                        sqlx::query(
                            "UPDATE refresh_families SET revoked_at = ? \
                             WHERE id = ? AND revoked_at IS NULL",
                        )
                        .bind(now)
                        .bind(&family)
                        .execute(&mut *tx)
                        .await
                        .map_err(err)?;
                        tx.commit().await.map_err(err)?;
                        return Ok(Rotation::Reused);
                    }
                    if revoked_at.is_some() || expires_at <= now {
                        tx.commit().await.map_err(err)?;
                        return Ok(Rotation::Invalid);
                    }
                    let next = NewRefreshToken {
                        family_id: family,
                        account_id: account_id.clone(),
                        ..new.clone()
                    };
                    insert_token(&mut tx, &next).await?;
                    tx.commit().await.map_err(err)?;
                    Ok(Rotation::Rotated { account_id })
                }
                .boxed()
            }

            fn revoke_family<'a>(
                &'a self,
                hash: &'a str,
                now: i64,
            ) -> BoxFuture<'a, Result<bool>> {
                async move {
                    let family: Option<String> = sqlx::query(
                        "SELECT family_id FROM refresh_tokens WHERE token_hash = ?",
                    )
                    .bind(hash)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(err)?
                    .map(|r| r.try_get("family_id"))
                    .transpose()
                    .map_err(err)?;
                    let Some(family) = family else {
                        return Ok(false);
                    };
                    sqlx::query(
                        "UPDATE refresh_families SET revoked_at = ? \
                         WHERE id = ? AND revoked_at IS NULL",
                    )
                    .bind(now)
                    .bind(&family)
                    .execute(&self.pool)
                    .await
                    .map_err(err)?;
                    Ok(true)
                }
                .boxed()
            }

            fn locked_until<'a>(
                &'a self,
                keys: &'a [String],
                now: i64,
            ) -> BoxFuture<'a, Result<Option<i64>>> {
                async move {
                    let mut latest: Option<i64> = None;
                    for key in keys {
                        let until: Option<i64> = sqlx::query(
                            "SELECT locked_until FROM login_failures WHERE scope_key = ?",
                        )
                        .bind(key)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(err)?
                        .map(|r| r.try_get("locked_until"))
                        .transpose()
                        .map_err(err)?;
                        if let Some(until) = until.filter(|u| *u > now) {
                            latest = Some(latest.map_or(until, |l: i64| l.max(until)));
                        }
                    }
                    Ok(latest)
                }
                .boxed()
            }

            fn record_failure<'a>(
                &'a self,
                key: &'a str,
                now: i64,
                policy: LockPolicy,
            ) -> BoxFuture<'a, Result<()>> {
                async move {
                    let mut tx = self.pool.begin().await.map_err(err)?;
                    let row = sqlx::query(
                        "SELECT failures, last_failure FROM login_failures WHERE scope_key = ?",
                    )
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(err)?;
                    let window = i64::try_from(policy.window_secs).unwrap_or(i64::MAX);
                    let previous = match &row {
                        Some(r) => {
                            let failures: i64 = r.try_get("failures").map_err(err)?;
                            let last: i64 = r.try_get("last_failure").map_err(err)?;
                            if now.saturating_sub(last) > window { 0 } else { failures }
                        }
                        None => 0,
                    };
                    let failures = previous.saturating_add(1);
                    let lock = policy
                        .lock_secs(u32::try_from(failures).unwrap_or(u32::MAX))
                        .map_or(0, |s| now.saturating_add(i64::try_from(s).unwrap_or(0)));
                    let sql = if row.is_some() {
                        "UPDATE login_failures SET failures = ?, last_failure = ?, \
                         locked_until = ? WHERE scope_key = ?"
                    } else {
                        "INSERT INTO login_failures (failures, last_failure, locked_until, \
                         scope_key) VALUES (?, ?, ?, ?)"
                    };
                    let result = sqlx::query(sql)
                        .bind(failures)
                        .bind(now)
                        .bind(lock)
                        .bind(key)
                        .execute(&mut *tx)
                        .await;
                    match result {
                        Ok(_) => tx.commit().await.map_err(err),
                        // A concurrent first failure inserted the row: that one counts.
                        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => Ok(()),
                        Err(e) => Err(err(e)),
                    }
                }
                .boxed()
            }

            fn prune(&self, now: i64, failures_before: i64) -> BoxFuture<'_, Result<u64>> {
                async move {
                    // Spent tokens are kept until they expire, so reuse is detected for as
                    // long as a stolen copy could have been used.
                    let tokens = sqlx::query("DELETE FROM refresh_tokens WHERE expires_at < ?")
                        .bind(now)
                        .execute(&self.pool)
                        .await
                        .map_err(err)?
                        .rows_affected();
                    let families = sqlx::query(
                        "DELETE FROM refresh_families WHERE NOT EXISTS \
                         (SELECT 1 FROM refresh_tokens t WHERE t.family_id = refresh_families.id)",
                    )
                    .execute(&self.pool)
                    .await
                    .map_err(err)?
                    .rows_affected();
                    let failures = sqlx::query(
                        "DELETE FROM login_failures WHERE last_failure < ? AND locked_until < ?",
                    )
                    .bind(failures_before)
                    .bind(now)
                    .execute(&self.pool)
                    .await
                    .map_err(err)?
                    .rows_affected();
                    Ok(tokens + families + failures)
                }
                .boxed()
            }

            fn clear_failures<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<()>> {
                async move {
                    sqlx::query("DELETE FROM login_failures WHERE scope_key = ?")
                        .bind(key)
                        .execute(&self.pool)
                        .await
                        .map_err(err)?;
                    Ok(())
                }
                .boxed()
            }
        }
    };
}

pub(crate) use sql_account_repo;
