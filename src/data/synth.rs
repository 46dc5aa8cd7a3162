//! Synthetic datasets in the real layouts, so every command runs without downloads:
//! Cityscapes (procedural street scenes, `synth_scene.rs`), LIP, VOC 2012 + SBD and
//! ImageNet-style folders (ADE20K, PASCAL-Context, COCO-Stuff and custom layouts are
//! `synth_sets.rs`). Deterministic per seed; the lists are rewritten with the data.
use super::decode::{write_gray_png, write_rgb_png};
use super::make_lists::{self, Written};
use super::rng::derive;
pub use super::synth_scene::cityscapes_scene;
use super::synth_scene::Canvas;
use anyhow::Context;
use image::RgbImage;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::Path;

const TRAIN_CITIES: [&str; 4] = ["aachen", "bochum", "bremen", "cologne"];
const VAL_CITIES: [&str; 2] = ["frankfurt", "lindau"];

/// Write `train`+`val` scenes in the Cityscapes layout and the lists; returns the lists.
pub fn cityscapes(
    out: &Path,
    train: usize,
    val: usize,
    w: usize,
    h: usize,
    seed: u64,
    threads: usize,
) -> anyhow::Result<Vec<Written>> {
    let jobs: Vec<(&str, &str, usize)> = (0..train)
        .map(|i| ("train", TRAIN_CITIES[i % TRAIN_CITIES.len()], i))
        .chain((0..val).map(|i| ("val", VAL_CITIES[i % VAL_CITIES.len()], train + i)))
        .collect();
    let bar = crate::progress::progress(jobs.len() as u64, "synth cityscapes");
    let chunk = jobs.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|s| -> anyhow::Result<()> {
        let handles: Vec<_> = jobs
            .chunks(chunk)
            .map(|part| {
                let bar = &bar;
                s.spawn(move || -> anyhow::Result<()> {
                    for &(split, city, i) in part {
                        let (img, label) = cityscapes_scene(w, h, derive(&[seed, i as u64]));
                        let stem = format!("{city}_{:06}_{:06}", i, 19);
                        let img_path = out.join(format!("leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png"));
                        let lab_path = out.join(format!("gtFine/{split}/{city}/{stem}_gtFine_labelIds.png"));
                        write_rgb_png(&img_path, &img)?;
                        write_gray_png(&lab_path, w as u32, h as u32, &label)?;
                        bar.inc(1);
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| anyhow::anyhow!("a generator thread panicked"))??;
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    make_lists::cityscapes(out, true)
}

/// Random blobs of `classes` labels: a small fixture image and its label map.
pub(super) fn blobs(w: usize, h: usize, classes: u8, rng: &mut StdRng) -> (RgbImage, Vec<u8>) {
    let mut c = Canvas::new(w, h);
    for _ in 0..6 {
        let class = rng.gen_range(0..classes);
        let (cx, cy) = (rng.gen_range(0.0..w as f32), rng.gen_range(0.0..h as f32));
        let (rx, ry) = (rng.gen_range(2.0..w as f32 / 2.0), rng.gen_range(2.0..h as f32 / 2.0));
        let col = [class as f32 * 12.0, 255.0 - class as f32 * 12.0, 128.0];
        c.ellipse(cx, cy, rx, ry, class, move |_, _| col);
    }
    let img = RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let p = c.rgb[y as usize * w + x as usize];
        image::Rgb(std::array::from_fn(|k| p[k] as u8))
    });
    (img, c.label)
}

pub(super) fn write_jpeg(path: &Path, img: &RgbImage) -> anyhow::Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    img.save_with_format(path, image::ImageFormat::Jpeg).with_context(|| format!("writing {}", path.display()))
}

/// LIP layout with `n` train and `n` val images of 20-class blobs.
pub fn lip(out: &Path, n: usize, w: usize, h: usize, seed: u64) -> anyhow::Result<Vec<Written>> {
    let mut rng = StdRng::seed_from_u64(seed);
    for split in ["train", "val"] {
        for i in 0..n {
            let (img, label) = blobs(w, h, 20, &mut rng);
            write_jpeg(&out.join(format!("TrainVal_images/{split}_images/{i:05}_{split}.jpg")), &img)?;
            let lab = out.join(format!("TrainVal_parsing_annotations/{split}_segmentations/{i:05}_{split}.png"));
            write_gray_png(&lab, w as u32, h as u32, &label)?;
        }
    }
    make_lists::lip(out, true)
}

/// A palette PNG (VOC `SegmentationClass`): indices are class ids.
pub fn write_palette_png(path: &Path, w: u32, h: u32, indices: &[u8]) -> anyhow::Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w, h);
    enc.set_color(png::ColorType::Indexed);
    enc.set_depth(png::BitDepth::Eight);
    let palette: Vec<u8> = (0..=255u8).flat_map(super::labels::voc_color).collect();
    enc.set_palette(palette);
    let mut writer = enc.write_header()?;
    writer.write_image_data(indices)?;
    Ok(())
}

