//! The procedural street scene behind `segzoo synth cityscapes`: road, sidewalk,
//! buildings, sky, vegetation, cars, people, poles, signs, … painted layer by layer and
//! labelled with real Cityscapes label ids. Colours overlap between classes and carry
//! texture, lighting and noise, so colour alone does not solve them. Deterministic per seed.
use super::rng::derive;
use image::RgbImage;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Cityscapes label ids used by the generator.
mod id {
    pub const EGO: u8 = 1;
    pub const ROAD: u8 = 7;
    pub const SIDEWALK: u8 = 8;
    pub const BUILDING: u8 = 11;
    pub const WALL: u8 = 12;
    pub const FENCE: u8 = 13;
    pub const POLE: u8 = 17;
    pub const LIGHT: u8 = 19;
    pub const SIGN: u8 = 20;
    pub const VEGETATION: u8 = 21;
    pub const TERRAIN: u8 = 22;
    pub const SKY: u8 = 23;
    pub const PERSON: u8 = 24;
    pub const RIDER: u8 = 25;
    pub const CAR: u8 = 26;
    pub const TRUCK: u8 = 27;
    pub const BUS: u8 = 28;
    pub const BICYCLE: u8 = 33;
}

/// A canvas painted shape by shape: label ids and colours together (also used by the
/// blob fixtures of `synth.rs`).
pub(super) struct Canvas {
    w: usize,
    h: usize,
    pub(super) label: Vec<u8>,
    pub(super) rgb: Vec<[f32; 3]>,
}

impl Canvas {
    pub(super) fn new(w: usize, h: usize) -> Self {
        Canvas { w, h, label: vec![0; w * h], rgb: vec![[0.0; 3]; w * h] }
    }

    /// Paint pixels where `inside(x, y)` with `class` and `color(x, y)`.
    fn paint(
        &mut self,
        bbox: (i64, i64, i64, i64),
        class: u8,
        inside: impl Fn(f32, f32) -> bool,
        color: impl Fn(usize, usize) -> [f32; 3],
    ) {
        let (x0, y0) = (bbox.0.max(0) as usize, bbox.1.max(0) as usize);
        let (x1, y1) = (bbox.2.clamp(0, self.w as i64) as usize, bbox.3.clamp(0, self.h as i64) as usize);
        for y in y0..y1 {
            for x in x0..x1 {
                if inside(x as f32 + 0.5, y as f32 + 0.5) {
                    self.label[y * self.w + x] = class;
                    self.rgb[y * self.w + x] = color(x, y);
                }
            }
        }
    }

    fn rect(&mut self, x0: f32, y0: f32, x1: f32, y1: f32, class: u8, color: impl Fn(usize, usize) -> [f32; 3]) {
        self.paint((x0 as i64, y0 as i64, x1.ceil() as i64, y1.ceil() as i64), class, |_, _| true, color);
    }

    pub(super) fn ellipse(
        &mut self,
        cx: f32,
        cy: f32,
        rx: f32,
        ry: f32,
        class: u8,
        color: impl Fn(usize, usize) -> [f32; 3],
    ) {
        let bbox = ((cx - rx) as i64, (cy - ry) as i64, (cx + rx).ceil() as i64, (cy + ry).ceil() as i64);
        self.paint(bbox, class, |x, y| ((x - cx) / rx).powi(2) + ((y - cy) / ry).powi(2) <= 1.0, color);
    }
}

/// Cheap deterministic per-pixel hash noise in [-1, 1].
fn hash_noise(x: usize, y: usize, salt: u64) -> f32 {
    let v = derive(&[x as u64, y as u64, salt]);
    (v >> 40) as f32 / (1u64 << 23) as f32 - 1.0
}

fn jitter_color(rng: &mut StdRng, base: [f32; 3], spread: f32) -> [f32; 3] {
    let shift = rng.gen_range(-spread..=spread);
    std::array::from_fn(|c| base[c] + shift + rng.gen_range(-spread / 2.0..=spread / 2.0))
}

/// Geometry every layer of a street scene shares.
#[derive(Clone, Copy)]
struct Scene {
    wf: f32,
    hf: f32,
    /// Where the ground meets the sky, in pixels from the top.
    horizon: f32,
}

impl Scene {
    /// Half-width at row `y` of a band that is `half` wide at the bottom edge and
    /// narrows to nothing at the horizon (the road's perspective).
    fn span(&self, y: f32, half: f32) -> f32 {
        half * ((y - self.horizon) / (self.hf - self.horizon)).max(0.0)
    }
}

