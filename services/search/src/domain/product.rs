//! Products and the values they are made of.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use storefront_kit::problem::FieldError;
use utoipa::ToSchema;

/// Largest accepted price: 100 million in major units of a two-decimal currency.
pub const MAX_PRICE_MINOR: i64 = 10_000_000_000;
const MAX_TITLE: usize = 200;
const MAX_DESCRIPTION: usize = 5_000;
const MAX_BRAND: usize = 80;
const MAX_IMAGES: usize = 10;
const MAX_ATTRIBUTES: usize = 30;

fn is_slug_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
}

/// A product id: 1–64 of `A-Z a-z 0-9 - _`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String)]
pub struct ProductId(String);

impl ProductId {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && raw
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if ok {
            Ok(Self(raw.to_string()))
        } else {
            Err("must be 1 to 64 characters of A-Z, a-z, 0-9, '-' or '_'".into())
        }
    }

    /// A fresh, time-ordered id.
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ProductId {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        Self::parse(&value)
    }
}

impl From<ProductId> for String {
    fn from(value: ProductId) -> Self {
        value.0
    }
}

impl fmt::Display for ProductId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A stock keeping unit: 1–64 of `A-Z 0-9 - _ .`, stored upper-case.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "HP-1000-BLK")]
pub struct Sku(String);

impl Sku {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let s = raw.trim().to_ascii_uppercase();
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if ok {
            Ok(Self(s))
        } else {
            Err("must be 1 to 64 characters of A-Z, 0-9, '-', '_' or '.'".into())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Sku {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        Self::parse(&value)
    }
}

impl From<Sku> for String {
    fn from(value: Sku) -> Self {
        value.0
    }
}

/// An ISO 4217 currency code: three upper-case letters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "EUR")]
pub struct Currency(String);

impl Currency {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.len() == 3 && raw.chars().all(|c| c.is_ascii_uppercase()) {
            Ok(Self(raw.to_string()))
        } else {
            Err("must be a three-letter upper-case ISO 4217 code such as EUR".into())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Currency {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        Self::parse(&value)
    }
}

impl From<Currency> for String {
    fn from(value: Currency) -> Self {
        value.0
    }
}

/// An amount in integer minor units (cents) and its currency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Money {
    /// Minor units, 0 ..= 10^10.
    pub minor: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(minor: i64, currency: Currency) -> Result<Self, String> {
        if (0..=MAX_PRICE_MINOR).contains(&minor) {
            Ok(Self { minor, currency })
        } else {
            Err(format!("must be between 0 and {MAX_PRICE_MINOR}"))
        }
    }
}

/// A category path such as `electronics/audio/headphones`: 1–5 lower-case slug segments.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "electronics/audio/headphones")]
pub struct CategoryPath(String);

impl CategoryPath {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim().trim_matches('/');
        let segments: Vec<&str> = raw.split('/').collect();
        let ok = !raw.is_empty()
            && segments.len() <= 5
            && segments
                .iter()
                .all(|s| !s.is_empty() && s.len() <= 40 && s.chars().all(is_slug_char));
        if ok {
            Ok(Self(raw.to_string()))
        } else {
            Err(
                "must be 1 to 5 segments of lower-case letters, digits and '-', separated by '/'"
                    .into(),
            )
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Every prefix of the path, the root first: `a`, `a/b`, `a/b/c`.
    pub fn ancestors(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut acc = String::new();
        for segment in self.0.split('/') {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(segment);
            out.push(acc.clone());
        }
        out
    }
}

impl TryFrom<String> for CategoryPath {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        Self::parse(&value)
    }
}

impl From<CategoryPath> for String {
    fn from(value: CategoryPath) -> Self {
        value.0
    }
}

/// Free key/value attributes (`colour: black`, `size: M`): at most 30; keys are lower-case
/// `a-z 0-9 _` up to 32 characters, values 1–64 characters without `,` `:` or `=`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(
    try_from = "BTreeMap<String, String>",
    into = "BTreeMap<String, String>"
)]
#[schema(value_type = BTreeMap<String, String>)]
pub struct Attributes(BTreeMap<String, String>);

