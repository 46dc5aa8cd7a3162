//! Datasets read from list files: segmentation (the benchmarks' layouts and custom ones,
//! their masks read by a [`MaskRule`]) and ImageNet-style classification. Every error
//! names the list line and the file.
use super::decode::read_rgb;
use super::kind::DatasetKind;
use super::lists::{read_list, Columns, ListEntry};
use super::masks::MaskRule;
use super::transforms::{ClsTransform, Prepared, SegTransform};
use anyhow::{bail, Context};
use image::RgbImage;
use rand::rngs::StdRng;
use std::path::{Path, PathBuf};

/// One prepared sample.
pub struct Item {
    pub prepared: Prepared,
    /// The class index (classification).
    pub class: Option<i64>,
}

pub trait Dataset: Send + Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Load and prepare sample `index`, drawing augmentation from `rng`.
    fn get(&self, index: usize, rng: &mut StdRng) -> anyhow::Result<Item>;
}

pub struct SegDataset {
    pub root: PathBuf,
    pub list: PathBuf,
    pub entries: Vec<ListEntry>,
    pub masks: MaskRule,
    pub transform: SegTransform,
}

impl SegDataset {
    /// A benchmark's list (a custom dataset's masks need its config: [`SegDataset::with_rule`]).
    pub fn open(kind: DatasetKind, root: &Path, list: &Path, transform: SegTransform) -> anyhow::Result<Self> {
        let masks = match MaskRule::for_dataset(kind) {
            Some(m) => m,
            None if kind.is_classification() => bail!("imagenet is a classification dataset"),
            None => bail!("a custom dataset's masks are read by the rule its config gives (SegDataset::with_rule)"),
        };
        Self::with_rule(masks, root, list, transform)
    }

    /// A list whose masks `masks` reads.
    pub fn with_rule(masks: MaskRule, root: &Path, list: &Path, transform: SegTransform) -> anyhow::Result<Self> {
        let list_path = if list.is_absolute() { list.to_path_buf() } else { root.join(list) };
        let entries = read_list(&list_path, Columns::Pair)?;
        Ok(SegDataset { root: root.to_path_buf(), list: list_path, entries, masks, transform })
    }

    fn at(&self, e: &ListEntry) -> String {
        format!("{}:{}", self.list.display(), e.line)
    }

    /// The decoded image and its label map in train ids.
    pub fn load_raw(&self, index: usize) -> anyhow::Result<(RgbImage, Vec<u8>)> {
        let e = &self.entries[index];
        let label_rel = e.target.as_deref().with_context(|| format!("{}: no label path", self.at(e)))?;
        let (img_path, label_path) = (self.root.join(&e.image), self.root.join(label_rel));
        let img = read_rgb(&img_path).with_context(|| self.at(e))?;
        let label = self.masks.read(&label_path).with_context(|| self.at(e))?;
        if (img.width(), img.height()) != (label.width, label.height) {
            bail!(
                "{}: image {} is {}×{} but label {} is {}×{}",
                self.at(e),
                img_path.display(),
                img.width(),
                img.height(),
                label_path.display(),
                label.width,
                label.height
            );
        }
        if let Some((v, n)) = label.unknown.first() {
            bail!(
                "{}: label {} has {v} in {n} pixel(s), not one of {} (`segzoo data check` lists every such value)",
                self.at(e),
                label_path.display(),
                self.masks.describe()
            );
        }
        Ok((img, label.ids))
    }
}

impl Dataset for SegDataset {
    fn len(&self) -> usize {
        self.entries.len()
    }

    fn get(&self, index: usize, rng: &mut StdRng) -> anyhow::Result<Item> {
        let (img, label) = self.load_raw(index)?;
        let prepared = self.transform.apply(&img, &label, rng).with_context(|| self.at(&self.entries[index]))?;
        Ok(Item { prepared, class: None })
    }
}

pub struct ClsDataset {
    pub root: PathBuf,
    pub entries: Vec<(PathBuf, i64, String)>,
    pub transform: ClsTransform,
}

impl ClsDataset {
    /// From a list of `path class_index` lines.
    pub fn open(root: &Path, list: &Path, transform: ClsTransform) -> anyhow::Result<Self> {
        let list_path = if list.is_absolute() { list.to_path_buf() } else { root.join(list) };
        let mut entries = Vec::new();
        for e in read_list(&list_path, Columns::Pair)? {
            let at = format!("{}:{}", list_path.display(), e.line);
            let class = e.target.as_deref().unwrap_or_default();
            let class: i64 =
                class.parse().map_err(|_| anyhow::anyhow!("{at}: class {class:?} is not an integer index"))?;
            entries.push((e.image, class, at));
        }
        Ok(ClsDataset { root: root.to_path_buf(), entries, transform })
    }

    /// From `dir/<class>/<image>` folders, classes numbered in sorted order.
    pub fn from_folder(dir: &Path, transform: ClsTransform) -> anyhow::Result<Self> {
        let (_, files) = super::make_lists::scan_class_folders(dir)?;
        if files.is_empty() {
            bail!("{}: no images in class folders", dir.display());
        }
        let entries = files.into_iter().map(|(p, c)| (p.clone(), c as i64, p.display().to_string())).collect();
        Ok(ClsDataset { root: dir.to_path_buf(), entries, transform })
    }
}

impl Dataset for ClsDataset {
    fn len(&self) -> usize {
        self.entries.len()
    }

    fn get(&self, index: usize, rng: &mut StdRng) -> anyhow::Result<Item> {
        let (path, class, at) = &self.entries[index];
        let img = read_rgb(&self.root.join(path)).with_context(|| at.clone())?;
        let prepared = self.transform.apply(&img, rng).with_context(|| at.clone())?;
        Ok(Item { prepared, class: Some(*class) })
    }
}

/// Which list of the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Val,
}
