//! A mask file read into train ids by its dataset's rule: stored values through a table
//! (index masks: grey or palette PNGs) or colours through the palette (RGB masks). Values
//! the rule does not know are kept with their pixel counts: the data check lists them
//! all, a reader stops at the first.
use super::decode::{read_mask_png, MaskPixels};
use super::labels::{LabelMap, IGNORE};
use std::collections::HashMap;
use std::path::Path;

/// How a dataset's masks hold classes.
#[derive(Debug, Clone)]
pub enum MaskRule {
    /// Boxed: the table is half a kilobyte, the colour map a pointer.
    Index(Box<LabelMap>),
    /// Colour → train id.
    Rgb { colors: HashMap<[u8; 3], u8>, num_classes: usize },
}

/// A stored value no class or ignore rule accounts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(untagged)]
pub enum MaskValue {
    Index(u8),
    Color([u8; 3]),
}

impl std::fmt::Display for MaskValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MaskValue::Index(v) => write!(f, "value {v}"),
            MaskValue::Color([r, g, b]) => write!(f, "colour [{r}, {g}, {b}]"),
        }
    }
}

/// A mask in train ids (unknown values as IGNORE) and what was unknown, in value order.
pub struct Mask {
    pub width: u32,
    pub height: u32,
    pub ids: Vec<u8>,
    pub unknown: Vec<(MaskValue, u64)>,
}

impl MaskRule {
    /// RGB masks in `palette`'s colours, class i being `palette[i]`.
    pub fn rgb(palette: &[[u8; 3]]) -> MaskRule {
        let colors = palette.iter().enumerate().map(|(i, &c)| (c, i as u8)).collect();
        MaskRule::Rgb { colors, num_classes: palette.len() }
    }

    /// A benchmark's rule; `None` for custom datasets (their config says) and ImageNet.
    pub fn for_dataset(kind: super::kind::DatasetKind) -> Option<MaskRule> {
        LabelMap::for_dataset(kind).map(|m| MaskRule::Index(Box::new(m)))
    }

    pub fn num_classes(&self) -> usize {
        match self {
            MaskRule::Index(m) => m.num_classes,
            MaskRule::Rgb { num_classes, .. } => *num_classes,
        }
    }

    /// What the masks are expected to hold, for messages.
    pub fn describe(&self) -> String {
        match self {
            MaskRule::Index(m) => format!("class values for {} classes or an ignore value", m.num_classes),
            MaskRule::Rgb { num_classes, .. } => format!("the {num_classes} colours of data.palette"),
        }
    }

    /// Read `path` by this rule. A mask of the wrong kind (RGB where indices are expected,
    /// or the reverse) is an error naming the file and the setting to change.
    pub fn read(&self, path: &Path) -> anyhow::Result<Mask> {
        let pixels = read_mask_png(path)?;
        match (self, pixels) {
            (MaskRule::Index(map), MaskPixels::Values { image, .. }) => {
                let mut ids = image.data;
                let unknown = map.apply_counting(&mut ids).into_iter().map(|(v, n)| (MaskValue::Index(v), n)).collect();
                Ok(Mask { width: image.width, height: image.height, ids, unknown })
            }
            (MaskRule::Index(_), MaskPixels::Colors { .. }) => anyhow::bail!(
                "{}: an RGB mask, but this dataset's masks hold class indices (data.mask_format = \"index\"); for \
                 colour masks set data.mask_format = \"rgb\" and data.palette",
                path.display()
            ),
            (MaskRule::Rgb { colors, .. }, MaskPixels::Colors { width, height, rgb }) => {
                Ok(by_color(colors, width, height, rgb.chunks_exact(3).map(|c| [c[0], c[1], c[2]])))
            }
            (MaskRule::Rgb { colors, .. }, MaskPixels::Values { image, palette: Some(p) }) => {
                // A palette PNG drawn in the classes' colours: its indices are looked up.
                let black = [0u8; 3];
                let pixels = image.data.iter().map(|&i| p.get(i as usize).copied().unwrap_or(black));
                Ok(by_color(colors, image.width, image.height, pixels))
            }
            (MaskRule::Rgb { .. }, MaskPixels::Values { palette: None, .. }) => anyhow::bail!(
                "{}: a grey mask of class indices, but data.mask_format = \"rgb\" expects the palette's colours; for \
                 index masks set data.mask_format = \"index\"",
                path.display()
            ),
        }
    }
}

fn by_color(colors: &HashMap<[u8; 3], u8>, width: u32, height: u32, pixels: impl Iterator<Item = [u8; 3]>) -> Mask {
    let mut unknown: HashMap<[u8; 3], u64> = HashMap::new();
    // Masks are mostly runs of one colour: remember the last lookup.
    let mut last: Option<([u8; 3], Option<u8>)> = None;
    let ids = pixels
        .map(|c| {
            let id = match last {
                Some((lc, id)) if lc == c => id,
                _ => {
                    let id = colors.get(&c).copied();
                    last = Some((c, id));
                    id
                }
            };
            id.unwrap_or_else(|| {
                *unknown.entry(c).or_default() += 1;
                IGNORE
            })
        })
        .collect();
    let mut unknown: Vec<(MaskValue, u64)> = unknown.into_iter().map(|(c, n)| (MaskValue::Color(c), n)).collect();
    unknown.sort();
    Mask { width, height, ids, unknown }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::decode::{write_gray_png, write_rgb_png};

    #[test]
    fn rgb_masks_map_palette_colours_and_count_the_others() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.png");
        let px = [[10u8, 20, 30], [10, 20, 30], [0, 0, 0], [7, 7, 7], [7, 7, 7], [1, 1, 1]];
        let img = image::RgbImage::from_fn(6, 1, |x, _| image::Rgb(px[x as usize]));
        write_rgb_png(&path, &img).expect("write");
        let rule = MaskRule::rgb(&[[0, 0, 0], [10, 20, 30]]);
        let m = rule.read(&path).expect("read");
        assert_eq!(m.ids, [1, 1, 0, IGNORE, IGNORE, IGNORE]);
        assert_eq!(m.unknown, vec![(MaskValue::Color([1, 1, 1]), 1), (MaskValue::Color([7, 7, 7]), 2)]);
        // The same file where index masks are expected is named, with the way out.
        let e = MaskRule::Index(Box::new(LabelMap::index(2, 255, false))).read(&path).err().expect("rgb where index");
        assert!(e.to_string().contains("an RGB mask") && e.to_string().contains("mask_format = \"rgb\""), "{e}");
        let grey = dir.path().join("g.png");
        write_gray_png(&grey, 2, 1, &[0, 1]).expect("write");
        let e = rule.read(&grey).err().expect("grey where rgb").to_string();
        assert!(e.contains("a grey mask") && e.contains("mask_format = \"index\""), "{e}");
    }
}
