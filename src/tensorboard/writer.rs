//! One event file per run folder (`<output_dir>/tb/`), appended to as training goes. A
//! resumed run redoes the steps after its checkpoint, so opening the folder drops the
//! events past that step (rewriting the file atomically) before appending: TensorBoard
//! then shows one continuous curve with no step twice.
use super::proto::{Event, Image, Kind, Summary, Value, What};
use super::record::{frame, unframe};
use anyhow::Context;
use image::RgbImage;
use prost::Message;
use std::io::Write;
use std::path::{Path, PathBuf};

const FILE_VERSION: &str = "brain.Event:2";

pub struct EventWriter {
    file: std::fs::File,
    path: PathBuf,
}

/// One value read back from an event file.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub step: i64,
    pub tag: String,
    pub value: PointValue,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PointValue {
    Scalar(f32),
    /// Width, height and the PNG bytes.
    Image(i32, i32, Vec<u8>),
}

fn is_event_file(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("events.out.tfevents."))
}

fn event_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| is_event_file(p)).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    files.sort();
    Ok(files)
}

/// The events of one file, up to a torn or corrupt tail; and whether it had one.
fn read_file(path: &Path) -> anyhow::Result<(Vec<Event>, bool)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let (records, end) = unframe(&bytes);
    let mut events = Vec::with_capacity(records.len());
    for (i, r) in records.into_iter().enumerate() {
        events.push(Event::decode(r).with_context(|| format!("{}: record {i} is not an Event", path.display()))?);
    }
    Ok((events, end != bytes.len()))
}

/// Every event of every event file in `dir`, in file order.
pub fn read_dir(dir: &Path) -> anyhow::Result<Vec<Event>> {
    let mut all = Vec::new();
    for f in event_files(dir)? {
        all.extend(read_file(&f)?.0);
    }
    Ok(all)
}

/// The scalars and images of `events`, in order.
pub fn points(events: &[Event]) -> Vec<Point> {
    let mut out = Vec::new();
    for e in events {
        let Some(What::Summary(s)) = &e.what else { continue };
        for v in &s.value {
            let value = match &v.kind {
                Some(Kind::SimpleValue(x)) => PointValue::Scalar(*x),
                Some(Kind::Image(im)) => PointValue::Image(im.width, im.height, im.encoded_image_string.clone()),
                None => continue,
            };
            out.push(Point { step: e.step, tag: v.tag.clone(), value });
        }
    }
    out
}

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

fn encode(event: &Event) -> Vec<u8> {
    frame(&event.encode_to_vec())
}

