//! Domain types of the order service: they validate on construction and do no I/O.

pub mod events;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use storefront_kit::problem::FieldError;
use utoipa::ToSchema;

pub use storefront_search::domain::{Currency, Money};

/// Where an order is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    Placed,
    Confirmed,
    PartnerAssigned,
    PickedUp,
    OutForDelivery,
    Delivered,
    Cancelled,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 7] = [
        Self::Placed,
        Self::Confirmed,
        Self::PartnerAssigned,
        Self::PickedUp,
        Self::OutForDelivery,
        Self::Delivered,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Placed => "PLACED",
            Self::Confirmed => "CONFIRMED",
            Self::PartnerAssigned => "PARTNER_ASSIGNED",
            Self::PickedUp => "PICKED_UP",
            Self::OutForDelivery => "OUT_FOR_DELIVERY",
            Self::Delivered => "DELIVERED",
            Self::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// Position on the forward path (CANCELLED is off it).
    fn rank(self) -> Option<u8> {
        match self {
            Self::Placed => Some(0),
            Self::Confirmed => Some(1),
            Self::PartnerAssigned => Some(2),
            Self::PickedUp => Some(3),
            Self::OutForDelivery => Some(4),
            Self::Delivered => Some(5),
            Self::Cancelled => None,
        }
    }

    /// Whether `self → to` is a legal single step of the status machine.
    pub fn can_become(self, to: OrderStatus) -> bool {
        match (self.rank(), to.rank()) {
            (Some(a), Some(b)) => b == a + 1,
            (Some(_), None) => {
                matches!(self, Self::Placed | Self::Confirmed | Self::PartnerAssigned)
            }
            (None, _) => false,
        }
    }

    /// Whether `to` is already reached or passed (a repeated event is a no-op).
    pub fn has_reached(self, to: OrderStatus) -> bool {
        match (self.rank(), to.rank()) {
            (Some(a), Some(b)) => a >= b,
            _ => self == to,
        }
    }
}

/// What a status change request amounts to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    Apply,
    /// Already there (only for followers of events, which must be idempotent).
    Noop,
    Illegal,
}

/// Plans `from → to`; `lenient` (event followers) turns an already-reached status into a no-op.
pub fn plan(from: OrderStatus, to: OrderStatus, lenient: bool) -> Plan {
    if from.can_become(to) {
        Plan::Apply
    } else if lenient && from.has_reached(to) {
        Plan::Noop
    } else {
        Plan::Illegal
    }
}

/// Who changed a status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Actor {
    Admin,
    Delivery,
    Customer,
    System,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Customer {
    pub name: String,
    pub email: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Shipping {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    pub line1: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    pub city: String,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2, upper case.
    pub country: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lat: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lon: Option<f64>,
}

/// A delivery partner, as delivery events name it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Partner {
    pub id: String,
    pub name: String,
    pub email: String,
    pub phone: String,
}

/// One product of an order, priced when the order was placed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderLine {
    pub product_id: String,
    pub sku: String,
    pub title: String,
    pub quantity: u32,
    pub unit_price: Money,
    pub line_total: Money,
}

/// An order as stored and answered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Order {
    /// UUIDv7: newer orders sort after older ones.
    pub id: String,
    pub user_id: String,
    pub status: OrderStatus,
    pub customer: Customer,
    pub shipping: Shipping,
    pub lines: Vec<OrderLine>,
    pub item_count: u32,
    pub total: Money,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner: Option<Partner>,
    pub placed_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

// ---- input ----------------------------------------------------------------------------

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerInput {
    pub name: String,
    pub email: String,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShippingInput {
    pub name: String,
    #[serde(default)]
    pub phone: Option<String>,
    pub line1: String,
    #[serde(default)]
    pub line2: Option<String>,
    pub city: String,
    pub postal_code: String,
    pub country: String,
    #[serde(default)]
    pub lat: Option<f64>,
    #[serde(default)]
    pub lon: Option<f64>,
}

/// The body of `POST /v1/orders`; the lines come from the caller's cart.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrderInput {
    pub customer: CustomerInput,
    pub shipping: ShippingInput,
}

