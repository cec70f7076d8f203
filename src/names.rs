//! "Did you mean …?": the nearest known name to a misspelt one, for error messages.

/// Levenshtein distance between two short strings.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

/// The known name closest to `name`, if it is close enough to be a plausible typo (at most a third of
/// its letters differ).
pub fn closest<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let (best, d) = known
        .into_iter()
        .map(|k| (k, distance(name, k)))
        .min_by_key(|&(_, d)| d)?;
    (d <= name.chars().count().max(3) / 3).then_some(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(closest("cbq", ["sgd", "cbp", "mesu"]), Some("cbp"));
        assert_eq!(closest("heb", ["hebb", "elig"]), Some("hebb"));
        assert_eq!(closest("xyzzy", ["sgd", "cbp"]), None);
    }
}
