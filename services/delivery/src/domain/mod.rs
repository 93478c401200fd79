//! Domain types of the delivery service: they validate on construction and do no I/O.
//!
//! [`partner`]: partners, their service areas and capacity; [`assignment`]: which partner
//! takes an order (pure ranking); [`delivery`]: the delivery state machine; [`event`]: the
//! `orders.v1` events consumed and the `deliveries.v1` events produced.

pub mod assignment;
pub mod delivery;
pub mod event;
pub mod partner;

pub use assignment::{Candidate, Destination, rank};
pub use delivery::{Delivery, DeliveryStatus, Transition};
pub use partner::{
    Capacity, GeoCircle, NewPartner, Partner, PartnerContact, PartnerPatch, ServiceArea,
};
