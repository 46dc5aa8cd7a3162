//! `segzoo data check`: every pair of a dataset's lists read as the loader reads them (its
//! threads, no augmentation), with what a practitioner checks before training: counts,
//! image sizes, each class's images and pixel share, the ignore share, and every problem
//! named with its file — unreadable or truncated files, image/mask sizes that differ, mask
//! values (or colours) outside the classes, unpaired files of a custom layout, a file in
//! both train and val. The report and class weights are `check_report.rs`.
use super::check_report::{Finding, FindingKind, Report, SizeStats, SplitReport};
use super::classes::ClassSet;
use super::custom;
use super::decode::read_rgb;
use super::labels::IGNORE;
use super::lists::{read_list, Columns, ListEntry};
use super::masks::{MaskRule, MaskValue};
use crate::progress::progress;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

/// What to check.
pub struct CheckSpec {
    pub root: PathBuf,
    /// (split name, list file relative to the root or absolute).
    pub lists: Vec<(String, PathBuf)>,
    /// How masks are read; `None` for a classification dataset (`image class` lists).
    pub masks: Option<MaskRule>,
    pub classes: ClassSet,
    /// A custom layout's image and mask folders, searched for files without a partner.
    pub custom_layout: Option<(PathBuf, PathBuf)>,
    /// The training crop [h, w], to say when it is larger than the images.
    pub crop: Option<[usize; 2]>,
    pub threads: usize,
}

/// One list's running totals (one per thread, then merged).
#[derive(Default, Clone)]
pub(super) struct Tally {
    pub pixels: Vec<u64>,
    /// Images in which each class appears.
    pub images: Vec<u64>,
    /// Per class: the valid pixels of the images it appears in (median-frequency weights).
    pub pixels_of_images_with: Vec<u64>,
    pub ignored: u64,
    pub sizes: Vec<(u32, u32)>,
    pub findings: Vec<Finding>,
    pub read: usize,
}

impl Tally {
    fn new(n: usize) -> Self {
        Tally { pixels: vec![0; n], images: vec![0; n], pixels_of_images_with: vec![0; n], ..Default::default() }
    }

    fn merge(&mut self, o: Tally) {
        for (a, b) in [(&mut self.pixels, o.pixels), (&mut self.images, o.images)] {
            a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        }
        self.pixels_of_images_with.iter_mut().zip(o.pixels_of_images_with).for_each(|(x, y)| *x += y);
        self.ignored += o.ignored;
        self.sizes.extend(o.sizes);
        self.findings.extend(o.findings);
        self.read += o.read;
    }
}

/// Check every list of `spec`; problems are findings in the report, not errors (an error
/// is only a list that cannot be read at all).
pub fn run(spec: &CheckSpec) -> anyhow::Result<Report> {
    let start = std::time::Instant::now();
    let n = spec.classes.len();
    let mut splits = Vec::new();
    let mut images_by_split: Vec<(String, HashSet<PathBuf>)> = Vec::new();
    let mut tallies = Vec::new();
    for (name, list) in &spec.lists {
        let path = if list.is_absolute() { list.clone() } else { spec.root.join(list) };
        let entries = read_list(&path, Columns::Pair)?;
        images_by_split.push((name.clone(), entries.iter().map(|e| normal(&e.image)).collect()));
        let tally = check_list(spec, &path, &entries, n)?;
        splits.push(SplitReport {
            name: name.clone(),
            list: path,
            entries: entries.len(),
            images_read: tally.read,
            size: SizeStats::of(&tally.sizes),
            ignore_share: share(tally.ignored, tally.pixels.iter().sum::<u64>() + tally.ignored),
            classes_absent: (0..n).filter(|&c| tally.images[c] == 0).map(|c| spec.classes.name(c)).collect(),
        });
        tallies.push(tally);
    }
    let mut findings: Vec<Finding> = tallies.iter_mut().flat_map(|t| std::mem::take(&mut t.findings)).collect();
    // The same image in two splits (val scores would flatter the model).
    for (i, (a, set_a)) in images_by_split.iter().enumerate() {
        for (b, set_b) in &images_by_split[i + 1..] {
            let mut both: Vec<&PathBuf> = set_a.intersection(set_b).collect();
            both.sort();
            for p in both {
                findings.push(Finding::new(FindingKind::InTwoSplits, p.display(), format!("in both {a} and {b}")));
            }
        }
    }
    if let Some((images, masks)) = &spec.custom_layout {
        let scan = custom::scan(&spec.root, images, masks)?;
        for p in &scan.images_without_mask {
            findings.push(Finding::new(FindingKind::ImageWithoutMask, p.display(), "no mask of the same name"));
        }
        for p in &scan.masks_without_image {
            findings.push(Finding::new(FindingKind::MaskWithoutImage, p.display(), "no image of the same name"));
        }
    }
    findings.sort_by(|a, b| (a.kind, &a.file).cmp(&(b.kind, &b.file)));
    let mut report = Report::new(spec, splits, tallies, findings);
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}

