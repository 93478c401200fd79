//! One fixed, seeded set of realistic searches built from the demo catalog's vocabulary.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use storefront_search::adapters::elastic::search_body;
use storefront_search::domain::{Product, SearchParams, SearchQuery};

/// One search, in the two forms the bench sends it.
pub struct BenchQuery {
    /// `GET /v1/search` parameters, as a shopper's browser would send them.
    pub params: Vec<(&'static str, String)>,
    /// The validated query the service derives from `params`.
    pub query: SearchQuery,
    /// The exact body the service's Elasticsearch adapter posts for `query`.
    pub body: Vec<u8>,
}

/// splitmix64: small, seeded, and the same on every platform and version.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next_u64() % n.max(1) as u64).unwrap_or(0)
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Words, brands, categories, attributes and price ranges of the catalog.
struct Vocabulary {
    /// Title words (adjectives and nouns; model numbers left out).
    words: Vec<String>,
    /// Category path -> its brands, attribute terms (`key:value`) and price range.
    categories: BTreeMap<String, CategoryVocabulary>,
    /// Every category path including ancestors (`electronics`, `electronics/audio`, ...).
    paths: Vec<String>,
}

#[derive(Default)]
struct CategoryVocabulary {
    brands: BTreeSet<String>,
    attributes: BTreeSet<String>,
    title_words: BTreeSet<String>,
    min_price: i64,
    max_price: i64,
}

impl Vocabulary {
    fn of(products: &[Product]) -> Self {
        let mut words = BTreeSet::new();
        let mut paths = BTreeSet::new();
        let mut categories: BTreeMap<String, CategoryVocabulary> = BTreeMap::new();
        for p in products {
            let c = categories
                .entry(p.category.as_str().to_string())
                .or_insert_with(|| CategoryVocabulary {
                    min_price: i64::MAX,
                    ..Default::default()
                });
            c.brands.insert(p.brand.clone());
            for t in p.attributes.terms() {
                c.attributes.insert(t.replacen('=', ":", 1));
            }
            // Model numbers ("X123", "Pro 450") are not what shoppers type.
            for w in p.title.split_whitespace() {
                if w.len() >= 3 && !w.chars().any(|ch| ch.is_ascii_digit()) {
                    let w = w.to_lowercase();
                    words.insert(w.clone());
                    c.title_words.insert(w);
                }
            }
            c.min_price = c.min_price.min(p.price.minor);
            c.max_price = c.max_price.max(p.price.minor);
            paths.extend(p.category.ancestors());
        }
        Self {
            words: words.into_iter().collect(),
            categories,
            paths: paths.into_iter().collect(),
        }
    }
}

/// A typo a shopper makes: a dropped, doubled, swapped or replaced letter (one edit or a
/// transposition, within what `fuzziness: AUTO` forgives for words of five letters or more).
fn typo(rng: &mut Rng, word: &str) -> String {
    let mut chars: Vec<char> = word.chars().collect();
    if chars.len() < 5 {
        return word.to_string();
    }
    let i = 1 + rng.below(chars.len() - 2);
    match rng.below(4) {
        0 => {
            chars.remove(i);
        }
        1 => chars.insert(i, chars[i]),
        2 => chars.swap(i, i + 1),
        _ => {
            let c = *rng.pick(&['a', 'e', 'i', 'o', 'r', 's', 't']);
            chars[i] = if c == chars[i] { 'x' } else { c };
        }
    }
    chars.into_iter().collect()
}

fn text(rng: &mut Rng, words: &[String], with_typo: bool) -> String {
    let n = 1 + rng.below(2);
    let mut out: Vec<String> = (0..n).map(|_| rng.pick(words).clone()).collect();
    if with_typo {
        let i = rng.below(out.len());
        out[i] = typo(rng, &out[i]);
    }
    out.join(" ")
}

/// One search of a random shape: text (some with typos), category browsing, brand, price and
/// attribute filters, sorts and pages, in roughly the mix a shop sees.
fn candidate(rng: &mut Rng, v: &Vocabulary) -> Vec<(&'static str, String)> {
    let leaves: Vec<&String> = v.categories.keys().collect();
    let leaf = *rng.pick(&leaves);
    let cat = &v.categories[leaf];
    let cat_words: Vec<String> = cat.title_words.iter().cloned().collect();
    let mut params: Vec<(&'static str, String)> = Vec::new();
    match rng.below(100) {
        // Plain text search.
        0..30 => params.push(("q", text(rng, &v.words, false))),
        // Text with a typo.
        30..45 => params.push(("q", text(rng, &v.words, true))),
        // Text within a category (leaf or ancestor).
        45..55 => {
            let with_typo = rng.chance(25);
            params.push(("q", text(rng, &cat_words, with_typo)));
            params.push(("category", rng.pick(&v.paths).clone()));
        }
        // Browsing a category, sorted.
        55..65 => {
            params.push(("category", leaf.clone()));
            params.push((
                "sort",
                (*rng.pick(&["price_asc", "price_desc", "newest"])).to_string(),
            ));
        }
        // Brand filter, with or without text.
        65..75 => {
            let brands: Vec<&String> = cat.brands.iter().collect();
            let mut chosen = vec![(*rng.pick(&brands)).clone()];
            if rng.chance(30) {
                chosen.push((*rng.pick(&brands)).clone());
            }
            chosen.dedup();
            params.push(("brand", chosen.join(",")));
            if rng.chance(50) {
                params.push(("q", text(rng, &cat_words, false)));
            }
        }
        // Price range within a category.
        75..87 => {
            let span = (cat.max_price - cat.min_price).max(100);
            let lo = cat.min_price + i64::try_from(rng.below(60)).unwrap_or(0) * span / 100;
            let hi = lo + span / 4 + i64::try_from(rng.below(40)).unwrap_or(0) * span / 100;
            params.push(("category", leaf.clone()));
            params.push(("price_min", lo.to_string()));
            params.push(("price_max", hi.to_string()));
            if rng.chance(40) {
                params.push(("sort", "price_asc".to_string()));
            }
        }
        // Attribute filters (facet clicks), with or without text.
        _ => {
            let attrs: Vec<&String> = cat.attributes.iter().collect();
            let mut chosen = vec![(*rng.pick(&attrs)).clone()];
            if rng.chance(30) {
                let other = (*rng.pick(&attrs)).clone();
                // Two values of the same key never match together; keep distinct keys.
                if other.split(':').next() != chosen[0].split(':').next() {
                    chosen.push(other);
                }
            }
            params.push(("category", leaf.clone()));
            params.push(("attr", chosen.join(",")));
            if rng.chance(40) {
                params.push(("q", text(rng, &cat_words, false)));
            }
        }
    }
    if rng.chance(15) {
        params.push(("page", (2 + rng.below(3)).to_string()));
    }
    if rng.chance(25) {
        params.push(("page_size", (*rng.pick(&["10", "40", "48"])).to_string()));
    }
    params
}

fn parse(params: &[(&'static str, String)]) -> Option<SearchQuery> {
    let mut p = SearchParams::default();
    for (k, v) in params {
        match *k {
            "q" => p.q = Some(v.clone()),
            "category" => p.category = Some(v.clone()),
            "brand" => p.brand = Some(v.clone()),
            "price_min" => p.price_min = v.parse().ok(),
            "price_max" => p.price_max = v.parse().ok(),
            "attr" => p.attr = Some(v.clone()),
            "sort" => p.sort = Some(v.clone()),
            "page" => p.page = v.parse().ok(),
            "page_size" => p.page_size = v.parse().ok(),
            _ => return None,
        }
    }
    p.validate().ok()
}

/// `count` distinct searches (no two share a cache key), identical for the same catalog and
/// seed.
pub fn build(products: &[Product], seed: u64, count: usize) -> Vec<BenchQuery> {
    let vocabulary = Vocabulary::of(products);
    let mut rng = Rng(seed);
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(count);
    let mut attempts = 0usize;
    while out.len() < count && attempts < count * 50 {
        attempts += 1;
        let params = candidate(&mut rng, &vocabulary);
        let Some(query) = parse(&params) else {
            continue;
        };
        if !seen.insert(query.canonical()) {
            continue;
        }
        let body = serde_json::to_vec(&search_body(&query)).unwrap_or_default();
        out.push(BenchQuery {
            params,
            query,
            body,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_distinct_and_valid() {
        let products = storefront_search::demo::products(1, 300);
        let a = build(&products, 7, 200);
        let b = build(&products, 7, 200);
        assert_eq!(a.len(), 200);
        assert!(a.iter().zip(&b).all(|(x, y)| x.params == y.params));
        let keys: HashSet<String> = a.iter().map(|q| q.query.canonical()).collect();
        assert_eq!(keys.len(), a.len());
        assert!(a.iter().any(|q| q.query.text.is_some()));
        assert!(a.iter().any(|q| !q.query.attributes.is_empty()));
        assert!(a.iter().any(|q| q.query.page > 1));
    }

    #[test]
    fn typos_change_long_words_only() {
        let mut rng = Rng(3);
        assert_eq!(typo(&mut rng, "bag"), "bag");
        assert_ne!(typo(&mut rng, "headphones"), "headphones");
    }
}
