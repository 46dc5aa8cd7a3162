//! List makers for the benchmarks' standard layouts (Cityscapes, LIP, VOC + SBD with SBD's
//! `.mat` → PNG conversion, ImageNet-style folders, ADE20K, PASCAL-Context, COCO-Stuff).
//! A list that exists with other entries is replaced only with `force` (the custom layout's
//! maker is `custom.rs`; `check.rs` checks what the lists name).
use super::decode::write_gray_png;
use super::lists::write_new_list;
use crate::progress::progress;
use anyhow::{bail, Context};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// A written list: its file and number of entries.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    pub path: PathBuf,
    pub entries: usize,
}

fn sorted_dir(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot list", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    out.sort();
    Ok(out)
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}

/// Where the lists go, and whether existing ones may be replaced.
struct Lists<'a> {
    root: &'a Path,
    force: bool,
    written: Vec<Written>,
}

impl Lists<'_> {
    fn write(&mut self, name: &str, lines: Vec<String>) -> anyhow::Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let path = self.root.join(name);
        write_new_list(&path, &lines, self.force)?;
        self.written.push(Written { path, entries: lines.len() });
        Ok(())
    }
}

/// Cityscapes: `leftImg8bit/<split>/<city>/*_leftImg8bit.png` with
/// `gtFine/<split>/<city>/*_gtFine_labelIds.png` → `train.lst`, `val.lst` (`test.lst`: images only).
pub fn cityscapes(root: &Path, force: bool) -> anyhow::Result<Vec<Written>> {
    let mut out = Lists { root, force, written: Vec::new() };
    for split in ["train", "val", "test"] {
        let dir = root.join("leftImg8bit").join(split);
        if !dir.is_dir() {
            continue;
        }
        let mut lines = Vec::new();
        for city in sorted_dir(&dir)?.into_iter().filter(|p| p.is_dir()) {
            for img in sorted_dir(&city)? {
                let Some(name) = img.file_name().and_then(|n| n.to_str()) else { continue };
                let Some(stem) = name.strip_suffix("_leftImg8bit.png") else { continue };
                let city_name = city.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                let label = root.join("gtFine").join(split).join(city_name).join(format!("{stem}_gtFine_labelIds.png"));
                if split == "test" {
                    lines.push(rel(root, &img));
                } else if label.is_file() {
                    lines.push(format!("{} {}", rel(root, &img), rel(root, &label)));
                } else {
                    bail!("{}: no label {}", img.display(), label.display());
                }
            }
        }
        out.write(&format!("{split}.lst"), lines)?;
    }
    if out.written.is_empty() {
        bail!("{}: no leftImg8bit/{{train,val,test}} folders (is this a Cityscapes root?)", root.display());
    }
    Ok(out.written)
}

/// LIP: `TrainVal_images/{train,val}_images/*.jpg` with
/// `TrainVal_parsing_annotations/{train,val}_segmentations/*.png`.
pub fn lip(root: &Path, force: bool) -> anyhow::Result<Vec<Written>> {
    let mut out = Lists { root, force, written: Vec::new() };
    for split in ["train", "val"] {
        let dir = root.join("TrainVal_images").join(format!("{split}_images"));
        if !dir.is_dir() {
            continue;
        }
        let labels = root.join("TrainVal_parsing_annotations").join(format!("{split}_segmentations"));
        let mut lines = Vec::new();
        for img in sorted_dir(&dir)? {
            if img.extension().and_then(|e| e.to_str()) != Some("jpg") {
                continue;
            }
            let stem = img.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
            let label = labels.join(format!("{stem}.png"));
            if !label.is_file() {
                bail!("{}: no label {}", img.display(), label.display());
            }
            lines.push(format!("{} {}", rel(root, &img), rel(root, &label)));
        }
        out.write(&format!("{split}.lst"), lines)?;
    }
    if out.written.is_empty() {
        bail!("{}: no TrainVal_images/{{train,val}}_images folders (is this a LIP root?)", root.display());
    }
    Ok(out.written)
}

fn read_ids(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect())
}

/// SBD's `cls/<id>.mat` (`GTcls.Segmentation`, column-major uint8) → a grey PNG.
pub fn sbd_mat_to_png(mat: &Path, png: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(mat).with_context(|| format!("{}: cannot read", mat.display()))?;
    let file =
        matrw::load_matfile_from_u8(&bytes).map_err(|e| anyhow::anyhow!("{}: not a MAT file: {e:?}", mat.display()))?;
    let seg = &file["GTcls"]["Segmentation"];
    let dims = seg.dim();
    if dims.len() != 2 {
        bail!("{}: GTcls.Segmentation missing or not a 2-D array", mat.display());
    }
    let (h, w) = (dims[0], dims[1]);
    let values: Vec<u8> = match seg.to_vec::<u8>() {
        Some(v) => v,
        None => seg
            .to_vec::<f64>()
            .with_context(|| format!("{}: GTcls.Segmentation is not numeric", mat.display()))?
            .into_iter()
            .map(|v| if (0.0..=255.0).contains(&v) && v.fract() == 0.0 { Ok(v as u8) } else { Err(v) })
            .collect::<Result<_, f64>>()
            .map_err(|v| anyhow::anyhow!("{}: label value {v} is not a class id", mat.display()))?,
    };
    if values.len() != h * w {
        bail!("{}: GTcls.Segmentation has {} values for {h}×{w}", mat.display(), values.len());
    }
    let mut rows = vec![0u8; h * w];
    for x in 0..w {
        for y in 0..h {
            rows[y * w + x] = values[x * h + y];
        }
    }
    write_gray_png(png, w as u32, h as u32, &rows)
}

