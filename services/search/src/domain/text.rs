//! Text helpers shared by the index adapters: tokenising, Elasticsearch's `AUTO` fuzziness and
//! highlighting of fuzzy matches.

/// Lower-cased alphanumeric words.
pub fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Edits allowed for a term, as Elasticsearch's `fuzziness: AUTO` (0 up to 2 characters, 1 up
/// to 5, else 2).
pub fn auto_fuzziness(term: &str) -> u8 {
    match term.chars().count() {
        0..=2 => 0,
        3..=5 => 1,
        _ => 2,
    }
}

/// Optimal string alignment distance (Levenshtein plus adjacent transpositions).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let (n, m) = (a.len(), b.len());
    let mut d = vec![vec![0usize; m + 1]; n + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=n {
        for j in 1..=m {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[n][m]
}

/// True when `word` matches one of the query `terms` within its `AUTO` fuzziness.
pub fn fuzzy_matches(word: &str, terms: &[String]) -> bool {
    let word = word.to_lowercase();
    terms
        .iter()
        .any(|t| edit_distance(&word, t) <= usize::from(auto_fuzziness(t)))
}

/// `text` with every word that fuzzily matches a term wrapped in `<em>`; `None` without match.
pub fn highlight(text: &str, terms: &[String]) -> Option<String> {
    let mut out = String::with_capacity(text.len() + 16);
    let mut word = String::new();
    let mut matched = false;
    let flush = |word: &mut String, out: &mut String, matched: &mut bool| {
        if word.is_empty() {
            return;
        }
        if fuzzy_matches(word, terms) {
            out.push_str("<em>");
            out.push_str(word);
            out.push_str("</em>");
            *matched = true;
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if c.is_alphanumeric() {
            word.push(c);
        } else {
            flush(&mut word, &mut out, &mut matched);
            out.push(c);
        }
    }
    flush(&mut word, &mut out, &mut matched);
    matched.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuzziness_follows_elasticsearch_auto() {
        assert_eq!(auto_fuzziness("tv"), 0);
        assert_eq!(auto_fuzziness("phone"), 1);
        assert_eq!(auto_fuzziness("hedphones"), 2);
    }

    #[test]
    fn typos_are_within_distance() {
        assert_eq!(edit_distance("blutooth", "bluetooth"), 1);
        assert_eq!(edit_distance("hedphones", "headphones"), 1);
        assert_eq!(edit_distance("ab", "ba"), 1);
        assert!(fuzzy_matches("Headphones", &tokens("hedphones")));
        assert!(!fuzzy_matches("speaker", &tokens("hedphones")));
    }

    #[test]
    fn highlights_wrap_matching_words() {
        let terms = tokens("blutooth hedphones");
        assert_eq!(
            highlight("Bluetooth Headphones, black", &terms).as_deref(),
            Some("<em>Bluetooth</em> <em>Headphones</em>, black")
        );
        assert_eq!(highlight("Desk lamp", &terms), None);
    }
}