impl Attributes {
    pub fn parse(raw: BTreeMap<String, String>) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        if raw.len() > MAX_ATTRIBUTES {
            errors.push(FieldError::new(
                "attributes",
                format!("at most {MAX_ATTRIBUTES} attributes"),
            ));
        }
        let mut out = BTreeMap::new();
        for (k, v) in raw {
            let key_ok = !k.is_empty()
                && k.len() <= 32
                && k.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !key_ok {
                errors.push(FieldError::new(
                    format!("attributes.{k}"),
                    "keys are 1 to 32 characters of a-z, 0-9 and '_'",
                ));
                continue;
            }
            let value = v.trim().to_string();
            if value.is_empty()
                || value.chars().count() > 64
                || value.contains([',', ':', '='])
                || value.chars().any(char::is_control)
            {
                errors.push(FieldError::new(
                    format!("attributes.{k}"),
                    "values are 1 to 64 characters without ',', ':' or '='",
                ));
                continue;
            }
            out.insert(k, value);
        }
        if errors.is_empty() {
            Ok(Self(out))
        } else {
            Err(errors)
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter()
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// `key=value` terms, the form the indexes facet and filter on.
    pub fn terms(&self) -> Vec<String> {
        self.0.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }
}

impl TryFrom<BTreeMap<String, String>> for Attributes {
    type Error = String;
    fn try_from(value: BTreeMap<String, String>) -> Result<Self, String> {
        Self::parse(value).map_err(|errors| {
            errors
                .into_iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }
}

impl From<Attributes> for BTreeMap<String, String> {
    fn from(value: Attributes) -> Self {
        value.0
    }
}

/// A product's stock as the order service last reported it (`StockChanged` on `orders.v1`).
/// The order service owns the stock; search only shows it. A report replaces the one held
/// only when it is newer (`as_of`), so replays and out-of-order deliveries change nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Availability {
    /// Units that can be ordered now.
    pub available: i64,
    /// `available > 0`.
    pub in_stock: bool,
    /// When the order service changed the stock (the event time, microsecond precision).
    pub as_of: DateTime<Utc>,
}

impl Availability {
    /// `available` units as of `as_of` (truncated to microseconds, the precision every store
    /// keeps).
    pub fn new(available: i64, as_of: DateTime<Utc>) -> Self {
        let as_of = DateTime::from_timestamp_micros(as_of.timestamp_micros()).unwrap_or(as_of);
        Self {
            available,
            in_stock: available > 0,
            as_of,
        }
    }

    /// The ordering key: microseconds since the epoch of `as_of`.
    pub fn stamp(&self) -> i64 {
        self.as_of.timestamp_micros()
    }

    /// From a stored count and stamp.
    pub fn from_stamp(available: i64, stamp: i64) -> Self {
        Self::new(
            available,
            DateTime::from_timestamp_micros(stamp).unwrap_or_default(),
        )
    }

    /// True when this report should replace `held`: there is none, or this one is strictly
    /// newer. A redelivered report (same time) or an older one is not.
    pub fn supersedes(&self, held: Option<&Self>) -> bool {
        held.is_none_or(|h| self.stamp() > h.stamp())
    }

    /// The newer of two reports (the held one on a tie).
    pub fn newest(held: Option<Self>, other: Option<Self>) -> Option<Self> {
        match (held, other) {
            (Some(h), Some(o)) if o.supersedes(Some(&h)) => Some(o),
            (Some(h), _) => Some(h),
            (None, o) => o,
        }
    }
}

/// A catalog product as stored and served.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Product {
    pub id: ProductId,
    pub sku: Sku,
    pub title: String,
    pub description: String,
    pub brand: String,
    pub category: CategoryPath,
    pub price: Money,
    pub attributes: Attributes,
    /// Image URLs (http or https).
    pub images: Vec<String>,
    /// Roughly how many are in stock; the order service holds the real stock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stock_hint: Option<u32>,
    /// The stock the order service last reported; `null` until it reported one.
    #[serde(default)]
    pub availability: Option<Availability>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Starts at 1 and grows by one with every change; the `ETag` of the product.
    pub version: u64,
}

impl Product {
    /// A new product (version 1) from a validated draft.
    pub fn create(id: ProductId, draft: ProductDraft, now: DateTime<Utc>) -> Self {
        Self {
            id,
            sku: draft.sku,
            title: draft.title,
            description: draft.description,
            brand: draft.brand,
            category: draft.category,
            price: draft.price,
            attributes: draft.attributes,
            images: draft.images,
            stock_hint: draft.stock_hint,
            availability: None,
            created_at: now,
            updated_at: now,
            version: 1,
        }
    }

