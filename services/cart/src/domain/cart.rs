//! A shopping cart and its rules: quantities 1 ..= 99 per line, at most 50 lines, one
//! currency per cart. Prices are integer minor units; every sum is checked.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use storefront_kit::problem::FieldError;
use storefront_search::domain::{Currency, Money, Product, ProductId, Sku};

use crate::domain::view::{CartLineView, CartView};

/// Largest quantity of one product in a cart.
pub const MAX_QUANTITY: u32 = 99;
/// Most different products in one cart.
pub const MAX_LINES: usize = 50;
/// The currency of an empty cart unless the settings say otherwise.
pub const DEFAULT_CURRENCY: &str = "EUR";

/// How many of one product: 1 ..= [`MAX_QUANTITY`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct Quantity(u32);

impl Quantity {
    pub fn parse(raw: i64) -> Result<Self, String> {
        u32::try_from(raw)
            .ok()
            .filter(|q| (1..=MAX_QUANTITY).contains(q))
            .map(Self)
            .ok_or_else(|| format!("must be between 1 and {MAX_QUANTITY}"))
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for Quantity {
    type Error = String;
    fn try_from(value: u32) -> Result<Self, String> {
        Self::parse(i64::from(value))
    }
}

impl From<Quantity> for u32 {
    fn from(value: Quantity) -> Self {
        value.0
    }
}

/// One product in a cart, with the price it had when it was (last) added.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartLine {
    pub product_id: ProductId,
    pub sku: Sku,
    pub title: String,
    /// The catalog price captured when the product was added.
    pub unit_price: Money,
    pub quantity: Quantity,
}

/// The cart of one user (the JWT subject). `version` starts at 0 (never saved) and grows by
/// one with every saved change; it guards concurrent writes and stale cache fills.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cart {
    pub user_id: String,
    pub lines: Vec<CartLine>,
    pub version: u64,
    pub updated_at: DateTime<Utc>,
}

/// An order placed from a cart, as its `OrderPlaced` event tells it: whose cart, the cart
/// version the order read, and the quantities it bought.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacedOrder {
    pub user_id: String,
    pub cart_version: u64,
    pub lines: Vec<(ProductId, u32)>,
}

/// The event type the order service emits for a placed order.
pub const ORDER_PLACED: &str = "OrderPlaced";

impl PlacedOrder {
    /// The placed order an event tells of; `None` for other events, and for an
    /// `OrderPlaced` from before orders named their cart version (its cart was emptied by
    /// the order service itself). An error names what is wrong with the event.
    pub fn from_record(payload: &[u8]) -> Result<Option<Self>, String> {
        #[derive(Deserialize)]
        struct Kind<'a> {
            #[serde(rename = "type", borrow)]
            event_type: std::borrow::Cow<'a, str>,
        }
        #[derive(Deserialize)]
        struct Placed {
            data: Data,
        }
        #[derive(Deserialize)]
        struct Data {
            user_id: String,
            cart_version: Option<u64>,
            lines: Vec<Line>,
        }
        #[derive(Deserialize)]
        struct Line {
            product_id: String,
            quantity: u32,
        }
        let kind: Kind<'_> = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
        if kind.event_type != ORDER_PLACED {
            return Ok(None);
        }
        let placed: Placed =
            serde_json::from_slice(payload).map_err(|e| format!("{ORDER_PLACED}: {e}"))?;
        let Some(cart_version) = placed.data.cart_version else {
            return Ok(None);
        };
        let lines = placed
            .data
            .lines
            .into_iter()
            .map(|l| {
                ProductId::parse(&l.product_id)
                    .map(|id| (id, l.quantity))
                    .map_err(|e| format!("{ORDER_PLACED}: product_id: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Some(Self {
            user_id: placed.data.user_id,
            cart_version,
            lines,
        }))
    }
}

/// Why a change to a cart was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CartError {
    #[error("invalid change")]
    Invalid(Vec<FieldError>),
    #[error("the product is not in the cart")]
    NotInCart,
}