/// The road as painted by `paint_ground`: poles, vehicles and people are placed on it.
#[derive(Clone, Copy)]
struct Road {
    /// Vanishing point's x.
    vx: f32,
    /// Road half-width at the bottom edge.
    road_half: f32,
    /// Sidewalk width at the bottom edge.
    walk: f32,
}

/// One street scene of `w`×`h`: (RGB image, label-id map).
///
/// Layers are painted back to front, each drawing from one `rng` in turn: the call
/// order fixes both occlusion and the random stream, so changing it changes every
/// generated dataset.
pub fn cityscapes_scene(w: usize, h: usize, seed: u64) -> (RgbImage, Vec<u8>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut c = Canvas::new(w, h);
    let (wf, hf) = (w as f32, h as f32);
    let horizon = hf * rng.gen_range(0.36..0.5);
    let salt = rng.gen::<u64>();
    let s = Scene { wf, hf, horizon };
    paint_sky(&mut c, &mut rng, s);
    paint_buildings(&mut c, &mut rng, s);
    paint_walls_and_fences(&mut c, &mut rng, s);
    let road = paint_ground(&mut c, &mut rng, s);
    paint_trees(&mut c, &mut rng, s);
    paint_poles(&mut c, &mut rng, s, road);
    paint_vehicles(&mut c, &mut rng, s, road);
    paint_people(&mut c, &mut rng, s, road);
    paint_ego_hood(&mut c, &mut rng, s);
    let img = light_and_noise(&c, &mut rng, s, salt);
    (img, c.label)
}

/// Sky: a vertical gradient, sometimes hazy.
fn paint_sky(c: &mut Canvas, rng: &mut StdRng, s: Scene) {
    let Scene { wf, horizon, .. } = s;
    let sky_top = jitter_color(rng, [70.0, 120.0, 190.0], 25.0);
    let sky_bottom = jitter_color(rng, [170.0, 190.0, 210.0], 20.0);
    c.rect(0.0, 0.0, wf, horizon + 2.0, id::SKY, |_, y| {
        let t = y as f32 / horizon.max(1.0);
        std::array::from_fn(|k| sky_top[k] * (1.0 - t) + sky_bottom[k] * t)
    });
}

/// Buildings side by side along the horizon, each with a window grid.
fn paint_buildings(c: &mut Canvas, rng: &mut StdRng, s: Scene) {
    let Scene { wf, hf, horizon } = s;
    let mut x = -rng.gen_range(0.0..wf * 0.05);
    while x < wf {
        let bw = wf * rng.gen_range(0.08..0.22);
        let top = horizon - hf * rng.gen_range(0.05..0.35);
        let base = jitter_color(rng, [110.0, 105.0, 100.0], 35.0);
        let (cell_w, cell_h) = (rng.gen_range(10.0..24.0) * wf / 2048.0, rng.gen_range(14.0..30.0) * hf / 1024.0);
        c.rect(x, top, x + bw, horizon + hf * 0.02, id::BUILDING, move |px, py| {
            let (u, v) = ((px as f32 / cell_w.max(1.0)).fract(), (py as f32 / cell_h.max(1.0)).fract());
            let window = u > 0.3 && u < 0.75 && v > 0.25 && v < 0.7;
            let k = if window { 0.45 } else { 1.0 };
            std::array::from_fn(|i| base[i] * k)
        });
        x += bw;
    }
}

/// A few low walls and striped fences in front of the buildings.
fn paint_walls_and_fences(c: &mut Canvas, rng: &mut StdRng, s: Scene) {
    let Scene { wf, hf, horizon } = s;
    for _ in 0..rng.gen_range(0..3) {
        let x0 = rng.gen_range(0.0..wf * 0.9);
        let len = wf * rng.gen_range(0.05..0.2);
        let (class, base, height) = if rng.gen_bool(0.5) {
            (id::WALL, jitter_color(rng, [125.0, 120.0, 115.0], 20.0), hf * rng.gen_range(0.03..0.07))
        } else {
            (id::FENCE, jitter_color(rng, [140.0, 125.0, 115.0], 20.0), hf * rng.gen_range(0.04..0.08))
        };
        let stripes = class == id::FENCE;
        c.rect(x0, horizon - height + hf * 0.02, x0 + len, horizon + hf * 0.02, class, move |px, _| {
            let k = if stripes && (px / 6) % 2 == 0 { 0.6 } else { 1.0 };
            std::array::from_fn(|i| base[i] * k)
        });
    }
}