    /// This product replaced by `draft`, one version later (the stock stays).
    pub fn replaced(&self, draft: ProductDraft, now: DateTime<Utc>) -> Self {
        let mut next = Self::create(self.id.clone(), draft, now);
        next.created_at = self.created_at;
        next.availability.clone_from(&self.availability);
        next.version = self.version + 1;
        next
    }

    /// The strong `ETag` of this product as served: its version, and once the order service
    /// reported stock, that report too (`"3"`, then `"3.5.1764367342123456"`: version,
    /// available units, report time in microseconds), so a stock change gives a new tag.
    /// `If-Match` compares only the version ([`Product::version_of_tag`]).
    pub fn etag(&self) -> String {
        match &self.availability {
            None => format!("\"{}\"", self.version),
            Some(a) => format!(
                "\"{}.{}.{}\"",
                self.version,
                a.available,
                a.as_of.timestamp_micros()
            ),
        }
    }

    /// The version an entity tag names: `"3"`, `W/"3"`, `3` or a full tag such as
    /// `"3.5.1764367342123456"`; `None` if it names none.
    pub fn version_of_tag(tag: &str) -> Option<u64> {
        let bare = tag.trim().trim_start_matches("W/").trim_matches('"');
        let version = bare.split_once('.').map_or(bare, |(v, _)| v);
        version.parse().ok()
    }
}

/// The body of `POST /v1/products` and `PUT /v1/products/{id}`, as received.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductInput {
    /// 1 to 64 of A-Z, 0-9, `-`, `_` and `.` (lower case is taken as upper case).
    #[schema(pattern = r"^\s*[A-Za-z0-9._-]{1,64}\s*$")]
    pub sku: String,
    /// 1 to 200 characters once surrounding spaces are trimmed; no control characters but
    /// line feeds and tabs.
    #[schema(pattern = r"\S")]
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// 1 to 80 characters once surrounding spaces are trimmed.
    #[schema(pattern = r"\S")]
    pub brand: String,
    /// 1 to 5 segments of 1 to 40 lower-case letters, digits and `-`, separated by `/`.
    #[schema(pattern = r"^\s*/*[a-z0-9-]{1,40}(/[a-z0-9-]{1,40}){0,4}/*\s*$")]
    pub category: String,
    pub price: PriceInput,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// At most 10 http(s) URLs.
    #[serde(default)]
    #[schema(max_items = 10)]
    pub images: Vec<String>,
    /// At most 10^9.
    #[serde(default)]
    #[schema(maximum = 1_000_000_000)]
    pub stock_hint: Option<u32>,
    /// On update: the version being replaced (alternative to `If-Match`).
    #[serde(default)]
    pub version: Option<u64>,
}

#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceInput {
    /// Minor units, 0 ..= 10^10.
    #[schema(minimum = 0, maximum = 10_000_000_000.0)]
    pub minor: i64,
    /// A three-letter upper-case ISO 4217 code.
    #[schema(pattern = "^[A-Z]{3}$")]
    pub currency: String,
}

/// A validated [`ProductInput`].
#[derive(Clone, Debug, PartialEq)]
pub struct ProductDraft {
    pub sku: Sku,
    pub title: String,
    pub description: String,
    pub brand: String,
    pub category: CategoryPath,
    pub price: Money,
    pub attributes: Attributes,
    pub images: Vec<String>,
    pub stock_hint: Option<u32>,
}

