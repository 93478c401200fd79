//! Which partner takes an order: a pure ranking over the partners' current state. The
//! adapter then claims a slot of the best candidate with a conditional update, falling back
//! to the next one when another assignment took the last slot meanwhile.

use std::cmp::Ordering;

use super::partner::{Partner, normalize_postal};

/// Where and how big an order is.
#[derive(Clone, Debug, PartialEq)]
pub struct Destination {
    /// Normalized postal code (see [`normalize_postal`]).
    pub postal_code: String,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub items: u32,
    /// Orders carry no weight yet: 0 unless the lines give one.
    pub weight_grams: u64,
}

impl Destination {
    pub fn new(
        postal_code: &str,
        lat: Option<f64>,
        lon: Option<f64>,
        items: u32,
        weight_grams: u64,
    ) -> Self {
        Self {
            postal_code: normalize_postal(postal_code),
            lat,
            lon,
            items,
            weight_grams,
        }
    }

    fn point(&self) -> Option<(f64, f64)> {
        self.lat.zip(self.lon)
    }
}

/// A partner that can take the order, with what ranks it.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub partner_id: String,
    pub load: u32,
    /// Kilometres from the partner's centre to the address, when both have coordinates.
    pub distance_km: Option<f64>,
}

const EARTH_RADIUS_KM: f64 = 6_371.0;

/// Great-circle distance in kilometres (haversine).
pub fn distance_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (lat1, lon1) = (a.0.to_radians(), a.1.to_radians());
    let (lat2, lon2) = (b.0.to_radians(), b.1.to_radians());
    let h = ((lat2 - lat1) / 2.0).sin().powi(2)
        + lat1.cos() * lat2.cos() * ((lon2 - lon1) / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

/// Why a partner cannot take an order (`None`: it can), for logs and tests.
pub fn rejection(partner: &Partner, to: &Destination) -> Option<&'static str> {
    if !partner.on_shift {
        return Some("off shift");
    }
    if partner.load >= partner.capacity.max_concurrent {
        return Some("at capacity");
    }
    if to.items > partner.capacity.max_items {
        return Some("too many items");
    }
    if partner
        .capacity
        .max_weight_grams
        .is_some_and(|max| to.weight_grams > max)
    {
        return Some("too heavy");
    }
    if !serves(partner, to) {
        return Some("outside the service area");
    }
    None
}

/// True when the address is in the partner's area: a postal-code prefix matches, or the
/// address has coordinates within the partner's circle.
pub fn serves(partner: &Partner, to: &Destination) -> bool {
    let by_prefix = !to.postal_code.is_empty()
        && partner
            .service_area
            .postal_prefixes
            .iter()
            .any(|p| to.postal_code.starts_with(p.as_str()));
    by_prefix || within_circle(partner, to).unwrap_or(false)
}

fn within_circle(partner: &Partner, to: &Destination) -> Option<bool> {
    let c = partner.service_area.circle?;
    Some(distance_km((c.lat, c.lon), to.point()?) <= c.radius_km)
}

fn distance_to(partner: &Partner, to: &Destination) -> Option<f64> {
    let c = partner.service_area.circle?;
    Some(distance_km((c.lat, c.lon), to.point()?))
}

