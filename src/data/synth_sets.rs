//! Small synthetic sets in the layouts of ADE20K, PASCAL-Context and COCO-Stuff-164k, and
//! in the custom layout (`images/` and `masks/`, nested folders, PNG/JPEG/BMP images,
//! index or RGB masks), so the guides and tests run anywhere. Random blobs of classes, as
//! the small LIP and VOC fixtures of `synth.rs`; deterministic per seed.
use super::custom;
use super::decode::{write_gray_png, write_rgb_png};
use super::make_lists::{self, Written};
use super::synth::{blobs, write_jpeg};
use super::tables::coco_stuff::COCO_STUFF_RAW_IDS;
use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::Path;

/// The classes of `synth custom` (and of configs/custom_example.toml), with their colours.
pub const CUSTOM_CLASSES: [(&str, [u8; 3]); 5] = [
    ("background", [0, 0, 0]),
    ("sky", [70, 130, 180]),
    ("road", [128, 64, 128]),
    ("car", [0, 0, 142]),
    ("person", [220, 20, 60]),
];

/// How `synth custom` writes masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SynthMasks {
    Index,
    Rgb,
}

fn save(path: &Path, img: &image::RgbImage, format: image::ImageFormat) -> anyhow::Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    img.save_with_format(path, format).with_context(|| format!("writing {}", path.display()))
}

/// `n` pairs in the custom layout: images in `images/park/` and `images/street/night/`,
/// as PNG, JPEG and BMP in turn; masks mirrored under `masks/`; then `train.lst` and
/// `val.lst` (a fifth of the pairs to val).
pub fn custom(out: &Path, n: usize, w: usize, h: usize, masks: SynthMasks, seed: u64) -> anyhow::Result<Vec<Written>> {
    let mut rng = StdRng::seed_from_u64(seed);
    for i in 0..n {
        let (img, label) = blobs(w, h, CUSTOM_CLASSES.len() as u8, &mut rng);
        let folder = if i % 2 == 0 { "park" } else { "street/night" };
        let (ext, format) =
            [("png", image::ImageFormat::Png), ("jpg", image::ImageFormat::Jpeg), ("bmp", image::ImageFormat::Bmp)]
                [i % 3];
        save(&out.join(format!("images/{folder}/img_{i:04}.{ext}")), &img, format)?;
        let mask = out.join(format!("masks/{folder}/img_{i:04}.png"));
        match masks {
            SynthMasks::Index => write_gray_png(&mask, w as u32, h as u32, &label)?,
            SynthMasks::Rgb => {
                let rgb = image::RgbImage::from_fn(w as u32, h as u32, |x, y| {
                    image::Rgb(CUSTOM_CLASSES[label[y as usize * w + x as usize] as usize].1)
                });
                write_rgb_png(&mask, &rgb)?
            }
        }
    }
    let (written, _) = custom::make_lists(out, Path::new("images"), Path::new("masks"), 0.2, seed, true)?;
    Ok(written)
}

/// ADE20K's `ADEChallengeData2016` layout: `n` training and `n` validation images with
/// annotations holding 0 (other, ignored) to 150.
pub fn ade20k(out: &Path, n: usize, w: usize, h: usize, seed: u64) -> anyhow::Result<Vec<Written>> {
    let mut rng = StdRng::seed_from_u64(seed);
    for (split, tag) in [("training", "train"), ("validation", "val")] {
        for i in 1..=n {
            let (img, label) = blobs(w, h, 151, &mut rng);
            let stem = format!("ADE_{tag}_{i:08}");
            write_jpeg(&out.join(format!("images/{split}/{stem}.jpg")), &img)?;
            write_gray_png(&out.join(format!("annotations/{split}/{stem}.png")), w as u32, h as u32, &label)?;
        }
    }
    make_lists::ade20k(out, true)
}

/// PASCAL-Context as the usual conversion leaves it: `VOCdevkit/VOC2010/` with
/// `JPEGImages/`, `SegmentationClassContext/` (0 background, 1–59 the classes) and
/// `ImageSets/SegmentationContext/{train,val}.txt`.
pub fn pascal_context(out: &Path, n: usize, w: usize, h: usize, seed: u64) -> anyhow::Result<Vec<Written>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let voc = out.join("VOCdevkit/VOC2010");
    for split in ["train", "val"] {
        let mut ids = Vec::new();
        for i in 0..n {
            let id = format!("2008_{:06}", if split == "train" { i } else { 1000 + i });
            let (img, label) = blobs(w, h, 60, &mut rng);
            write_jpeg(&voc.join(format!("JPEGImages/{id}.jpg")), &img)?;
            write_gray_png(&voc.join(format!("SegmentationClassContext/{id}.png")), w as u32, h as u32, &label)?;
            ids.push(id);
        }
        let sets = voc.join("ImageSets/SegmentationContext");
        std::fs::create_dir_all(&sets).with_context(|| format!("creating {}", sets.display()))?;
        std::fs::write(sets.join(format!("{split}.txt")), ids.join("\n") + "\n")?;
    }
    make_lists::pascal_context(out, true)
}

/// COCO-Stuff-164k: `images/{train2017,val2017}/` with raw `stuffthingmaps_trainval2017`
/// PNGs: the 171 classes' raw ids, a region of an id unused in COCO 2017 and unlabelled
/// (255) pixels, as the real maps hold them.
pub fn cocostuff(out: &Path, n: usize, w: usize, h: usize, seed: u64) -> anyhow::Result<Vec<Written>> {
    let mut rng = StdRng::seed_from_u64(seed);
    for split in ["train2017", "val2017"] {
        for i in 0..n {
            let (img, label) = blobs(w, h, 171, &mut rng);
            let mut raw: Vec<u8> = label.iter().map(|&t| COCO_STUFF_RAW_IDS[t as usize]).collect();
            let band = rng.gen_range(0..h.max(1));
            raw[band * w..(band + 1) * w].fill(11);
            raw[..w].fill(255);
            let stem = format!("{:012}", if split == "train2017" { i + 9 } else { 139 + i });
            write_jpeg(&out.join(format!("images/{split}/{stem}.jpg")), &img)?;
            let mask = out.join(format!("stuffthingmaps_trainval2017/{split}/{stem}.png"));
            write_gray_png(&mask, w as u32, h as u32, &raw)?;
        }
    }
    make_lists::cocostuff(out, true)
}
