//! The library's layers point one way: no module reaches up into one above it, so there is no import cycle,
//! inference never depends on training, evaluation or the page, and the safetensors codec and int8 sit
//! below the weights loader. Read from the sources: every `crate::` path and `use crate::…` of each
//! top-level module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Bottom to top: a module may use modules of its own or lower layers only, and none of its own layer
/// may form a cycle with it.
const LAYERS: &[&[&str]] = &[
    &["error"],
    &["files", "readback", "rng", "bezier", "codec"],
    &["image", "quantize", "metrics", "tokenizer", "preview"],
    &["synthetic", "weights"],
    &["nn", "scheduler"],
    &["clip", "unet", "vae", "classifier", "lpips"],
    &["pipeline"],
    &["swap", "invert"],
    &["output", "evaluate", "prompt_edit"],
    &["plot"],
    &["app", "train"],
];

/// The top-level modules each file uses, by module.
fn uses() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "bin") {
                    stack.push(path);
                }
                continue;
            }
            let rel = path.strip_prefix(&src).unwrap();
            let first = rel.components().next().unwrap().as_os_str().to_string_lossy().to_string();
            let module = first.trim_end_matches(".rs").to_string();
            if module == "lib" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let deps = out.entry(module.clone()).or_default();
            for (i, _) in text.match_indices("crate::") {
                let name: String =
                    text[i + 7..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if !name.is_empty() && name != module && name != "Error" && name != "Result" {
                    deps.insert(name);
                }
            }
        }
    }
    out
}

#[test]
fn every_module_is_in_a_layer() {
    let placed: BTreeSet<&str> = LAYERS.iter().flat_map(|l| l.iter().copied()).collect();
    for module in uses().keys() {
        assert!(placed.contains(module.as_str()), "src/{module} is in no layer of tests/layers.rs");
    }
}

#[test]
fn modules_use_only_lower_layers() {
    let layer = |m: &str| LAYERS.iter().position(|l| l.contains(&m));
    let mut wrong = Vec::new();
    for (module, deps) in uses() {
        let Some(own) = layer(&module) else { continue };
        for dep in deps {
            match layer(&dep) {
                Some(l) if l < own => {}
                Some(l) if l == own => wrong.push(format!("{module} uses {dep} of its own layer")),
                Some(_) => wrong.push(format!("{module} uses {dep}, a layer above it")),
                None => wrong.push(format!("{module} uses crate::{dep}, which is no module")),
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
