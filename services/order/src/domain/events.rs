//! `orders.v1` events the order service emits and the `deliveries.v1` / `catalog.v1` events it
//! follows (see the event contract).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use storefront_kit::event::Envelope;

use super::{Actor, Order, OrderStatus, Partner};

/// The `source` of every order event.
pub const SOURCE: &str = "order";

pub const ORDER_PLACED: &str = "OrderPlaced";
pub const ORDER_CONFIRMED: &str = "OrderConfirmed";
pub const ORDER_STATUS_CHANGED: &str = "OrderStatusChanged";
pub const ORDER_CANCELLED: &str = "OrderCancelled";
pub const STOCK_CHANGED: &str = "StockChanged";

/// `OrderPlaced` / `OrderConfirmed` data: the whole order with `status` set.
fn snapshot(order: &Order, status: OrderStatus) -> Value {
    json!({
        "order_id": order.id,
        "user_id": order.user_id,
        "status": status,
        "placed_at": order.placed_at,
        "customer": order.customer,
        "shipping": order.shipping,
        "lines": order.lines,
        "item_count": order.item_count,
        "total": order.total,
    })
}

/// `OrderPlaced`: the whole order, and the version of the cart it was placed from, which
/// the cart service takes the order out of.
pub fn order_placed(order: &Order, cart_version: u64) -> Envelope {
    let mut data = snapshot(order, OrderStatus::Placed);
    data["cart_version"] = json!(cart_version);
    Envelope::new(ORDER_PLACED, SOURCE, &order.id, data)
}

pub fn order_confirmed(order: &Order) -> Envelope {
    Envelope::new(
        ORDER_CONFIRMED,
        SOURCE,
        &order.id,
        snapshot(order, OrderStatus::Confirmed),
    )
}

/// The event of `order` (as it was) moving to `to`; `OrderConfirmed` for PLACED → CONFIRMED,
/// `OrderCancelled` for a cancellation, else `OrderStatusChanged`.
pub fn status_event(
    before: &Order,
    to: OrderStatus,
    actor: Actor,
    partner: Option<&Partner>,
    reason: Option<&str>,
) -> Envelope {
    match to {
        OrderStatus::Confirmed if before.status == OrderStatus::Placed => order_confirmed(before),
        OrderStatus::Cancelled => {
            let mut data = json!({
                "order_id": before.id,
                "user_id": before.user_id,
                "from": before.status,
                "customer": before.customer,
                "lines": before.lines,
                "total": before.total,
                "actor": actor,
            });
            if let Some(r) = reason {
                data["reason"] = json!(r);
            }
            if let Some(p) = partner.or(before.partner.as_ref()) {
                data["partner"] = json!(p);
            }
            Envelope::new(ORDER_CANCELLED, SOURCE, &before.id, data)
        }
        _ => {
            let mut data = json!({
                "order_id": before.id,
                "user_id": before.user_id,
                "from": before.status,
                "to": to,
                "actor": actor,
                "customer": before.customer,
            });
            if let Some(p) = partner.or(before.partner.as_ref()) {
                data["partner"] = json!(p);
            }
            Envelope::new(ORDER_STATUS_CHANGED, SOURCE, &before.id, data)
        }
    }
}

pub fn stock_changed(product_id: &str, available: i64) -> Envelope {
    Envelope::new(
        STOCK_CHANGED,
        SOURCE,
        product_id,
        json!({ "product_id": product_id, "available": available }),
    )
}

/// The data of the `deliveries.v1` events the order service follows (fields it needs).
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct DeliveryData {
    pub order_id: String,
    #[serde(default)]
    pub partner: Option<Partner>,
}

