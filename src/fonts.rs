//! The font plotters draws text with (curves, prediction legends): DejaVu Sans from the
//! system (scripts/setup.sh installs fonts-dejavu-core), registered once per process.
use plotters::style::FontStyle;

const FONT_PATHS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

pub fn register() -> anyhow::Result<()> {
    static FONT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    FONT.get_or_init(|| {
        let bytes = FONT_PATHS.iter().find_map(|p| std::fs::read(p).ok()).ok_or_else(|| {
            format!(
                "no DejaVu font found (looked in {}); scripts/setup.sh installs fonts-dejavu-core",
                FONT_PATHS.join(", ")
            )
        })?;
        // The font must live for the whole process.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| "invalid font file".to_string())
    })
    .clone()
    .map_err(|e| anyhow::anyhow!(e))
}