/// VOC 2012 (+ SBD): `VOCdevkit/VOC2012` and optionally `benchmark_RELEASE/dataset`.
/// Writes `voc_train_lst.txt`, `voc_val_lst.txt` and `sbd_train_lst.txt` (SBD train+val
/// minus the VOC val images, as the RefineNet recipe trains on), converting SBD's
/// `.mat` labels to PNG once.
pub fn voc(root: &Path, force: bool) -> anyhow::Result<Vec<Written>> {
    let voc = root.join("VOCdevkit/VOC2012");
    if !voc.is_dir() {
        bail!("{}: no VOCdevkit/VOC2012 folder", root.display());
    }
    let labels = if voc.join("SegmentationClassGray").is_dir() { "SegmentationClassGray" } else { "SegmentationClass" };
    let mut out = Lists { root, force, written: Vec::new() };
    let mut val_ids = BTreeSet::new();
    for split in ["train", "val"] {
        let ids = read_ids(&voc.join(format!("ImageSets/Segmentation/{split}.txt")))?;
        if split == "val" {
            val_ids.extend(ids.iter().cloned());
        }
        let lines = ids
            .iter()
            .map(|id| {
                let (img, lab) = (voc.join(format!("JPEGImages/{id}.jpg")), voc.join(format!("{labels}/{id}.png")));
                if !img.is_file() || !lab.is_file() {
                    bail!("VOC {split} id {id}: missing {} or {}", img.display(), lab.display());
                }
                Ok(format!("{} {}", rel(root, &img), rel(root, &lab)))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        out.write(&format!("voc_{split}_lst.txt"), lines)?;
    }
    let sbd = root.join("benchmark_RELEASE/dataset");
    if sbd.is_dir() {
        let mut ids: Vec<String> = Vec::new();
        for f in ["train.txt", "val.txt"] {
            if sbd.join(f).is_file() {
                ids.extend(read_ids(&sbd.join(f))?);
            }
        }
        ids.sort();
        ids.dedup();
        ids.retain(|id| !val_ids.contains(id));
        let png_dir = sbd.join("cls_png");
        std::fs::create_dir_all(&png_dir).with_context(|| format!("creating {}", png_dir.display()))?;
        let bar = progress(ids.len() as u64, "SBD .mat → PNG");
        let mut lines = Vec::new();
        for id in &ids {
            let (img, mat, png) = (
                sbd.join(format!("img/{id}.jpg")),
                sbd.join(format!("cls/{id}.mat")),
                png_dir.join(format!("{id}.png")),
            );
            if !png.is_file() {
                sbd_mat_to_png(&mat, &png)?;
            }
            lines.push(format!("{} {}", rel(root, &img), rel(root, &png)));
            bar.inc(1);
        }
        bar.finish_and_clear();
        out.write("sbd_train_lst.txt", lines)?;
    }
    Ok(out.written)
}

/// Images under class folders: (path relative to the split folder, class index).
pub type ClassFiles = Vec<(PathBuf, usize)>;

/// Class folders of `dir` (sorted names) and every image under them with its class index.
pub fn scan_class_folders(dir: &Path) -> anyhow::Result<(Vec<String>, ClassFiles)> {
    let classes: Vec<PathBuf> = sorted_dir(dir)?.into_iter().filter(|p| p.is_dir()).collect();
    let names: Vec<String> =
        classes.iter().map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()).collect();
    let mut files = Vec::new();
    for (i, class) in classes.iter().enumerate() {
        for f in sorted_dir(class)? {
            let ext = f.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
            if matches!(ext.as_deref(), Some("jpg" | "jpeg" | "png")) {
                files.push((f.strip_prefix(dir).unwrap_or(&f).to_path_buf(), i));
            }
        }
    }
    Ok((names, files))
}

/// ImageNet-style `train/<class>/*` and `val/<class>/*` → `train.lst`, `val.lst`
/// (`path class_index`), classes numbered by sorted `train/` folder names.
pub fn imagenet(root: &Path, force: bool) -> anyhow::Result<Vec<Written>> {
    let (classes, train) = scan_class_folders(&root.join("train"))?;
    if classes.is_empty() {
        bail!("{}: no class folders", root.join("train").display());
    }
    let mut out = Lists { root, force, written: Vec::new() };
    let line = |split: &str, p: &Path, c: usize| format!("{split}/{} {c}", p.display());
    out.write("train.lst", train.iter().map(|(p, c)| line("train", p, *c)).collect())?;
    if root.join("val").is_dir() {
        let (val_classes, val) = scan_class_folders(&root.join("val"))?;
        let mut lines = Vec::new();
        for (p, c) in &val {
            let name = &val_classes[*c];
            let idx = classes
                .iter()
                .position(|n| n == name)
                .with_context(|| format!("val class {name} is not among the train classes"))?;
            lines.push(line("val", p, idx));
        }
        out.write("val.lst", lines)?;
    }
    Ok(out.written)
}

/// `image label` lines for every image of `images` (sorted) whose `<stem>.png` is in
/// `labels`; an image without its label is an error naming both.
fn paired(root: &Path, images: &Path, labels: &Path, ext: &str, label_suffix: &str) -> anyhow::Result<Vec<String>> {
    let mut lines = Vec::new();
    for img in sorted_dir(images)? {
        if !img.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case(ext)) {
            continue;
        }
        let stem = img.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        let label = labels.join(format!("{stem}{label_suffix}.png"));
        if !label.is_file() {
            bail!("{}: no label {}", img.display(), label.display());
        }
        lines.push(format!("{} {}", rel(root, &img), rel(root, &label)));
    }
    Ok(lines)
}

