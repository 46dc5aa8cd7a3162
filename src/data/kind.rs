//! Which dataset layout a reader, list maker or palette is for.

/// The four dataset layouts segzoo reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatasetKind {
    Cityscapes,
    Lip,
    Voc,
    Imagenet,
}

impl DatasetKind {
    pub fn num_classes(self) -> i64 {
        match self {
            DatasetKind::Cityscapes => 19,
            DatasetKind::Lip => 20,
            DatasetKind::Voc => 21,
            DatasetKind::Imagenet => 1000,
        }
    }
}
