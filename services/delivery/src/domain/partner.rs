//! Delivery partners: who they are, where they deliver, and how much they can carry.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use storefront_kit::problem::FieldError;
use utoipa::ToSchema;

const MAX_NAME: usize = 100;
const MAX_EMAIL: usize = 254;
const MAX_PHONE: usize = 32;
const MAX_ACCOUNT_ID: usize = 64;
const MAX_PREFIXES: usize = 50;
const MAX_PREFIX_LEN: usize = 10;
const MAX_RADIUS_KM: f64 = 500.0;
const MAX_CONCURRENT: u32 = 1_000;
const MAX_ITEMS: u32 = 10_000;

/// A point and a radius: the partner delivers to addresses within `radius_km` of it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GeoCircle {
    /// Latitude in degrees, -90 ..= 90.
    pub lat: f64,
    /// Longitude in degrees, -180 ..= 180.
    pub lon: f64,
    /// Radius in kilometres, > 0 and ≤ 500.
    pub radius_km: f64,
}

/// Where a partner delivers: postal-code prefixes and/or a circle. An address is served when
/// its postal code starts with one of the prefixes, or when it has coordinates inside the
/// circle.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceArea {
    /// Postal-code prefixes, stored upper-case without spaces (`"10"`, `"SW1"`).
    #[serde(default)]
    pub postal_prefixes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circle: Option<GeoCircle>,
}

/// How much a partner can take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Capacity {
    /// Deliveries held at once (assigned, picked up or out for delivery), 1 ..= 1000.
    pub max_concurrent: u32,
    /// Largest order in items, 1 ..= 10000.
    pub max_items: u32,
    /// Heaviest order in grams; unset means no weight limit. Orders carry no weight yet, so
    /// an order's weight counts as 0 unless its lines say otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_weight_grams: Option<u64>,
}

/// The contact the customer sees in events and emails.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PartnerContact {
    pub id: String,
    pub name: String,
    pub email: String,
    #[serde(default)]
    pub phone: String,
}

/// A delivery partner.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Partner {
    pub id: String,
    /// The partner's account (the `sub` of their tokens).
    pub account_id: String,
    pub name: String,
    pub email: String,
    pub phone: String,
    /// On shift: takes new deliveries.
    pub on_shift: bool,
    pub service_area: ServiceArea,
    pub capacity: Capacity,
    /// Deliveries held now.
    pub load: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Partner {
    pub fn contact(&self) -> PartnerContact {
        PartnerContact {
            id: self.id.clone(),
            name: self.name.clone(),
            email: self.email.clone(),
            phone: self.phone.clone(),
        }
    }
}

/// `POST /v1/partners` body.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPartner {
    pub account_id: String,
    pub name: String,
    pub email: String,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub on_shift: bool,
    pub service_area: ServiceArea,
    pub capacity: Capacity,
}

/// `PATCH /v1/partners/{id}` body: the fields to change.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PartnerPatch {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub on_shift: Option<bool>,
    #[serde(default)]
    pub service_area: Option<ServiceArea>,
    #[serde(default)]
    pub capacity: Option<Capacity>,
}

/// Upper-case, spaces and dashes removed: `"sw1a 1aa"` → `"SW1A1AA"`.
pub fn normalize_postal(raw: &str) -> String {
    raw.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

fn check_text(errors: &mut Vec<FieldError>, field: &str, value: &str, max: usize) {
    let len = value.trim().chars().count();
    if len == 0 || len > max {
        errors.push(FieldError::new(
            field,
            format!("must be 1 to {max} characters"),
        ));
    }
}

fn check_email(errors: &mut Vec<FieldError>, value: &str) {
    let v = value.trim();
    let ok = v.len() <= MAX_EMAIL
        && v.split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.starts_with('.'))
        && !v.chars().any(char::is_whitespace);
    if !ok {
        errors.push(FieldError::new("email", "must be an e-mail address"));
    }
}

fn check_phone(errors: &mut Vec<FieldError>, value: &str) {
    let ok = value.len() <= MAX_PHONE
        && value
            .chars()
            .all(|c| c.is_ascii_digit() || " +-()/".contains(c));
    if !ok {
        errors.push(FieldError::new(
            "phone",
            format!("must be at most {MAX_PHONE} digits, spaces or + - ( ) /"),
        ));
    }
}

impl ServiceArea {
    /// Validates and normalizes (prefixes upper-case, deduplicated).
    pub fn validated(mut self, errors: &mut Vec<FieldError>) -> Self {
        let before = errors.len();
        if self.postal_prefixes.len() > MAX_PREFIXES {
            errors.push(FieldError::new(
                "service_area.postal_prefixes",
                format!("at most {MAX_PREFIXES} prefixes"),
            ));
        }
        let mut prefixes = Vec::new();
        for (i, p) in self.postal_prefixes.iter().enumerate() {
            let n = normalize_postal(p);
            if n.is_empty()
                || n.len() > MAX_PREFIX_LEN
                || !n.chars().all(|c| c.is_ascii_alphanumeric())
            {
                errors.push(FieldError::new(
                    format!("service_area.postal_prefixes[{i}]"),
                    format!("must be 1 to {MAX_PREFIX_LEN} letters or digits"),
                ));
            } else if !prefixes.contains(&n) {
                prefixes.push(n);
            }
        }
        self.postal_prefixes = prefixes;
        if let Some(c) = &self.circle {
            if !(-90.0..=90.0).contains(&c.lat) {
                errors.push(FieldError::new(
                    "service_area.circle.lat",
                    "must be -90 to 90",
                ));
            }
            if !(-180.0..=180.0).contains(&c.lon) {
                errors.push(FieldError::new(
                    "service_area.circle.lon",
                    "must be -180 to 180",
                ));
            }
            if !(c.radius_km > 0.0 && c.radius_km <= MAX_RADIUS_KM) {
                errors.push(FieldError::new(
                    "service_area.circle.radius_km",
                    format!("must be greater than 0 and at most {MAX_RADIUS_KM}"),
                ));
            }
        }
        if self.postal_prefixes.is_empty() && self.circle.is_none() && errors.len() == before {
            errors.push(FieldError::new(
                "service_area",
                "needs postal_prefixes or a circle",
            ));
        }
        self
    }
}