impl EventWriter {
    /// The event file of `dir` (created with its folder if there is none), without the
    /// events of steps after `keep_through`: those belong to a run that is being redone
    /// from its checkpoint (0 for a run from scratch, which replaces them all).
    pub fn open(dir: &Path, keep_through: u64) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let files = event_files(dir)?;
        let path = match files.first() {
            Some(first) => {
                let mut kept = Vec::new();
                let mut changed = files.len() > 1;
                for f in &files {
                    let (events, torn) = read_file(f)?;
                    changed |= torn;
                    for e in events {
                        let summary = matches!(e.what, Some(What::Summary(_)));
                        if summary && e.step > keep_through as i64 {
                            changed = true;
                        } else if summary || kept.is_empty() {
                            kept.push(e);
                        }
                    }
                }
                if changed {
                    let bytes: Vec<u8> = kept.iter().flat_map(encode).collect();
                    crate::atomic::write_bytes(first, &bytes)?;
                    for extra in &files[1..] {
                        std::fs::remove_file(extra).with_context(|| format!("removing {}", extra.display()))?;
                    }
                }
                first.clone()
            }
            None => {
                let path = dir.join(format!("events.out.tfevents.{}.segzoo", now() as u64));
                let version = Event { wall_time: now(), step: 0, what: Some(What::FileVersion(FILE_VERSION.into())) };
                crate::atomic::write_bytes(&path, &encode(&version))?;
                path
            }
        };
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(EventWriter { file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&mut self, step: u64, value: Vec<Value>) -> anyhow::Result<()> {
        let event = Event { wall_time: now(), step: step as i64, what: Some(What::Summary(Summary { value })) };
        // One write per event, so a crash leaves at most one torn record at the end.
        self.file.write_all(&encode(&event)).with_context(|| format!("appending to {}", self.path.display()))?;
        self.file.flush()?;
        Ok(())
    }

    /// Scalars of one step, in one event. Non-finite values are written as they are
    /// (TensorBoard shows them as gaps).
    pub fn scalars(&mut self, step: u64, values: &[(String, f64)]) -> anyhow::Result<()> {
        let value = values
            .iter()
            .map(|(tag, v)| Value { tag: tag.clone(), kind: Some(Kind::SimpleValue(*v as f32)) })
            .collect();
        self.write(step, value)
    }

    /// An RGB image as PNG.
    pub fn image(&mut self, step: u64, tag: &str, img: &RgbImage) -> anyhow::Result<()> {
        let mut png = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .with_context(|| format!("encoding image {tag}"))?;
        let image =
            Image { height: img.height() as i32, width: img.width() as i32, colorspace: 3, encoded_image_string: png };
        self.write(step, vec![Value { tag: tag.to_string(), kind: Some(Kind::Image(image)) }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar_steps(dir: &Path, tag: &str) -> Vec<i64> {
        points(&read_dir(dir).unwrap()).into_iter().filter(|p| p.tag == tag).map(|p| p.step).collect()
    }

    #[test]
    fn reopening_drops_steps_after_the_resumed_one_and_appends() {
        let dir = tempfile::tempdir().unwrap();
        let tb = dir.path().join("tb");
        let mut w = EventWriter::open(&tb, 0).unwrap();
        for step in [10, 20, 30] {
            w.scalars(step, &[("train/loss".into(), step as f64 / 10.0)]).unwrap();
        }
        w.image(20, "val/image/0", &RgbImage::from_pixel(4, 3, image::Rgb([255, 0, 0]))).unwrap();
        drop(w);
        // Resumed from step 20's checkpoint: step 30 is redone.
        let mut w = EventWriter::open(&tb, 20).unwrap();
        w.scalars(30, &[("train/loss".into(), 2.5)]).unwrap();
        drop(w);
        assert_eq!(event_files(&tb).unwrap().len(), 1);
        assert_eq!(scalar_steps(&tb, "train/loss"), vec![10, 20, 30]);
        let events = read_dir(&tb).unwrap();
        assert!(matches!(&events[0].what, Some(What::FileVersion(v)) if v == FILE_VERSION));
        let pts = points(&events);
        assert_eq!(pts.last().unwrap().value, PointValue::Scalar(2.5));
        let img = pts.iter().find(|p| p.tag == "val/image/0").expect("the image is kept");
        let PointValue::Image(4, 3, png) = &img.value else { panic!("{img:?}") };
        assert_eq!(image::load_from_memory(png).unwrap().to_rgb8().get_pixel(1, 1).0, [255, 0, 0]);
        // From scratch, everything earlier goes.
        drop(EventWriter::open(&tb, 0).unwrap());
        assert!(scalar_steps(&tb, "train/loss").is_empty());
    }

    #[test]
    fn a_torn_last_record_is_dropped_on_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::open(dir.path(), 0).unwrap();
        w.scalars(1, &[("a".into(), 1.0)]).unwrap();
        let path = w.path().to_path_buf();
        drop(w);
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[1, 2, 3]).unwrap();
        drop(f);
        let mut w = EventWriter::open(dir.path(), 5).unwrap();
        w.scalars(2, &[("a".into(), 2.0)]).unwrap();
        assert_eq!(scalar_steps(dir.path(), "a"), vec![1, 2]);
    }
}