/// Ground: terrain, then sidewalks and a road converging to a vanishing point,
/// with a dashed centre line. Returns the road layout later layers stand on.
fn paint_ground(c: &mut Canvas, rng: &mut StdRng, s: Scene) -> Road {
    let Scene { wf, hf, horizon } = s;
    let (w, h) = (c.w, c.h);
    let vx = wf * rng.gen_range(0.35..0.65);
    let road_half = wf * rng.gen_range(0.35..0.6);
    let walk = wf * rng.gen_range(0.12..0.25);
    let road_col = jitter_color(rng, [95.0, 90.0, 95.0], 15.0);
    let walk_col = jitter_color(rng, [120.0, 110.0, 115.0], 15.0);
    let terrain_col = jitter_color(rng, [110.0, 130.0, 70.0], 20.0);
    let ground_top = horizon + hf * 0.02;
    c.paint((0, ground_top as i64, w as i64, h as i64), id::TERRAIN, |_, _| true, |_, _| terrain_col);
    c.paint(
        (0, ground_top as i64, w as i64, h as i64),
        id::SIDEWALK,
        |x, y| (x - vx).abs() < s.span(y, road_half + walk),
        |x, y| {
            let tile = (x / 12 + y / 12) % 2 == 0;
            std::array::from_fn(|i| walk_col[i] * if tile { 1.0 } else { 0.92 })
        },
    );
    c.paint(
        (0, ground_top as i64, w as i64, h as i64),
        id::ROAD,
        |x, y| (x - vx).abs() < s.span(y, road_half),
        move |x, y| {
            // A dashed centre line, painted on the road (still road).
            let dx = (x as f32 - vx).abs();
            let t = ((y as f32 - horizon) / (hf - horizon)).max(0.0);
            let on_line = dx < 4.0 * t * wf / 2048.0 + 1.0 && ((y as f32 * 0.05) as i64) % 2 == 0;
            if on_line {
                [200.0, 200.0, 190.0]
            } else {
                road_col
            }
        },
    );
    Road { vx, road_half, walk }
}

/// Trees: leafy crowns around the horizon, anywhere across the width.
fn paint_trees(c: &mut Canvas, rng: &mut StdRng, s: Scene) {
    let Scene { wf, hf, horizon } = s;
    for _ in 0..rng.gen_range(2..7) {
        let tx = rng.gen_range(0.0..wf);
        let r = hf * rng.gen_range(0.05..0.12);
        let cy = horizon - r * rng.gen_range(0.2..1.2);
        let col = jitter_color(rng, [70.0, 110.0, 40.0], 20.0);
        let leaf_salt = rng.gen::<u64>();
        c.ellipse(tx, cy, r * rng.gen_range(0.8..1.4), r, id::VEGETATION, move |x, y| {
            let n = hash_noise(x / 3, y / 3, leaf_salt) * 30.0;
            std::array::from_fn(|i| col[i] + n)
        });
    }
}

/// Poles on the sidewalks at the road edges, topped by a sign or a traffic light.
fn paint_poles(c: &mut Canvas, rng: &mut StdRng, s: Scene, road: Road) {
    let Scene { wf, hf, horizon } = s;
    let Road { vx, road_half, walk } = road;
    for _ in 0..rng.gen_range(1..5) {
        let left = rng.gen_bool(0.5);
        let foot = hf * rng.gen_range(0.6..0.95);
        let edge = vx + if left { -1.0 } else { 1.0 } * (s.span(foot, road_half) + s.span(foot, walk) * 0.5);
        let ph = (foot - horizon) * rng.gen_range(1.2..2.2);
        let pw = (wf * 0.004).max(2.0);
        c.rect(edge - pw / 2.0, foot - ph, edge + pw / 2.0, foot, id::POLE, |_, _| [90.0, 90.0, 95.0]);
        let sw = pw * rng.gen_range(4.0..7.0);
        if rng.gen_bool(0.6) {
            let col = if rng.gen_bool(0.5) { [200.0, 40.0, 40.0] } else { [40.0, 70.0, 180.0] };
            c.ellipse(edge, foot - ph, sw / 2.0, sw / 2.0, id::SIGN, move |_, _| col);
        } else {
            c.rect(edge - sw / 3.0, foot - ph - sw, edge + sw / 3.0, foot - ph + sw * 0.6, id::LIGHT, |_, y| {
                if y % 7 < 3 {
                    [230.0, 180.0, 40.0]
                } else {
                    [40.0, 40.0, 40.0]
                }
            });
        }
    }
}

