//! Prediction images: the classes' colours, Cityscapes label ids, overlays.
use crate::data::classes::ClassSet;
use crate::data::labels::cityscapes_train_to_label_id;
use image::RgbImage;

/// Train ids → the classes' colours (ignored pixels black).
pub fn colorize(classes: &ClassSet, ids: &[u8], w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| image::Rgb(classes.color(ids[(y * w + x) as usize])))
}

/// Train ids → Cityscapes label ids, as the benchmark server takes them.
pub fn to_label_ids(ids: &[u8]) -> Vec<u8> {
    ids.iter().map(|&t| cityscapes_train_to_label_id(t)).collect()
}

/// The colourised prediction blended over the image (`alpha` of the colours).
pub fn overlay(img: &RgbImage, color: &RgbImage, alpha: f32) -> RgbImage {
    RgbImage::from_fn(img.width(), img.height(), |x, y| {
        let (a, b) = (img.get_pixel(x, y).0, color.get_pixel(x, y).0);
        image::Rgb(std::array::from_fn(|c| (a[c] as f32 * (1.0 - alpha) + b[c] as f32 * alpha).round() as u8))
    })
}

/// Image | ground truth | prediction side by side, titled, with a legend of the classes
/// present in either (the `segzoo infer --format compare` PNGs and TensorBoard previews).
pub struct Comparison<'a> {
    pub image: &'a RgbImage,
    /// Train ids (255: ignored, drawn black); without it, image | prediction.
    pub truth: Option<&'a [u8]>,
    pub pred: &'a [u8],
}

const TITLE_H: u32 = 20;
const GAP: u32 = 4;
const LEGEND_ROW_H: u32 = 20;

impl Comparison<'_> {
    /// The panels, with the label maps blended over the image at `alpha` (1: colours only).
    pub fn render(&self, classes: &ClassSet, alpha: f32) -> anyhow::Result<RgbImage> {
        use plotters::prelude::*;
        crate::fonts::register()?;
        let (w, h) = (self.image.width(), self.image.height());
        let colored = |ids: &[u8]| {
            let c = RgbImage::from_fn(w, h, |x, y| image::Rgb(classes.color(ids[(y * w + x) as usize])));
            if alpha >= 1.0 {
                c
            } else {
                overlay(self.image, &c, alpha)
            }
        };
        let mut panels: Vec<(&str, RgbImage)> = vec![("image", self.image.clone())];
        if let Some(t) = self.truth {
            panels.push(("ground truth", colored(t)));
        }
        panels.push(("prediction", colored(self.pred)));
        // Classes present, in train-id order.
        let mut present = [false; 256];
        for &id in self.truth.unwrap_or(&[]).iter().chain(self.pred) {
            present[id as usize] = true;
        }
        let legend: Vec<(u8, String)> =
            (0..255u8).filter(|&i| present[i as usize]).map(|i| (i, classes.name(i as usize))).collect();
        let total_w = panels.len() as u32 * w + (panels.len() as u32 - 1) * GAP;
        // Legend entries: swatch, name, spacing; about 7 px per character at 13 px.
        let entry_w = |name: &str| 18 + 7 * name.chars().count() as u32 + 14;
        let mut rows = 1u32;
        let mut x = 0;
        for (_, name) in &legend {
            if x > 0 && x + entry_w(name) > total_w {
                rows += 1;
                x = 0;
            }
            x += entry_w(name);
        }
        let total_h = TITLE_H + h + GAP + rows * LEGEND_ROW_H + GAP;
        let mut buf = vec![255u8; (total_w * total_h * 3) as usize];
        for (i, (_, panel)) in panels.iter().enumerate() {
            let x0 = i as u32 * (w + GAP);
            for (x, y, p) in panel.enumerate_pixels() {
                let at = (((TITLE_H + y) * total_w + x0 + x) * 3) as usize;
                buf[at..at + 3].copy_from_slice(&p.0);
            }
        }
        {
            let root = BitMapBackend::with_buffer(&mut buf, (total_w, total_h)).into_drawing_area();
            let font = ("sans-serif", 14).into_font().color(&BLACK);
            let small = ("sans-serif", 13).into_font().color(&BLACK);
            let fail = |e: DrawingAreaErrorKind<_>| anyhow::anyhow!("drawing the comparison: {e:?}");
            for (i, (title, _)) in panels.iter().enumerate() {
                root.draw_text(title, &font, ((i as u32 * (w + GAP)) as i32 + 4, 3)).map_err(fail)?;
            }
            let (mut x, mut y) = (0u32, TITLE_H + h + GAP);
            for (id, name) in &legend {
                if x > 0 && x + entry_w(name) > total_w {
                    (x, y) = (0, y + LEGEND_ROW_H);
                }
                let c = classes.color(*id);
                let swatch = [(x as i32 + 2, y as i32 + 3), (x as i32 + 15, y as i32 + 16)];
                root.draw(&Rectangle::new(swatch, RGBColor(c[0], c[1], c[2]).filled())).map_err(fail)?;
                root.draw(&Rectangle::new(swatch, BLACK.stroke_width(1))).map_err(fail)?;
                root.draw_text(name, &small, (x as i32 + 19, y as i32 + 3)).map_err(fail)?;
                x += entry_w(name);
            }
            root.present().map_err(fail)?;
        }
        RgbImage::from_raw(total_w, total_h, buf).ok_or_else(|| anyhow::anyhow!("comparison buffer size"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparison_puts_panels_side_by_side_with_a_legend_row() {
        let img = RgbImage::from_pixel(40, 30, image::Rgb([10, 20, 30]));
        let truth = vec![0u8; 40 * 30];
        let mut pred = vec![0u8; 40 * 30];
        pred[..600].fill(10);
        let classes = ClassSet::builtin(crate::data::kind::DatasetKind::Cityscapes).unwrap();
        let c = Comparison { image: &img, truth: Some(&truth), pred: &pred };
        let out = c.render(&classes, 1.0).unwrap();
        assert_eq!(out.width(), 3 * 40 + 2 * GAP);
        assert_eq!(out.height(), TITLE_H + 30 + GAP + LEGEND_ROW_H + GAP);
        // Image panel, then truth (road), then prediction (sky rows on top, road below).
        assert_eq!(out.get_pixel(5, TITLE_H + 5).0, [10, 20, 30]);
        assert_eq!(out.get_pixel(44 + 5, TITLE_H + 5).0, classes.color(0));
        assert_eq!(out.get_pixel(88 + 5, TITLE_H + 5).0, classes.color(10));
        assert_eq!(out.get_pixel(88 + 5, TITLE_H + 25).0, classes.color(0));
        // Without a label: two panels.
        let c = Comparison { image: &img, truth: None, pred: &pred };
        assert_eq!(c.render(&classes, 0.5).unwrap().width(), 2 * 40 + GAP);
    }
}
