//! A delivery: one order on its way, and the states it moves through.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::partner::PartnerContact;

/// Where a delivery is. The names match the order's status of the same step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeliveryStatus {
    /// Waiting for a partner with room in the area.
    Pending,
    PartnerAssigned,
    PickedUp,
    OutForDelivery,
    Delivered,
    Cancelled,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::PartnerAssigned => "PARTNER_ASSIGNED",
            Self::PickedUp => "PICKED_UP",
            Self::OutForDelivery => "OUT_FOR_DELIVERY",
            Self::Delivered => "DELIVERED",
            Self::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::PartnerAssigned,
            Self::PickedUp,
            Self::OutForDelivery,
            Self::Delivered,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == raw)
    }

    /// True while the delivery takes one of its partner's slots.
    pub fn holds_slot(self) -> bool {
        matches!(
            self,
            Self::PartnerAssigned | Self::PickedUp | Self::OutForDelivery
        )
    }
}

/// A step a partner reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    PickedUp,
    OutForDelivery,
    Delivered,
}

impl Transition {
    /// The state the step starts from.
    pub fn from(self) -> DeliveryStatus {
        match self {
            Self::PickedUp => DeliveryStatus::PartnerAssigned,
            Self::OutForDelivery => DeliveryStatus::PickedUp,
            Self::Delivered => DeliveryStatus::OutForDelivery,
        }
    }

    pub fn to(self) -> DeliveryStatus {
        match self {
            Self::PickedUp => DeliveryStatus::PickedUp,
            Self::OutForDelivery => DeliveryStatus::OutForDelivery,
            Self::Delivered => DeliveryStatus::Delivered,
        }
    }

    /// The `deliveries.v1` event type of the step.
    pub fn event_type(self) -> &'static str {
        match self {
            Self::PickedUp => super::event::DELIVERY_PICKED_UP,
            Self::OutForDelivery => super::event::DELIVERY_OUT_FOR_DELIVERY,
            Self::Delivered => super::event::DELIVERY_DELIVERED,
        }
    }

    /// `Ok` when the step is legal from `current`.
    pub fn check(self, current: DeliveryStatus) -> Result<(), String> {
        if current == self.from() {
            Ok(())
        } else {
            Err(format!(
                "The delivery is {}; this step needs {}.",
                current.as_str(),
                self.from().as_str()
            ))
        }
    }
}

/// A delivery as stored and as answered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Delivery {
    pub order_id: String,
    /// The customer who placed the order.
    pub user_id: String,
    pub status: DeliveryStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner: Option<PartnerContact>,
    /// The shipping address of the order, as the order event carried it.
    #[schema(value_type = Object)]
    pub address: serde_json::Value,
    pub item_count: u32,
    pub weight_grams: u64,
    /// Why no partner was assigned yet (while pending) or why it was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_follow_the_order_status_machine() {
        use DeliveryStatus::*;
        assert!(Transition::PickedUp.check(PartnerAssigned).is_ok());
        assert!(Transition::OutForDelivery.check(PickedUp).is_ok());
        assert!(Transition::Delivered.check(OutForDelivery).is_ok());
        assert!(Transition::Delivered.check(PartnerAssigned).is_err());
        assert!(Transition::PickedUp.check(PickedUp).is_err());
        assert!(Transition::PickedUp.check(Cancelled).is_err());
        assert!(Transition::OutForDelivery.check(Pending).is_err());
        for s in [
            Pending,
            PartnerAssigned,
            PickedUp,
            OutForDelivery,
            Delivered,
            Cancelled,
        ] {
            assert_eq!(DeliveryStatus::parse(s.as_str()), Some(s));
        }
        assert!(PickedUp.holds_slot() && !Delivered.holds_slot() && !Pending.holds_slot());
    }
}
