//! List makers for the datasets' standard layouts, SBD's `.mat` → PNG conversion,
//! and `--check`: open every pair, verify sizes and label values, report statistics.
use super::decode::{read_label, read_rgb, write_gray_png};
use super::kind::DatasetKind;
use super::labels::{class_names, LabelMap, IGNORE};
use super::lists::{read_list, write_list, Columns, ListEntry};
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

fn write(root: &Path, name: &str, lines: Vec<String>, out: &mut Vec<Written>) -> anyhow::Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let path = root.join(name);
    write_list(&path, &lines).with_context(|| format!("writing {}", path.display()))?;
    out.push(Written { path, entries: lines.len() });
    Ok(())
}

/// Cityscapes: `leftImg8bit/<split>/<city>/*_leftImg8bit.png` with
/// `gtFine/<split>/<city>/*_gtFine_labelIds.png` → `train.lst`, `val.lst` (`test.lst`: images only).
pub fn cityscapes(root: &Path) -> anyhow::Result<Vec<Written>> {
    let mut out = Vec::new();
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
        write(root, &format!("{split}.lst"), lines, &mut out)?;
    }
    if out.is_empty() {
        bail!("{}: no leftImg8bit/{{train,val,test}} folders (is this a Cityscapes root?)", root.display());
    }
    Ok(out)
}

/// LIP: `TrainVal_images/{train,val}_images/*.jpg` with
/// `TrainVal_parsing_annotations/{train,val}_segmentations/*.png`.
pub fn lip(root: &Path) -> anyhow::Result<Vec<Written>> {
    let mut out = Vec::new();
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
        write(root, &format!("{split}.lst"), lines, &mut out)?;
    }
    if out.is_empty() {
        bail!("{}: no TrainVal_images/{{train,val}}_images folders (is this a LIP root?)", root.display());
    }
    Ok(out)
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
pub fn voc(root: &Path) -> anyhow::Result<Vec<Written>> {
    let voc = root.join("VOCdevkit/VOC2012");
    if !voc.is_dir() {
        bail!("{}: no VOCdevkit/VOC2012 folder", root.display());
    }
    let labels = if voc.join("SegmentationClassGray").is_dir() { "SegmentationClassGray" } else { "SegmentationClass" };
    let mut out = Vec::new();
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
        write(root, &format!("voc_{split}_lst.txt"), lines, &mut out)?;
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
        write(root, "sbd_train_lst.txt", lines, &mut out)?;
    }
    Ok(out)
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
pub fn imagenet(root: &Path) -> anyhow::Result<Vec<Written>> {
    let (classes, train) = scan_class_folders(&root.join("train"))?;
    if classes.is_empty() {
        bail!("{}: no class folders", root.join("train").display());
    }
    let mut out = Vec::new();
    let line = |split: &str, p: &Path, c: usize| format!("{split}/{} {c}", p.display());
    write(root, "train.lst", train.iter().map(|(p, c)| line("train", p, *c)).collect(), &mut out)?;
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
        write(root, "val.lst", lines, &mut out)?;
    }
    Ok(out)
}

/// What `--check` found in one list.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    pub list: PathBuf,
    pub entries: usize,
    /// Pixels per train id (segmentation) or images per class (classification).
    pub counts: Vec<u64>,
    pub ignored: u64,
}

impl CheckReport {
    pub fn render(&self, kind: DatasetKind) -> String {
        let total: u64 = self.counts.iter().sum::<u64>() + self.ignored;
        let mut s = format!("{}: {} entries\n", self.list.display(), self.entries);
        if kind == DatasetKind::Imagenet {
            let used = self.counts.iter().filter(|&&c| c > 0).count();
            s += &format!("  {used} classes with images\n");
            return s;
        }
        let names = class_names(kind);
        for (i, c) in self.counts.iter().enumerate() {
            s += &format!("  {:>2} {:<15} {:>6.2}%\n", i, names[i], 100.0 * *c as f64 / total.max(1) as f64);
        }
        s += &format!("     {:<15} {:>6.2}%\n", "ignore (255)", 100.0 * self.ignored as f64 / total.max(1) as f64);
        s
    }
}

