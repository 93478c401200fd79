//! The seven services a Storefront runs, and the facts about each that the
//! operator and the `storefront` binary must agree on.

use std::{fmt, str::FromStr};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Error;

/// One of the Storefront services: `gateway`, `auth`, `search`, `cart`, `order`, `delivery` or `notification`.
//
// Variants deliberately carry `//` comments rather than `///` docs: schemars turns
// documented unit variants into a `oneOf`, which is not a structural schema.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Component {
    // The public HTTP entry point; routes to the others, rate-limits, terminates auth.
    Gateway,
    // Users, sessions and token issuing.
    Auth,
    // Product catalogue search.
    Search,
    // Shopping carts.
    Cart,
    // Checkout and orders.
    Order,
    // Shipping and delivery tracking.
    Delivery,
    // E-mail and other notifications.
    Notification,
}

impl Component {
    /// Every component, in the order the platform starts them and lists them.
    pub const ALL: [Component; 7] = [
        Component::Gateway,
        Component::Auth,
        Component::Search,
        Component::Cart,
        Component::Order,
        Component::Delivery,
        Component::Notification,
    ];

    /// At most 7 characters, for names with a suffix that must still fit in 63 characters
    /// behind a 50-character Storefront name (`<name>-<short>-pods`).
    pub const fn short(self) -> &'static str {
        match self {
            Component::Delivery => "deliv",
            Component::Notification => "notif",
            other => other.as_str(),
        }
    }

    /// The lowercase name used in resource names, labels, the CRD and the `storefront` binary.
    pub const fn as_str(self) -> &'static str {
        match self {
            Component::Gateway => "gateway",
            Component::Auth => "auth",
            Component::Search => "search",
            Component::Cart => "cart",
            Component::Order => "order",
            Component::Delivery => "delivery",
            Component::Notification => "notification",
        }
    }

    /// The HTTP port the component listens on unless configured otherwise
    /// (the same defaults the `storefront` binary uses).
    pub const fn default_port(self) -> u16 {
        match self {
            Component::Gateway => 8080,
            Component::Auth => 8081,
            Component::Search => 8082,
            Component::Cart => 8083,
            Component::Order => 8084,
            Component::Delivery => 8085,
            Component::Notification => 8086,
        }
    }

    /// Whether this component sits behind the gateway (everything but the gateway itself).
    pub const fn is_backend(self) -> bool {
        !matches!(self, Component::Gateway)
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Component {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Component::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| Error::UnknownComponent(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn all_lists_each_component_once() {
        let names: HashSet<_> = Component::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), 7);
    }

    #[test]
    fn default_ports_are_8080_to_8086_in_order() {
        let ports: Vec<u16> = Component::ALL.iter().map(|c| c.default_port()).collect();
        assert_eq!(ports, vec![8080, 8081, 8082, 8083, 8084, 8085, 8086]);
    }

    #[test]
    fn name_round_trips_through_from_str_display_and_serde() {
        for c in Component::ALL {
            assert_eq!(c.as_str().parse::<Component>().expect("known name"), c);
            assert_eq!(c.to_string(), c.as_str());
            assert_eq!(
                serde_json::to_value(c).expect("serializes"),
                serde_json::Value::String(c.as_str().to_owned())
            );
        }
    }

    #[test]
    fn unknown_name_is_an_error_that_lists_the_known_ones() {
        let err = "payments"
            .parse::<Component>()
            .expect_err("not a component");
        let msg = err.to_string();
        assert!(msg.contains("payments"), "{msg}");
        assert!(msg.contains("notification"), "{msg}");
    }

    #[test]
    fn only_the_gateway_is_not_a_backend() {
        let backends: Vec<_> = Component::ALL
            .into_iter()
            .filter(|c| c.is_backend())
            .collect();
        assert_eq!(backends.len(), 6);
        assert!(!backends.contains(&Component::Gateway));
    }
}
