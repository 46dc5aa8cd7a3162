//! Class names, palettes and label maps of the benchmarks, as the datasets define them.
pub mod ade20k;
pub mod coco_stuff;
pub mod pascal_context;

/// What the tables' tests check of every benchmark.
#[cfg(test)]
mod test_helpers {
    pub fn assert_names_ok(names: &[&str]) {
        let mut seen = std::collections::HashSet::new();
        for n in names {
            assert!(!n.is_empty(), "empty class name");
            assert_eq!(n.trim(), *n, "class name {n:?} has surrounding whitespace");
            assert!(seen.insert(*n), "duplicate class name {n:?}");
        }
    }

    /// Groups of indices that share a colour, each group ascending, groups ordered by first index.
    pub fn duplicate_colours(palette: &[[u8; 3]]) -> Vec<Vec<usize>> {
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for (i, c) in palette.iter().enumerate() {
            if groups.iter().any(|g| g.contains(&i)) {
                continue;
            }
            let g: Vec<usize> = (i..palette.len()).filter(|&j| palette[j] == *c).collect();
            if g.len() > 1 {
                groups.push(g);
            }
        }
        groups
    }
}
