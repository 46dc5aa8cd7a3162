//! The classes of the config's dataset and how its masks are read: a benchmark's own, or
//! a custom dataset's from `[data]` (`classes`, `palette`, `mask_format`, `ignore_index`,
//! `reduce_zero_label`; `Config::check` has validated them).
use crate::config::{DataConfig, MaskFormat};
use crate::data::classes::ClassSet;
use crate::data::kind::DatasetKind;
use crate::data::labels::LabelMap;
use crate::data::masks::MaskRule;
use anyhow::bail;

/// The names and colours of the dataset's classes.
pub fn classes(d: &DataConfig) -> ClassSet {
    ClassSet::builtin(DatasetKind::from(d.dataset))
        .unwrap_or_else(|| ClassSet::custom(d.classes.as_deref().unwrap_or_default(), d.palette.as_deref()))
}

/// How the dataset's mask files become train ids.
pub fn mask_rule(d: &DataConfig) -> anyhow::Result<MaskRule> {
    let kind = DatasetKind::from(d.dataset);
    if let Some(rule) = MaskRule::for_dataset(kind) {
        return Ok(rule);
    }
    if kind.is_classification() {
        bail!("{kind:?} is a classification dataset: it has no masks");
    }
    let Some(classes) = &d.classes else { bail!("data.classes: a custom dataset names its classes") };
    Ok(match d.mask_format {
        MaskFormat::Index => {
            MaskRule::Index(Box::new(LabelMap::index(classes.len(), d.ignore_index, d.reduce_zero_label)))
        }
        MaskFormat::Rgb => match &d.palette {
            Some(p) => MaskRule::rgb(p),
            None => bail!("data.palette: rgb masks are read by their colours, one per class"),
        },
    })
}

/// What `segzoo data check` checks for `cfg`: its train and val lists, read with
/// `threads` threads, their masks by the dataset's rule.
pub fn check_spec(cfg: &crate::config::Config, threads: usize) -> anyhow::Result<crate::data::check::CheckSpec> {
    let d = &cfg.data;
    let kind = DatasetKind::from(d.dataset);
    let masks = if kind.is_classification() { None } else { Some(mask_rule(d)?) };
    // A custom layout's folders, where they are the usual ones, for files without a partner.
    let custom_layout =
        (kind == DatasetKind::Custom && d.root.join("images").is_dir() && d.root.join("masks").is_dir())
            .then(|| ("images".into(), "masks".into()));
    Ok(crate::data::check::CheckSpec {
        root: d.root.clone(),
        lists: vec![("train".into(), d.train_list.clone()), ("val".into(), d.val_list.clone())],
        masks,
        classes: classes(d),
        custom_layout,
        crop: (!kind.is_classification()).then_some(d.crop_size),
        threads,
    })
}