/// Open every pair of `list` (on `threads` threads): image and label decode, sizes
/// agree, label values are valid. The first problem is returned as an error.
pub fn check(kind: DatasetKind, root: &Path, list: &Path, threads: usize) -> anyhow::Result<CheckReport> {
    let list_path = if list.is_absolute() { list.to_path_buf() } else { root.join(list) };
    let entries = read_list(&list_path, Columns::Pair)?;
    let map = LabelMap::for_dataset(kind);
    let n_counts = if kind == DatasetKind::Imagenet { 1000 } else { map.num_classes };
    let ctx = EntryCheck { kind, root, list_path: &list_path, map: &map };
    let bar = progress(entries.len() as u64, "checking");
    let chunk = entries.len().div_ceil(threads.max(1));
    let results: Vec<anyhow::Result<Tally>> = std::thread::scope(|s| {
        let handles: Vec<_> = entries
            .chunks(chunk.max(1))
            .map(|part| {
                let (ctx, bar) = (&ctx, &bar);
                s.spawn(move || -> anyhow::Result<Tally> {
                    let mut tally = Tally { counts: vec![0u64; n_counts], ignored: 0 };
                    for e in part {
                        ctx.entry(e, &mut tally)?;
                        bar.inc(1);
                    }
                    Ok(tally)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a check thread panicked"))))
            .collect()
    });
    bar.finish_and_clear();
    let mut report = CheckReport { list: list_path, entries: entries.len(), counts: vec![0; n_counts], ignored: 0 };
    for r in results {
        let Tally { counts, ignored } = r?;
        report.counts.iter_mut().zip(counts).for_each(|(a, b)| *a += b);
        report.ignored += ignored;
    }
    Ok(report)
}

/// One thread's running totals: pixels per train id (or images per class) and ignored pixels.
struct Tally {
    counts: Vec<u64>,
    ignored: u64,
}

/// What checking one list entry needs, shared by all threads.
struct EntryCheck<'a> {
    kind: DatasetKind,
    root: &'a Path,
    /// The list file, named with the line number in every error.
    list_path: &'a Path,
    map: &'a LabelMap,
}

impl EntryCheck<'_> {
    /// Check one list line: the image decodes, and its class index is in range
    /// (classification) or its label decodes, matches the image size and holds
    /// only valid values (segmentation). Adds what it found to `tally`.
    fn entry(&self, e: &ListEntry, tally: &mut Tally) -> anyhow::Result<()> {
        let at = format!("{}:{}", self.list_path.display(), e.line);
        let img_path = self.root.join(&e.image);
        let img = read_rgb(&img_path).with_context(|| at.clone())?;
        let target = e.target.as_deref().unwrap_or_default();
        if self.kind == DatasetKind::Imagenet {
            let c: usize = target.parse().map_err(|_| anyhow::anyhow!("{at}: class {target:?} is not an index"))?;
            *tally.counts.get_mut(c).with_context(|| format!("{at}: class {c} out of range"))? += 1;
            return Ok(());
        }
        let label_path = self.root.join(target);
        let lab = read_label(&label_path).with_context(|| at.clone())?;
        if (img.width(), img.height()) != (lab.width, lab.height) {
            bail!(
                "{at}: image {} is {}×{} but label {} is {}×{}",
                img_path.display(),
                img.width(),
                img.height(),
                label_path.display(),
                lab.width,
                lab.height
            );
        }
        let mut data = lab.data;
        self.map
            .apply(&mut data)
            .map_err(|v| anyhow::anyhow!("{at}: label {} has invalid value {v}", label_path.display()))?;
        for v in data {
            if v == IGNORE {
                tally.ignored += 1;
            } else {
                tally.counts[v as usize] += 1;
            }
        }
        Ok(())
    }
}
