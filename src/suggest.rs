//! Did-you-mean: the closest known name by edit distance.

/// Optimal-string-alignment distance (Levenshtein plus adjacent swaps), so
/// `welcom_email` and `wlecome_email` both find `welcome_email`.
pub fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev2 = vec![0usize; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0usize; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                cur[j] = cur[j].min(prev2[j - 2] + 1);
            }
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The best candidate within a third of the name's length (at least one edit),
/// or one that matches ignoring case; ties go to the first in order.
pub fn best<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let len = name.chars().count();
    let limit = (len / 3).max(1);
    let lower = name.to_lowercase();
    let mut found: Option<(usize, &str)> = None;
    for c in candidates {
        if c == name {
            continue;
        }
        // The distance is at least the difference in length: a candidate too
        // short or too long is out without the quadratic comparison (a
        // 30 MB name once took minutes here).
        if c.chars().count().abs_diff(len) > limit {
            continue;
        }
        let d = if c.to_lowercase() == lower { 0 } else { distance(name, c) };
        if d <= limit && found.is_none_or(|(best, _)| d < best) {
            found = Some((d, c));
        }
    }
    found.map(|(_, c)| c)
}

/// `did you mean `x`?` for a help line.
pub fn help<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    best(name, candidates).map(|c| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_typos_and_swaps() {
        assert_eq!(best("welcom_email", ["welcome_email", "nudge"]), Some("welcome_email"));
        assert_eq!(best("wlecome_email", ["welcome_email"]), Some("welcome_email"));
        assert_eq!(best("xyz", ["welcome_email"]), None);
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
