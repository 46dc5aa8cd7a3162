//! The documents stay true: every relative link of README.md and docs/ resolves (anchors
//! included), every `segzoo …` / `segzoo-launch …` subcommand they show in code exists, and
//! every key of the configuration reference is accepted with the value it shows — and every
//! key segzoo has is in the reference.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const SEGZOO: &str = env!("CARGO_BIN_EXE_segzoo");

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every docs/*.md.
fn documents() -> Vec<PathBuf> {
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    docs.insert(0, root().join("README.md"));
    assert!(docs.len() >= 12, "README and the guides: {docs:?}");
    docs
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// GitHub's anchor of a heading: lower case, spaces to hyphens, punctuation dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    let mut fenced = false;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            out.insert(slug(line.trim_start_matches('#')));
        }
    }
    out
}

/// The targets of the Markdown links and images in `text` (outside code blocks).
fn links(text: &str) -> Vec<String> {
    let mut fenced = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            out.push(after[..end].to_string());
            rest = &after[end..];
        }
    }
    out
}

/// Every relative link's problem, if any: (document, target, what is wrong).
fn broken_links(docs: &[PathBuf]) -> Vec<String> {
    let mut broken = Vec::new();
    for doc in docs {
        let text = read(doc);
        for target in links(&text) {
            if target.starts_with("http://") || target.starts_with("https://") || target.starts_with("mailto:") {
                continue;
            }
            let (file, anchor) = target.split_once('#').map_or((target.as_str(), None), |(f, a)| (f, Some(a)));
            let path = if file.is_empty() { doc.clone() } else { doc.parent().expect("folder").join(file) };
            if !path.exists() {
                broken.push(format!("{}: {target}: no such file", doc.display()));
                continue;
            }
            if let Some(anchor) = anchor.filter(|_| path.extension().is_some_and(|x| x == "md")) {
                if !anchors(&read(&path)).contains(anchor) {
                    broken.push(format!("{}: {target}: no heading with that anchor", doc.display()));
                }
            }
        }
    }
    broken
}

#[test]
fn every_relative_link_in_the_readme_and_the_guides_resolves() {
    let docs = documents();
    let broken = broken_links(&docs);
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    let total: usize = docs.iter().map(|d| links(&read(d)).len()).sum();
    assert!(total >= 20, "only {total} links found: the parser is not reading them");
}

#[test]
fn a_broken_link_and_a_missing_anchor_are_caught() {
    let dir = tempfile::tempdir().expect("tempdir");
    let doc = dir.path().join("a.md");
    std::fs::write(dir.path().join("b.md"), "# Title\n\n## A `[section]`, here\n").expect("b");
    std::fs::write(&doc, "[ok](b.md#a-section-here) [gone](c.md) [bad](b.md#nope) [web](https://x.org)\n").expect("a");
    let broken = broken_links(&[doc]);
    assert_eq!(broken.len(), 2, "{broken:?}");
    assert!(broken[0].ends_with("c.md: no such file") && broken[1].contains("b.md#nope"), "{broken:?}");
}

/// The code of `text`: fenced blocks and inline code spans.
fn code(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if fenced {
            out.push(line.to_string());
        } else {
            out.extend(line.split('`').skip(1).step_by(2).map(str::to_string));
        }
    }
    out
}

/// (binary, subcommand words) for every `segzoo …` / `segzoo-launch …` in `line`.
fn invocations(line: &str) -> Vec<(String, Vec<String>)> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let mut out = Vec::new();
    for (i, w) in words.iter().enumerate() {
        let name = w.rsplit('/').next().unwrap_or(w).trim_start_matches(['(', '"', '\'']);
        if name != "segzoo" && name != "segzoo-launch" {
            continue;
        }
        let subs: Vec<String> = words[i + 1..]
            .iter()
            .take_while(|s| s.chars().all(|c| c.is_ascii_lowercase() || c == '-') && !s.starts_with('-'))
            .take(2)
            .map(|s| s.to_string())
            .collect();
        out.push((name.to_string(), subs));
    }
    out
}

fn help(bin: &Path, words: &[String]) -> Option<String> {
    let out = Command::new(bin).args(words).arg("--help").output().expect("runs");
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Every shown subcommand that does not exist: (document, line).
fn missing_subcommands(docs: &[PathBuf]) -> (Vec<String>, usize) {
    let bins =
        [("segzoo", PathBuf::from(SEGZOO)), ("segzoo-launch", Path::new(SEGZOO).with_file_name("segzoo-launch"))];
    let mut checked = BTreeSet::new();
    let mut missing = Vec::new();
    for doc in docs {
        for line in code(&read(doc)) {
            for (name, subs) in invocations(&line) {
                let bin = &bins.iter().find(|(n, _)| *n == name).expect("known").1;
                // The launcher's own form takes options, then `--` and the worker command.
                if name == "segzoo-launch"
                    && subs.first().is_none_or(|s| !["check", "gen-table", "help"].contains(&s.as_str()))
                {
                    continue;
                }
                let Some(first) = subs.first() else { continue };
                if !checked.insert((name.clone(), subs.clone())) {
                    continue;
                }
                match help(bin, std::slice::from_ref(first)) {
                    None => missing.push(format!("{}: `{name} {first}` in: {line}", doc.display())),
                    // A family (`bench`, `runs`, `config`): its second word must be one of it.
                    Some(text) if text.contains("Commands:") && subs.len() > 1 => {
                        if help(bin, &subs[..2]).is_none() {
                            missing.push(format!("{}: `{name} {} {}` in: {line}", doc.display(), subs[0], subs[1]));
                        }
                    }
                    Some(_) => {}
                }
            }
        }
    }
    (missing, checked.len())
}

#[test]
fn every_subcommand_the_documents_show_exists() {
    let (missing, checked) = missing_subcommands(&documents());
    assert!(missing.is_empty(), "subcommands that do not exist:\n{}", missing.join("\n"));
    assert!(checked >= 20, "only {checked} distinct invocations found: the parser is not reading them");
}

#[test]
fn a_subcommand_that_does_not_exist_is_caught() {
    let dir = tempfile::tempdir().expect("tempdir");
    let doc = dir.path().join("a.md");
    std::fs::write(&doc, "```sh\nsegzoo trian --config c.toml\nsegzoo bench nothing\n```\nand `segzoo env`\n")
        .expect("write");
    let (missing, checked) = missing_subcommands(&[doc]);
    assert_eq!(checked, 3);
    assert_eq!(missing.len(), 2, "{missing:?}");
    assert!(missing[0].contains("`segzoo trian`") && missing[1].contains("`segzoo bench nothing`"), "{missing:?}");
}

/// (key, value) of every row of the configuration reference's tables.
fn reference_keys() -> Vec<(String, String)> {
    let text = read(&root().join("docs/configuration.md"));
    text.lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.split(" | ").collect();
            let key = cells[0].trim_start_matches("| ").trim_matches('`').to_string();
            // The default, or the example an unset key gives.
            let value = cells[1].split('`').nth(1).unwrap_or_else(|| panic!("{key}: no value shown")).to_string();
            (key, value)
        })
        .collect()
}

#[test]
fn every_key_of_the_configuration_reference_is_accepted_and_every_key_is_in_it() {
    let keys = reference_keys();
    assert!(keys.len() >= 70, "only {} keys read", keys.len());
    let mut cmd = Command::new(SEGZOO);
    cmd.args(["config", "show", "configs/quickstart.toml"]).current_dir(root());
    for (key, value) in &keys {
        cmd.arg("--set").arg(format!("{key}={value}"));
    }
    // Keys that apply to one setting only, given together: `train.loss_scale` is fp16's, the
    // custom-dataset keys a custom dataset's (whose class count is then its two classes).
    cmd.args(["--set", "train.precision=\"fp16\"", "--set", "data.dataset=\"custom\"", "--set", "model.num_classes=2"]);
    let out = cmd.output().expect("segzoo runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Completeness: every key segzoo prints, with the examples set, is in the reference.
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    let documented: BTreeSet<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
    let mut section = String::new();
    for line in shown.lines() {
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_string();
        } else if let Some((k, _)) = line.split_once(" = ") {
            let key = format!("{section}.{k}");
            // Whole tables (model.hrnet.stage1, …) are documented as their table.
            let covered =
                documented.contains(key.as_str()) || documented.iter().any(|d| key.starts_with(&format!("{d}.")));
            assert!(covered, "{key} is not in docs/configuration.md");
        }
    }
    let bad = Command::new(SEGZOO)
        .args(["config", "show", "configs/quickstart.toml", "--set", "train.nonsense=1"])
        .current_dir(root())
        .output()
        .expect("segzoo runs");
    assert!(!bad.status.success(), "an unknown key must be refused, or this test proves nothing");
}
