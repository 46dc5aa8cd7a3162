//! What `segzoo data check` found, as text and as JSON (`--json`): the lists' counts and
//! image sizes, each class's images and pixel share per split, every problem with its file,
//! suggested class weights from the train split's pixel shares, and notes.
use super::check::{CheckSpec, Tally};
use super::masks::MaskValue;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

/// The kinds of problem, in the order the report lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// A missing, unreadable, truncated or wrong-format image or mask.
    Unreadable,
    SizeMismatch,
    /// Mask values (or colours) that are no class nor ignored; a classification line's
    /// class index out of range.
    OutsideClasses,
    ImageWithoutMask,
    MaskWithoutImage,
    InTwoSplits,
}

impl FindingKind {
    fn title(self) -> &'static str {
        match self {
            FindingKind::Unreadable => "unreadable, truncated or wrong-format files",
            FindingKind::SizeMismatch => "image and mask sizes differ",
            FindingKind::OutsideClasses => "mask values outside the classes",
            FindingKind::ImageWithoutMask => "images without a mask",
            FindingKind::MaskWithoutImage => "masks without an image",
            FindingKind::InTwoSplits => "the same image in two splits",
        }
    }

    /// Kinds that can be many (unpaired files): counted, the first few named.
    fn shown(self) -> usize {
        match self {
            FindingKind::ImageWithoutMask | FindingKind::MaskWithoutImage => 5,
            _ => 20,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub kind: FindingKind,
    /// The list line (`list:line`) or the file.
    pub file: String,
    pub detail: String,
    /// Unknown mask values and their pixel counts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<(MaskValue, u64)>,
}

impl Finding {
    pub fn new(kind: FindingKind, file: impl std::fmt::Display, detail: impl Into<String>) -> Self {
        Finding { kind, file: file.to_string(), detail: detail.into(), values: Vec::new() }
    }

    pub fn with_values(kind: FindingKind, file: &str, detail: String, values: BTreeMap<MaskValue, u64>) -> Self {
        Finding { kind, file: file.to_string(), detail, values: values.into_iter().collect() }
    }
}

/// Widths and heights: smallest, median and largest (each on its own).
#[derive(Debug, Clone, Default, Serialize)]
pub struct SizeStats {
    pub min: [u32; 2],
    pub median: [u32; 2],
    pub max: [u32; 2],
}

impl SizeStats {
    pub fn of(sizes: &[(u32, u32)]) -> Option<SizeStats> {
        if sizes.is_empty() {
            return None;
        }
        let pick = |f: fn(&(u32, u32)) -> u32| {
            let mut v: Vec<u32> = sizes.iter().map(f).collect();
            v.sort_unstable();
            [v[0], v[v.len() / 2], v[v.len() - 1]]
        };
        let (w, h) = (pick(|s| s.0), pick(|s| s.1));
        Some(SizeStats { min: [w[0], h[0]], median: [w[1], h[1]], max: [w[2], h[2]] })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SplitReport {
    pub name: String,
    pub list: PathBuf,
    pub entries: usize,
    pub images_read: usize,
    /// [width, height] statistics of the images read.
    pub size: Option<SizeStats>,
    pub ignore_share: f64,
    pub classes_absent: Vec<String>,
}

/// One class in one split.
#[derive(Debug, Clone, Serialize)]
pub struct ClassInSplit {
    pub images: u64,
    pub pixels: u64,
    /// Its share of the split's labelled (not ignored) pixels.
    pub share: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClassStat {
    pub index: usize,
    pub name: String,
    /// By split name.
    pub splits: BTreeMap<String, ClassInSplit>,
}

/// Suggested `train.loss.class_weights` from the train split's pixel shares p, each set
/// normalised to a pixel-weighted mean of 1; classes absent from train get 1.
#[derive(Debug, Clone, Serialize)]
pub struct ClassWeights {
    /// ENet's 1 / ln(1.02 + p).
    pub enet: Vec<f64>,
    /// Median frequency balancing: median(f) / f, f = a class's pixels over the pixels of
    /// the images it appears in.
    pub median_frequency: Vec<f64>,
    pub absent: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub root: PathBuf,
    pub splits: Vec<SplitReport>,
    pub classes: Vec<ClassStat>,
    pub problems: Vec<Finding>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class_weights: Option<ClassWeights>,
    pub notes: Vec<String>,
    /// How long the check took (its speed, beside `segzoo bench data`'s).
    pub seconds: f64,
}

fn weights(t: &Tally, names: &[String]) -> Option<ClassWeights> {
    let total: u64 = t.pixels.iter().sum();
    if total == 0 {
        return None;
    }
    let p: Vec<f64> = t.pixels.iter().map(|&px| px as f64 / total as f64).collect();
    let present: Vec<usize> = (0..p.len()).filter(|&c| t.pixels[c] > 0).collect();
    let normalise = |raw: Vec<f64>| {
        let mean: f64 = present.iter().map(|&c| p[c] * raw[c]).sum();
        (0..raw.len()).map(|c| if t.pixels[c] > 0 { raw[c] / mean } else { 1.0 }).collect()
    };
    let enet = normalise(p.iter().map(|&pc| 1.0 / (1.02 + pc).ln()).collect());
    let freq: Vec<f64> = (0..p.len()).map(|c| t.pixels[c] as f64 / t.pixels_of_images_with[c].max(1) as f64).collect();
    let mut sorted: Vec<f64> = present.iter().map(|&c| freq[c]).collect();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let median_frequency = normalise(freq.iter().map(|&f| if f > 0.0 { median / f } else { 1.0 }).collect());
    let absent = (0..p.len()).filter(|&c| t.pixels[c] == 0).map(|c| names[c].clone()).collect();
    Some(ClassWeights { enet, median_frequency, absent })
}

impl Report {
    pub(super) fn new(spec: &CheckSpec, splits: Vec<SplitReport>, tallies: Vec<Tally>, problems: Vec<Finding>) -> Self {
        let names: Vec<String> = spec.classes.names.clone();
        let classes = (0..names.len())
            .map(|c| {
                let splits = splits
                    .iter()
                    .zip(&tallies)
                    .map(|(s, t)| {
                        let labelled: u64 = t.pixels.iter().sum();
                        let share = t.pixels[c] as f64 / labelled.max(1) as f64;
                        (s.name.clone(), ClassInSplit { images: t.images[c], pixels: t.pixels[c], share })
                    })
                    .collect();
                ClassStat { index: c, name: names[c].clone(), splits }
            })
            .collect();
        let train = splits.iter().position(|s| s.name == "train").unwrap_or(0);
        let class_weights =
            if spec.masks.is_some() { tallies.get(train).and_then(|t| weights(t, &names)) } else { None };
        let mut notes = Vec::new();
        let smallest = splits.iter().filter_map(|s| s.size.as_ref()).fold(None, |acc: Option<[u32; 2]>, s| {
            Some(acc.map_or(s.min, |a| [a[0].min(s.min[0]), a[1].min(s.min[1])]))
        });
        if let (Some([h, w]), Some([mw, mh])) = (spec.crop, smallest) {
            if h as u32 > mh || w as u32 > mw {
                notes.push(format!(
                    "data.crop_size [{h}, {w}] is larger than the smallest images ({mw}×{mh}): their crops are padded \
                     with the ignore label"
                ));
            }
        }
        Report { root: spec.root.clone(), splits, classes, problems, class_weights, notes, seconds: 0.0 }
    }

    /// The report as text (the command's output).
    pub fn render(&self) -> String {
        let mut s = String::new();
        let pct = |v: f64| format!("{:.2}%", 100.0 * v);
        for sp in &self.splits {
            let _ = write!(s, "{}: {} ({} entries, {} read)", sp.name, sp.list.display(), sp.entries, sp.images_read);
            if let Some(z) = &sp.size {
                let wh = |v: [u32; 2]| format!("{}×{}", v[0], v[1]);
                let _ = write!(s, "; sizes {} min, {} median, {} max", wh(z.min), wh(z.median), wh(z.max));
            }
            let _ = writeln!(s, "; ignored pixels {}", pct(sp.ignore_share));
        }
        let names: Vec<&String> = self.splits.iter().map(|sp| &sp.name).collect();
        let _ = write!(s, "\n{:>4} {:<24}", "", "class");
        for n in &names {
            let _ = write!(s, " {:>8} {:>9}", format!("{n} img"), format!("{n} px"));
        }
        s.push('\n');
        for c in &self.classes {
            let _ = write!(s, "{:>4} {:<24}", c.index, c.name);
            for n in &names {
                let x = &c.splits[*n];
                let _ = write!(s, " {:>8} {:>9}", x.images, pct(x.share));
            }
            s.push('\n');
        }
        for sp in &self.splits {
            if !sp.classes_absent.is_empty() {
                let _ = writeln!(s, "never in {}: {}", sp.name, sp.classes_absent.join(", "));
            }
        }
        if let Some(w) = &self.class_weights {
            let list = |v: &[f64]| v.iter().map(|x| trim(*x)).collect::<Vec<_>>().join(", ");
            let _ =
                writeln!(s, "\nclass weights from the train pixel shares (pixel-weighted mean 1), for [train.loss]:");
            let _ = writeln!(s, "# ENet, 1/ln(1.02 + p):\nclass_weights = [{}]", list(&w.enet));
            let _ = writeln!(s, "# median frequency:\n# class_weights = [{}]", list(&w.median_frequency));
            if !w.absent.is_empty() {
                let _ = writeln!(s, "# never in train, weight 1: {}", w.absent.join(", "));
            }
        }
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        let read: usize = self.splits.iter().map(|sp| sp.images_read).sum();
        let _ = writeln!(
            s,
            "read {read} images in {:.2} s ({:.1} img/s)",
            self.seconds,
            read as f64 / self.seconds.max(1e-9)
        );
        s + &self.render_problems()
    }

    fn render_problems(&self) -> String {
        let mut s = String::new();
        if self.problems.is_empty() {
            s += "\ncheck: no problems found\n";
            return s;
        }
        let _ = writeln!(s, "\ncheck: {} problem(s):", self.problems.len());
        let mut kinds: Vec<_> = self.problems.iter().map(|f| f.kind).collect();
        kinds.dedup();
        for kind in kinds {
            let all: Vec<&Finding> = self.problems.iter().filter(|f| f.kind == kind).collect();
            let _ = writeln!(s, "  {} ({}):", kind.title(), all.len());
            for f in all.iter().take(kind.shown()) {
                let _ = writeln!(s, "    {}: {}", f.file, f.detail);
            }
            if all.len() > kind.shown() {
                let _ = writeln!(s, "    … and {} more (--json lists them all)", all.len() - kind.shown());
            }
        }
        s
    }
}

/// A weight as the recipes write them: two decimals, no trailing zeros.
fn trim(x: f64) -> String {
    let t = format!("{x:.2}");
    t.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_favour_rare_classes_and_average_one_over_the_pixels() {
        let t = Tally {
            pixels: vec![900, 100, 0],
            images: vec![4, 1, 0],
            pixels_of_images_with: vec![1000, 250, 0],
            ..Default::default()
        };
        let names = vec!["a".to_string(), "b".into(), "c".into()];
        let w = weights(&t, &names).expect("weights");
        for set in [&w.enet, &w.median_frequency] {
            let mean = 0.9 * set[0] + 0.1 * set[1];
            assert!((mean - 1.0).abs() < 1e-12, "{set:?}");
            assert!(set[1] > set[0], "the rare class weighs more: {set:?}");
            assert_eq!(set[2], 1.0, "absent");
        }
        assert_eq!(w.absent, ["c"]);
        assert_eq!((trim(1.5), trim(0.6912), trim(2.0)), ("1.5".to_string(), "0.69".to_string(), "2".to_string()));
    }
}
