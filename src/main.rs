//! The `segzoo` command line.
use anyhow::Context;
use clap::{Parser, Subcommand};
use segzoo::config::{load_config, Override};
use segzoo::logging::{self, LogFormat};
use segzoo::models::registry;
use segzoo::models::weights::{
    load_file, load_into, normalise_names, read_tensors, write_safetensors_atomic, LoadMode,
};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "segzoo", version, about = "Semantic-segmentation models on libtorch: train, evaluate, serve")]
struct Cli {
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Log level or filter (e.g. debug, segzoo=trace); overrides RUST_LOG.
    #[arg(long, global = true)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Report segzoo, libtorch, CUDA, cuDNN, NCCL and MPI as this process sees them.
    Env {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Inspect configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Parameter count and state-dict tensors of a model (preset name or config file).
    ModelInfo {
        /// A preset (e.g. hrnetv2_w48) or a TOML config with a [model] section.
        model: String,
        /// Number of classes (default: the config's dataset, else the preset's).
        #[arg(long)]
        num_classes: Option<i64>,
        /// List every state-dict tensor with its shape.
        #[arg(long)]
        tensors: bool,
        /// Print {"num_params", "num_buffers", "tensors": [{"name", "shape"}]} as JSON.
        #[arg(long)]
        json: bool,
        /// Override config values (with a config file): --set section.key=value.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// List the model presets.
    Models,
    /// Train a model as a config describes (one device; see the README for several).
    Train {
        #[arg(long)]
        config: PathBuf,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// `auto` (newest valid checkpoint of the run, if any) or a checkpoint file.
        #[arg(long)]
        resume: Option<String>,
        /// Start at this epoch (0-based), schedule included, as the recipes' --begin_epoch.
        #[arg(long)]
        begin_epoch: Option<usize>,
        /// Stop after this many steps in total, saving a checkpoint.
        #[arg(long)]
        max_steps: Option<u64>,
        /// cpu or cuda:N (default: cuda:0 when available).
        #[arg(long, value_parser = parse_device)]
        device: Option<tch::Device>,
    },
    /// Predict every input image and write one PNG each.
    Infer {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        checkpoint: PathBuf,
        /// An image, a folder of images (searched recursively), or a list file (first column, relative to data.root).
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        output: PathBuf,
        #[arg(long, value_enum, default_value = "color")]
        format: OutputFormat,
        /// Blend the colours over the image (with --format color).
        #[arg(long)]
        overlay: bool,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        #[arg(long, value_parser = parse_device)]
        device: Option<tch::Device>,
    },
    /// Evaluate a checkpoint on the config's val list (scales, flip and sliding window from [eval] or the flags).
    Eval {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        checkpoint: PathBuf,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        #[arg(long, value_parser = parse_device)]
        device: Option<tch::Device>,
        /// Also write every figure as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Image scales, e.g. 0.5,0.75,1.0,1.25,1.5,1.75 (default: eval.scales).
        #[arg(long, value_delimiter = ',')]
        scales: Option<Vec<f64>>,
        /// Add the mirrored image's prediction.
        #[arg(long)]
        flip: bool,
        /// Sliding-window inference (tiles of eval.crop_size, default data.crop_size).
        #[arg(long)]
        sliding: bool,
    },
    /// Evaluate prediction PNGs made elsewhere against a list's labels.
    EvalPreds {
        #[arg(long)]
        dataset: segzoo::config::DatasetKind,
        /// Folder of `<image name>.png` predictions.
        #[arg(long)]
        pred_dir: PathBuf,
        /// The list of `image label` pairs.
        #[arg(long)]
        list: PathBuf,
        /// Root the list's paths are relative to (default: the list's folder).
        #[arg(long)]
        root: Option<PathBuf>,
        /// What the predictions hold: train ids, or Cityscapes label ids.
        #[arg(long, value_enum, default_value = "trainid")]
        pred_ids: PredIds,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Write a checkpoint's weights alone (official names) for PyTorch users.
    Export {
        #[arg(long)]
        checkpoint: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Generate a synthetic dataset in a real layout.
    #[command(subcommand)]
    Synth(SynthCommand),
    /// Write the list files of a dataset in its standard layout (and check them).
    MakeLists {
        dataset: segzoo::config::DatasetKind,
        #[arg(long)]
        root: PathBuf,
        /// Open every pair: sizes agree, label values valid; print per-class pixel shares.
        #[arg(long)]
        check: bool,
        /// Threads for --check (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Check this job's collectives (run it under mpirun or segzoo-launch): all-reduce and
    /// broadcast of every tensor kind with known values, a barrier, then all-reduce bandwidth.
    DistCheck {
        /// Collective backend (as dist.backend).
        #[arg(long, value_enum, default_value = "auto")]
        backend: segzoo::config::Backend,
        /// All-reduce size for the bandwidth figure, MiB.
        #[arg(long, default_value_t = 64.0)]
        mib: f64,
        #[arg(long, default_value_t = 10)]
        iters: usize,
        #[arg(long, value_parser = parse_device)]
        device: Option<tch::Device>,
    },
    /// Convert a PyTorch checkpoint (.pth) to safetensors with official names.
    Convert {
        input: PathBuf,
        output: PathBuf,
        /// Check the result loads strictly into this model (preset or config).
        #[arg(long)]
        model: Option<String>,
        #[arg(long)]
        num_classes: Option<i64>,
    },
    /// Run one eval-mode forward pass on the tensor `input` of a safetensors file
    /// and write every head's output (`output_logits`, `output_aux`, …).
    Forward {
        /// A preset or a config file.
        #[arg(long)]
        model: String,
        /// Weights (.safetensors or .pth), loaded strictly unless --allow-partial.
        #[arg(long)]
        weights: Option<PathBuf>,
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        output: PathBuf,
        #[arg(long)]
        num_classes: Option<i64>,
        /// Load only the tensors that match (e.g. an ImageNet backbone).
        #[arg(long)]
        allow_partial: bool,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum PredIds {
    Trainid,
    Labelid,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OutputFormat {
    /// The dataset palette (`<name>_infer.png`).
    Color,
    /// Train ids as grey values (`<name>.png`).
    Trainid,
    /// Cityscapes label ids for the benchmark server (`<name>.png`).
    Labelid,
}

/// The images `--input` names: one image, a folder (recursively), or a list file.
fn infer_inputs(input: &std::path::Path, root: &std::path::Path) -> anyhow::Result<Vec<PathBuf>> {
    let is_image = |p: &std::path::Path| {
        matches!(
            p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref(),
            Some("png" | "jpg" | "jpeg")
        )
    };
    if input.is_dir() {
        let mut out = Vec::new();
        let mut stack = vec![input.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).with_context(|| format!("{}: cannot list", dir.display()))? {
                let p = e?.path();
                if p.is_dir() {
                    stack.push(p);
                } else if is_image(&p) {
                    out.push(p);
                }
            }
        }
        out.sort();
        anyhow::ensure!(!out.is_empty(), "{}: no PNG or JPEG images", input.display());
        return Ok(out);
    }
    if is_image(input) {
        return Ok(vec![input.to_path_buf()]);
    }
    let entries = segzoo::data::lists::read_list(input, segzoo::data::lists::Columns::ImageOnly)?;
    Ok(entries.into_iter().map(|e| root.join(e.image)).collect())
}

#[derive(Subcommand)]
enum SynthCommand {
    /// Procedural street scenes with Cityscapes file names, label ids and lists.
    Cityscapes {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 20)]
        train: usize,
        #[arg(long, default_value_t = 5)]
        val: usize,
        /// Image size WxH.
        #[arg(long, default_value = "2048x1024", value_parser = parse_size)]
        size: (usize, usize),
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long)]
        threads: Option<usize>,
    },
    /// A small LIP-layout fixture (n train + n val).
    Lip {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 8)]
        n: usize,
        #[arg(long, default_value = "96x128", value_parser = parse_size)]
        size: (usize, usize),
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// A small VOC 2012 + SBD fixture (n train + n val, SBD .mat labels).
    Voc {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 8)]
        n: usize,
        #[arg(long, default_value = "120x90", value_parser = parse_size)]
        size: (usize, usize),
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// A small ImageNet-style class-folder fixture.
    Imagenet {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 4)]
        classes: usize,
        #[arg(long, default_value_t = 4)]
        per_class: usize,
        #[arg(long, default_value_t = 64)]
        size: u32,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Training-step throughput (forward + backward + optimiser) on synthetic tensors of the crop size.
    Train {
        #[arg(long)]
        config: PathBuf,
        #[arg(long, default_value_t = 10)]
        steps: usize,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        #[arg(long, value_parser = parse_device)]
        device: Option<tch::Device>,
    },
    /// Training-pipeline throughput: decode + augment + collate, on the config's train list.
    Data {
        #[arg(long)]
        config: PathBuf,
        #[arg(long, default_value_t = 1)]
        threads: usize,
        #[arg(long, default_value_t = 20)]
        batches: usize,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
}

fn parse_device(s: &str) -> Result<tch::Device, String> {
    match s {
        "cpu" => Ok(tch::Device::Cpu),
        _ => s
            .strip_prefix("cuda:")
            .and_then(|n| n.parse::<usize>().ok())
            .map(tch::Device::Cuda)
            .ok_or_else(|| format!("{s:?}: expected cpu or cuda:N")),
    }
}

fn parse_size(s: &str) -> Result<(usize, usize), String> {
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(|| format!("{s:?}: expected WxH, e.g. 2048x1024"))?;
    let n = |v: &str| {
        v.trim().parse::<usize>().ok().filter(|&v| v > 0).ok_or_else(|| format!("{s:?}: {v:?} is not a positive size"))
    };
    Ok((n(w)?, n(h)?))
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn print_written(written: &[segzoo::data::make_lists::Written]) -> anyhow::Result<()> {
    let mut text = String::new();
    for w in written {
        text += &format!("wrote {} ({} entries)\n", w.path.display(), w.entries);
    }
    print_out(&text)
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the resolved configuration (file + overrides + defaults) as TOML.
    Show {
        /// The TOML config file.
        file: PathBuf,
        /// Override a value: --set section.key=value (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
}

fn parse_overrides(set: &[String]) -> anyhow::Result<Vec<Override>> {
    set.iter().map(|s| s.parse::<Override>().map_err(anyhow::Error::from)).collect()
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Env { json } => {
            let report = segzoo::envinfo::EnvReport::collect();
            if json {
                print_out(&format!("{}\n", serde_json::to_string_pretty(&report)?))?;
            } else {
                print_out(&format!("{report}\n"))?;
            }
        }
        Command::Config(ConfigCommand::Show { file, set }) => {
            let config = load_config(&file, &parse_overrides(&set)?)?;
            print_out(&toml::to_string(&config).context("serialising the resolved config")?)?;
        }
        Command::ModelInfo { model, num_classes, tensors, json, set } => {
            let (mut cfg, default_classes) = resolve_model(&model, &set)?;
            if num_classes.is_some() {
                cfg.num_classes = num_classes;
            }
            let m = registry::build(&cfg, default_classes, tch::Device::Cpu)?;
            let infos = m.tensor_infos();
            if json {
                let tensors: Vec<serde_json::Value> =
                    infos.iter().map(|t| serde_json::json!({"name": t.name, "shape": t.shape})).collect();
                let v = serde_json::json!({
                    "model": m.preset,
                    "num_classes": m.num_classes,
                    "num_params": m.num_params(),
                    "num_buffers": m.num_buffers(),
                    "num_state_dict_entries": infos.len(),
                    "outputs": m.output_names,
                    "tensors": tensors,
                });
                print_out(&format!("{}\n", serde_json::to_string_pretty(&v)?))?;
            } else {
                let mut text = format!(
                    "model:      {}\nclasses:    {}\nparameters: {}\nbuffers:    {}\noutputs:    {}\n",
                    m.preset,
                    m.num_classes,
                    m.num_params(),
                    m.num_buffers(),
                    m.output_names.join(", ")
                );
                if tensors {
                    for t in &infos {
                        text += &format!("{:<70} {:?}\n", t.name, t.shape);
                    }
                }
                print_out(&text)?;
            }
        }
        Command::Convert { input, output, model, num_classes } => {
            let tensors = normalise_names(read_tensors(&input)?);
            if let Some(model) = model {
                let (mut cfg, classes) = resolve_model(&model, &[])?;
                cfg.num_classes = num_classes.or(cfg.num_classes);
                let m = registry::build(&cfg, classes, tch::Device::Cpu)?;
                let copies: Vec<(String, tch::Tensor)> =
                    tensors.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
                load_into(&m, copies, LoadMode::Strict, &input.display().to_string())?;
            }
            write_safetensors_atomic(&tensors, &output)?;
            print_out(&format!("wrote {} tensors to {}\n", tensors.len(), output.display()))?;
        }
        Command::Forward { model, weights, input, output, num_classes, allow_partial } => {
            let (mut cfg, classes) = resolve_model(&model, &[])?;
            cfg.num_classes = num_classes.or(cfg.num_classes);
            let m = registry::build(&cfg, classes, tch::Device::Cpu)?;
            if let Some(w) = &weights {
                let mode = if allow_partial { LoadMode::Partial } else { LoadMode::Strict };
                let report = load_file(&m, w, mode)?;
                tracing::info!("loaded {} tensors from {}", report.loaded, w.display());
            }
            let inputs =
                tch::Tensor::read_safetensors(&input).with_context(|| format!("reading {}", input.display()))?;
            let x = inputs
                .into_iter()
                .find(|(n, _)| n == "input")
                .map(|(_, t)| t)
                .with_context(|| format!("{} has no tensor named `input`", input.display()))?;
            if x.dim() != 4 || x.size()[1] != 3 {
                anyhow::bail!("{}: `input` must be N×3×H×W, got {:?}", input.display(), x.size());
            }
            m.check_input_size(x.size()[2], x.size()[3])?;
            let outs = tch::no_grad(|| m.forward_t(&x.to_kind(tch::Kind::Float), false));
            let named: Vec<(String, tch::Tensor)> =
                m.output_names.iter().zip(outs).map(|(n, t)| (format!("output_{n}"), t)).collect();
            write_safetensors_atomic(&named, &output)?;
            let mut text = String::new();
            for (n, t) in &named {
                text += &format!("{n}: {:?}\n", t.size());
            }
            print_out(&text)?;
        }
        Command::Synth(cmd) => {
            use segzoo::data::synth;
            let written = match cmd {
                SynthCommand::Cityscapes { out, train, val, size, seed, threads } => {
                    synth::cityscapes(&out, train, val, size.0, size.1, seed, threads.unwrap_or_else(cores))?
                }
                SynthCommand::Lip { out, n, size, seed } => synth::lip(&out, n, size.0, size.1, seed)?,
                SynthCommand::Voc { out, n, size, seed } => synth::voc(&out, n, size.0, size.1, seed)?,
                SynthCommand::Imagenet { out, classes, per_class, size, seed } => {
                    synth::imagenet(&out, classes, per_class, size, seed)?
                }
            };
            print_written(&written)?;
        }
        Command::MakeLists { dataset, root, check, threads } => {
            use segzoo::config::DatasetKind;
            use segzoo::data::make_lists;
            let written = match dataset {
                DatasetKind::Cityscapes => make_lists::cityscapes(&root)?,
                DatasetKind::Lip => make_lists::lip(&root)?,
                DatasetKind::Voc => make_lists::voc(&root)?,
                DatasetKind::Imagenet => make_lists::imagenet(&root)?,
            };
            print_written(&written)?;
            if check {
                for w in &written {
                    if w.path.file_name().is_some_and(|n| n == "test.lst") {
                        continue;
                    }
                    // Lists are written into the root; check them by name relative to it.
                    let name = w.path.file_name().map(std::path::Path::new).unwrap_or(&w.path);
                    let report = make_lists::check(dataset, &root, name, threads.unwrap_or_else(cores))?;
                    print_out(&report.render(dataset))?;
                }
                print_out("check: no problems found\n")?;
            }
        }
        Command::Bench(BenchCommand::Train { config, steps, set, device }) => {
            use segzoo::train::trainer;
            let cfg = load_config(&config, &parse_overrides(&set)?)?;
            let device = device.unwrap_or_else(trainer::default_device);
            let (ms, ips) = trainer::bench(&cfg, steps, device)?;
            print_out(&format!(
                "bench train: {} on {device:?}, batch {} of {}×{}: {ms:.1} ms/step, {ips:.2} img/s\n",
                cfg.model.name, cfg.train.batch_size, cfg.data.crop_size[0], cfg.data.crop_size[1]
            ))?;
        }
        Command::Bench(BenchCommand::Data { config, threads, batches, set }) => {
            let cfg = load_config(&config, &parse_overrides(&set)?)?;
            bench_data(&cfg, threads, batches)?;
        }
        Command::Train { config, set, resume, begin_epoch, max_steps, device } => {
            use segzoo::train::trainer::{self, Resume, TrainOptions};
            let cfg = load_config(&config, &parse_overrides(&set)?)?;
            let resume = resume.map(|r| if r == "auto" { Resume::Auto } else { Resume::Path(PathBuf::from(r)) });
            let (_, device, comm) = segzoo::dist::join(device, cfg.dist.backend)?;
            let opts = TrainOptions { resume, begin_epoch, max_steps, device, comm: comm.clone() };
            let summary = fail_together(&comm, trainer::train(&cfg, &opts))?;
            if comm.rank() != 0 {
                return Ok(());
            }
            let mut text = format!("trained {} steps, last loss {:.4}\n", summary.steps, summary.last_loss);
            if let Some(b) = summary.best_miou {
                text += &format!("best score {b:.4}\n");
            }
            if let Some(p) = &summary.last_checkpoint {
                text += &format!("last checkpoint {}\n", p.display());
            }
            print_out(&text)?;
        }
        Command::Infer { config, checkpoint, input, output, format, overlay, set, device } => {
            use segzoo::eval::{predict, visualise};
            use segzoo::train::trainer;
            let cfg = load_config(&config, &parse_overrides(&set)?)?;
            let device = device.unwrap_or_else(trainer::default_device);
            let model = registry::build(&cfg.model, Some(cfg.data.dataset.num_classes()), device)?;
            load_file(&model, &checkpoint, LoadMode::Strict)?;
            if format == OutputFormat::Labelid && cfg.data.dataset != segzoo::config::DatasetKind::Cityscapes {
                anyhow::bail!("--format labelid is for Cityscapes; use trainid for {:?}", cfg.data.dataset);
            }
            let inputs = infer_inputs(&input, &cfg.data.root)?;
            std::fs::create_dir_all(&output).with_context(|| format!("creating {}", output.display()))?;
            let bar = segzoo::progress::progress(inputs.len() as u64, "infer");
            let start = std::time::Instant::now();
            for path in &inputs {
                let img = segzoo::data::decode::read_rgb(path)?;
                let ids = predict::predict(&model, &img, cfg.data.mean, cfg.data.std)?;
                let (w, h) = (img.width(), img.height());
                let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("image");
                match format {
                    OutputFormat::Color => {
                        let color = visualise::colorize(cfg.data.dataset, &ids, w, h);
                        let color = if overlay { visualise::overlay(&img, &color, 0.5) } else { color };
                        segzoo::data::decode::write_rgb_png(&output.join(format!("{stem}_infer.png")), &color)?;
                    }
                    OutputFormat::Trainid => {
                        segzoo::data::decode::write_gray_png(&output.join(format!("{stem}.png")), w, h, &ids)?
                    }
                    OutputFormat::Labelid => segzoo::data::decode::write_gray_png(
                        &output.join(format!("{stem}.png")),
                        w,
                        h,
                        &visualise::to_label_ids(&ids),
                    )?,
                }
                bar.inc(1);
            }
            bar.finish_and_clear();
            let secs = start.elapsed().as_secs_f64();
            print_out(&format!(
                "wrote {} predictions to {} ({:.2} img/s)\n",
                inputs.len(),
                output.display(),
                inputs.len() as f64 / secs.max(1e-9)
            ))?;
        }
        Command::Eval { config, checkpoint, set, device, json, scales, flip, sliding } => {
            use segzoo::eval::evaluate::Tally;
            use segzoo::train::trainer;
            let mut cfg = load_config(&config, &parse_overrides(&set)?)?;
            if let Some(scales) = scales {
                anyhow::ensure!(
                    !scales.is_empty() && scales.iter().all(|&s| s > 0.0),
                    "--scales must be positive numbers"
                );
                cfg.eval.scales = scales;
            }
            cfg.eval.flip |= flip;
            cfg.eval.sliding |= sliding;
            let (_, device, comm) = segzoo::dist::join(device, cfg.dist.backend)?;
            let start = std::time::Instant::now();
            let (tally, images) =
                fail_together(&comm, trainer::evaluate_checkpoint(&cfg, &checkpoint, device, comm.as_ref()))?;
            let secs = start.elapsed().as_secs_f64();
            if comm.rank() != 0 {
                return Ok(());
            }
            let value = match tally {
                Tally::Seg(cm) => {
                    let m = cm.summary(&segzoo::data::labels::class_names(cfg.data.dataset));
                    print_out(&format!("{}\n{}", m.recipe_lines(), m.table()))?;
                    serde_json::to_value(&m)?
                }
                Tally::Cls(t1, t5, n) => {
                    let (a1, a5) = (t1 as f64 / n.max(1) as f64, t5 as f64 / n.max(1) as f64);
                    print_out(&format!("top-1 {:.2}%  top-5 {:.2}%  ({n} images)\n", 100.0 * a1, 100.0 * a5))?;
                    serde_json::json!({"top1": a1, "top5": a5, "images": n})
                }
            };
            print_out(&format!(
                "evaluated {images} images in {secs:.1} s ({:.2} img/s)\n",
                images as f64 / secs.max(1e-9)
            ))?;
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_string_pretty(&value)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        Command::DistCheck { backend, mib, iters, device } => {
            let (w, device, comm) = segzoo::dist::join(device, backend)?;
            let checked = segzoo::dist::check::verify(comm.as_ref(), device)
                .and_then(|()| segzoo::dist::check::bandwidth(comm.as_ref(), device, mib, iters));
            let bw = fail_together(&comm, checked)?;
            println!(
                "rank {}/{} ({:?}, local rank {}) on {}: {} collectives ok for {}",
                w.rank,
                w.size,
                w.launch,
                w.local_rank,
                segzoo::envinfo::device_name(device),
                comm.kind(),
                segzoo::dist::check::KINDS.map(|k| format!("{k:?}")).join(", ")
            );
            if comm.rank() == 0 {
                println!(
                    "all-reduce of {:.1} MiB f32 over {} rank(s): {:.2} ms, algorithm bandwidth {:.2} GB/s, bus bandwidth {:.2} GB/s",
                    bw.bytes as f64 / (1 << 20) as f64,
                    w.size,
                    bw.ms,
                    bw.alg_gbps,
                    bw.bus_gbps
                );
            }
        }
        Command::EvalPreds { dataset, pred_dir, list, root, pred_ids, json } => {
            let root = root.unwrap_or_else(|| list.parent().map(PathBuf::from).unwrap_or_default());
            let m = segzoo::eval::preds::evaluate(dataset, &root, &list, &pred_dir, pred_ids == PredIds::Labelid)?;
            print_out(&format!("{}\n{}", m.recipe_lines(), m.table()))?;
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_string_pretty(&m)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        Command::Export { checkpoint, out } => {
            let tensors = normalise_names(read_tensors(&checkpoint)?);
            anyhow::ensure!(!tensors.is_empty(), "{}: no weights", checkpoint.display());
            write_safetensors_atomic(&tensors, &out)?;
            print_out(&format!("wrote {} tensors to {}\n", tensors.len(), out.display()))?;
        }
        Command::Models => {
            let mut text = String::new();
            for p in registry::presets() {
                text += &format!("{:<24} {}\n", p.name, p.about);
            }
            print_out(&text)?;
        }
    }
    Ok(())
}

/// `segzoo bench data`: batches of the training pipeline, timed after one warm-up batch.
fn bench_data(cfg: &segzoo::config::Config, threads: usize, batches: usize) -> anyhow::Result<()> {
    use segzoo::data::{dataset, loader, sampler::ShardedSampler};
    let ds: std::sync::Arc<dyn dataset::Dataset> = dataset::from_config(&cfg.data, dataset::Split::Train)?.into();
    let bs = cfg.train.batch_size;
    let mut indices = Vec::new();
    let mut epoch = 0;
    while indices.len() < (batches + 1) * bs {
        indices.extend(ShardedSampler::train(ds.len(), 1, 0, cfg.train.seed).indices(epoch));
        epoch += 1;
    }
    indices.truncate((batches + 1) * bs);
    let opts = loader::LoaderOptions {
        batch_size: bs,
        workers: threads,
        prefetch: cfg.data.prefetch,
        drop_last: true,
        seed: cfg.train.seed,
    };
    let mut it = loader::epoch(ds, &indices, 0, &opts);
    let first = it.next().context("no batch")??;
    let shape = first.images.size();
    let start = std::time::Instant::now();
    let mut n = 0;
    for b in it {
        b?;
        n += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    print_out(&format!(
        "bench data: {} threads, {n} batches of {:?}: {:.1} ms/batch, {:.2} img/s\n",
        threads,
        shape,
        1000.0 * secs / n.max(1) as f64,
        (n * bs) as f64 / secs
    ))
}

/// A `[model]` section from a preset name or a config file, and the dataset's class count.
fn resolve_model(arg: &str, set: &[String]) -> anyhow::Result<(segzoo::config::ModelConfig, Option<i64>)> {
    let path = std::path::Path::new(arg);
    if arg.ends_with(".toml") || path.is_file() {
        let cfg = load_config(path, &parse_overrides(set)?)?;
        Ok((cfg.model, Some(cfg.data.dataset.num_classes())))
    } else {
        if !set.is_empty() {
            anyhow::bail!("--set needs a config file, not a preset name");
        }
        registry::find_preset(arg)?;
        Ok((registry::preset_config(arg), None))
    }
}

/// Print to stdout; a closed pipe (`| head`) ends output quietly instead of panicking.
fn print_out(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(anyhow::anyhow!("writing output: {e}")),
        _ => Ok(()),
    }
}

/// On one rank of several, a failure ends the whole job with this rank named: under
/// mpirun MPI_Abort stops every rank; under segzoo-launch the exit code does.
fn fail_together<T>(comm: &segzoo::dist::Comm, result: anyhow::Result<T>) -> anyhow::Result<T> {
    match result {
        Err(e) if comm.size() > 1 => {
            eprintln!("error: rank {}/{} failed: {e:#}", comm.rank(), comm.size());
            comm.abort(1)
        }
        r => r,
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Err(e) = logging::init(cli.log_format, cli.log_level.as_deref()) {
        eprintln!("error: {e:#}");
        return std::process::ExitCode::from(2);
    }
    // Every log line of a multi-process job carries `rank k/N`, and so does its error.
    let mut who = String::new();
    if let Ok(w) = segzoo::dist::world::from_process_env() {
        if w.size > 1 {
            logging::set_rank(w.rank, w.size);
            who = format!("rank {}/{}: ", w.rank, w.size);
        }
    }
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {who}{e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
