//! Which dataset layout a reader, list maker or palette is for.

/// The dataset layouts segzoo reads: four it was born with, three benchmarks of the
/// official HRNet/OCRNet tables, and a user's own images and masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatasetKind {
    Cityscapes,
    Lip,
    Voc,
    Imagenet,
    Ade20k,
    PascalContext,
    CocoStuff,
    Custom,
}

impl DatasetKind {
    /// The class count of a benchmark; a custom dataset's comes from its config.
    pub fn num_classes(self) -> Option<i64> {
        Some(match self {
            DatasetKind::Cityscapes => 19,
            DatasetKind::Lip => 20,
            DatasetKind::Voc => 21,
            DatasetKind::Imagenet => 1000,
            DatasetKind::Ade20k => 150,
            DatasetKind::PascalContext => 59,
            DatasetKind::CocoStuff => 171,
            DatasetKind::Custom => return None,
        })
    }

    /// Whether its samples are images with a class each, not masks.
    pub fn is_classification(self) -> bool {
        self == DatasetKind::Imagenet
    }
}
