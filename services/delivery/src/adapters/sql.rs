//! The one SQL implementation of [`DeliveryRepo`](crate::ports::DeliveryRepo), instantiated
//! for MySQL/MariaDB and SQLite: the statements are portable (`?` placeholders, no upserts),
//! so the two adapters differ only in how they connect.
//!
//! Assignment is race-free without table locks: the partners are ranked from a read, then a
//! slot of the best one is claimed with a conditional `UPDATE ... WHERE current_load <
//! max_concurrent` whose rows-affected count says whether this transaction got it; if not,
//! the next candidate is tried. The claim, the delivery row, the dedupe row and the outbox
//! event commit together or not at all.

use std::future::Future;
use std::time::Duration;

use crate::ports::BackendError;

/// Attempts for a transaction that hit a deadlock or a busy database.
const ATTEMPTS: u32 = 6;

/// A failure of `backend`; deadlocks and busy databases are retryable.
pub(crate) fn classify(backend: &'static str, e: &sqlx::Error) -> BackendError {
    let retryable = match e {
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            let message = db.message().to_ascii_lowercase();
            // MySQL: 40001 deadlock, 1205 lock wait timeout; SQLite: BUSY (5, 261, 517), LOCKED (6).
            matches!(code.as_ref(), "40001" | "5" | "6" | "261" | "517")
                || message.contains("deadlock")
                || message.contains("lock wait timeout")
                || message.contains("database is locked")
        }
        _ => false,
    };
    BackendError {
        backend,
        message: e.to_string(),
        retryable,
        unavailable: storefront_kit::sql::is_unavailable(e),
    }
}

/// Runs `attempt` again (with a short jittered pause) while it fails with a retryable error.
pub(crate) async fn retrying<T, F, Fut>(mut attempt: F) -> Result<T, BackendError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, BackendError>>,
{
    let mut n = 0;
    loop {
        match attempt().await {
            Err(e) if e.retryable && n + 1 < ATTEMPTS => {
                n += 1;
                let jitter = u64::from(rand::random::<u8>() % 20);
                tokio::time::sleep(Duration::from_millis(10 * u64::from(n) + jitter)).await;
            }
            other => return other,
        }
    }
}