/// VOC 2012 layout (`n` train, `n` val) plus an SBD tree of `.mat` labels whose
/// ids overlap VOC val, to exercise the exclusion rule.
pub fn voc(out: &Path, n: usize, w: usize, h: usize, seed: u64) -> anyhow::Result<Vec<Written>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let voc = out.join("VOCdevkit/VOC2012");
    let mut ids = std::collections::BTreeMap::new();
    for split in ["train", "val"] {
        let mut list = Vec::new();
        for i in 0..n {
            let id = format!("2007_{:06}", if split == "train" { i } else { 1000 + i });
            let (img, mut label) = blobs(w, h, 21, &mut rng);
            label[0] = 255; // a border pixel, as VOC marks object boundaries
            write_jpeg(&voc.join(format!("JPEGImages/{id}.jpg")), &img)?;
            write_palette_png(&voc.join(format!("SegmentationClass/{id}.png")), w as u32, h as u32, &label)?;
            list.push(id);
        }
        let dir = voc.join("ImageSets/Segmentation");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("{split}.txt")), list.join("\n") + "\n")?;
        ids.insert(split, list);
    }
    // SBD: its own images plus the first VOC val id (which must be excluded).
    let sbd = out.join("benchmark_RELEASE/dataset");
    let mut sbd_ids: Vec<String> = (0..n).map(|i| format!("2008_{i:06}")).collect();
    sbd_ids.push(ids["val"][0].clone());
    for id in &sbd_ids {
        let (img, label) = blobs(w, h, 21, &mut rng);
        write_jpeg(&sbd.join(format!("img/{id}.jpg")), &img)?;
        write_sbd_mat(&sbd.join(format!("cls/{id}.mat")), w, h, &label)?;
    }
    std::fs::write(sbd.join("train.txt"), sbd_ids.join("\n") + "\n")?;
    make_lists::voc(out, true)
}

/// An SBD-style `.mat`: struct `GTcls` with a column-major `Segmentation` matrix.
pub fn write_sbd_mat(path: &Path, w: usize, h: usize, label: &[u8]) -> anyhow::Result<()> {
    use matrw::{matfile, matvar, save_matfile_v7};
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    // MATLAB stores matrices column-major.
    let col_major: Vec<u8> = (0..w).flat_map(|x| (0..h).map(move |y| label[y * w + x])).collect();
    let seg = matrw::NumericArray::new(vec![h, w], matrw::MatlabType::from(col_major), None)
        .map_err(|e| anyhow::anyhow!("building the MAT array: {e:?}"))?;
    let seg = matrw::MatVariable::NumericArray(seg);
    let mat = matfile!(GTcls: matvar!({ Segmentation: seg, CategoriesPresent: 1.0 }));
    save_matfile_v7(&path.display().to_string(), mat, true)
        .map_err(|e| anyhow::anyhow!("writing {}: {e:?}", path.display()))
}

/// ImageNet-style class folders: `classes` × `per_class` images in train/ and val/.
pub fn imagenet(out: &Path, classes: usize, per_class: usize, size: u32, seed: u64) -> anyhow::Result<Vec<Written>> {
    let mut rng = StdRng::seed_from_u64(seed);
    for split in ["train", "val"] {
        for c in 0..classes {
            for i in 0..per_class {
                let tint: [u8; 3] = [(c * 60 % 256) as u8, (c * 110 % 256) as u8, rng.gen()];
                let img = RgbImage::from_fn(size + (i as u32 % 3) * 8, size, |x, y| {
                    image::Rgb(std::array::from_fn(|k| tint[k].wrapping_add(((x ^ y) % 16) as u8)))
                });
                write_jpeg(&out.join(format!("{split}/n{c:08}/img_{i:03}.jpg")), &img)?;
            }
        }
    }
    make_lists::imagenet(out, true)
}