/// ADE20K (`ADEChallengeData2016`): `images/{training,validation}/*.jpg` with
/// `annotations/{training,validation}/*.png` → `train.lst`, `val.lst`.
pub fn ade20k(root: &Path, force: bool) -> anyhow::Result<Vec<Written>> {
    let mut out = Lists { root, force, written: Vec::new() };
    for (split, name) in [("training", "train.lst"), ("validation", "val.lst")] {
        let images = root.join("images").join(split);
        if images.is_dir() {
            out.write(name, paired(root, &images, &root.join("annotations").join(split), "jpg", "")?)?;
        }
    }
    if out.written.is_empty() {
        bail!("{}: no images/{{training,validation}} folders (is this ADEChallengeData2016?)", root.display());
    }
    Ok(out.written)
}

/// PASCAL-Context (the `VOC2010` folder, or one holding `VOCdevkit/VOC2010`):
/// `JPEGImages/<id>.jpg` with `SegmentationClassContext/<id>.png` for the ids of
/// `ImageSets/SegmentationContext/{train,val}.txt`, as the usual conversion of the Detail
/// annotations writes them → `train.lst`, `val.lst` in the root.
pub fn pascal_context(root: &Path, force: bool) -> anyhow::Result<Vec<Written>> {
    let voc = if root.join("JPEGImages").is_dir() { root.to_path_buf() } else { root.join("VOCdevkit/VOC2010") };
    let sets = voc.join("ImageSets/SegmentationContext");
    if !sets.is_dir() {
        bail!(
            "{}: no ImageSets/SegmentationContext (convert the Detail annotations first: docs/your-data.md)",
            voc.display()
        );
    }
    let mut out = Lists { root, force, written: Vec::new() };
    for split in ["train", "val"] {
        let ids = read_ids(&sets.join(format!("{split}.txt")))?;
        let lines = ids
            .iter()
            .map(|id| {
                let img = voc.join(format!("JPEGImages/{id}.jpg"));
                let lab = voc.join(format!("SegmentationClassContext/{id}.png"));
                if !img.is_file() || !lab.is_file() {
                    bail!("PASCAL-Context {split} id {id}: missing {} or {}", img.display(), lab.display());
                }
                Ok(format!("{} {}", rel(root, &img), rel(root, &lab)))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        out.write(&format!("{split}.lst"), lines)?;
    }
    Ok(out.written)
}

/// COCO-Stuff-164k: `images/{train2017,val2017}/*.jpg` with the raw
/// `stuffthingmaps_trainval2017/{train2017,val2017}/*.png` → `train.lst`, `val.lst`.
pub fn cocostuff(root: &Path, force: bool) -> anyhow::Result<Vec<Written>> {
    let mut out = Lists { root, force, written: Vec::new() };
    for (split, name) in [("train2017", "train.lst"), ("val2017", "val.lst")] {
        let images = root.join("images").join(split);
        if images.is_dir() {
            let labels = root.join("stuffthingmaps_trainval2017").join(split);
            out.write(name, paired(root, &images, &labels, "jpg", "")?)?;
        }
    }
    if out.written.is_empty() {
        bail!("{}: no images/{{train2017,val2017}} folders (is this a COCO-Stuff-164k root?)", root.display());
    }
    Ok(out.written)
}