impl CartError {
    fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldError::new(field, message)])
    }
}

impl Cart {
    /// The cart of a user who never saved one.
    pub fn empty(user_id: &str, now: DateTime<Utc>) -> Self {
        Self {
            user_id: user_id.to_string(),
            lines: Vec::new(),
            version: 0,
            updated_at: now,
        }
    }

    /// The currency of the cart: the one of its lines, none when empty.
    pub fn currency(&self) -> Option<&Currency> {
        self.lines.first().map(|l| &l.unit_price.currency)
    }

    fn position(&self, id: &ProductId) -> Option<usize> {
        self.lines.iter().position(|l| &l.product_id == id)
    }

    /// Adds `quantity` of `product` (as the catalog has it now): to its line when there is
    /// one (whose captured price, SKU and title are refreshed), else as a new line.
    pub fn add(&mut self, product: &Product, quantity: Quantity) -> Result<(), CartError> {
        if let Some(currency) = self.currency()
            && currency != &product.price.currency
        {
            return Err(CartError::invalid(
                "product_id",
                format!(
                    "is priced in {}, but this cart holds {} items; a cart holds one currency",
                    product.price.currency.as_str(),
                    currency.as_str()
                ),
            ));
        }
        match self.position(&product.id) {
            Some(i) => {
                let line = &mut self.lines[i];
                let total = line.quantity.get() + quantity.get();
                line.quantity = Quantity::parse(i64::from(total)).map_err(|_| {
                    CartError::invalid(
                        "quantity",
                        format!(
                            "the cart already holds {} of this product; a line holds at most {MAX_QUANTITY}",
                            line.quantity.get()
                        ),
                    )
                })?;
                line.unit_price = product.price.clone();
                line.sku = product.sku.clone();
                line.title = product.title.clone();
            }
            None => {
                if self.lines.len() >= MAX_LINES {
                    return Err(CartError::invalid(
                        "product_id",
                        format!("a cart holds at most {MAX_LINES} different products"),
                    ));
                }
                self.lines.push(CartLine {
                    product_id: product.id.clone(),
                    sku: product.sku.clone(),
                    title: product.title.clone(),
                    unit_price: product.price.clone(),
                    quantity,
                });
            }
        }
        Ok(())
    }

    /// Sets the quantity of a product in the cart; `None` (quantity 0) removes the line.
    pub fn set_quantity(
        &mut self,
        id: &ProductId,
        quantity: Option<Quantity>,
    ) -> Result<(), CartError> {
        let i = self.position(id).ok_or(CartError::NotInCart)?;
        match quantity {
            Some(q) => self.lines[i].quantity = q,
            None => {
                self.lines.remove(i);
            }
        }
        Ok(())
    }

    /// Removes a product from the cart.
    pub fn remove(&mut self, id: &ProductId) -> Result<(), CartError> {
        self.set_quantity(id, None)
    }

    /// Takes what an order bought out of the cart: each ordered quantity comes off its
    /// product's line, and a line left with none goes. Products the cart no longer holds are
    /// passed over. True when the cart changed.
    pub fn take_out(&mut self, ordered: &[(ProductId, u32)]) -> bool {
        let mut changed = false;
        for (id, quantity) in ordered.iter().filter(|(_, q)| *q > 0) {
            let Some(i) = self.position(id) else { continue };
            match Quantity::try_from(self.lines[i].quantity.get().saturating_sub(*quantity)) {
                Ok(left) => self.lines[i].quantity = left,
                Err(_) => {
                    self.lines.remove(i);
                }
            }
            changed = true;
        }
        changed
    }