/// Implements `DeliveryRepo` for `$repo`, a struct with `pool: Pool<$db>` and `topic: String`.
macro_rules! sql_delivery_repo {
    ($repo:ty, $row:ty, $db:ty, $backend:expr) => {
        use std::sync::Arc;

        use chrono::{DateTime, Utc};
        use futures::FutureExt as _;
        use futures::future::BoxFuture;
        use sqlx::Row as _;
        use storefront_kit::bus::Bus;
        use storefront_kit::outbox::{self, OutboxError, Relay};
        use tokio::sync::Notify;
        use tokio_util::sync::CancellationToken;
        use uuid::Uuid;

        use crate::adapters::sql::{classify, retrying};
        use crate::domain::assignment::{Destination, rank};
        use crate::domain::event::{
            self as ev, AssignmentPending, ConfirmedOrder, DeliveryStep, PartnerAssigned,
        };
        use crate::domain::{
            Capacity, Delivery, DeliveryStatus, GeoCircle, Partner, PartnerContact, ServiceArea,
            Transition,
        };
        use crate::ports::{
            AdvanceError, BackendError, Cancelled, Confirmed, CreateError, DeliveryRepo, Result,
        };

        type Tx = sqlx::Transaction<'static, $db>;

        fn err(e: impl std::fmt::Display) -> BackendError {
            BackendError {
                backend: $backend,
                message: e.to_string(),
                retryable: false,
                unavailable: false,
            }
        }

        fn sql(e: sqlx::Error) -> BackendError {
            classify($backend, &e)
        }

        fn obx(e: OutboxError) -> BackendError {
            match e {
                OutboxError::Sql(e) => sql(e),
                other => err(other),
            }
        }

        fn ms(t: DateTime<Utc>) -> i64 {
            t.timestamp_millis()
        }

        fn time(ms: i64) -> DateTime<Utc> {
            DateTime::from_timestamp_millis(ms).unwrap_or_default()
        }

        fn to_u32(v: i64) -> u32 {
            u32::try_from(v.max(0)).unwrap_or(u32::MAX)
        }

        const PARTNER_COLUMNS: &str = "id, account_id, name, email, phone, on_shift, \
            postal_prefixes, circle_lat, circle_lon, radius_km, max_concurrent, max_items, \
            max_weight_grams, current_load, created_at, updated_at";

        fn partner_from_row(row: &$row) -> Result<Partner> {
            let prefixes: String = row.try_get("postal_prefixes").map_err(sql)?;
            let lat: Option<f64> = row.try_get("circle_lat").map_err(sql)?;
            let lon: Option<f64> = row.try_get("circle_lon").map_err(sql)?;
            let radius: Option<f64> = row.try_get("radius_km").map_err(sql)?;
            let circle = match (lat, lon, radius) {
                (Some(lat), Some(lon), Some(radius_km)) => Some(GeoCircle { lat, lon, radius_km }),
                _ => None,
            };
            let max_weight: Option<i64> = row.try_get("max_weight_grams").map_err(sql)?;
            Ok(Partner {
                id: row.try_get("id").map_err(sql)?,
                account_id: row.try_get("account_id").map_err(sql)?,
                name: row.try_get("name").map_err(sql)?,
                email: row.try_get("email").map_err(sql)?,
                phone: row.try_get("phone").map_err(sql)?,
                on_shift: row.try_get("on_shift").map_err(sql)?,
                service_area: ServiceArea {
                    postal_prefixes: prefixes
                        .split(',')
                        .filter(|p| !p.is_empty())
                        .map(str::to_owned)
                        .collect(),
                    circle,
                },
                capacity: Capacity {
                    max_concurrent: to_u32(row.try_get("max_concurrent").map_err(sql)?),
                    max_items: to_u32(row.try_get("max_items").map_err(sql)?),
                    max_weight_grams: max_weight.map(|w| u64::try_from(w).unwrap_or(0)),
                },
                load: to_u32(row.try_get("current_load").map_err(sql)?),
                created_at: time(row.try_get("created_at").map_err(sql)?),
                updated_at: time(row.try_get("updated_at").map_err(sql)?),
            })
        }

        const DELIVERY_SELECT: &str = "SELECT d.order_id, d.user_id, d.status, d.partner_id, \
            d.item_count, d.weight_grams, d.address, d.reason, d.assigned_at, d.created_at, \
            d.updated_at, p.name AS p_name, p.email AS p_email, p.phone AS p_phone \
            FROM deliveries d LEFT JOIN partners p ON p.id = d.partner_id";

        fn delivery_from_row(row: &$row) -> Result<Delivery> {
            let status: String = row.try_get("status").map_err(sql)?;
            let partner_id: Option<String> = row.try_get("partner_id").map_err(sql)?;
            let partner = match partner_id {
                Some(id) => Some(PartnerContact {
                    id,
                    name: row.try_get::<Option<String>, _>("p_name").map_err(sql)?.unwrap_or_default(),
                    email: row.try_get::<Option<String>, _>("p_email").map_err(sql)?.unwrap_or_default(),
                    phone: row.try_get::<Option<String>, _>("p_phone").map_err(sql)?.unwrap_or_default(),
                }),
                None => None,
            };
            let address: String = row.try_get("address").map_err(sql)?;
            let assigned_at: Option<i64> = row.try_get("assigned_at").map_err(sql)?;
            Ok(Delivery {
                order_id: row.try_get("order_id").map_err(sql)?,
                user_id: row.try_get("user_id").map_err(sql)?,
                status: DeliveryStatus::parse(&status)
                    .ok_or_else(|| err(format!("unknown delivery status {status}")))?,
                partner,
                address: serde_json::from_str(&address).unwrap_or_default(),
                item_count: to_u32(row.try_get("item_count").map_err(sql)?),
                weight_grams: u64::try_from(row.try_get::<i64, _>("weight_grams").map_err(sql)?)
                    .unwrap_or(0),
                reason: row.try_get("reason").map_err(sql)?,
                assigned_at: assigned_at.map(time),
                created_at: time(row.try_get("created_at").map_err(sql)?),
                updated_at: time(row.try_get("updated_at").map_err(sql)?),
            })
        }

        async fn fetch_delivery(tx: &mut Tx, order_id: &str) -> Result<Option<Delivery>> {
            let q = format!("{DELIVERY_SELECT} WHERE d.order_id = ?");
            sqlx::query(sqlx::AssertSqlSafe(q))
                .bind(order_id)
                .fetch_optional(&mut **tx)
                .await
                .map_err(sql)?
                .as_ref()
                .map(delivery_from_row)
                .transpose()
        }

        /// Ranks the partners that can take `to` and claims a slot of the best one whose
        /// conditional update succeeds; the partner with its new load, or `None`.
        async fn claim(tx: &mut Tx, to: &Destination, now: i64) -> Result<Option<Partner>> {
            let q = format!(
                "SELECT {PARTNER_COLUMNS} FROM partners \
                 WHERE on_shift = ? AND current_load < max_concurrent AND max_items >= ?"
            );
            let rows = sqlx::query(sqlx::AssertSqlSafe(q))
                .bind(true)
                .bind(i64::from(to.items))
                .fetch_all(&mut **tx)
                .await
                .map_err(sql)?;
            let partners = rows.iter().map(partner_from_row).collect::<Result<Vec<_>>>()?;
            for candidate in rank(&partners, to) {
                let done = sqlx::query(
                    "UPDATE partners SET current_load = current_load + 1, updated_at = ? \
                     WHERE id = ? AND on_shift = ? AND current_load < max_concurrent \
                     AND max_items >= ?",
                )
                .bind(now)
                .bind(&candidate.partner_id)
                .bind(true)
                .bind(i64::from(to.items))
                .execute(&mut **tx)
                .await
                .map_err(sql)?;
                if done.rows_affected() == 1 {
                    let mut p = partners
                        .into_iter()
                        .find(|p| p.id == candidate.partner_id)
                        .ok_or_else(|| err("claimed partner vanished"))?;
                    p.load += 1;
                    return Ok(Some(p));
                }
            }
            Ok(None)
        }

        async fn free_slot(tx: &mut Tx, partner_id: &str, now: i64) -> Result<()> {
            sqlx::query(
                "UPDATE partners SET current_load = current_load - 1, updated_at = ? \
                 WHERE id = ? AND current_load > 0",
            )
            .bind(now)
            .bind(partner_id)
            .execute(&mut **tx)
            .await
            .map_err(sql)?;
            Ok(())
        }

        const NO_PARTNER: &str = "No partner on shift serves this address with room for the order.";

        impl $repo {
            async fn confirm_once(&self, event_id: Uuid, order: &ConfirmedOrder) -> Result<Confirmed> {
                let now = Utc::now();
                let mut tx = self.pool.begin().await.map_err(sql)?;
                if !outbox::mark_processed(&mut tx, event_id).await.map_err(obx)? {
                    return Ok(Confirmed::Duplicate);
                }
                let known = sqlx::query("SELECT order_id FROM deliveries WHERE order_id = ?")
                    .bind(&order.order_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(sql)?;
                if known.is_some() {
                    tx.commit().await.map_err(sql)?;
                    return Ok(Confirmed::Known);
                }
                let to = &order.destination;
                let claimed = claim(&mut tx, to, ms(now)).await?;
                let (status, partner_id, reason, assigned_at) = match &claimed {
                    Some(p) => (DeliveryStatus::PartnerAssigned, Some(p.id.clone()), None, Some(ms(now))),
                    None => (DeliveryStatus::Pending, None, Some(NO_PARTNER), None),
                };
                sqlx::query(
                    "INSERT INTO deliveries (order_id, user_id, status, partner_id, postal_code, \
                     lat, lon, item_count, weight_grams, address, reason, assigned_at, \
                     created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(&order.order_id)
                .bind(&order.user_id)
                .bind(status.as_str())
                .bind(partner_id)
                .bind(&to.postal_code)
                .bind(to.lat)
                .bind(to.lon)
                .bind(i64::from(to.items))
                .bind(i64::try_from(to.weight_grams).unwrap_or(i64::MAX))
                .bind(order.shipping.to_string())
                .bind(reason)
                .bind(assigned_at)
                .bind(ms(now))
                .bind(ms(now))
                .execute(&mut *tx)
                .await
                .map_err(sql)?;
                let outcome = match claimed {
                    Some(p) => {
                        let data = PartnerAssigned {
                            order_id: order.order_id.clone(),
                            user_id: order.user_id.clone(),
                            partner: p.contact(),
                            assigned_at: now,
                        };
                        let e = ev::envelope(ev::PARTNER_ASSIGNED, &order.order_id, &data);
                        outbox::enqueue(&mut tx, &self.topic, &e).await.map_err(obx)?;
                        Confirmed::Assigned(p.contact())
                    }
                    None => {
                        let data = AssignmentPending {
                            order_id: order.order_id.clone(),
                            user_id: order.user_id.clone(),
                            reason: NO_PARTNER.to_string(),
                        };
                        let e = ev::envelope(ev::ASSIGNMENT_PENDING, &order.order_id, &data);
                        outbox::enqueue(&mut tx, &self.topic, &e).await.map_err(obx)?;
                        Confirmed::Pending
                    }
                };
                tx.commit().await.map_err(sql)?;
                Ok(outcome)
            }

            async fn cancel_once(
                &self,
                event_id: Uuid,
                order_id: &str,
                user_id: &str,
                reason: Option<&str>,
            ) -> Result<Cancelled> {
                let now = ms(Utc::now());
                let mut tx = self.pool.begin().await.map_err(sql)?;
                if !outbox::mark_processed(&mut tx, event_id).await.map_err(obx)? {
                    return Ok(Cancelled::Duplicate);
                }
                let row = sqlx::query("SELECT status, partner_id FROM deliveries WHERE order_id = ?")
                    .bind(order_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(sql)?;
                let mut freed = None;
                match row {
                    None => {
                        // Cancelled before it was confirmed: remember it, so a late
                        // confirmation assigns nobody.
                        sqlx::query(
                            "INSERT INTO deliveries (order_id, user_id, status, partner_id, \
                             postal_code, lat, lon, item_count, weight_grams, address, reason, \
                             assigned_at, created_at, updated_at) \
                             VALUES (?, ?, ?, NULL, '', NULL, NULL, 0, 0, '{}', ?, NULL, ?, ?)",
                        )
                        .bind(order_id)
                        .bind(user_id)
                        .bind(DeliveryStatus::Cancelled.as_str())
                        .bind(reason)
                        .bind(now)
                        .bind(now)
                        .execute(&mut *tx)
                        .await
                        .map_err(sql)?;
                    }
                    Some(row) => {
                        let status: String = row.try_get("status").map_err(sql)?;
                        let partner_id: Option<String> = row.try_get("partner_id").map_err(sql)?;
                        let status = DeliveryStatus::parse(&status)
                            .ok_or_else(|| err(format!("unknown delivery status {status}")))?;
                        if !matches!(status, DeliveryStatus::Delivered | DeliveryStatus::Cancelled) {
                            let done = sqlx::query(
                                "UPDATE deliveries SET status = ?, reason = ?, updated_at = ? \
                                 WHERE order_id = ? AND status = ?",
                            )
                            .bind(DeliveryStatus::Cancelled.as_str())
                            .bind(reason)
                            .bind(now)
                            .bind(order_id)
                            .bind(status.as_str())
                            .execute(&mut *tx)
                            .await
                            .map_err(sql)?;
                            if done.rows_affected() == 1 && status.holds_slot() {
                                if let Some(p) = partner_id {
                                    free_slot(&mut tx, &p, now).await?;
                                    freed = Some(p);
                                }
                            }
                        }
                    }
                }
                tx.commit().await.map_err(sql)?;
                Ok(Cancelled::Cancelled { freed })
            }

            /// One pending delivery: `Ok(true)` when it got a partner.
            async fn assign_one(&self, order_id: &str, user_id: &str, to: &Destination) -> Result<bool> {
                let now = Utc::now();
                let mut tx = self.pool.begin().await.map_err(sql)?;
                let Some(p) = claim(&mut tx, to, ms(now)).await? else {
                    return Ok(false);
                };
                let done = sqlx::query(
                    "UPDATE deliveries SET status = ?, partner_id = ?, reason = NULL, \
                     assigned_at = ?, updated_at = ? WHERE order_id = ? AND status = ?",
                )
                .bind(DeliveryStatus::PartnerAssigned.as_str())
                .bind(&p.id)
                .bind(ms(now))
                .bind(ms(now))
                .bind(order_id)
                .bind(DeliveryStatus::Pending.as_str())
                .execute(&mut *tx)
                .await
                .map_err(sql)?;
                if done.rows_affected() != 1 {
                    // Cancelled or assigned meanwhile: give the slot back (roll back).
                    return Ok(false);
                }
                let data = PartnerAssigned {
                    order_id: order_id.to_string(),
                    user_id: user_id.to_string(),
                    partner: p.contact(),
                    assigned_at: now,
                };
                let e = ev::envelope(ev::PARTNER_ASSIGNED, order_id, &data);
                outbox::enqueue(&mut tx, &self.topic, &e).await.map_err(obx)?;
                tx.commit().await.map_err(sql)?;
                Ok(true)
            }

            async fn advance_once(
                &self,
                partner_id: &str,
                order_id: &str,
                step: Transition,
            ) -> Result<Result<Delivery, AdvanceError>> {
                let now = Utc::now();
                let mut tx = self.pool.begin().await.map_err(sql)?;
                let Some(mut delivery) = fetch_delivery(&mut tx, order_id).await? else {
                    return Ok(Err(AdvanceError::NotFound));
                };
                let Some(partner) = delivery.partner.clone().filter(|p| p.id == partner_id) else {
                    return Ok(Err(AdvanceError::NotFound));
                };
                if step.check(delivery.status).is_err() {
                    return Ok(Err(AdvanceError::Illegal(delivery.status)));
                }
                let done = sqlx::query(
                    "UPDATE deliveries SET status = ?, updated_at = ? \
                     WHERE order_id = ? AND partner_id = ? AND status = ?",
                )
                .bind(step.to().as_str())
                .bind(ms(now))
                .bind(order_id)
                .bind(partner_id)
                .bind(step.from().as_str())
                .execute(&mut *tx)
                .await
                .map_err(sql)?;
                if done.rows_affected() != 1 {
                    return Ok(Err(AdvanceError::Illegal(delivery.status)));
                }
                if step == Transition::Delivered {
                    free_slot(&mut tx, partner_id, ms(now)).await?;
                }
                let data = DeliveryStep {
                    order_id: order_id.to_string(),
                    user_id: delivery.user_id.clone(),
                    partner,
                    at: now,
                };
                let e = ev::envelope(step.event_type(), order_id, &data);
                outbox::enqueue(&mut tx, &self.topic, &e).await.map_err(obx)?;
                tx.commit().await.map_err(sql)?;
                delivery.status = step.to();
                delivery.updated_at = now;
                Ok(Ok(delivery))
            }

            async fn select_partner(&self, column: &str, value: &str) -> Result<Option<Partner>> {
                let q = format!("SELECT {PARTNER_COLUMNS} FROM partners WHERE {column} = ?");
                sqlx::query(sqlx::AssertSqlSafe(q))
                    .bind(value)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(sql)?
                    .as_ref()
                    .map(partner_from_row)
                    .transpose()
            }
        }

        fn prefixes(p: &Partner) -> String {
            p.service_area.postal_prefixes.join(",")
        }

        impl DeliveryRepo for $repo {
            fn check(&self) -> BoxFuture<'_, Result<()>> {
                async move {
                    sqlx::query("SELECT COUNT(*) FROM partners")
                        .fetch_one(&self.pool)
                        .await
                        .map_err(sql)?;
                    Ok(())
                }
                .boxed()
            }

            fn create_partner<'a>(
                &'a self,
                p: &'a Partner,
            ) -> BoxFuture<'a, Result<(), CreateError>> {
                async move {
                    let circle = p.service_area.circle;
                    let result = sqlx::query(
                        "INSERT INTO partners (id, account_id, name, email, phone, on_shift, \
                         postal_prefixes, circle_lat, circle_lon, radius_km, max_concurrent, \
                         max_items, max_weight_grams, current_load, created_at, updated_at) \
                         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    )
                    .bind(&p.id)
                    .bind(&p.account_id)
                    .bind(&p.name)
                    .bind(&p.email)
                    .bind(&p.phone)
                    .bind(p.on_shift)
                    .bind(prefixes(p))
                    .bind(circle.map(|c| c.lat))
                    .bind(circle.map(|c| c.lon))
                    .bind(circle.map(|c| c.radius_km))
                    .bind(i64::from(p.capacity.max_concurrent))
                    .bind(i64::from(p.capacity.max_items))
                    .bind(p.capacity.max_weight_grams.map(|w| i64::try_from(w).unwrap_or(i64::MAX)))
                    .bind(i64::from(p.load))
                    .bind(ms(p.created_at))
                    .bind(ms(p.updated_at))
                    .execute(&self.pool)
                    .await;
                    match result {
                        Ok(_) => Ok(()),
                        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                            Err(CreateError::AccountTaken)
                        }
                        Err(e) => Err(CreateError::Backend(sql(e))),
                    }
                }
                .boxed()
            }

            fn partner<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Partner>>> {
                self.select_partner("id", id).boxed()
            }

            fn partner_by_account<'a>(
                &'a self,
                account_id: &'a str,
            ) -> BoxFuture<'a, Result<Option<Partner>>> {
                self.select_partner("account_id", account_id).boxed()
            }

            fn partners<'a>(
                &'a self,
                after: Option<&'a str>,
                limit: u32,
            ) -> BoxFuture<'a, Result<Vec<Partner>>> {
                async move {
                    let q = format!(
                        "SELECT {PARTNER_COLUMNS} FROM partners WHERE id > ? ORDER BY id LIMIT ?"
                    );
                    let rows = sqlx::query(sqlx::AssertSqlSafe(q))
                        .bind(after.unwrap_or(""))
                        .bind(i64::from(limit))
                        .fetch_all(&self.pool)
                        .await
                        .map_err(sql)?;
                    rows.iter().map(partner_from_row).collect()
                }
                .boxed()
            }

            fn update_partner<'a>(&'a self, p: &'a Partner) -> BoxFuture<'a, Result<bool>> {
                async move {
                    let circle = p.service_area.circle;
                    let done = sqlx::query(
                        "UPDATE partners SET name = ?, email = ?, phone = ?, on_shift = ?, \
                         postal_prefixes = ?, circle_lat = ?, circle_lon = ?, radius_km = ?, \
                         max_concurrent = ?, max_items = ?, max_weight_grams = ?, updated_at = ? \
                         WHERE id = ?",
                    )
                    .bind(&p.name)
                    .bind(&p.email)
                    .bind(&p.phone)
                    .bind(p.on_shift)
                    .bind(prefixes(p))
                    .bind(circle.map(|c| c.lat))
                    .bind(circle.map(|c| c.lon))
                    .bind(circle.map(|c| c.radius_km))
                    .bind(i64::from(p.capacity.max_concurrent))
                    .bind(i64::from(p.capacity.max_items))
                    .bind(p.capacity.max_weight_grams.map(|w| i64::try_from(w).unwrap_or(i64::MAX)))
                    .bind(ms(p.updated_at))
                    .bind(&p.id)
                    .execute(&self.pool)
                    .await
                    .map_err(sql)?;
                    Ok(done.rows_affected() == 1)
                }
                .boxed()
            }

            fn set_on_shift<'a>(
                &'a self,
                account_id: &'a str,
                on_shift: bool,
            ) -> BoxFuture<'a, Result<Option<Partner>>> {
                async move {
                    sqlx::query("UPDATE partners SET on_shift = ?, updated_at = ? WHERE account_id = ?")
                        .bind(on_shift)
                        .bind(ms(Utc::now()))
                        .bind(account_id)
                        .execute(&self.pool)
                        .await
                        .map_err(sql)?;
                    self.select_partner("account_id", account_id).await
                }
                .boxed()
            }

            fn order_confirmed<'a>(
                &'a self,
                event_id: Uuid,
                order: &'a ConfirmedOrder,
            ) -> BoxFuture<'a, Result<Confirmed>> {
                retrying(move || self.confirm_once(event_id, order)).boxed()
            }

            fn order_cancelled<'a>(
                &'a self,
                event_id: Uuid,
                order_id: &'a str,
                user_id: &'a str,
                reason: Option<&'a str>,
            ) -> BoxFuture<'a, Result<Cancelled>> {
                retrying(move || self.cancel_once(event_id, order_id, user_id, reason)).boxed()
            }

            fn assign_pending(&self, limit: u32) -> BoxFuture<'_, Result<u32>> {
                async move {
                    let rows = sqlx::query(
                        "SELECT order_id, user_id, postal_code, lat, lon, item_count, \
                         weight_grams FROM deliveries WHERE status = ? \
                         ORDER BY created_at, order_id LIMIT ?",
                    )
                    .bind(DeliveryStatus::Pending.as_str())
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(sql)?;
                    let mut assigned = 0;
                    for row in rows {
                        let order_id: String = row.try_get("order_id").map_err(sql)?;
                        let user_id: String = row.try_get("user_id").map_err(sql)?;
                        let postal: String = row.try_get("postal_code").map_err(sql)?;
                        let to = Destination::new(
                            &postal,
                            row.try_get("lat").map_err(sql)?,
                            row.try_get("lon").map_err(sql)?,
                            to_u32(row.try_get("item_count").map_err(sql)?),
                            u64::try_from(row.try_get::<i64, _>("weight_grams").map_err(sql)?)
                                .unwrap_or(0),
                        );
                        if retrying(|| self.assign_one(&order_id, &user_id, &to)).await? {
                            assigned += 1;
                        }
                    }
                    Ok(assigned)
                }
                .boxed()
            }

            fn delivery<'a>(&'a self, order_id: &'a str) -> BoxFuture<'a, Result<Option<Delivery>>> {
                async move {
                    let q = format!("{DELIVERY_SELECT} WHERE d.order_id = ?");
                    sqlx::query(sqlx::AssertSqlSafe(q))
                        .bind(order_id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(sql)?
                        .as_ref()
                        .map(delivery_from_row)
                        .transpose()
                }
                .boxed()
            }

            fn partner_deliveries<'a>(
                &'a self,
                partner_id: &'a str,
                limit: u32,
            ) -> BoxFuture<'a, Result<Vec<Delivery>>> {
                async move {
                    let q = format!(
                        "{DELIVERY_SELECT} WHERE d.partner_id = ? \
                         ORDER BY d.created_at DESC, d.order_id LIMIT ?"
                    );
                    let rows = sqlx::query(sqlx::AssertSqlSafe(q))
                        .bind(partner_id)
                        .bind(i64::from(limit))
                        .fetch_all(&self.pool)
                        .await
                        .map_err(sql)?;
                    rows.iter().map(delivery_from_row).collect()
                }
                .boxed()
            }

            fn advance<'a>(
                &'a self,
                partner_id: &'a str,
                order_id: &'a str,
                step: Transition,
            ) -> BoxFuture<'a, Result<Delivery, AdvanceError>> {
                async move {
                    retrying(|| self.advance_once(partner_id, order_id, step)).await?
                }
                .boxed()
            }

            fn relay(
                &self,
                bus: Bus,
                wake: Arc<Notify>,
                stop: CancellationToken,
            ) -> BoxFuture<'static, ()> {
                Relay::new(self.pool.clone(), bus)
                    .with_wake(wake)
                    .run(stop)
                    .boxed()
            }
        }
    };
}

pub(crate) use sql_delivery_repo;
