//! Decoding images and label maps, with errors that name the file.
use anyhow::{bail, Context};
use image::RgbImage;
use std::io::Read;
use std::path::Path;

/// Image file extensions the readers take (lower case).
pub const IMAGE_EXTENSIONS: [&str; 6] = ["png", "jpg", "jpeg", "bmp", "tif", "tiff"];

/// Whether `path` has one of [`IMAGE_EXTENSIONS`].
pub fn is_image_path(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Decode a PNG, JPEG, BMP or TIFF to RGB. A JPEG must end with its end-of-image marker,
/// so a truncated file is an error rather than a half-grey picture.
pub fn read_rgb(path: &Path) -> anyhow::Result<RgbImage> {
    let bytes = read_bytes(path)?;
    let format = image::guess_format(&bytes)
        .ok()
        .filter(|f| {
            matches!(
                f,
                image::ImageFormat::Png | image::ImageFormat::Jpeg | image::ImageFormat::Bmp | image::ImageFormat::Tiff
            )
        })
        .with_context(|| format!("{}: not a PNG, JPEG, BMP or TIFF image", path.display()))?;
    if format == image::ImageFormat::Jpeg && !bytes.ends_with(&[0xFF, 0xD9]) {
        bail!("{}: truncated JPEG (no end-of-image marker)", path.display());
    }
    let img = image::load_from_memory_with_format(&bytes, format)
        .with_context(|| format!("{}: corrupt or truncated image", path.display()))?;
    Ok(img.into_rgb8())
}

pub fn read_bytes(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut f = std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(bytes)
}

/// A label map: raw 8-bit values of a grey or palette PNG (palette indices are the
/// class ids, as in VOC's SegmentationClass), row-major, with its size.
pub struct LabelMapImage {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

pub fn read_label(path: &Path) -> anyhow::Result<LabelMapImage> {
    let bytes = read_bytes(path)?;
    let corrupt = || format!("{}: corrupt or truncated label PNG", path.display());
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    // Keep palette indices as they are (no expansion to RGB).
    decoder.set_transformations(png::Transformations::IDENTITY);
    let mut reader = decoder.read_info().with_context(corrupt)?;
    let size = reader.output_buffer_size().with_context(corrupt)?;
    let mut buf = vec![0; size];
    let info = reader.next_frame(&mut buf).with_context(corrupt)?;
    buf.truncate(info.buffer_size());
    use png::{BitDepth, ColorType};
    match (info.color_type, info.bit_depth) {
        (ColorType::Grayscale | ColorType::Indexed, BitDepth::Eight) => {}
        (c, d) => bail!("{}: a label must be an 8-bit grey or palette PNG, found {c:?} {d:?}", path.display()),
    }
    if info.line_size != info.width as usize {
        bail!("{}: unexpected row padding in label PNG", path.display());
    }
    Ok(LabelMapImage { width: info.width, height: info.height, data: buf })
}

/// A mask PNG's pixels as stored: 8-bit values (grey, or palette indices with the
/// palette's colours), or RGB colours (an RGBA mask's alpha is dropped).
pub enum MaskPixels {
    Values { image: LabelMapImage, palette: Option<Vec<[u8; 3]>> },
    Colors { width: u32, height: u32, rgb: Vec<u8> },
}

/// Read a mask PNG without converting it; other formats (a JPEG's lossy colours are no
/// classes) and bit depths other than 8 are errors naming the file.
pub fn read_mask_png(path: &Path) -> anyhow::Result<MaskPixels> {
    let bytes = read_bytes(path)?;
    if !bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        let what = image::guess_format(&bytes).map_or("not an image".to_string(), |f| format!("a {f:?} file"));
        bail!("{}: a mask must be a PNG ({what}; lossy formats change class values)", path.display());
    }
    let corrupt = || format!("{}: corrupt or truncated mask PNG", path.display());
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::IDENTITY);
    let mut reader = decoder.read_info().with_context(corrupt)?;
    let palette: Option<Vec<[u8; 3]>> =
        reader.info().palette.as_ref().map(|p| p.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect());
    let size = reader.output_buffer_size().with_context(corrupt)?;
    let mut buf = vec![0; size];
    let info = reader.next_frame(&mut buf).with_context(corrupt)?;
    buf.truncate(info.buffer_size());
    use png::{BitDepth, ColorType};
    let (width, height) = (info.width, info.height);
    match (info.color_type, info.bit_depth) {
        (ColorType::Grayscale | ColorType::Indexed, BitDepth::Eight) if info.line_size == width as usize => {
            let palette = if info.color_type == ColorType::Indexed { palette } else { None };
            Ok(MaskPixels::Values { image: LabelMapImage { width, height, data: buf }, palette })
        }
        (ColorType::Rgb, BitDepth::Eight) => Ok(MaskPixels::Colors { width, height, rgb: buf }),
        (ColorType::Rgba, BitDepth::Eight) => {
            let rgb = buf.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect();
            Ok(MaskPixels::Colors { width, height, rgb })
        }
        (c, d) => bail!("{}: a mask must be an 8-bit grey, palette or RGB PNG, found {c:?} {d:?}", path.display()),
    }
}

/// Write an 8-bit grey PNG (label ids, train ids).
pub fn write_gray_png(path: &Path, width: u32, height: u32, data: &[u8]) -> anyhow::Result<()> {
    let img = image::GrayImage::from_raw(width, height, data.to_vec()).context("label buffer size")?;
    save_png(&image::DynamicImage::ImageLuma8(img), path)
}

/// Write an RGB PNG with fast compression.
pub fn write_rgb_png(path: &Path, img: &RgbImage) -> anyhow::Result<()> {
    save_png(&image::DynamicImage::ImageRgb8(img.clone()), path)
}

fn save_png(img: &image::DynamicImage, path: &Path) -> anyhow::Result<()> {
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let enc = PngEncoder::new_with_quality(std::io::BufWriter::new(file), CompressionType::Fast, FilterType::Adaptive);
    img.write_with_encoder(enc).with_context(|| format!("writing {}", path.display()))
}