impl Capacity {
    pub fn validate(&self, errors: &mut Vec<FieldError>) {
        if !(1..=MAX_CONCURRENT).contains(&self.max_concurrent) {
            errors.push(FieldError::new(
                "capacity.max_concurrent",
                format!("must be 1 to {MAX_CONCURRENT}"),
            ));
        }
        if !(1..=MAX_ITEMS).contains(&self.max_items) {
            errors.push(FieldError::new(
                "capacity.max_items",
                format!("must be 1 to {MAX_ITEMS}"),
            ));
        }
        if self.max_weight_grams == Some(0) {
            errors.push(FieldError::new(
                "capacity.max_weight_grams",
                "must be greater than 0 (leave it out for no limit)",
            ));
        }
    }
}

impl NewPartner {
    /// A partner from a valid body, or every invalid field.
    pub fn into_partner(self, now: DateTime<Utc>) -> Result<Partner, Vec<FieldError>> {
        let mut errors = Vec::new();
        let account_id = self.account_id.trim().to_string();
        if account_id.is_empty() || account_id.len() > MAX_ACCOUNT_ID {
            errors.push(FieldError::new(
                "account_id",
                format!("must be 1 to {MAX_ACCOUNT_ID} characters"),
            ));
        }
        check_text(&mut errors, "name", &self.name, MAX_NAME);
        check_email(&mut errors, &self.email);
        let phone = self.phone.unwrap_or_default().trim().to_string();
        check_phone(&mut errors, &phone);
        let service_area = self.service_area.validated(&mut errors);
        self.capacity.validate(&mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Partner {
            id: uuid::Uuid::now_v7().to_string(),
            account_id,
            name: self.name.trim().to_string(),
            email: self.email.trim().to_string(),
            phone,
            on_shift: self.on_shift,
            service_area,
            capacity: self.capacity,
            load: 0,
            created_at: now,
            updated_at: now,
        })
    }
}

impl PartnerPatch {
    /// `partner` with the patch applied, or every invalid field. Load is left as it is.
    pub fn apply(self, partner: &Partner, now: DateTime<Utc>) -> Result<Partner, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut next = partner.clone();
        if let Some(name) = self.name {
            check_text(&mut errors, "name", &name, MAX_NAME);
            next.name = name.trim().to_string();
        }
        if let Some(email) = self.email {
            check_email(&mut errors, &email);
            next.email = email.trim().to_string();
        }
        if let Some(phone) = self.phone {
            check_phone(&mut errors, phone.trim());
            next.phone = phone.trim().to_string();
        }
        if let Some(on_shift) = self.on_shift {
            next.on_shift = on_shift;
        }
        if let Some(area) = self.service_area {
            next.service_area = area.validated(&mut errors);
        }
        if let Some(capacity) = self.capacity {
            capacity.validate(&mut errors);
            next.capacity = capacity;
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        next.updated_at = now;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> NewPartner {
        NewPartner {
            account_id: "acc-1".into(),
            name: "Rita Rider".into(),
            email: "rita@example.com".into(),
            phone: Some("+49 30 1234".into()),
            on_shift: true,
            service_area: ServiceArea {
                postal_prefixes: vec!["10 1".into(), "101".into()],
                circle: None,
            },
            capacity: Capacity {
                max_concurrent: 3,
                max_items: 10,
                max_weight_grams: None,
            },
        }
    }

    #[test]
    fn a_valid_partner_is_normalized() {
        let p = body().into_partner(Utc::now()).expect("valid");
        assert_eq!(p.service_area.postal_prefixes, vec!["101".to_string()]);
        assert_eq!(p.load, 0);
    }

    #[test]
    fn every_bad_field_is_named() {
        let mut b = body();
        b.email = "nope".into();
        b.service_area = ServiceArea {
            postal_prefixes: vec![],
            circle: Some(GeoCircle {
                lat: 91.0,
                lon: 0.0,
                radius_km: 0.0,
            }),
        };
        b.capacity.max_concurrent = 0;
        let errors = b.into_partner(Utc::now()).expect_err("invalid");
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "email",
                "service_area.circle.lat",
                "service_area.circle.radius_km",
                "capacity.max_concurrent"
            ]
        );
    }

    #[test]
    fn an_area_needs_prefixes_or_a_circle() {
        let mut b = body();
        b.service_area = ServiceArea::default();
        let errors = b.into_partner(Utc::now()).expect_err("invalid");
        assert_eq!(errors[0].field, "service_area");
    }
}
