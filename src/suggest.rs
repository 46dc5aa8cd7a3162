//! "Did you mean": the closest of some names to a mistyped one. A string utility with no
//! domain knowledge, shared by config keys and model presets.

/// The candidate closest to `word`, if it is close enough to be a plausible typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, c)| {
            // Allow roughly one edit per three characters, at least one.
            *d <= (c.len().max(word.len()) / 3).max(1)
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}
