//! Class names, palettes and label mappings of the datasets.
use super::kind::DatasetKind;

pub const IGNORE: u8 = 255;

pub const CITYSCAPES_CLASSES: [&str; 19] = [
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
];

pub const CITYSCAPES_PALETTE: [[u8; 3]; 19] = [
    [128, 64, 128],
    [244, 35, 232],
    [70, 70, 70],
    [102, 102, 156],
    [190, 153, 153],
    [153, 153, 153],
    [250, 170, 30],
    [220, 220, 0],
    [107, 142, 35],
    [152, 251, 152],
    [70, 130, 180],
    [220, 20, 60],
    [255, 0, 0],
    [0, 0, 142],
    [0, 0, 70],
    [0, 60, 100],
    [0, 80, 100],
    [0, 0, 230],
    [119, 11, 32],
];

/// Cityscapes label id → train id (`labelIds` PNGs); everything else is ignored.
const CITYSCAPES_ID_TO_TRAIN: [(u8, u8); 19] = [
    (7, 0),
    (8, 1),
    (11, 2),
    (12, 3),
    (13, 4),
    (17, 5),
    (19, 6),
    (20, 7),
    (21, 8),
    (22, 9),
    (23, 10),
    (24, 11),
    (25, 12),
    (26, 13),
    (27, 14),
    (28, 15),
    (31, 16),
    (32, 17),
    (33, 18),
];

/// Train id → Cityscapes label id, for predictions the benchmark server takes.
pub fn cityscapes_train_to_label_id(train_id: u8) -> u8 {
    CITYSCAPES_ID_TO_TRAIN.iter().find(|(_, t)| *t == train_id).map_or(0, |(id, _)| *id)
}

pub const LIP_CLASSES: [&str; 20] = [
    "background",
    "hat",
    "hair",
    "glove",
    "sunglasses",
    "upper-clothes",
    "dress",
    "coat",
    "socks",
    "pants",
    "jumpsuits",
    "scarf",
    "skirt",
    "face",
    "left-arm",
    "right-arm",
    "left-leg",
    "right-leg",
    "left-shoe",
    "right-shoe",
];

/// Left/right part pairs a horizontal flip exchanges (arms, legs, shoes).
pub const LIP_FLIP_PAIRS: [(u8, u8); 3] = [(14, 15), (16, 17), (18, 19)];

pub const VOC_CLASSES: [&str; 21] = [
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
];

/// The PASCAL VOC colour map (bit-interleaved class index), also used for LIP.
pub fn voc_color(index: u8) -> [u8; 3] {
    let (mut r, mut g, mut b) = (0u8, 0u8, 0u8);
    let mut c = index;
    for shift in (0..8).rev() {
        r |= (c & 1) << shift;
        g |= ((c >> 1) & 1) << shift;
        b |= ((c >> 2) & 1) << shift;
        c >>= 3;
    }
    [r, g, b]
}

/// How a mask's stored values become train ids.
#[derive(Debug, Clone)]
pub struct LabelMap {
    /// Stored value → train id (IGNORE for ignored values).
    pub lut: [u8; 256],
    /// Values a mask may hold: a class or an ignored value. Any other makes the sample an
    /// error (a mask that does not belong to this dataset's classes).
    pub known: [bool; 256],
    pub num_classes: usize,
}

impl LabelMap {
    /// Mask value k is class k (k < n) and `ignore` is ignored; with `reduce_zero`, 0 is
    /// ignored and k is class k − 1 (k ≤ n), as ADE20K's and PASCAL-Context's masks.
    pub fn index(n: usize, ignore: u8, reduce_zero: bool) -> Self {
        let (mut lut, mut known) = ([IGNORE; 256], [false; 256]);
        let first = usize::from(reduce_zero);
        for v in first..(n + first).min(256) {
            (lut[v], known[v]) = ((v - first) as u8, true);
        }
        if reduce_zero {
            known[0] = true;
        }
        (lut[ignore as usize], known[ignore as usize]) = (IGNORE, true);
        LabelMap { lut, known, num_classes: n }
    }

    /// Raw value `raw_ids[t]` is class t; the other raw values up to `max_raw` (ids the
    /// benchmark does not train on) and 255 are ignored (COCO-Stuff's stuffthingmaps).
    pub fn raw_ids(raw_ids: &[u8], max_raw: u8) -> Self {
        let (mut lut, mut known) = ([IGNORE; 256], [false; 256]);
        known[..=max_raw as usize].fill(true);
        known[IGNORE as usize] = true;
        for (t, &raw) in raw_ids.iter().enumerate() {
            lut[raw as usize] = t as u8;
        }
        LabelMap { lut, known, num_classes: raw_ids.len() }
    }