/// The partners that can take the order, best first: lowest load, then shortest distance
/// (an unknown distance ranks after every known one), then oldest partner id for a stable
/// order.
pub fn rank(partners: &[Partner], to: &Destination) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = partners
        .iter()
        .filter(|p| rejection(p, to).is_none())
        .map(|p| Candidate {
            partner_id: p.id.clone(),
            load: p.load,
            distance_km: distance_to(p, to),
        })
        .collect();
    out.sort_by(|a, b| {
        a.load
            .cmp(&b.load)
            .then_with(|| match (a.distance_km, b.distance_km) {
                (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            })
            .then_with(|| a.partner_id.cmp(&b.partner_id))
    });
    out
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::domain::partner::{Capacity, GeoCircle, ServiceArea};

    fn partner(id: &str, prefixes: &[&str], circle: Option<(f64, f64, f64)>) -> Partner {
        Partner {
            id: id.into(),
            account_id: format!("acc-{id}"),
            name: id.into(),
            email: format!("{id}@example.com"),
            phone: String::new(),
            on_shift: true,
            service_area: ServiceArea {
                postal_prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
                circle: circle.map(|(lat, lon, radius_km)| GeoCircle {
                    lat,
                    lon,
                    radius_km,
                }),
            },
            capacity: Capacity {
                max_concurrent: 2,
                max_items: 10,
                max_weight_grams: None,
            },
            load: 0,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    fn ids(c: &[Candidate]) -> Vec<&str> {
        c.iter().map(|c| c.partner_id.as_str()).collect()
    }

    // Berlin Mitte and Potsdam (~27 km apart).
    const MITTE: (f64, f64) = (52.520, 13.405);
    const POTSDAM: (f64, f64) = (52.396, 13.058);

    #[test]
    fn distance_is_the_great_circle() {
        let d = distance_km(MITTE, POTSDAM);
        assert!((26.0..28.0).contains(&d), "{d}");
        assert!(distance_km(MITTE, MITTE) < 1e-9);
    }

    #[test]
    fn area_by_prefix_or_circle() {
        let by_prefix = partner("a", &["101"], None);
        let by_circle = partner("b", &[], Some((MITTE.0, MITTE.1, 10.0)));
        let in_mitte = Destination::new("10115", Some(MITTE.0), Some(MITTE.1), 1, 0);
        let in_potsdam = Destination::new("14467", Some(POTSDAM.0), Some(POTSDAM.1), 1, 0);
        let no_coords = Destination::new("14467", None, None, 1, 0);
        assert!(serves(&by_prefix, &in_mitte));
        assert!(!serves(&by_prefix, &in_potsdam));
        assert!(serves(&by_circle, &in_mitte));
        assert!(!serves(&by_circle, &in_potsdam), "27 km is outside 10 km");
        assert!(
            !serves(&by_circle, &no_coords),
            "no coordinates, no circle match"
        );
    }

    #[test]
    fn availability_capacity_and_size_exclude() {
        let to = Destination::new("10115", None, None, 5, 2_000);
        let mut off = partner("off", &["10"], None);
        off.on_shift = false;
        let mut full = partner("full", &["10"], None);
        full.load = 2;
        let mut small = partner("small", &["10"], None);
        small.capacity.max_items = 4;
        let mut light = partner("light", &["10"], None);
        light.capacity.max_weight_grams = Some(1_000);
        let ok = partner("ok", &["10"], None);
        assert_eq!(rejection(&off, &to), Some("off shift"));
        assert_eq!(rejection(&full, &to), Some("at capacity"));
        assert_eq!(rejection(&small, &to), Some("too many items"));
        assert_eq!(rejection(&light, &to), Some("too heavy"));
        assert_eq!(ids(&rank(&[off, full, small, light, ok], &to)), ["ok"]);
    }

    #[test]
    fn missing_weight_counts_as_zero() {
        let mut light = partner("light", &["10"], None);
        light.capacity.max_weight_grams = Some(1);
        let to = Destination::new("10115", None, None, 1, 0);
        assert_eq!(rejection(&light, &to), None);
    }

    #[test]
    fn ties_break_by_load_then_distance_then_id() {
        let mut busy_near = partner("busy-near", &[], Some((MITTE.0, MITTE.1, 50.0)));
        busy_near.load = 1;
        let idle_far = partner("idle-far", &[], Some((POTSDAM.0, POTSDAM.1, 50.0)));
        let idle_near = partner("idle-near", &[], Some((MITTE.0 + 0.01, MITTE.1, 50.0)));
        let idle_prefix = partner("idle-prefix", &["10"], None);
        let idle_prefix_b = partner("idle-prefix-b", &["101"], None);
        let to = Destination::new("10115", Some(MITTE.0), Some(MITTE.1), 1, 0);
        let ranked = rank(
            &[busy_near, idle_prefix_b, idle_far, idle_prefix, idle_near],
            &to,
        );
        assert_eq!(
            ids(&ranked),
            [
                "idle-near",
                "idle-far",
                "idle-prefix",
                "idle-prefix-b",
                "busy-near"
            ]
        );
    }
}