fn share(part: u64, total: u64) -> f64 {
    part as f64 / total.max(1) as f64
}

/// `a/./b` and `a/b` are one file.
fn normal(p: &Path) -> PathBuf {
    p.components().filter(|c| !matches!(c, std::path::Component::CurDir)).collect()
}

fn check_list(spec: &CheckSpec, list: &Path, entries: &[ListEntry], n: usize) -> anyhow::Result<Tally> {
    let bar = progress(entries.len() as u64, &format!("checking {}", list.display()));
    let chunk = entries.len().div_ceil(spec.threads.max(1)).max(1);
    let parts: Vec<Tally> = std::thread::scope(|s| {
        let handles: Vec<_> = entries
            .chunks(chunk)
            .map(|part| {
                let bar = &bar;
                s.spawn(move || {
                    let mut t = Tally::new(n);
                    for e in part {
                        entry(spec, list, e, &mut t);
                        bar.inc(1);
                    }
                    t
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Tally::new(n))).collect()
    });
    bar.finish_and_clear();
    let mut total = Tally::new(n);
    for p in parts {
        total.merge(p);
    }
    total.findings.sort_by(|a, b| (a.kind, &a.file).cmp(&(b.kind, &b.file)));
    Ok(total)
}

/// Check one list line into `t`: each problem a finding naming the line and the file.
fn entry(spec: &CheckSpec, list: &Path, e: &ListEntry, t: &mut Tally) {
    let at = format!("{}:{}", list.display(), e.line);
    let img_path = spec.root.join(&e.image);
    let img = match read_rgb(&img_path) {
        Ok(img) => img,
        Err(err) => return t.findings.push(Finding::new(FindingKind::Unreadable, &at, format!("{err:#}"))),
    };
    let target = e.target.as_deref().unwrap_or_default();
    let Some(rule) = &spec.masks else {
        // Classification: the class index must name a class.
        match target.parse::<usize>() {
            Ok(c) if c < t.images.len() => {
                t.images[c] += 1;
                t.read += 1;
            }
            _ => t.findings.push(Finding::new(FindingKind::OutsideClasses, &at, format!("class {target:?}"))),
        }
        t.sizes.push((img.width(), img.height()));
        return;
    };
    let mask_path = spec.root.join(target);
    let mask = match rule.read(&mask_path) {
        Ok(m) => m,
        Err(err) => return t.findings.push(Finding::new(FindingKind::Unreadable, &at, format!("{err:#}"))),
    };
    t.sizes.push((img.width(), img.height()));
    if (img.width(), img.height()) != (mask.width, mask.height) {
        let what = format!(
            "image {} is {}×{} but mask {} is {}×{}",
            img_path.display(),
            img.width(),
            img.height(),
            mask_path.display(),
            mask.width,
            mask.height
        );
        return t.findings.push(Finding::new(FindingKind::SizeMismatch, &at, what));
    }
    if !mask.unknown.is_empty() {
        let values: BTreeMap<MaskValue, u64> = mask.unknown.iter().copied().collect();
        let list: Vec<String> = values.iter().map(|(v, n)| format!("{v} ({n} px)")).collect();
        let what = format!("mask {}: {}: not {}", mask_path.display(), list.join(", "), rule.describe());
        t.findings.push(Finding::with_values(FindingKind::OutsideClasses, &at, what, values));
    }
    t.read += 1;
    // One pass, no branches: a histogram of the train ids (masks are large).
    let mut hist = [0u64; 256];
    for &id in &mask.ids {
        hist[id as usize] += 1;
    }
    let n = t.pixels.len().min(IGNORE as usize);
    let here = &hist[..n];
    let valid: u64 = here.iter().sum();
    // Unknown values were mapped to ignore; they are findings, not the ignore share.
    let unknown: u64 = mask.unknown.iter().map(|(_, px)| px).sum();
    t.ignored += (mask.ids.len() as u64 - valid).saturating_sub(unknown);
    for (c, &px) in here.iter().enumerate().filter(|(_, &px)| px > 0) {
        t.pixels[c] += px;
        t.images[c] += 1;
        t.pixels_of_images_with[c] += valid;
    }
}