    /// The cart as the API shows it, with each line's unit price, SKU and title taken from
    /// `current` when it has the product in the cart's currency, else the captured ones.
    pub fn view(
        &self,
        current: impl Fn(&ProductId) -> Option<Product>,
        empty_currency: &Currency,
    ) -> Result<CartView, PriceOverflow> {
        let currency = self.currency().unwrap_or(empty_currency).clone();
        let mut items = Vec::with_capacity(self.lines.len());
        let mut total: i64 = 0;
        let mut count: u32 = 0;
        for line in &self.lines {
            let (unit_price, sku, title) = match current(&line.product_id) {
                Some(p) if p.price.currency == currency => (p.price, p.sku, p.title),
                _ => (
                    line.unit_price.clone(),
                    line.sku.clone(),
                    line.title.clone(),
                ),
            };
            let line_total = unit_price
                .minor
                .checked_mul(i64::from(line.quantity.get()))
                .ok_or(PriceOverflow)?;
            total = total.checked_add(line_total).ok_or(PriceOverflow)?;
            count = count
                .checked_add(line.quantity.get())
                .ok_or(PriceOverflow)?;
            items.push(CartLineView {
                product_id: line.product_id.clone(),
                sku,
                title,
                line_total: Money {
                    minor: line_total,
                    currency: unit_price.currency.clone(),
                },
                unit_price,
                quantity: line.quantity.get(),
            });
        }
        Ok(CartView {
            items,
            total: Money {
                minor: total,
                currency,
            },
            item_count: count,
            updated_at: self.updated_at,
            version: self.version,
        })
    }
}

/// A total that does not fit in 64 bits (cannot happen within the limits, but is checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cart total overflows")]
pub struct PriceOverflow;

#[cfg(test)]
mod tests {
    use super::*;
    use storefront_search::domain::ProductInput;

    fn product(id: &str, minor: i64, currency: &str) -> Product {
        let input: ProductInput = serde_json::from_value(serde_json::json!({
            "sku": format!("SKU-{id}"),
            "title": format!("Product {id}"),
            "brand": "Acme",
            "category": "home",
            "price": {"minor": minor, "currency": currency},
        }))
        .expect("input");
        Product::create(
            ProductId::parse(id).expect("id"),
            input.validate().expect("valid"),
            Utc::now(),
        )
    }

    fn q(n: i64) -> Quantity {
        Quantity::parse(n).expect("quantity")
    }

    fn eur() -> Currency {
        Currency::parse("EUR").expect("eur")
    }

    #[test]
    fn quantities_are_bounded() {
        assert!(Quantity::parse(0).is_err());
        assert!(Quantity::parse(-1).is_err());
        assert!(Quantity::parse(100).is_err());
        assert!(Quantity::parse(i64::MAX).is_err());
        assert_eq!(q(99).get(), 99);
        assert!(serde_json::from_str::<Quantity>("0").is_err());
    }

    #[test]
    fn adding_twice_adds_to_the_line_and_totals_are_exact() {
        let mut cart = Cart::empty("u1", Utc::now());
        cart.add(&product("a", 1999, "EUR"), q(1)).expect("add");
        cart.add(&product("a", 1999, "EUR"), q(1)).expect("add");
        cart.add(&product("b", 1, "EUR"), q(3)).expect("add");
        let view = cart.view(|_| None, &eur()).expect("view");
        assert_eq!(view.items.len(), 2);
        assert_eq!(view.items[0].quantity, 2);
        assert_eq!(view.items[0].line_total.minor, 3998);
        assert_eq!(view.total.minor, 4001);
        assert_eq!(view.item_count, 5);
    }

    #[test]
    fn taking_out_an_order_subtracts_its_quantities_and_drops_emptied_lines() {
        let mut cart = Cart::empty("u1", Utc::now());
        cart.add(&product("a", 10, "EUR"), q(2)).expect("add");
        cart.add(&product("b", 20, "EUR"), q(5)).expect("add");
        cart.add(&product("c", 30, "EUR"), q(1)).expect("add");
        let id = |s: &str| ProductId::parse(s).expect("id");
        // a: all of it; b: part of it; d: not in the cart; c: untouched.
        assert!(cart.take_out(&[(id("a"), 2), (id("b"), 3), (id("d"), 1)]));
        let left: Vec<(&str, u32)> = cart
            .lines
            .iter()
            .map(|l| (l.product_id.as_str(), l.quantity.get()))
            .collect();
        assert_eq!(left, [("b", 2), ("c", 1)]);
        // More than the line holds empties it; nothing to take changes nothing.
        assert!(cart.take_out(&[(id("b"), 7)]));
        assert!(!cart.take_out(&[(id("d"), 1), (id("c"), 0)]));
        assert_eq!(cart.lines.len(), 1);
        assert!(cart.take_out(&[(id("c"), 1)]));
        assert!(cart.lines.is_empty());
    }

