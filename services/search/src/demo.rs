//! The demo catalog: a deterministic generator (seeded, no network) of realistic products
//! across categories, brands and attributes, for `storefront up`, tests and benches.
//!
//! The same `(seed, count)` always gives the same products, ids included (`p-000001`, ...).

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};

use crate::domain::product::PriceInput;
use crate::domain::{Product, ProductId, ProductInput};

/// The seed `storefront up` uses.
pub const DEFAULT_SEED: u64 = 20_260_101;

/// SplitMix64: tiny, fast and stable across platforms and crate versions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % (n.max(1) as u64)).unwrap_or(0)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + i64::try_from(self.next() % u64::try_from(hi - lo + 1).unwrap_or(1)).unwrap_or(0)
    }
}

struct Kind {
    category: &'static str,
    nouns: &'static [&'static str],
    adjectives: &'static [&'static str],
    brands: &'static [&'static str],
    /// `(key, values)`
    attributes: &'static [(&'static str, &'static [&'static str])],
    /// Price range in cents.
    price: (i64, i64),
    blurb: &'static [&'static str],
}

const COLOURS: &[&str] = &["black", "white", "silver", "blue", "red", "green", "grey"];

const KINDS: &[Kind] = &[
    Kind {
        category: "electronics/audio/headphones",
        nouns: &["Headphones", "Earbuds"],
        adjectives: &[
            "Bluetooth",
            "Wireless",
            "Noise-Cancelling",
            "Over-Ear",
            "Studio",
            "Sport",
        ],
        brands: &["Sonora", "Auralis", "Bassline", "Klangwerk"],
        attributes: &[
            ("colour", COLOURS),
            ("connectivity", &["bluetooth", "wired", "usb-c"]),
        ],
        price: (1_999, 39_999),
        blurb: &[
            "Rich sound with deep bass and up to 30 hours of battery.",
            "Soft ear cushions for all-day listening.",
            "Active noise cancelling for travel and the office.",
        ],
    },
    Kind {
        category: "electronics/audio/speakers",
        nouns: &["Speaker", "Soundbar"],
        adjectives: &["Bluetooth", "Portable", "Smart", "Waterproof", "Outdoor"],
        brands: &["Sonora", "Auralis", "Bassline", "Boomcraft"],
        attributes: &[
            ("colour", COLOURS),
            ("connectivity", &["bluetooth", "wifi", "optical"]),
        ],
        price: (2_499, 59_999),
        blurb: &[
            "Room-filling sound in a compact body.",
            "Pairs in seconds and plays for a whole day.",
        ],
    },
    Kind {
        category: "electronics/computers/laptops",
        nouns: &["Laptop", "Notebook", "Ultrabook"],
        adjectives: &[
            "Gaming",
            "Business",
            "Lightweight",
            "Convertible",
            "Creator",
        ],
        brands: &["Northwind", "Vertex", "Lumen", "Corvid"],
        attributes: &[
            ("colour", &["silver", "grey", "black"]),
            ("ram", &["8gb", "16gb", "32gb"]),
            ("storage", &["256gb", "512gb", "1tb"]),
        ],
        price: (49_999, 299_999),
        blurb: &[
            "A fast processor and a bright display for work and play.",
            "All-day battery in an aluminium chassis.",
        ],
    },
    Kind {
        category: "electronics/phones/smartphones",
        nouns: &["Smartphone", "Phone"],
        adjectives: &["5G", "Compact", "Rugged", "Flagship", "Budget"],
        brands: &["Vertex", "Lumen", "Pixelon", "Orbis"],
        attributes: &[
            ("colour", COLOURS),
            ("storage", &["128gb", "256gb", "512gb"]),
        ],
        price: (14_999, 149_999),
        blurb: &[
            "A sharp camera, a smooth screen and a battery that lasts.",
            "Durable glass and a fast charger in the box.",
        ],
    },
    Kind {
        category: "electronics/cameras",
        nouns: &["Camera", "Action Camera", "Mirrorless Camera"],
        adjectives: &["Compact", "4K", "Vlogging", "Instant"],
        brands: &["Optica", "Lumen", "Shutterly"],
        attributes: &[
            ("colour", &["black", "silver"]),
            ("resolution", &["12mp", "24mp", "45mp"]),
        ],
        price: (9_999, 249_999),
        blurb: &["Crisp photos and steady video wherever you go."],
    },
    Kind {
        category: "home/kitchen/cookware",
        nouns: &["Frying Pan", "Saucepan", "Dutch Oven", "Wok"],
        adjectives: &["Cast Iron", "Non-Stick", "Stainless Steel", "Ceramic"],
        brands: &["Ferrum", "Cucina", "Hearth & Co"],
        attributes: &[
            ("material", &["cast-iron", "steel", "aluminium", "ceramic"]),
            ("size", &["20cm", "24cm", "28cm"]),
        ],
        price: (1_499, 24_999),
        blurb: &["Even heating and easy cleaning for everyday cooking."],
    },
    Kind {
        category: "home/kitchen/appliances",
        nouns: &["Blender", "Coffee Maker", "Toaster", "Kettle", "Air Fryer"],
        adjectives: &["Compact", "Digital", "Retro", "Professional"],
        brands: &["Cucina", "Brewster", "Kitchenly"],
        attributes: &[("colour", COLOURS), ("power", &["800w", "1200w", "2000w"])],
        price: (1_999, 49_999),
        blurb: &["Makes breakfast quicker and the kitchen tidier."],
    },
    Kind {
        category: "home/furniture",
        nouns: &["Desk", "Office Chair", "Bookshelf", "Sofa", "Lamp"],
        adjectives: &["Ergonomic", "Oak", "Minimalist", "Standing", "Scandinavian"],
        brands: &["Hemma", "Oakridge", "Nordform"],
        attributes: &[
            ("material", &["oak", "pine", "steel", "fabric"]),
            ("colour", &["white", "black", "natural"]),
        ],
        price: (2_999, 89_999),
        blurb: &["Solid build and clean lines for a calm home office."],
    },
    Kind {
        category: "fashion/shoes",
        nouns: &["Running Shoes", "Sneakers", "Boots", "Sandals"],
        adjectives: &["Trail", "Lightweight", "Waterproof", "Classic", "Leather"],
        brands: &["Stride", "Fleetfoot", "Alpina"],
        attributes: &[
            ("colour", COLOURS),
            ("size", &["38", "39", "40", "41", "42", "43", "44", "45"]),
        ],
        price: (3_999, 19_999),
        blurb: &["Cushioned soles and a snug fit from the first step."],
    },
    Kind {
        category: "fashion/clothing",
        nouns: &["T-Shirt", "Hoodie", "Jacket", "Jeans", "Sweater"],
        adjectives: &["Organic Cotton", "Slim Fit", "Oversized", "Merino", "Rain"],
        brands: &["Threadline", "Northwear", "Basics & Co"],
        attributes: &[("colour", COLOURS), ("size", &["xs", "s", "m", "l", "xl"])],
        price: (1_499, 24_999),
        blurb: &["Soft fabric and a fit that lasts wash after wash."],
    },
    Kind {
        category: "sports/outdoor",
        nouns: &["Tent", "Backpack", "Sleeping Bag", "Hiking Poles"],
        adjectives: &["Ultralight", "Four-Season", "Trekking", "Family"],
        brands: &["Alpina", "Summit", "Trailhead"],
        attributes: &[
            ("colour", &["green", "orange", "grey", "blue"]),
            ("capacity", &["1p", "2p", "4p", "30l", "50l"]),
        ],
        price: (2_999, 69_999),
        blurb: &["Built for the trail and the weekend campsite."],
    },
    Kind {
        category: "sports/fitness",
        nouns: &[
            "Yoga Mat",
            "Dumbbells",
            "Resistance Bands",
            "Kettlebell",
            "Jump Rope",
        ],
        adjectives: &["Adjustable", "Non-Slip", "Pro", "Home"],
        brands: &["Corefit", "Ironline", "Flowzen"],
        attributes: &[
            ("colour", COLOURS),
            ("weight", &["2kg", "5kg", "10kg", "20kg"]),
        ],
        price: (999, 29_999),
        blurb: &["Train at home with gear that takes a beating."],
    },
    Kind {
        category: "toys/games",
        nouns: &["Board Game", "Puzzle", "Building Blocks", "Card Game"],
        adjectives: &["Family", "Strategy", "1000-Piece", "Classic", "Cooperative"],
        brands: &["Playforge", "Meeple & Co", "Brickwise"],
        attributes: &[
            ("age", &["3+", "6+", "8+", "12+"]),
            ("players", &["1-4", "2-6", "2-8"]),
        ],
        price: (999, 7_999),
        blurb: &["Hours of fun for the whole table."],
    },
    Kind {
        category: "books/cooking",
        nouns: &["Cookbook", "Baking Book"],
        adjectives: &["Vegetarian", "Italian", "Weeknight", "Japanese"],
        brands: &["Larder Press", "Saffron Books"],
        attributes: &[
            ("format", &["hardcover", "paperback", "ebook"]),
            ("language", &["en", "de", "fr"]),
        ],
        price: (1_299, 4_999),
        blurb: &["Recipes that work the first time, with photos of every dish."],
    },
];

