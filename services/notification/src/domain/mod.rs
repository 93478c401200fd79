//! Domain types of the notification service: they validate on construction and do no I/O.
//!
//! [`money`]: formatting minor units; [`order`]: what is kept of an order to write about it;
//! [`plan`]: which event becomes which message; [`templates`]: rendering the messages.

pub mod money;
pub mod order;
pub mod plan;
pub mod templates;

pub use order::{Customer, Money, OrderLine, OrderSnapshot};
pub use plan::{Plan, TemplateKind, plan};
pub use templates::{Rendered, Templates};
