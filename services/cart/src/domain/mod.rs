//! Domain types of the cart service: they validate on construction and do no I/O.

pub mod cart;
pub mod view;

pub use cart::{
    Cart, CartError, CartLine, DEFAULT_CURRENCY, MAX_LINES, MAX_QUANTITY, ORDER_PLACED,
    PlacedOrder, PriceOverflow, Quantity,
};
pub use view::{CartLineView, CartView};