    /// A benchmark's map; `None` for custom datasets (their config says) and ImageNet.
    pub fn for_dataset(kind: DatasetKind) -> Option<Self> {
        Some(match kind {
            DatasetKind::Cityscapes => {
                // Every label id is known: those not trained on are ignored, as officially.
                let mut lut = [IGNORE; 256];
                for (id, train) in CITYSCAPES_ID_TO_TRAIN {
                    lut[id as usize] = train;
                }
                LabelMap { lut, known: [true; 256], num_classes: 19 }
            }
            DatasetKind::Lip => Self::index(20, IGNORE, false),
            DatasetKind::Voc => Self::index(21, IGNORE, false),
            DatasetKind::Ade20k => Self::index(150, IGNORE, true),
            DatasetKind::PascalContext => Self::index(59, IGNORE, true),
            DatasetKind::CocoStuff => Self::raw_ids(&super::tables::coco_stuff::COCO_STUFF_RAW_IDS, 181),
            DatasetKind::Imagenet | DatasetKind::Custom => return None,
        })
    }

    /// Map stored values in place; the first unknown value is returned as an error.
    pub fn apply(&self, values: &mut [u8]) -> Result<(), u8> {
        for v in values.iter_mut() {
            if !self.known[*v as usize] {
                return Err(*v);
            }
            *v = self.lut[*v as usize];
        }
        Ok(())
    }

    /// Map stored values in place (unknown ones to IGNORE) and return the unknown values
    /// with how many pixels hold each, in value order.
    pub fn apply_counting(&self, values: &mut [u8]) -> Vec<(u8, u64)> {
        let mut unknown = [0u64; 256];
        for v in values.iter_mut() {
            unknown[*v as usize] += u64::from(!self.known[*v as usize]);
            *v = self.lut[*v as usize];
        }
        (0..=255u8).filter(|&v| unknown[v as usize] > 0).map(|v| (v, unknown[v as usize])).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cityscapes_mapping() {
        let m = LabelMap::for_dataset(DatasetKind::Cityscapes).expect("benchmark");
        let mut v = [7u8, 26, 33, 0, 1, 6, 34, 255, 9];
        m.apply(&mut v).expect("never rejects");
        assert_eq!(v, [0, 13, 18, 255, 255, 255, 255, 255, 255]);
        assert_eq!(cityscapes_train_to_label_id(13), 26);
    }

    #[test]
    fn voc_rejects_out_of_range() {
        let m = LabelMap::for_dataset(DatasetKind::Voc).expect("benchmark");
        let mut ok = [0u8, 20, 255];
        assert!(m.apply(&mut ok).is_ok());
        assert_eq!(m.apply(&mut [3u8, 21]), Err(21));
    }

    #[test]
    fn reduced_zero_label_ignores_zero_and_shifts_the_classes_down() {
        let m = LabelMap::for_dataset(DatasetKind::Ade20k).expect("benchmark");
        let mut v = [0u8, 1, 150, 255];
        m.apply(&mut v).expect("known");
        assert_eq!(v, [IGNORE, 0, 149, IGNORE]);
        assert_eq!(m.apply(&mut [151u8]), Err(151));
        // A custom index map whose ignore value is 0 and classes 1..=3 as 0..=2.
        let m = LabelMap::index(3, 0, true);
        let mut v = [0u8, 1, 3, 4, 4, 200];
        assert_eq!(m.apply_counting(&mut v), vec![(4, 2), (200, 1)]);
        assert_eq!(v, [IGNORE, 0, 2, IGNORE, IGNORE, IGNORE]);
    }

    #[test]
    fn coco_stuff_raw_ids_map_to_171_classes_and_unused_ids_are_ignored() {
        let m = LabelMap::for_dataset(DatasetKind::CocoStuff).expect("benchmark");
        assert_eq!(m.num_classes, 171);
        let raw = super::super::tables::coco_stuff::COCO_STUFF_RAW_IDS;
        let mut v = [raw[0], raw[170], 255, 181];
        m.apply(&mut v).expect("known");
        assert_eq!(&v[..3], &[0, 170, IGNORE]);
        let unused = (0..=181u8).find(|r| !raw.contains(r)).expect("COCO 2017 leaves thing ids unused");
        let mut v = [unused];
        m.apply(&mut v).expect("an unused id is ignored, not an error");
        assert_eq!(v, [IGNORE]);
        assert_eq!(m.apply(&mut [200u8]), Err(200));
    }

    #[test]
    fn voc_colours() {
        assert_eq!(voc_color(0), [0, 0, 0]);
        assert_eq!(voc_color(1), [128, 0, 0]);
        assert_eq!(voc_color(15), [192, 128, 128]);
    }
}
