//! Process-wide logging: readable text by default, one JSON object per line with
//! `--log-format json`. Every line carries `rank k/N` once the world is known.
use std::fmt::Write as _;
use std::sync::OnceLock;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

static RANK: OnceLock<(usize, usize)> = OnceLock::new();

/// Record this process's place in the world; later log lines carry it.
pub fn set_rank(rank: usize, world: usize) {
    let _ = RANK.set((rank, world));
}

/// Install the global subscriber. `level` wins over `RUST_LOG`; default `info`.
pub fn init(format: LogFormat, level: Option<&str>) -> anyhow::Result<()> {
    let filter = match level {
        Some(l) => EnvFilter::try_new(l).map_err(|e| anyhow::anyhow!("--log-level {l:?}: {e}"))?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder.event_format(Line { json: false }).try_init(),
        LogFormat::Json => builder.event_format(Line { json: true }).try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install logger: {e}"))
}

struct Line {
    json: bool,
}

#[derive(Default)]
struct Fields {
    message: String,
    rest: serde_json::Map<String, serde_json::Value>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.rest.insert(field.name().to_string(), serde_json::Value::String(text));
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.rest.insert(field.name().to_string(), value.into());
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.rest.insert(field.name().to_string(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.rest.insert(field.name().to_string(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.rest.insert(field.name().to_string(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.rest.insert(field.name().to_string(), value.into());
    }
}

impl<S, N> FormatEvent<S, N> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut w: Writer<'_>, event: &Event<'_>) -> std::fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let now = humantime_now();
        if self.json {
            let mut obj = serde_json::Map::new();
            obj.insert("time".into(), now.into());
            obj.insert("level".into(), meta.level().as_str().into());
            if let Some(&(r, n)) = RANK.get() {
                obj.insert("rank".into(), r.into());
                obj.insert("world_size".into(), n.into());
            }
            obj.insert("target".into(), meta.target().into());
            obj.insert("message".into(), fields.message.into());
            obj.extend(fields.rest);
            writeln!(w, "{}", serde_json::Value::Object(obj))
        } else {
            let mut line = format!("{now} {:>5}", meta.level().as_str());
            if let Some(&(r, n)) = RANK.get() {
                let _ = write!(line, " rank {r}/{n}");
            }
            let _ = write!(line, " {}", fields.message);
            for (k, v) in fields.rest {
                match v {
                    serde_json::Value::String(s) => {
                        let _ = write!(line, " {k}={s}");
                    }
                    other => {
                        let _ = write!(line, " {k}={other}");
                    }
                }
            }
            writeln!(w, "{line}")
        }
    }
}

/// UTC wall time as `YYYY-MM-DDTHH:MM:SS.mmmZ`, without pulling in a date crate.
fn humantime_now() -> String {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamp_shape() {
        let t = super::humantime_now();
        assert_eq!(t.len(), 24, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z') && &t[10..11] == "T", "{t}");
    }
}