fn text(
    errors: &mut Vec<FieldError>,
    field: &str,
    raw: &str,
    max: usize,
    required: bool,
) -> String {
    let v = raw.trim();
    if v.is_empty() && required {
        errors.push(FieldError::new(field, "must not be empty"));
    } else if v.chars().count() > max {
        errors.push(FieldError::new(
            field,
            format!("must be at most {max} characters"),
        ));
    } else if v.chars().any(char::is_control) {
        errors.push(FieldError::new(
            field,
            "must not contain control characters",
        ));
    }
    v.to_string()
}

fn valid_email(v: &str) -> bool {
    let Some((local, domain)) = v.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !v.chars().any(char::is_whitespace)
        && !domain.contains('@')
}

impl PlaceOrderInput {
    /// The validated customer and shipping address, or every invalid field.
    pub fn validate(self) -> Result<(Customer, Shipping), Vec<FieldError>> {
        let mut e = Vec::new();
        let c = self.customer;
        let name = text(&mut e, "customer.name", &c.name, 100, true);
        let email = text(&mut e, "customer.email", &c.email, 254, true);
        if !email.is_empty() && !valid_email(&email) {
            e.push(FieldError::new(
                "customer.email",
                "must be an email address",
            ));
        }
        let s = self.shipping;
        let ship_name = text(&mut e, "shipping.name", &s.name, 100, true);
        let phone = s.phone.map(|p| {
            let p = text(&mut e, "shipping.phone", &p, 32, false);
            let digits = p.chars().filter(char::is_ascii_digit).count();
            let allowed = p
                .chars()
                .all(|ch| ch.is_ascii_digit() || matches!(ch, '+' | ' ' | '-' | '(' | ')'));
            if !allowed || digits < 5 {
                e.push(FieldError::new(
                    "shipping.phone",
                    "must be a phone number (digits, spaces, + - ( ))",
                ));
            }
            p
        });
        let line1 = text(&mut e, "shipping.line1", &s.line1, 200, true);
        let line2 = s
            .line2
            .map(|l| text(&mut e, "shipping.line2", &l, 200, false))
            .filter(|l| !l.is_empty());
        let city = text(&mut e, "shipping.city", &s.city, 100, true);
        let postal_code = text(&mut e, "shipping.postal_code", &s.postal_code, 20, true);
        let country = s.country.trim().to_string();
        if !(country.len() == 2 && country.chars().all(|ch| ch.is_ascii_uppercase())) {
            e.push(FieldError::new(
                "shipping.country",
                "must be an ISO 3166-1 alpha-2 code such as DE",
            ));
        }
        if s.lat.is_some_and(|v| !(-90.0..=90.0).contains(&v)) {
            e.push(FieldError::new(
                "shipping.lat",
                "must be between -90 and 90",
            ));
        }
        if s.lon.is_some_and(|v| !(-180.0..=180.0).contains(&v)) {
            e.push(FieldError::new(
                "shipping.lon",
                "must be between -180 and 180",
            ));
        }
        if s.lat.is_some() != s.lon.is_some() {
            e.push(FieldError::new("shipping.lon", "lat and lon come together"));
        }
        if !e.is_empty() {
            return Err(e);
        }
        Ok((
            Customer { name, email },
            Shipping {
                name: ship_name,
                phone,
                line1,
                line2,
                city,
                postal_code,
                country,
                lat: s.lat,
                lon: s.lon,
            },
        ))
    }
}

/// The `Idempotency-Key` header: 1–255 visible ASCII characters.
pub fn parse_idempotency_key(raw: Option<&str>) -> Result<String, &'static str> {
    match raw.map(str::trim) {
        None | Some("") => Err("the Idempotency-Key header is required"),
        Some(k) if k.len() > 255 || !k.chars().all(|c| c.is_ascii_graphic()) => {
            Err("must be 1 to 255 visible ASCII characters")
        }
        Some(k) => Ok(k.to_string()),
    }
}

/// Stock a product may have: 0 ..= 10^9.
pub const MAX_STOCK: i64 = 1_000_000_000;

