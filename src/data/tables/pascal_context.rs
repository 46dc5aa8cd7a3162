//! PASCAL-Context, 59-class setting (background removed): class names in train-id order and their palette.
//!
//! Source: open-mmlab/mmsegmentation, `mmseg/datasets/pascal_context.py`, `PascalContextDataset59.METAINFO`
//! (`classes`, `palette`), as stored at commit a5acc11c92bb6878f12345886378473f2c0fa1da. That dataset class uses
//! `reduce_zero_label=True` on the `SegmentationClassContext` PNGs written by
//! `tools/dataset_converters/pascal_context.py` (Detail API, values 0..=59 with 0 = background): background
//! becomes 255 (ignored) and value `v` in 1..=59 becomes train id `v - 1`. The 60-class `PascalContextDataset`
//! in the same file lists `'background'` first and then exactly these names and colours.
//!
//! The palette is mmsegmentation's, unchanged; it is the ADE20K palette shifted by one (entries 1..60), and
//! it is not injective: `[140, 140, 140]` is used by both 5 (`bench`) and 47 (`sky`). The tests pin that
//! duplicate instead of asserting uniqueness.

/// Class name of each PASCAL-Context 59 train id (0..59); background is not a class.
pub const PASCAL_CONTEXT_59_CLASSES: [&str; 59] = [
    "aeroplane",
    "bag",
    "bed",
    "bedclothes",
    "bench",
    "bicycle",
    "bird",
    "boat",
    "book",
    "bottle",
    "building",
    "bus",
    "cabinet",
    "car",
    "cat",
    "ceiling",
    "chair",
    "cloth",
    "computer",
    "cow",
    "cup",
    "curtain",
    "dog",
    "door",
    "fence",
    "floor",
    "flower",
    "food",
    "grass",
    "ground",
    "horse",
    "keyboard",
    "light",
    "motorbike",
    "mountain",
    "mouse",
    "person",
    "plate",
    "platform",
    "pottedplant",
    "road",
    "rock",
    "sheep",
    "shelves",
    "sidewalk",
    "sign",
    "sky",
    "snow",
    "sofa",
    "table",
    "track",
    "train",
    "tree",
    "truck",
    "tvmonitor",
    "wall",
    "water",
    "window",
    "wood",
];

/// RGB colour of each PASCAL-Context 59 train id (mmsegmentation's palette; not injective).
pub const PASCAL_CONTEXT_59_PALETTE: [[u8; 3]; 59] = [
    [180, 120, 120],
    [6, 230, 230],
    [80, 50, 50],
    [4, 200, 3],
    [120, 120, 80],
    [140, 140, 140],
    [204, 5, 255],
    [230, 230, 230],
    [4, 250, 7],
    [224, 5, 255],
    [235, 255, 7],
    [150, 5, 61],
    [120, 120, 70],
    [8, 255, 51],
    [255, 6, 82],
    [143, 255, 140],
    [204, 255, 4],
    [255, 51, 7],
    [204, 70, 3],
    [0, 102, 200],
    [61, 230, 250],
    [255, 6, 51],
    [11, 102, 255],
    [255, 7, 71],
    [255, 9, 224],
    [9, 7, 230],
    [220, 220, 220],
    [255, 9, 92],
    [112, 9, 255],
    [8, 255, 214],
    [7, 255, 224],
    [255, 184, 6],
    [10, 255, 71],
    [255, 41, 10],
    [7, 255, 255],
    [224, 255, 8],
    [102, 8, 255],
    [255, 61, 6],
    [255, 194, 7],
    [255, 122, 8],
    [0, 255, 20],
    [255, 8, 41],
    [255, 5, 153],
    [6, 51, 255],
    [235, 12, 255],
    [160, 150, 20],
    [0, 163, 255],
    [140, 140, 140],
    [250, 10, 15],
    [20, 255, 0],
    [31, 255, 0],
    [255, 31, 0],
    [255, 224, 0],
    [153, 255, 0],
    [0, 0, 255],
    [255, 71, 0],
    [0, 235, 255],
    [0, 173, 255],
    [31, 0, 255],
];

#[cfg(test)]
mod tests {
    use super::super::test_helpers::{assert_names_ok, duplicate_colours};
    use super::*;

    #[test]
    fn names_are_unique_and_trimmed() {
        assert_names_ok(&PASCAL_CONTEXT_59_CLASSES);
        assert!(!PASCAL_CONTEXT_59_CLASSES.contains(&"background"));
        assert_eq!(PASCAL_CONTEXT_59_CLASSES[0], "aeroplane");
        assert_eq!(PASCAL_CONTEXT_59_CLASSES[3], "bedclothes");
        assert_eq!(PASCAL_CONTEXT_59_CLASSES[58], "wood");
    }

    #[test]
    fn names_are_sorted_like_the_source() {
        // mmsegmentation's 59-class list is alphabetical.
        assert!(PASCAL_CONTEXT_59_CLASSES.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn palette_duplicates_are_exactly_the_source_ones() {
        let expected: &[&[usize]] = &[&[5, 47]];
        assert_eq!(duplicate_colours(&PASCAL_CONTEXT_59_PALETTE), expected);
    }

    #[test]
    fn palette_is_the_ade20k_palette_shifted_by_one() {
        assert_eq!(PASCAL_CONTEXT_59_PALETTE[..], crate::data::tables::ade20k::ADE20K_PALETTE[1..60]);
    }
}