/// The status a `deliveries.v1` event type drives the order to; `None` for types the order
/// service does not follow.
pub fn delivery_target(event_type: &str) -> Option<OrderStatus> {
    match event_type {
        "PartnerAssigned" => Some(OrderStatus::PartnerAssigned),
        "DeliveryPickedUp" => Some(OrderStatus::PickedUp),
        "DeliveryOutForDelivery" => Some(OrderStatus::OutForDelivery),
        "DeliveryDelivered" => Some(OrderStatus::Delivered),
        _ => None,
    }
}

/// The part of a `catalog.v1` `ProductUpserted` the stock needs.
#[derive(Clone, Debug, Deserialize)]
pub struct ProductUpserted {
    pub id: String,
    #[serde(default)]
    pub stock_hint: Option<u32>,
}

pub const PRODUCT_UPSERTED: &str = "ProductUpserted";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Customer, Money, OrderLine, Shipping};
    use chrono::Utc;

    fn order(status: OrderStatus) -> Order {
        let eur = |m| Money {
            minor: m,
            currency: storefront_search::domain::Currency::parse("EUR").expect("eur"),
        };
        Order {
            id: "0192d1d0-0000-7000-8000-000000000001".into(),
            user_id: "u1".into(),
            status,
            customer: Customer {
                name: "Ada".into(),
                email: "ada@example.com".into(),
            },
            shipping: Shipping {
                name: "Ada".into(),
                phone: None,
                line1: "1 Main St".into(),
                line2: None,
                city: "Berlin".into(),
                postal_code: "10115".into(),
                country: "DE".into(),
                lat: None,
                lon: None,
            },
            lines: vec![OrderLine {
                product_id: "p1".into(),
                sku: "SKU-1".into(),
                title: "Thing".into(),
                quantity: 2,
                unit_price: eur(500),
                line_total: eur(1000),
            }],
            item_count: 2,
            total: eur(1000),
            partner: None,
            placed_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn placed_and_confirmed_carry_the_whole_order() {
        let o = order(OrderStatus::Confirmed);
        let placed = order_placed(&o, 7);
        assert_eq!(placed.event_type, "OrderPlaced");
        assert_eq!(placed.data["cart_version"], 7);
        assert_eq!(placed.subject, o.id);
        assert_eq!(placed.data["status"], "PLACED");
        assert_eq!(placed.data["lines"][0]["unit_price"]["minor"], 500);
        assert_eq!(placed.data["total"]["currency"], "EUR");
        assert!(placed.data["shipping"].get("phone").is_none());
        let confirmed = order_confirmed(&o);
        assert_eq!(confirmed.data["status"], "CONFIRMED");
    }

    #[test]
    fn status_events_follow_the_contract() {
        let o = order(OrderStatus::Confirmed);
        let p = Partner {
            id: "pa1".into(),
            name: "Bo".into(),
            email: "bo@example.com".into(),
            phone: "+49 1".into(),
        };
        let e = status_event(
            &o,
            OrderStatus::PartnerAssigned,
            Actor::Delivery,
            Some(&p),
            None,
        );
        assert_eq!(e.event_type, "OrderStatusChanged");
        assert_eq!(e.data["from"], "CONFIRMED");
        assert_eq!(e.data["to"], "PARTNER_ASSIGNED");
        assert_eq!(e.data["actor"], "delivery");
        assert_eq!(e.data["partner"]["id"], "pa1");
        let c = status_event(
            &o,
            OrderStatus::Cancelled,
            Actor::Customer,
            None,
            Some("changed my mind"),
        );
        assert_eq!(c.event_type, "OrderCancelled");
        assert_eq!(c.data["reason"], "changed my mind");
        assert_eq!(c.data["lines"][0]["quantity"], 2);
        let placed = order(OrderStatus::Placed);
        let conf = status_event(&placed, OrderStatus::Confirmed, Actor::Admin, None, None);
        assert_eq!(conf.event_type, "OrderConfirmed");
        assert_eq!(
            delivery_target("PartnerAssigned"),
            Some(OrderStatus::PartnerAssigned)
        );
        assert_eq!(delivery_target("AssignmentPending"), None);
    }
}
