//! Config loading: typos, wrong types, bad overrides, unknown sections, validation.
use segzoo::config::{load_config, parse_config, ConfigError, Optimizer, Override};
use std::path::Path;

fn parse(text: &str, sets: &[&str]) -> Result<segzoo::config::Config, ConfigError> {
    let overrides: Vec<Override> = sets.iter().map(|s| s.parse().expect("valid override")).collect();
    parse_config(text, Path::new("recipe.toml"), &overrides)
}

fn err(text: &str, sets: &[&str]) -> String {
    parse(text, sets).expect_err("config should be rejected").to_string()
}

#[test]
fn typo_in_section_suggests_the_full_key() {
    let msg = err("[model]\nname = \"hrnetv2_w48\"\n", &["trian.lr=0.1"]);
    assert!(msg.starts_with("--set trian.lr=0.1:"), "{msg}");
    assert!(msg.contains("did you mean `train.lr`?"), "{msg}");
}

#[test]
fn typo_in_file_names_line_and_suggestion() {
    let msg = err("[model]\nname = \"x\"\n\n[train]\nmomentum = 0.9\nlrr = 0.1\n", &[]);
    assert!(msg.starts_with("recipe.toml:6:"), "{msg}");
    assert!(msg.contains("key `train.lrr`"), "{msg}");
    assert!(msg.contains("did you mean `train.lr`?"), "{msg}");
}

#[test]
fn unknown_section_is_rejected_and_listed() {
    let msg = err("[model]\nname = \"x\"\n\n[augment]\nflip = true\n", &[]);
    assert!(msg.starts_with("recipe.toml:4:"), "{msg}");
    assert!(msg.contains("unknown section"), "{msg}");
    assert!(msg.contains("valid: model, data, train, eval, dist, log"), "{msg}");
    assert!(!msg.contains("did you mean"), "no plausible suggestion for 'augment': {msg}");
}

#[test]
fn wrong_type_names_expected_and_found() {
    let msg = err("[train]\nepochs = 10\nlr = \"fast\"\n", &[]);
    assert!(msg.starts_with("recipe.toml:3:"), "{msg}");
    assert!(msg.contains("key `train.lr`"), "{msg}");
    assert!(msg.contains("string \"fast\"") && msg.contains("expected f64"), "{msg}");
    let msg = err("[train]\nepochs = 10\n", &["train.epochs=-3"]);
    assert!(msg.starts_with("--set train.epochs=-3:") && msg.contains("expected usize"), "{msg}");
}

#[test]
fn unknown_enum_value_suggests_variant() {
    let msg = err("[train]\noptimizer = \"adamm\"\n", &[]);
    assert!(msg.contains("unknown value `adamm`"), "{msg}");
    assert!(msg.contains("did you mean `adam`?"), "{msg}");
}

#[test]
fn memory_format_is_typed_with_auto_by_default() {
    use segzoo::config::MemoryFormatChoice;
    assert_eq!(parse("", &[]).expect("defaults").train.memory_format, MemoryFormatChoice::Auto);
    let cfg = parse("[train]\nmemory_format = \"channels_last\"\n", &["train.memory_format=contiguous"]);
    assert_eq!(cfg.expect("valid").train.memory_format, MemoryFormatChoice::Contiguous);
    let msg = err("[train]\nmemory_format = \"nhwc\"\n", &[]);
    assert!(msg.starts_with("recipe.toml:2:") && msg.contains("key `train.memory_format`"), "{msg}");
    assert!(msg.contains("unknown value `nhwc`") && msg.contains("channels_last"), "{msg}");
    let msg = err("", &["train.memory_format=channel_last"]);
    assert!(msg.contains("key `train.memory_format`") && msg.contains("did you mean `channels_last`?"), "{msg}");
}

#[test]
fn bad_set_arguments() {
    for (arg, needle) in [
        ("train.lr", "expected section.key=value"),
        ("lr=0.1", "dotted path"),
        ("train..lr=0.1", "dotted path"),
        ("train.lr=", "missing value"),
    ] {
        let e = arg.parse::<Override>().expect_err(arg).to_string();
        assert!(e.contains(needle), "{arg}: {e}");
    }
    let msg = err("[model]\nname = \"x\"\n", &["model.name.depth=3"]);
    assert!(msg.contains("`model.name` is a value, not a section"), "{msg}");
}

#[test]
fn overrides_apply_in_order_with_typed_values() {
    let cfg = parse(
        "[train]\nlr = 0.1\n",
        &[
            "train.lr=0.02",
            "train.optimizer=adamw",
            "data.crop_size=[256, 512]",
            "model.name=ocrnet_hrnetv2_w48",
            "train.lr=3e-3",
        ],
    )
    .expect("valid");
    assert_eq!(cfg.train.lr, 3e-3);
    assert_eq!(cfg.train.optimizer, Optimizer::Adamw);
    assert_eq!(cfg.data.crop_size, [256, 512]);
    assert_eq!(cfg.model.name, "ocrnet_hrnetv2_w48");
    // Unset keys keep their defaults.
    assert_eq!(cfg.data.ignore_label, 255);
}

#[test]
fn validation_names_the_key() {
    let msg = err("[data]\nscale_range = [2.0, 0.5]\n", &[]);
    assert!(msg.starts_with("recipe.toml:2:") && msg.contains("data.scale_range"), "{msg}");
    let msg = err("", &["train.lr=-1.0"]);
    assert!(msg.starts_with("--set train.lr=-1.0:") && msg.contains("positive"), "{msg}");
    let msg = err("[train]\naccumulate_steps = 0\n", &[]);
    assert!(
        msg.starts_with("recipe.toml:2:") && msg.contains("key `train.accumulate_steps`: must be at least 1"),
        "{msg}"
    );
    let cfg = segzoo::config::parse_config(
        "[model]\nsync_bn = true\n[train]\naccumulate_steps = 4\n",
        Path::new("x.toml"),
        &[],
    )
    .expect("valid");
    assert!(cfg.model.sync_bn && cfg.train.accumulate_steps == 4);
}

#[test]
fn syntax_error_has_line_and_column() {
    let msg = err("[model]\nname = \"x\n", &[]);
    assert!(msg.starts_with("recipe.toml:2:"), "{msg}");
    assert!(msg.contains("syntax error"), "{msg}");
}

#[test]
fn missing_file_is_named() {
    let e = load_config(Path::new("/no/such/segzoo.toml"), &[]).expect_err("missing");
    assert!(e.to_string().contains("/no/such/segzoo.toml"), "{e}");
}

#[test]
fn shipped_configs_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("configs/ exists") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            load_config(&path, &[]).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n > 0, "no configs found in {}", dir.display());
}