/// Cars, trucks and buses on the road, painted far to near so nearer (larger)
/// ones occlude farther ones.
fn paint_vehicles(c: &mut Canvas, rng: &mut StdRng, s: Scene, road: Road) {
    let Scene { wf, hf, horizon } = s;
    let Road { vx, road_half, .. } = road;
    let mut vehicles: Vec<f32> = (0..rng.gen_range(1..6)).map(|_| rng.gen_range(0.05f32..1.0)).collect();
    vehicles.sort_by(|a, b| a.total_cmp(b));
    for t in vehicles {
        let y_bottom = horizon + (hf - horizon) * t;
        let half = s.span(y_bottom, road_half);
        let cx = vx + rng.gen_range(-0.8..0.8) * half;
        let scale = (y_bottom - horizon) / (hf - horizon);
        let (class, vw, vh) = match rng.gen_range(0..10) {
            0 => (id::BUS, 0.5, 0.45),
            1 => (id::TRUCK, 0.42, 0.4),
            _ => (id::CAR, 0.32, 0.2),
        };
        let (vw, vh) = (wf * vw * scale, hf * vh * scale * 1.4);
        let paint =
            [[150.0, 30.0, 30.0], [30.0, 40.0, 120.0], [180.0, 180.0, 180.0], [40.0, 40.0, 40.0]][rng.gen_range(0..4)];
        let body = jitter_color(rng, paint, 20.0);
        let top = y_bottom - vh;
        c.rect(cx - vw / 2.0, top, cx + vw / 2.0, y_bottom, class, move |_, y| {
            let window = (y as f32) < top + vh * 0.35;
            if window {
                [60.0, 70.0, 80.0]
            } else {
                body
            }
        });
    }
}

/// People on the sidewalks; some are riders, with a bicycle under them.
fn paint_people(c: &mut Canvas, rng: &mut StdRng, s: Scene, road: Road) {
    let Scene { hf, horizon, .. } = s;
    let Road { vx, road_half, walk } = road;
    for _ in 0..rng.gen_range(0..7) {
        let foot = hf * rng.gen_range(0.55..0.98);
        let side = if rng.gen_bool(0.5) { -1.0 } else { 1.0 };
        let px = vx + side * (s.span(foot, road_half) + s.span(foot, walk) * rng.gen_range(0.2..0.8));
        let ph = (foot - horizon) * rng.gen_range(0.9..1.3);
        let cloth = jitter_color(rng, [90.0, 60.0, 70.0], 50.0);
        let rider = rng.gen_bool(0.2);
        if rider {
            c.ellipse(px, foot - ph * 0.15, ph * 0.3, ph * 0.15, id::BICYCLE, |_, _| [30.0, 30.0, 35.0]);
        }
        let class = if rider { id::RIDER } else { id::PERSON };
        c.ellipse(px, foot - ph * 0.5, ph * 0.12, ph * 0.38, class, move |_, _| cloth);
        c.ellipse(px, foot - ph * 0.92, ph * 0.07, ph * 0.08, class, |_, _| [200.0, 160.0, 140.0]);
    }
}

/// The ego vehicle's bonnet along the bottom edge (absent when too thin).
fn paint_ego_hood(c: &mut Canvas, rng: &mut StdRng, s: Scene) {
    let Scene { wf, hf, .. } = s;
    let hood = hf * rng.gen_range(0.0..0.08);
    if hood > 2.0 {
        c.rect(0.0, hf - hood, wf, hf, id::EGO, |_, _| [20.0, 20.0, 25.0]);
    }
}

/// The final image: the canvas under lighting (a global gain and a left-right
/// gradient) plus per-pixel sensor noise seeded by `salt`.
fn light_and_noise(c: &Canvas, rng: &mut StdRng, s: Scene, salt: u64) -> RgbImage {
    let (w, h) = (c.w, c.h);
    let gain = rng.gen_range(0.65..1.3f32);
    let tilt = rng.gen_range(-0.2..0.2f32);
    let mut img = RgbImage::new(w as u32, h as u32);
    for (i, px) in img.pixels_mut().enumerate() {
        let (x, y) = (i % w, i / w);
        let light = gain * (1.0 + tilt * (x as f32 / s.wf - 0.5));
        let n = hash_noise(x, y, salt) * 10.0;
        let col = c.rgb[i];
        px.0 = std::array::from_fn(|k| (col[k] * light + n).clamp(0.0, 255.0) as u8);
    }
    img
}
