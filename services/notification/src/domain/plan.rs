//! Which event becomes which message (see the event contract).

use serde_json::Value;
use storefront_kit::event::Envelope;

use super::order::OrderSnapshot;

/// The messages the service sends, one template set each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TemplateKind {
    OrderConfirmation,
    PartnerAssigned,
    OutForDelivery,
    Delivered,
    Cancelled,
}

impl TemplateKind {
    pub const ALL: [TemplateKind; 5] = [
        Self::OrderConfirmation,
        Self::PartnerAssigned,
        Self::OutForDelivery,
        Self::Delivered,
        Self::Cancelled,
    ];

    /// The template name: files `<name>.subject.txt`, `<name>.txt`, `<name>.html`.
    pub fn name(self) -> &'static str {
        match self {
            Self::OrderConfirmation => "order_confirmation",
            Self::PartnerAssigned => "partner_assigned",
            Self::OutForDelivery => "out_for_delivery",
            Self::Delivered => "delivered",
            Self::Cancelled => "cancelled",
        }
    }
}

/// What to do with one event.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Keep this order for later messages (from `OrderPlaced` and `OrderConfirmed`).
    pub remember: Option<OrderSnapshot>,
    /// The message to send, if any.
    pub send: Option<TemplateKind>,
    pub order_id: String,
    /// The order as the event itself carries it (used when none was remembered).
    pub fallback: Option<OrderSnapshot>,
    /// The partner, for delivery messages.
    pub partner: Option<Value>,
    /// The cancellation reason.
    pub reason: Option<String>,
}

fn order_id(envelope: &Envelope) -> String {
    envelope.data["order_id"]
        .as_str()
        .map_or_else(|| envelope.subject.clone(), str::to_owned)
}

/// The plan for `envelope`: `Ok(None)` for events that need nothing (unknown types
/// included), `Err` for an event whose data does not fit its type.
pub fn plan(envelope: &Envelope) -> Result<Option<Plan>, serde_json::Error> {
    let data = &envelope.data;
    let base = Plan {
        remember: None,
        send: None,
        order_id: order_id(envelope),
        fallback: None,
        partner: None,
        reason: None,
    };
    let delivery = |kind| -> Result<Option<Plan>, serde_json::Error> {
        let partner = data
            .get("partner")
            .cloned()
            .ok_or_else(|| <serde_json::Error as serde::de::Error>::missing_field("partner"))?;
        Ok(Some(Plan {
            send: Some(kind),
            partner: Some(partner),
            ..base.clone()
        }))
    };
    match envelope.event_type.as_str() {
        "OrderPlaced" => Ok(Some(Plan {
            remember: Some(OrderSnapshot::from_data(data)?),
            ..base
        })),
        "OrderConfirmed" => {
            let snapshot = OrderSnapshot::from_data(data)?;
            Ok(Some(Plan {
                remember: Some(snapshot.clone()),
                send: Some(TemplateKind::OrderConfirmation),
                fallback: Some(snapshot),
                ..base
            }))
        }
        "OrderCancelled" => Ok(Some(Plan {
            send: Some(TemplateKind::Cancelled),
            fallback: Some(OrderSnapshot::from_data(data)?),
            reason: data["reason"].as_str().map(str::to_owned),
            ..base
        })),
        "PartnerAssigned" => delivery(TemplateKind::PartnerAssigned),
        "DeliveryOutForDelivery" => delivery(TemplateKind::OutForDelivery),
        "DeliveryDelivered" => delivery(TemplateKind::Delivered),
        _ => Ok(None),
    }
}

/// The template context: `customer`, `order` (`id`, `lines`, `item_count`, `total`,
/// `shipping`), `partner` and `reason`.
pub fn context(order: &OrderSnapshot, plan: &Plan) -> Value {
    serde_json::json!({
        "customer": order.customer,
        "order": {
            "id": order.order_id,
            "lines": order.lines,
            "item_count": order.item_count(),
            "total": order.total,
            "shipping": order.shipping,
        },
        "partner": plan.partner,
        "reason": plan.reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn confirmed() -> Envelope {
        Envelope::new(
            "OrderConfirmed",
            "order",
            "o-1",
            json!({
                "order_id": "o-1", "user_id": "u-1", "status": "CONFIRMED",
                "customer": {"name": "Ann", "email": "ann@example.com"},
                "shipping": {"name": "Ann", "line1": "Str 1", "city": "Berlin", "postal_code": "10115", "country": "DE"},
                "lines": [{"product_id": "p", "sku": "S-1", "title": "Lamp", "quantity": 2,
                           "unit_price": {"minor": 1999, "currency": "EUR"},
                           "line_total": {"minor": 3998, "currency": "EUR"}}],
                "item_count": 2, "total": {"minor": 3998, "currency": "EUR"}
            }),
        )
    }

    #[test]
    fn confirmation_is_remembered_and_sent() {
        let p = plan(&confirmed()).expect("valid").expect("plan");
        assert_eq!(p.send, Some(TemplateKind::OrderConfirmation));
        assert_eq!(
            p.remember.as_ref().map(|o| o.customer.email.as_str()),
            Some("ann@example.com")
        );
        assert_eq!(p.order_id, "o-1");
    }

    #[test]
    fn delivery_events_need_a_partner_and_other_events_are_skipped() {
        let assigned = Envelope::new(
            "PartnerAssigned",
            "delivery",
            "o-1",
            json!({"order_id": "o-1", "user_id": "u-1", "partner": {"id": "p", "name": "Rita", "email": "r@x.io", "phone": "1"}, "assigned_at": "2026-01-01T00:00:00Z"}),
        );
        let p = plan(&assigned).expect("valid").expect("plan");
        assert_eq!(p.send, Some(TemplateKind::PartnerAssigned));
        assert_eq!(
            p.partner.as_ref().map(|v| v["name"].clone()),
            Some(json!("Rita"))
        );
        let broken = Envelope::new(
            "PartnerAssigned",
            "delivery",
            "o-1",
            json!({"order_id": "o-1"}),
        );
        assert!(plan(&broken).is_err());
        for skipped in [
            "AssignmentPending",
            "DeliveryPickedUp",
            "StockChanged",
            "Whatever",
        ] {
            let e = Envelope::new(skipped, "x", "o-1", json!({}));
            assert_eq!(plan(&e).expect("valid"), None, "{skipped}");
        }
    }
}
