//! The classes a dataset trains: their names and colours, in train-id order. The
//! benchmarks' as the datasets define them; a custom dataset's from its config.
use super::kind::DatasetKind;
use super::labels::{voc_color, CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, IGNORE, LIP_CLASSES, VOC_CLASSES};
use super::tables::{ade20k, coco_stuff, pascal_context};

#[derive(Debug, Clone, PartialEq)]
pub struct ClassSet {
    pub names: Vec<String>,
    /// One colour per class (prediction images, palettes of exported models).
    pub palette: Vec<[u8; 3]>,
}

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

impl ClassSet {
    /// A benchmark's classes; `None` for a custom dataset.
    pub fn builtin(kind: DatasetKind) -> Option<ClassSet> {
        let voc = |n: usize| (0..n).map(|i| voc_color(i as u8)).collect();
        Some(match kind {
            DatasetKind::Cityscapes => {
                ClassSet { names: strings(&CITYSCAPES_CLASSES), palette: CITYSCAPES_PALETTE.to_vec() }
            }
            // LIP's parsing masks are drawn in VOC's colour map.
            DatasetKind::Lip => ClassSet { names: strings(&LIP_CLASSES), palette: voc(20) },
            DatasetKind::Voc => ClassSet { names: strings(&VOC_CLASSES), palette: voc(21) },
            DatasetKind::Imagenet => {
                ClassSet { names: (0..1000).map(|i| format!("class {i}")).collect(), palette: voc(1000) }
            }
            DatasetKind::Ade20k => {
                ClassSet { names: strings(&ade20k::ADE20K_CLASSES), palette: ade20k::ADE20K_PALETTE.to_vec() }
            }
            DatasetKind::PascalContext => ClassSet {
                names: strings(&pascal_context::PASCAL_CONTEXT_59_CLASSES),
                palette: pascal_context::PASCAL_CONTEXT_59_PALETTE.to_vec(),
            },
            DatasetKind::CocoStuff => ClassSet {
                names: strings(&coco_stuff::COCO_STUFF_CLASSES),
                palette: coco_stuff::COCO_STUFF_PALETTE.to_vec(),
            },
            DatasetKind::Custom => return None,
        })
    }

    /// A custom dataset's classes; without a palette, VOC's colour map.
    pub fn custom(names: &[String], palette: Option<&[[u8; 3]]>) -> ClassSet {
        let palette = match palette {
            Some(p) => p.to_vec(),
            None => (0..names.len()).map(|i| voc_color(i as u8)).collect(),
        };
        ClassSet { names: names.to_vec(), palette }
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The name of class `i` (`class i` beyond the list, for a model with more classes).
    pub fn name(&self, i: usize) -> String {
        self.names.get(i).cloned().unwrap_or_else(|| format!("class {i}"))
    }

    /// The colour of train id `id`: black where ignored, VOC's colour map beyond the palette.
    pub fn color(&self, id: u8) -> [u8; 3] {
        match id {
            IGNORE => [0, 0, 0],
            _ => self.palette.get(id as usize).copied().unwrap_or_else(|| voc_color(id)),
        }
    }

    /// `n` names (padded with `class i` or cut), for a model of `n` classes.
    pub fn names_for(&self, n: usize) -> Vec<String> {
        (0..n).map(|i| self.name(i)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_benchmark_has_a_name_and_a_colour_per_class() {
        for kind in [
            DatasetKind::Cityscapes,
            DatasetKind::Lip,
            DatasetKind::Voc,
            DatasetKind::Ade20k,
            DatasetKind::PascalContext,
            DatasetKind::CocoStuff,
        ] {
            let c = ClassSet::builtin(kind).expect("benchmark");
            assert_eq!(c.len() as i64, kind.num_classes().expect("count"), "{kind:?}");
            assert_eq!(c.palette.len(), c.len(), "{kind:?}");
        }
        assert!(ClassSet::builtin(DatasetKind::Custom).is_none());
    }

    #[test]
    fn a_custom_set_takes_its_palette_or_vocs_and_names_beyond_it() {
        let names = vec!["sky".to_string(), "road".to_string()];
        let c = ClassSet::custom(&names, Some(&[[1, 2, 3], [4, 5, 6]]));
        assert_eq!((c.color(1), c.color(IGNORE), c.name(5)), ([4, 5, 6], [0, 0, 0], "class 5".to_string()));
        assert_eq!(ClassSet::custom(&names, None).color(1), voc_color(1));
        assert_eq!(c.names_for(3), vec!["sky", "road", "class 2"]);
    }
}