/// An opaque list cursor: the last order id seen, base64url.
pub mod cursor {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    pub fn encode(order_id: &str) -> String {
        URL_SAFE_NO_PAD.encode(format!("o1:{order_id}"))
    }

    pub fn decode(raw: &str) -> Option<String> {
        let bytes = URL_SAFE_NO_PAD.decode(raw).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let id = text.strip_prefix("o1:")?;
        uuid::Uuid::parse_str(id).ok()?;
        Some(id.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OrderStatus::*;

    #[test]
    fn the_status_machine_allows_exactly_the_contract() {
        let legal = [
            (Placed, Confirmed),
            (Confirmed, PartnerAssigned),
            (PartnerAssigned, PickedUp),
            (PickedUp, OutForDelivery),
            (OutForDelivery, Delivered),
            (Placed, Cancelled),
            (Confirmed, Cancelled),
            (PartnerAssigned, Cancelled),
        ];
        for from in OrderStatus::ALL {
            for to in OrderStatus::ALL {
                assert_eq!(
                    from.can_become(to),
                    legal.contains(&(from, to)),
                    "{from:?} -> {to:?}"
                );
            }
        }
    }

    #[test]
    fn followers_treat_reached_statuses_as_noops() {
        assert_eq!(plan(Confirmed, PartnerAssigned, true), Plan::Apply);
        assert_eq!(plan(PartnerAssigned, PartnerAssigned, true), Plan::Noop);
        assert_eq!(plan(PickedUp, PartnerAssigned, true), Plan::Noop);
        assert_eq!(plan(PartnerAssigned, PartnerAssigned, false), Plan::Illegal);
        assert_eq!(plan(Cancelled, PartnerAssigned, true), Plan::Illegal);
        assert_eq!(plan(Placed, PickedUp, true), Plan::Illegal);
        assert_eq!(plan(Cancelled, Cancelled, true), Plan::Noop);
    }

    #[test]
    fn statuses_round_trip_as_strings() {
        for s in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_value(s).expect("json"),
                serde_json::json!(s.as_str())
            );
        }
        assert_eq!(OrderStatus::parse("placed"), None);
    }

    fn input(v: serde_json::Value) -> PlaceOrderInput {
        serde_json::from_value(v).expect("input")
    }

    #[test]
    fn validation_names_every_bad_field() {
        let bad = input(serde_json::json!({
            "customer": {"name": "", "email": "nope"},
            "shipping": {"name": "A", "phone": "call me", "line1": " ", "city": "B",
                         "postal_code": "1", "country": "Germany", "lat": 91.0}
        }));
        let errors = bad.validate().expect_err("invalid");
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        for f in [
            "customer.name",
            "customer.email",
            "shipping.phone",
            "shipping.line1",
            "shipping.country",
            "shipping.lat",
            "shipping.lon",
        ] {
            assert!(fields.contains(&f), "{f} in {fields:?}");
        }
        let good = input(serde_json::json!({
            "customer": {"name": " Ada ", "email": "ada@example.com"},
            "shipping": {"name": "Ada", "line1": "1 Main St", "line2": "", "city": "Berlin",
                         "postal_code": "10115", "country": "DE"}
        }));
        let (c, s) = good.validate().expect("valid");
        assert_eq!(c.name, "Ada");
        assert_eq!(s.line2, None);
    }

    #[test]
    fn idempotency_keys_and_cursors_are_checked() {
        assert!(parse_idempotency_key(None).is_err());
        assert!(parse_idempotency_key(Some("")).is_err());
        assert!(parse_idempotency_key(Some("has space")).is_err());
        assert!(parse_idempotency_key(Some(&"k".repeat(256))).is_err());
        assert_eq!(parse_idempotency_key(Some("abc-1")), Ok("abc-1".into()));
        let id = uuid::Uuid::now_v7().to_string();
        assert_eq!(cursor::decode(&cursor::encode(&id)), Some(id));
        assert_eq!(cursor::decode("!!"), None);
        assert_eq!(cursor::decode("bm90LWEtY3Vyc29y"), None);
    }
}
