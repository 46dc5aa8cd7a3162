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

/// How a dataset's stored label values become training labels.
#[derive(Debug, Clone)]
pub struct LabelMap {
    /// Stored value → train id (IGNORE for ignored values).
    pub lut: [u8; 256],
    /// Stored values that are neither a class nor ignore make the sample an error
    /// (VOC, LIP) instead of being mapped to ignore (Cityscapes).
    pub reject_unknown: bool,
    pub num_classes: usize,
}

impl LabelMap {
    pub fn for_dataset(kind: DatasetKind) -> Self {
        let mut lut = [IGNORE; 256];
        match kind {
            DatasetKind::Cityscapes => {
                for (id, train) in CITYSCAPES_ID_TO_TRAIN {
                    lut[id as usize] = train;
                }
                LabelMap { lut, reject_unknown: false, num_classes: 19 }
            }
            DatasetKind::Lip | DatasetKind::Voc => {
                let n = if kind == DatasetKind::Lip { 20 } else { 21 };
                for (v, slot) in lut.iter_mut().enumerate().take(n) {
                    *slot = v as u8;
                }
                LabelMap { lut, reject_unknown: true, num_classes: n }
            }
            DatasetKind::Imagenet => LabelMap { lut, reject_unknown: false, num_classes: 1000 },
        }
    }

    /// Map stored values in place; the first invalid value is returned as an error.
    pub fn apply(&self, values: &mut [u8]) -> Result<(), u8> {
        for v in values.iter_mut() {
            let mapped = self.lut[*v as usize];
            if mapped == IGNORE && *v != IGNORE && self.reject_unknown {
                return Err(*v);
            }
            *v = mapped;
        }
        Ok(())
    }
}

pub fn class_names(kind: DatasetKind) -> Vec<String> {
    match kind {
        DatasetKind::Cityscapes => CITYSCAPES_CLASSES.iter().map(|s| s.to_string()).collect(),
        DatasetKind::Lip => LIP_CLASSES.iter().map(|s| s.to_string()).collect(),
        DatasetKind::Voc => VOC_CLASSES.iter().map(|s| s.to_string()).collect(),
        DatasetKind::Imagenet => (0..1000).map(|i| format!("class {i}")).collect(),
    }
}

/// Colour of a train id for prediction images.
pub fn palette(kind: DatasetKind, train_id: u8) -> [u8; 3] {
    match kind {
        DatasetKind::Cityscapes => CITYSCAPES_PALETTE.get(train_id as usize).copied().unwrap_or([0, 0, 0]),
        _ => voc_color(train_id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cityscapes_mapping() {
        let m = LabelMap::for_dataset(DatasetKind::Cityscapes);
        let mut v = [7u8, 26, 33, 0, 1, 6, 34, 255, 9];
        m.apply(&mut v).expect("never rejects");
        assert_eq!(v, [0, 13, 18, 255, 255, 255, 255, 255, 255]);
        assert_eq!(cityscapes_train_to_label_id(13), 26);
    }

    #[test]
    fn voc_rejects_out_of_range() {
        let m = LabelMap::for_dataset(DatasetKind::Voc);
        let mut ok = [0u8, 20, 255];
        assert!(m.apply(&mut ok).is_ok());
        assert_eq!(m.apply(&mut [3u8, 21]), Err(21));
    }

    #[test]
    fn voc_colours() {
        assert_eq!(voc_color(0), [0, 0, 0]);
        assert_eq!(voc_color(1), [128, 0, 0]);
        assert_eq!(voc_color(15), [192, 128, 128]);
    }
}