    #[test]
    fn a_line_holds_at_most_99() {
        let mut cart = Cart::empty("u1", Utc::now());
        cart.add(&product("a", 10, "EUR"), q(98)).expect("add");
        let err = cart
            .add(&product("a", 10, "EUR"), q(2))
            .expect_err("too many");
        assert!(matches!(&err, CartError::Invalid(f) if f[0].field == "quantity"));
        assert_eq!(cart.lines[0].quantity.get(), 98, "unchanged");
    }

    #[test]
    fn a_cart_holds_at_most_50_lines() {
        let mut cart = Cart::empty("u1", Utc::now());
        for i in 0..MAX_LINES {
            cart.add(&product(&format!("p{i}"), 10, "EUR"), q(1))
                .expect("add");
        }
        let err = cart
            .add(&product("one-more", 10, "EUR"), q(1))
            .expect_err("full");
        assert!(matches!(&err, CartError::Invalid(f) if f[0].field == "product_id"));
        // Adding to an existing line still works.
        cart.add(&product("p0", 10, "EUR"), q(1))
            .expect("existing line");
    }

    #[test]
    fn a_cart_holds_one_currency() {
        let mut cart = Cart::empty("u1", Utc::now());
        cart.add(&product("a", 10, "EUR"), q(1)).expect("add");
        let err = cart
            .add(&product("b", 10, "USD"), q(1))
            .expect_err("other currency");
        assert!(matches!(&err, CartError::Invalid(f) if f[0].field == "product_id"));
    }

    #[test]
    fn the_view_prefers_current_prices_in_the_cart_currency() {
        let mut cart = Cart::empty("u1", Utc::now());
        cart.add(&product("a", 100, "EUR"), q(2)).expect("add");
        cart.add(&product("b", 50, "EUR"), q(1)).expect("add");
        let view = cart
            .view(
                |id| match id.as_str() {
                    "a" => Some(product("a", 120, "EUR")),
                    // A product repriced into another currency keeps its captured price.
                    "b" => Some(product("b", 70, "USD")),
                    _ => None,
                },
                &eur(),
            )
            .expect("view");
        assert_eq!(view.items[0].unit_price.minor, 120);
        assert_eq!(view.items[1].unit_price.minor, 50);
        assert_eq!(view.total.minor, 290);
    }

    #[test]
    fn an_empty_cart_has_a_zero_total_in_the_default_currency() {
        let view = Cart::empty("u1", Utc::now())
            .view(|_| None, &eur())
            .expect("view");
        let json = serde_json::to_value(&view).expect("json");
        assert_eq!(json["items"], serde_json::json!([]));
        assert_eq!(
            json["total"],
            serde_json::json!({"minor": 0, "currency": "EUR"})
        );
        assert_eq!(json["item_count"], 0);
    }

    #[test]
    fn set_quantity_zero_removes_and_unknown_lines_are_not_found() {
        let mut cart = Cart::empty("u1", Utc::now());
        cart.add(&product("a", 10, "EUR"), q(1)).expect("add");
        cart.set_quantity(&ProductId::parse("a").expect("id"), Some(q(5)))
            .expect("set");
        assert_eq!(cart.lines[0].quantity.get(), 5);
        cart.set_quantity(&ProductId::parse("a").expect("id"), None)
            .expect("remove");
        assert!(cart.lines.is_empty());
        assert_eq!(
            cart.remove(&ProductId::parse("a").expect("id")),
            Err(CartError::NotInCart)
        );
    }
}