fn text(
    errors: &mut Vec<FieldError>,
    field: &str,
    raw: &str,
    min: usize,
    max: usize,
) -> Option<String> {
    let value = raw.trim().to_string();
    let len = value.chars().count();
    if len < min || len > max {
        errors.push(FieldError::new(
            field,
            format!("must be {min} to {max} characters"),
        ));
        None
    } else if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        errors.push(FieldError::new(
            field,
            "must not contain control characters",
        ));
        None
    } else {
        Some(value)
    }
}

impl ProductInput {
    /// Validates every field, reporting all invalid ones at once.
    pub fn validate(self) -> Result<ProductDraft, Vec<FieldError>> {
        let mut errors = Vec::new();
        let sku = Sku::parse(&self.sku)
            .map_err(|m| errors.push(FieldError::new("sku", m)))
            .ok();
        let title = text(&mut errors, "title", &self.title, 1, MAX_TITLE);
        let description = text(
            &mut errors,
            "description",
            &self.description,
            0,
            MAX_DESCRIPTION,
        );
        let brand = text(&mut errors, "brand", &self.brand, 1, MAX_BRAND);
        let category = CategoryPath::parse(&self.category)
            .map_err(|m| errors.push(FieldError::new("category", m)))
            .ok();
        let currency = Currency::parse(&self.price.currency)
            .map_err(|m| errors.push(FieldError::new("price.currency", m)))
            .ok();
        let price = currency.and_then(|c| {
            Money::new(self.price.minor, c)
                .map_err(|m| errors.push(FieldError::new("price.minor", m)))
                .ok()
        });
        let attributes = Attributes::parse(self.attributes)
            .map_err(|e| errors.extend(e))
            .ok();
        if self.images.len() > MAX_IMAGES {
            errors.push(FieldError::new(
                "images",
                format!("at most {MAX_IMAGES} images"),
            ));
        }
        for (i, image) in self.images.iter().enumerate() {
            let ok = url::Url::parse(image)
                .map(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
                .unwrap_or(false);
            if !ok || image.len() > 2048 {
                errors.push(FieldError::new(
                    format!("images[{i}]"),
                    "must be an http(s) URL of at most 2048 characters",
                ));
            }
        }
        if self.stock_hint.is_some_and(|s| s > 1_000_000_000) {
            errors.push(FieldError::new("stock_hint", "must be at most 10^9"));
        }
        match (sku, title, description, brand, category, price, attributes) {
            (
                Some(sku),
                Some(title),
                Some(description),
                Some(brand),
                Some(category),
                Some(price),
                Some(attributes),
            ) if errors.is_empty() => Ok(ProductDraft {
                sku,
                title,
                description,
                brand,
                category,
                price,
                attributes,
                images: self.images,
                stock_hint: self.stock_hint,
            }),
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> ProductInput {
        ProductInput {
            sku: "hp-1".into(),
            title: " Bluetooth Headphones ".into(),
            description: "Over-ear".into(),
            brand: "Sonora".into(),
            category: "electronics/audio/headphones".into(),
            price: PriceInput {
                minor: 12_999,
                currency: "EUR".into(),
            },
            attributes: [("colour".to_string(), "black".to_string())].into(),
            images: vec!["https://img.example/1.jpg".into()],
            stock_hint: Some(4),
            version: None,
        }
    }

    #[test]
    fn a_valid_input_is_normalised() {
        let draft = input().validate().expect("valid");
        assert_eq!(draft.sku.as_str(), "HP-1");
        assert_eq!(draft.title, "Bluetooth Headphones");
        assert_eq!(draft.category.ancestors()[1], "electronics/audio");
        assert_eq!(draft.attributes.terms(), ["colour=black"]);
    }

    #[test]
    fn every_invalid_field_is_named() {
        let mut bad = input();
        bad.sku = "no spaces allowed".into();
        bad.title = "   ".into();
        bad.category = "Electronics//x".into();
        bad.price.minor = -1;
        bad.attributes.insert("Bad Key".into(), "x".into());
        bad.images = vec!["ftp://x".into()];
        let errors = bad.validate().expect_err("invalid");
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        for expected in [
            "sku",
            "title",
            "category",
            "price.minor",
            "attributes.Bad Key",
            "images[0]",
        ] {
            assert!(fields.contains(&expected), "{expected} in {fields:?}");
        }
    }

    #[test]
    fn currency_must_be_iso() {
        let mut bad = input();
        bad.price.currency = "eur".into();
        let errors = bad.validate().expect_err("invalid");
        assert_eq!(errors[0].field, "price.currency");
    }

    #[test]
    fn newtypes_reject_bad_values_when_deserialised() {
        assert!(serde_json::from_str::<CategoryPath>("\"a/b/c/d/e/f\"").is_err());
        assert!(serde_json::from_str::<ProductId>("\"a b\"").is_err());
        let cat: CategoryPath = serde_json::from_str("\"home/kitchen\"").expect("valid");
        assert_eq!(cat.ancestors(), ["home", "home/kitchen"]);
    }

    #[test]
    fn replacing_bumps_the_version_and_keeps_creation_time() {
        let t0 = Utc::now();
        let p = Product::create(ProductId::generate(), input().validate().expect("ok"), t0);
        assert_eq!(p.version, 1);
        let next = p.replaced(
            input().validate().expect("ok"),
            t0 + chrono::Duration::seconds(5),
        );
        assert_eq!(next.version, 2);
        assert_eq!(next.created_at, t0);
        assert_eq!(next.etag(), "\"2\"");
    }

    #[test]
    fn the_etag_changes_with_the_stock_and_if_match_reads_its_version() {
        let t0 = DateTime::from_timestamp_micros(1_764_367_342_123_456).expect("time");
        let mut p = Product::create(ProductId::generate(), input().validate().expect("ok"), t0);
        assert_eq!(p.etag(), "\"1\"");
        p.availability = Some(Availability::new(5, t0));
        let five = p.etag();
        assert_eq!(five, "\"1.5.1764367342123456\"");
        p.availability = Some(Availability::new(4, t0 + chrono::Duration::microseconds(1)));
        assert_ne!(p.etag(), five, "a newer report is a new tag");
        for tag in ["\"1\"", "W/\"1\"", "1", " \"1.5.1764367342123456\" "] {
            assert_eq!(Product::version_of_tag(tag), Some(1), "{tag}");
        }
        for tag in ["\"\"", "\"x\"", "\".5.1\"", "\"-1\""] {
            assert_eq!(Product::version_of_tag(tag), None, "{tag}");
        }
    }

    #[test]
    fn only_a_newer_stock_report_supersedes() {
        let t0 = Utc::now();
        let held = Availability::new(5, t0);
        assert!(held.supersedes(None));
        let later = Availability::new(4, t0 + chrono::Duration::milliseconds(1));
        assert!(later.supersedes(Some(&held)));
        assert!(!held.supersedes(Some(&later)), "an older report is ignored");
        assert!(
            !Availability::new(5, t0).supersedes(Some(&held)),
            "a redelivered report changes nothing"
        );
        assert_eq!(
            Availability::newest(Some(later.clone()), Some(held.clone())),
            Some(later.clone())
        );
        assert_eq!(Availability::newest(None, Some(held.clone())), Some(held));
    }

    #[test]
    fn availability_keeps_microseconds_and_derives_in_stock() {
        let t = DateTime::parse_from_rfc3339("2026-11-28T05:00:00.123456789Z")
            .expect("time")
            .with_timezone(&Utc);
        let a = Availability::new(0, t);
        assert!(!a.in_stock);
        assert_eq!(a.as_of.timestamp_subsec_nanos(), 123_456_000);
        assert_eq!(Availability::from_stamp(0, a.stamp()), a);
        assert!(Availability::new(1, t).in_stock);
        let json = serde_json::to_value(Availability::new(3, t)).expect("json");
        assert_eq!(json["available"], 3);
        assert_eq!(json["in_stock"], true);
    }
}