/// `count` products, identical for the same `seed`.
pub fn products(seed: u64, count: usize) -> Vec<Product> {
    let mut rng = Rng(seed);
    let base: DateTime<Utc> = Utc
        .with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    (0..count)
        .map(|i| {
            let kind = &KINDS[i % KINDS.len()];
            let adjective = rng.pick(kind.adjectives);
            let noun = rng.pick(kind.nouns);
            let brand = rng.pick(kind.brands);
            let model = format!(
                "{}{}",
                rng.pick(&["X", "S", "Pro ", "Air ", "Neo ", "M"]),
                100 + rng.below(900)
            );
            let title = format!("{adjective} {noun} {model}");
            let mut attributes = BTreeMap::new();
            for (key, values) in kind.attributes {
                attributes.insert((*key).to_string(), rng.pick(values).to_string());
            }
            let cents = rng.range(kind.price.0, kind.price.1);
            let minor = (cents / 100) * 100 + 99;
            let description = format!(
                "{brand} {title}. {} {}",
                rng.pick(kind.blurb),
                rng.pick(&[
                    "Free returns within 30 days.",
                    "Two-year warranty.",
                    "Ships within one business day.",
                    "Rated highly by customers.",
                ])
            );
            let n = i + 1;
            let input = ProductInput {
                sku: format!(
                    "{}-{n:06}",
                    kind.category
                        .rsplit('/')
                        .next()
                        .unwrap_or("item")
                        .to_ascii_uppercase()
                ),
                title,
                description,
                brand: brand.to_string(),
                category: kind.category.to_string(),
                price: PriceInput {
                    minor,
                    currency: "EUR".into(),
                },
                attributes,
                images: vec![format!("https://images.storefront.dev/p-{n:06}/1.jpg")],
                stock_hint: Some(u32::try_from(rng.below(200)).unwrap_or(0)),
                version: None,
            };
            let created = base + chrono::Duration::minutes(i64::try_from(n).unwrap_or(0) * 7);
            let draft = input.validate().unwrap_or_else(|e| {
                // The tables above are constants; an invalid entry is a bug caught by tests.
                panic!("demo product {n} is invalid: {e:?}")
            });
            let id =
                ProductId::parse(&format!("p-{n:06}")).unwrap_or_else(|_| ProductId::generate());
            Product::create(id, draft, created)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_valid() {
        let a = products(7, 500);
        let b = products(7, 500);
        assert_eq!(a, b);
        assert_ne!(a, products(8, 500));
        assert_eq!(a[0].id.as_str(), "p-000001");
        let categories: std::collections::BTreeSet<_> =
            a.iter().map(|p| p.category.as_str().to_string()).collect();
        assert_eq!(categories.len(), KINDS.len());
        assert!(
            a.iter()
                .any(|p| p.title.starts_with("Bluetooth Headphones"))
        );
    }
}
