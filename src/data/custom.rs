//! A user's own dataset: `ROOT/images/` and `ROOT/masks/`, paired by file stem with any
//! depth of subfolders mirrored (`images/a/x.jpg` ↔ `masks/a/x.png`); images PNG, JPEG,
//! BMP or TIFF, masks PNG. `segzoo make-lists custom` splits the pairs into train and val.
use super::decode::{is_image_path, IMAGE_EXTENSIONS};
use super::lists::write_new_list;
use super::make_lists::Written;
use anyhow::{bail, Context};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// An image and its mask, relative to the root.
pub type Pair = (PathBuf, PathBuf);

/// What a scan of the two folders found; paths relative to the root, sorted.
#[derive(Debug, Default)]
pub struct Scan {
    pub pairs: Vec<Pair>,
    pub images_without_mask: Vec<PathBuf>,
    pub masks_without_image: Vec<PathBuf>,
}

/// Files under `dir` (hidden ones skipped), each with its pairing key: the path within
/// `dir` without the extension. Two files of one key (`x.jpg`, `x.png`) are an error.
fn keyed(
    root: &Path,
    dir: &Path,
    accept: impl Fn(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<BTreeMap<PathBuf, PathBuf>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("{}: cannot list", d.display()))? {
            let p = e.with_context(|| format!("{}: cannot list", d.display()))?.path();
            if p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')) {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            accept(&p)?;
            let key = p.strip_prefix(dir).unwrap_or(&p).with_extension("");
            let rel = p.strip_prefix(root).unwrap_or(&p).to_path_buf();
            if let Some(other) = out.insert(key, rel.clone()) {
                bail!(
                    "{} and {} have the same name: one mask could not tell them apart",
                    other.display(),
                    rel.display()
                );
            }
        }
    }
    Ok(out)
}

/// Pair `root/images` with `root/masks` (or the folders given, relative to the root).
pub fn scan(root: &Path, images: &Path, masks: &Path) -> anyhow::Result<Scan> {
    let (img_dir, mask_dir) = (root.join(images), root.join(masks));
    for (dir, what) in [(&img_dir, "images"), (&mask_dir, "masks")] {
        if !dir.is_dir() {
            bail!(
                "{}: no {what} folder (a custom dataset is ROOT/images/ and ROOT/masks/, paired by file stem; \
                 --images/--masks name other folders)",
                dir.display()
            );
        }
    }
    let images = keyed(root, &img_dir, |p| {
        if is_image_path(p) {
            Ok(())
        } else {
            bail!("{}: not an image the readers take ({})", p.display(), IMAGE_EXTENSIONS.join(", "))
        }
    })?;
    let masks = keyed(root, &mask_dir, |p| {
        if p.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("png")) {
            Ok(())
        } else {
            bail!("{}: masks must be PNG files (lossy formats change class values)", p.display())
        }
    })?;
    let mut scan = Scan::default();
    for (key, image) in &images {
        match masks.get(key) {
            Some(mask) => scan.pairs.push((image.clone(), mask.clone())),
            None => scan.images_without_mask.push(image.clone()),
        }
    }
    scan.masks_without_image = masks.iter().filter(|(k, _)| !images.contains_key(*k)).map(|(_, m)| m.clone()).collect();
    Ok(scan)
}

/// `pairs` split at random (from `seed`) into train and val, `val_fraction` of them to
/// val (at least one when the fraction is positive and there are two pairs); each sorted.
pub fn split(pairs: &[Pair], val_fraction: f64, seed: u64) -> (Vec<Pair>, Vec<Pair>) {
    let n = pairs.len();
    let mut n_val = (n as f64 * val_fraction).round() as usize;
    if val_fraction > 0.0 && n >= 2 {
        n_val = n_val.clamp(1, n - 1);
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    let mut val: Vec<usize> = order[..n_val.min(n)].to_vec();
    val.sort();
    let (mut train_set, mut val_set) = (Vec::new(), Vec::new());
    for (i, p) in pairs.iter().enumerate() {
        if val.binary_search(&i).is_ok() {
            val_set.push(p.clone());
        } else {
            train_set.push(p.clone());
        }
    }
    (train_set, val_set)
}

/// `train.lst` and `val.lst` in the root, from the pairs the scan finds.
pub fn make_lists(
    root: &Path,
    images: &Path,
    masks: &Path,
    val_fraction: f64,
    seed: u64,
    force: bool,
) -> anyhow::Result<(Vec<Written>, Scan)> {
    if !(0.0..1.0).contains(&val_fraction) {
        bail!("--val-fraction {val_fraction}: must be at least 0 and below 1");
    }
    let scan = scan(root, images, masks)?;
    if scan.pairs.is_empty() {
        bail!(
            "{}: no image has a mask of the same name ({} images, {} masks)",
            root.display(),
            scan.images_without_mask.len(),
            scan.masks_without_image.len()
        );
    }
    let (train, val) = split(&scan.pairs, val_fraction, seed);
    let line = |(i, m): &Pair| format!("{} {}", i.display(), m.display());
    let mut out = Vec::new();
    for (name, set) in [("train.lst", &train), ("val.lst", &val)] {
        if set.is_empty() {
            continue;
        }
        let path = root.join(name);
        write_new_list(&path, &set.iter().map(line).collect::<Vec<_>>(), force)?;
        out.push(Written { path, entries: set.len() });
    }
    Ok((out, scan))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_split_is_a_function_of_the_seed_and_keeps_one_of_each() {
        let pairs: Vec<(PathBuf, PathBuf)> = (0..10)
            .map(|i| (PathBuf::from(format!("images/{i}.jpg")), PathBuf::from(format!("masks/{i}.png"))))
            .collect();
        let (t, v) = split(&pairs, 0.2, 7);
        assert_eq!((t.len(), v.len()), (8, 2));
        assert_eq!(split(&pairs, 0.2, 7).1, v, "deterministic");
        assert_ne!(split(&pairs, 0.2, 8).1, v, "another seed, another split");
        assert_eq!(split(&pairs[..2], 0.01, 0).1.len(), 1, "at least one val pair");
        assert_eq!(split(&pairs, 0.0, 0).1.len(), 0);
    }
}
