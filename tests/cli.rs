//! The `traverse` binary end to end on the tiny fixture model: outputs exist, the manifest records the run,
//! `--init-latents` reproduces a seed's run exactly, and bad input is a message with a non-zero exit.

mod common;

use std::process::Command;

use common::*;

fn traverse(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_traverse")).args(args).output().expect("binary runs")
}

fn manifest_named(dir: &std::path::Path, name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap()
}

fn manifest(dir: &std::path::Path) -> serde_json::Value {
    manifest_named(dir, "manifest.json")
}

#[test]
fn generate_then_interpolate() {
    let tmp = TempDir::new("cli");
    let model = fixtures().join("tiny-sd");
    let model = model.to_str().unwrap();
    let a = tmp.0.join("a");
    let out = traverse(&[
        "generate",
        "--model",
        model,
        "--seed",
        "3",
        "--steps",
        "10",
        "--swap-points",
        "2,4,6,8",
        "--out",
        a.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let m = manifest(&a);
    assert_eq!(m["unet_evaluations"], 10 + 2 + 4 + 6 + 8);
    assert_eq!(m["seed"], 3);
    assert_eq!(m["images"].as_array().unwrap().len(), 5);
    for f in ["sheet.png", "neutral.png", "style0_t8.png", "latents.safetensors"] {
        assert!(a.join(f).is_file(), "{f}");
    }

    // Same noise through --init-latents gives the same final latents.
    let b = tmp.0.join("b");
    let init = a.join("latents.safetensors");
    let out = traverse(&[
        "generate",
        "--model",
        model,
        "--init-latents",
        init.to_str().unwrap(),
        "--steps",
        "10",
        "--swap-points",
        "2,4,6,8",
        "--out",
        b.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let read = |p: &std::path::Path| {
        let bytes = std::fs::read(p.join("latents.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        st.tensor("style0.t8").unwrap().data().to_vec()
    };
    assert_eq!(read(&a), read(&b));

    let c = tmp.0.join("c");
    let out = traverse(&[
        "interpolate",
        "--model",
        model,
        "--latents",
        init.to_str().unwrap(),
        "--controls",
        "4",
        "--samples",
        "6",
        "--out",
        c.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(c.join("bezier_005.png").is_file());
    assert_eq!(manifest(&c)["control_points"].as_array().unwrap().len(), 4);
}

#[test]
fn a_prompt_edit_runs_as_its_two_prompts_and_swap_point() {
    let tmp = TempDir::new("edit");
    let model = fixtures().join("tiny-sd");
    let run = |out: &std::path::Path, prompts: &[&str]| {
        let mut args = vec!["generate", "--model", model.to_str().unwrap(), "--seed", "5", "--steps", "10"];
        args.extend(["--swap-points", "2", "--out", out.to_str().unwrap()]);
        args.extend(prompts);
        let out = traverse(&args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    let (a, b) = (tmp.0.join("edit"), tmp.0.join("plain"));
    // After 60% of 10 steps: the style prompt for the last 4, so t = 4 joins --swap-points.
    run(&a, &["--edit", "Chest x-ray [with no significant findings:showing Support Devices:0.6]"]);
    run(
        &b,
        &["--neutral", "Chest x-ray with no significant findings", "--style", "Chest x-ray showing Support Devices"],
    );
    let (ma, mb) = (manifest(&a), manifest(&b));
    assert_eq!(ma["neutral"], "Chest x-ray with no significant findings");
    assert_eq!(ma["styles"], serde_json::json!(["Chest x-ray showing Support Devices"]));
    assert_eq!(ma["swap_points"], serde_json::json!([2, 4]));
    let latent = |dir: &std::path::Path, name: &str| {
        let bytes = std::fs::read(dir.join("latents.safetensors")).unwrap();
        safetensors::SafeTensors::deserialize(&bytes).unwrap().tensor(name).unwrap().data().to_vec()
    };
    assert_eq!(latent(&a, "style0.t2"), latent(&b, "style0.t2"), "the same prompts give the same images");
    assert_eq!(mb["swap_points"], serde_json::json!([2]));

    let out = traverse(&["generate", "--model", model.to_str().unwrap(), "--edit", "[a:b:10]", "--steps", "10"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("never runs"), "{err}");
    let out = traverse(&["generate", "--model", model.to_str().unwrap(), "--edit", "[a:b:1]", "--neutral", "c"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));
}

#[test]
fn fit_preview_writes_a_preview_the_page_reads() {
    let tmp = TempDir::new("preview");
    let model = fixtures().join("tiny-sd");
    let file = tmp.0.join("preview.json");
    let out = traverse(&[
        "fit-preview",
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        "Chest x-ray",
        "--seeds",
        "1",
        "--steps",
        "3",
        "--out",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let p = traverse::preview::LatentPreview::from_json(&std::fs::read(&file).unwrap(), 4).unwrap();
    assert!(p.fitted && p.rgb.iter().flatten().any(|v| *v != 0.0));
}

#[test]
fn quantize_writes_a_loadable_int8_folder_with_a_report() {
    let tmp = TempDir::new("quant");
    let model = fixtures().join("tiny-sd");
    let out = tmp.0.join("int8");
    let run = traverse(&[
        "quantize",
        "--model",
        model.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--check-seeds",
        "1",
        "--check-steps",
        "4",
        "--classifiers",
        classifiers().to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let report = manifest_named(&out, "quantization.json");
    // Chest: neutral + 2 styles, 2 labels each; dermoscopy: MEL and NV neutrals + 4 styles each, 5 labels each.
    assert_eq!(report["check"]["classifier_decisions"], 3 * 2 + 10 * 5);
    let agreement = report["check"]["classifier_agreement"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&agreement));
    let (f32_bytes, int8_bytes) =
        (report["weights_bytes_f32"].as_f64().unwrap(), report["weights_bytes_int8"].as_f64().unwrap());
    assert!(int8_bytes < 0.5 * f32_bytes, "{int8_bytes} vs {f32_bytes}");
    assert_eq!(report["check"]["psnr_db"].as_array().unwrap().len(), 13);
    assert!(report["check"]["mean_psnr_db"].as_f64().unwrap().is_finite());
    // The quantized folder generates like any other model folder.
    let generated = tmp.0.join("gen");
    let run = traverse(&[
        "generate",
        "--model",
        out.to_str().unwrap(),
        "--steps",
        "4",
        "--swap-points",
        "2",
        "--out",
        generated.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
}

#[test]
fn blend_writes_a_model_folder_that_generates() {
    let tmp = TempDir::new("blend");
    let model = fixtures().join("tiny-sd");
    let model = model.to_str().unwrap();
    let blended = tmp.0.join("blended");
    let blend = |weight: &str| {
        traverse(&["blend", "--base", model, "--tuned", model, "--weight", weight, "--out", blended.to_str().unwrap()])
    };
    let run = blend("0.3");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    // A model blended with itself is itself (to float rounding): the same seed gives the same latents.
    let latents = |model: &str, out: &str| {
        let out = tmp.0.join(out);
        let run = traverse(&[
            "generate",
            "--model",
            model,
            "--steps",
            "4",
            "--swap-points",
            "2",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        let bytes = std::fs::read(out.join("latents.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let data = st.tensor("style0.t2").unwrap().data().to_vec();
        data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect::<Vec<_>>()
    };
    let (original, mixed) = (latents(model, "a"), latents(blended.to_str().unwrap(), "b"));
    assert_eq!(original.len(), mixed.len());
    assert!(original.iter().zip(&mixed).all(|(a, b)| (a - b).abs() < 1e-3));
    // The output exists now, so a second blend is refused; so is a weight outside 0..=1.
    for weight in ["0.5", "1.5"] {
        let run = blend(weight);
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success() && err.starts_with("error:") && !err.contains("panicked"), "{err}");
    }
}

fn classifiers() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("public/classifiers")
}

#[test]
fn evaluate_scores_every_style_of_a_family() {
    let tmp = TempDir::new("eval");
    let report = tmp.0.join("evaluation.json");
    let model = fixtures().join("tiny-sd");
    let classifier = classifiers().join("chest");
    // `traverse evaluate` of the tiny model on the chest family, with `args` after that.
    let evaluate_chest = |args: &[&str]| {
        let mut all = vec!["evaluate", "--model", model.to_str().unwrap(), "--kind", "chest"];
        all.extend(["--classifier", classifier.to_str().unwrap()]);
        all.extend(args);
        traverse(&all)
    };
    let lpips = tmp.0.join("lpips.safetensors");
    std::fs::write(&lpips, lpips_test_weights()).unwrap();
    let run = evaluate_chest(&[
        "--subjects",
        "2",
        "--steps",
        "6",
        "--swap-points",
        "2,4,6",
        "--controls",
        "3",
        "--interpolations",
        "4",
        "--ceiling-subjects",
        "3",
        "--ceiling-sheet",
        tmp.0.join("ceiling.png").to_str().unwrap(),
        "--tsne-svg",
        tmp.0.join("tsne.svg").to_str().unwrap(),
        "--lpips",
        lpips.to_str().unwrap(),
        "--out",
        report.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("| chest | pleural_effusion |"), "{stdout}");
    assert!(stdout.contains("- chest pleural_effusion: support_devices "), "{stdout}");
    assert!(stdout.contains("CFRT per swap point t = [2, 4, 6]"), "{stdout}");
    let report = manifest_named(&tmp.0, "evaluation.json");
    let scores = report["scores"].as_array().unwrap();
    let styles: Vec<&str> = scores.iter().map(|s| s["attribute"].as_str().unwrap()).collect();
    assert_eq!(styles, ["pleural_effusion", "support_devices"]);
    for s in scores {
        assert_eq!(s["samples"], 2 * 3);
        for key in ["cfrt", "cfrt_interpolated"] {
            assert!((0.0..=1.0).contains(&s[key].as_f64().unwrap()), "{key}: {s}");
        }
        // Each value lies in its 95% bootstrap interval over subjects.
        for key in ["cfrt", "cfrt_interpolated", "lpips", "lpips_interpolated"] {
            let v = s[key].as_f64().unwrap();
            assert!(v.is_finite() && (!key.starts_with("lpips") || v > 0.0), "{key}: {s}");
            let ci = &s[format!("{key}_interval")];
            let (lo, hi) = (ci[0].as_f64().unwrap(), ci[1].as_f64().unwrap());
            assert!(lo <= v && v <= hi, "{key}: {v} outside [{lo}, {hi}]");
        }
        // The side effects name the family's other label, as a rate.
        let effects = s["side_effects"].as_array().unwrap();
        let other = if s["attribute"] == "pleural_effusion" { "support_devices" } else { "pleural_effusion" };
        assert_eq!(effects.len(), 1, "{s}");
        assert_eq!(effects[0][0], other);
        assert!((0.0..=1.0).contains(&effects[0][1].as_f64().unwrap()), "{s}");
        // Per swap point over the 2 subjects; their mean is the CFRT over all swap images.
        let per_point: Vec<f64> =
            s["cfrt_by_swap_point"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(per_point.len(), 3, "{s}");
        assert!(per_point.iter().all(|r| [0.0, 0.5, 1.0].contains(r)), "{s}");
        let cfrt = s["cfrt"].as_f64().unwrap();
        assert!((per_point.iter().sum::<f64>() / 3.0 - cfrt).abs() < 1e-9, "{s}");
        assert!((0.0..=cfrt).contains(&s["passes_below_threshold"].as_f64().unwrap()), "{s}");
        let cos = s["cosines"].as_array().unwrap();
        assert_eq!(cos.len(), 3);
        assert!((cos[1][1].as_f64().unwrap() - 1.0).abs() < 1e-9);
    }
    // Fig. 4: one t-SNE map of the setting's 2 subjects × (neutral + 2 styles × 3 swap points) latents.
    let maps = report["latent_maps"].as_array().unwrap();
    assert_eq!(maps.len(), 1);
    let points = maps[0]["points"].as_array().unwrap();
    assert_eq!(points.len(), 14);
    assert!((maps[0]["perplexity"].as_f64().unwrap() - 13.0 / 3.0).abs() < 1e-5, "lowered for 14 latents");
    assert_eq!(points[0]["style"], serde_json::Value::Null);
    assert_eq!((points[1]["style"].as_str(), points[1]["swap_point"].as_u64()), (Some("pleural_effusion"), Some(2)));
    assert_eq!(points[7]["subject"], 1);
    assert!(points.iter().all(|p| p["x"].as_f64().unwrap().is_finite() && p["y"].as_f64().unwrap().is_finite()));
    let xs: Vec<f64> = points.iter().map(|p| p["x"].as_f64().unwrap()).collect();
    assert!(xs.iter().any(|&x| x != xs[0]), "the map spreads the latents out");
    for key in ["same_subject_neighbours", "same_subject_neighbours_map"] {
        // Over the 2 subjects × 2 styles at t = 6.
        let rate = maps[0][key].as_f64().unwrap();
        assert!([0.0, 0.25, 0.5, 0.75, 1.0].contains(&rate), "{key}: {rate}");
    }
    let svg = std::fs::read_to_string(tmp.0.join("tsne.svg")).unwrap();
    assert!(svg.matches("<circle").count() >= 14, "a dot per latent");

    // The autoencoder ceiling: one row per attribute, and a sheet of 3 phantoms + 3 reconstructions per row.
    let ceiling = report["autoencoder_ceiling"]["attributes"].as_array().unwrap();
    let labels: Vec<&str> = ceiling.iter().map(|c| c["attribute"].as_str().unwrap()).collect();
    assert_eq!(labels, ["pleural_effusion", "support_devices"]);
    for c in ceiling {
        assert_eq!(c["samples"], 3);
        for key in
            ["phantom_positive", "reconstruction_positive", "phantom_false_positive", "reconstruction_false_positive"]
        {
            assert!((0.0..=1.0).contains(&c[key].as_f64().unwrap()), "{key}: {c}");
        }
        assert!(c["psnr_db"].as_f64().unwrap().is_finite());
        // Split by the batch that was on: here only the other attribute's.
        let by = c["reconstruction_false_positive_by_attribute"].as_array().unwrap();
        let other = if c["attribute"] == "pleural_effusion" { "support_devices" } else { "pleural_effusion" };
        assert_eq!(by.len(), 1, "{c}");
        assert_eq!(by[0][0], other);
        // Each batch holds every negative here, so the split equals the total.
        assert_eq!(by[0][1].as_f64(), c["reconstruction_false_positive"].as_f64());
    }
    let sheet = image::open(tmp.0.join("ceiling.png")).unwrap();
    // Cells are separated by 2-pixel gaps.
    let cell = (sheet.width() + 2) / 6;
    assert_eq!((sheet.width() + 2, sheet.height() + 2), (6 * cell, 2 * cell));

    // --ceiling-subjects 0 leaves the ceiling out of the report rather than writing empty rows.
    let run = evaluate_chest(&[
        "--subjects",
        "1",
        "--steps",
        "2",
        "--swap-points",
        "1,2",
        "--interpolations",
        "0",
        "--ceiling-subjects",
        "0",
        "--no-lpips",
        "--out",
        tmp.0.join("no-ceiling.json").to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let report = manifest_named(&tmp.0, "no-ceiling.json");
    assert!(report.get("autoencoder_ceiling").is_none(), "{report}");
    assert!(report["scores"][0]["lpips"].is_null(), "--no-lpips, no LPIPS");
    assert_eq!(report["scores"].as_array().unwrap().len(), 2);
}

/// A run split into 3 shards and merged gives the report of the same run in one shard, byte for byte (its
/// cost aside), and its first subjects merged alone give the report of a smaller run; a finished shard is
/// skipped, another run's file is never overwritten, and a missing shard is named.
#[test]
fn evaluate_shards_merge_into_the_one_process_report() {
    let tmp = TempDir::new("eval-shards");
    let model = fixtures().join("tiny-sd");
    let classifier = classifiers().join("chest");
    let run_of = |subjects: &str, seed: &str, args: &[&str]| {
        let mut all = vec!["evaluate", "--model", model.to_str().unwrap(), "--kind", "chest"];
        all.extend(["--classifier", classifier.to_str().unwrap(), "--subjects", subjects, "--seed", seed]);
        all.extend(["--steps", "4", "--swap-points", "2,4", "--controls", "3", "--interpolations", "3"]);
        all.extend(["--ceiling-subjects", "2", "--map-subjects", "3"]);
        all.extend(args);
        let out = traverse(&all);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let run = |seed: &str, args: &[&str]| run_of("4", seed, args);
    let dir = |name: &str| tmp.0.join(name).to_str().unwrap().to_string();
    let merge_first = |shards: &str, out: &str, first: &[&str]| {
        let mut all = vec!["evaluate", "merge", "--kind", "chest"];
        let (shards, out) = (dir(shards), dir(out));
        all.extend(["--shard-dir", &shards, "--out", &out]);
        all.extend(first);
        traverse(&all)
    };
    let merge = |shards: &str, out: &str| merge_first(shards, out, &[]);
    run("1000", &["--shard", "0/1", "--shard-dir", &dir("one")]);
    for k in 0..3 {
        run("1000", &["--shard", &format!("{k}/3"), "--shard-dir", &dir("three")]);
    }
    for (shards, out) in [("one", "one.json"), ("three", "three.json")] {
        let m = merge(shards, out);
        assert!(m.status.success(), "{}", String::from_utf8_lossy(&m.stderr));
    }
    let md = |name: &str| std::fs::read(tmp.0.join(name)).unwrap();
    assert_eq!(md("one.md"), md("three.md"), "the tables are byte-identical");
    let results = |name: &str| {
        let mut report = manifest_named(&tmp.0, name);
        let cost = report.as_object_mut().unwrap().remove("cost").unwrap();
        (report, cost)
    };
    let ((one, one_cost), (three, three_cost)) = (results("one.json"), results("three.json"));
    assert_eq!(one, three, "every figure of the report is the same");
    assert_eq!((one_cost["shards"].as_u64(), three_cost["shards"].as_u64()), (Some(1), Some(3)));
    // 4 subjects × 2 styles × 2 swap points per style; the map holds the first 3 subjects' 5 latents each.
    assert_eq!(one["scores"][0]["samples"], 8);
    assert_eq!(one["latent_maps"][0]["points"].as_array().unwrap().len(), 15);
    assert!(one_cost["unet_evaluations_per_trajectory"].as_f64().unwrap() > 0.0);
    assert!(one["autoencoder_ceiling"]["attributes"].as_array().unwrap().len() == 2, "shard 0 measures it");
    // The first 2 subjects of the 3-shard run (shards 0 and 1 hold them) report as a run of 2 does.
    run_of("2", "1000", &["--shard", "0/1", "--shard-dir", &dir("two")]);
    let first_two = ["--first-subjects", "2"];
    for (shards, out, first) in [("two", "two.json", &[][..]), ("three", "first-two.json", &first_two[..])] {
        let m = merge_first(shards, out, first);
        assert!(m.status.success(), "{}", String::from_utf8_lossy(&m.stderr));
    }
    assert_eq!(md("two.md"), md("first-two.md"), "the first subjects' tables are a smaller run's");
    let ((two, _), (first_two, first_cost)) = (results("two.json"), results("first-two.json"));
    assert_eq!(two, first_two, "every figure of the first subjects' report is the smaller run's");
    assert_eq!(first_cost["shards"].as_u64(), Some(2), "the shard holding subjects 2 and 3 is left out");
    assert_eq!(two["scores"][0]["samples"], 4);
    for bad in ["0", "5"] {
        let m = merge_first("three", "bad.json", &["--first-subjects", bad]);
        let err = String::from_utf8_lossy(&m.stderr);
        assert!(!m.status.success() && err.contains("--first-subjects"), "{err}");
    }
    // Resumed: a finished shard is skipped; another run's file in its place is refused, not overwritten.
    let again = run("1000", &["--shard", "1/3", "--shard-dir", &dir("three")]);
    assert!(again.contains("already done"), "{again}");
    let mut all = vec!["evaluate", "--model", model.to_str().unwrap(), "--kind", "chest", "--subjects", "4"];
    let three_dir = dir("three");
    all.extend(["--classifier", classifier.to_str().unwrap(), "--shard", "1/3", "--shard-dir", &three_dir]);
    let other = traverse(&all);
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(!other.status.success() && err.contains("another run"), "{err}");
    // So is a shard of another model in the same folder (a model retrained in place): the run knows its
    // inputs by their bytes, not their path.
    let retrained = tmp.0.join("retrained");
    common::copy_dir(&model, &retrained);
    let shard_in = |args: &[&str]| {
        let mut all = vec!["evaluate", "--model", retrained.to_str().unwrap(), "--kind", "chest", "--subjects", "2"];
        all.extend(["--classifier", classifier.to_str().unwrap(), "--steps", "2", "--swap-points", "1,2"]);
        all.extend(["--interpolations", "0", "--ceiling-subjects", "0", "--no-lpips", "--shard", "1/2"]);
        all.extend(args);
        traverse(&all)
    };
    let retrained_dir = dir("retrained-shards");
    assert!(shard_in(&["--shard-dir", &retrained_dir]).status.success());
    // `--print-inputs-sha256` prints the identity the shard recorded; files a pipeline does not read leave it.
    let printed = || String::from_utf8_lossy(&shard_in(&["--print-inputs-sha256"]).stdout).trim().to_string();
    let recorded = manifest_named(&tmp.0, "retrained-shards/chest-0001-of-0002.json")["run"]["inputs_sha256"].clone();
    let before = printed();
    assert_eq!(before.len(), 64, "{before}");
    assert_eq!(recorded, before.as_str());
    std::fs::write(retrained.join("MODEL_CARD.md"), "notes").unwrap();
    assert_eq!(printed(), before, "a model card is not an input");
    let config = retrained.join("unet/config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replacen('{', "{\n  \"_retrained\": true,", 1)).unwrap();
    assert_ne!(printed(), before, "a U-Net file is");
    let again = shard_in(&["--shard-dir", &retrained_dir]);
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success() && err.contains("another run"), "{err}");
    // A missing shard is named rather than merged into a smaller report.
    std::fs::remove_file(tmp.0.join("three/chest-0001-of-0003.json")).unwrap();
    let m = merge("three", "partial.json");
    let err = String::from_utf8_lossy(&m.stderr);
    assert!(!m.status.success() && err.contains("shard 1 is missing"), "{err}");
    assert!(!tmp.0.join("partial.json").exists());
    // Only the shards holding the first subjects are needed: the first one is in shard 0; the second is not.
    let m = merge_first("three", "first-one.json", &["--first-subjects", "1"]);
    assert!(m.status.success(), "{}", String::from_utf8_lossy(&m.stderr));
    let m = merge_first("three", "first-two-again.json", &["--first-subjects", "2"]);
    let err = String::from_utf8_lossy(&m.stderr);
    assert!(!m.status.success() && err.contains("1 of 2 shards given"), "{err}");
}

#[test]
fn bad_input_is_a_message() {
    let out = traverse(&["generate", "--model", "/definitely/not/here"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: cannot read"), "{err}");
    assert!(!err.contains("panicked"));

    // A learning rate of zero would train nothing: refused before any stage starts.
    let out = traverse(&["train-mini", "--out", "/definitely/not/here", "--unet-lr", "0"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--unet-lr") && !err.contains("panicked"), "{err}");

    // So would a draw share outside 0..=1.
    for flag in ["--unet-caption-balance", "--unet-chest-share"] {
        let out = traverse(&["train-mini", "--out", "/definitely/not/here", flag, "1.5"]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(flag) && !err.contains("panicked"), "{err}");
    }

    // A time limit or U-Net batch of zero is refused too.
    for (flag, value) in [("--time-limit", "0"), ("--time-limit", "inf"), ("--unet-batch", "0")] {
        let out = traverse(&["train-mini", "--out", "/definitely/not/here", flag, value]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(flag) && !err.contains("panicked"), "{flag} {value}: {err}");
    }

    // Training in f16 is refused (it would need loss scaling), as is a precision that does not exist.
    let out = traverse(&["--precision", "f16", "train-mini", "--out", "/definitely/not/here"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("training runs in f32"), "{err}");
    let out = traverse(&["--precision", "bf16", "generate", "--model", "x"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("f16"));
}

#[test]
fn train_mini_stops_at_its_time_limit_with_a_save() {
    let tmp = TempDir::new("time-limit");
    let out = tmp.0.join("run");
    let args = ["train-mini", "--out", out.to_str().unwrap(), "--size", "32", "--images", "4", "--vae-crop", "32"];
    let run = traverse(&[&args[..], &["--checkpoint-every", "100", "--time-limit", "1e-6"]].concat());
    let said = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(said.contains("stopped by --time-limit in the text_encoder stage"), "{said}");
    // The one step it trained was saved, though the checkpoint interval was far off.
    let state = std::fs::read_to_string(out.join("text_encoder/train_state.json")).unwrap();
    assert_eq!(serde_json::from_str::<serde_json::Value>(&state).unwrap()["step"], 1, "{state}");
    assert!(out.join("text_encoder/model.safetensors").is_file() && !out.join("vae").exists());
}

#[test]
fn classify_judges_phantoms_as_their_labels() {
    let tmp = TempDir::new("classify");
    let data = tmp.0.join("data");
    let out = traverse(&["dataset", "--kind", "derm", "--n", "12", "--seed", "5000", "--out", data.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The preview sheet: the first eight phantoms, four per row, 2-pixel gaps, the first one top left.
    let sheet = image::open(data.join("sheet.png")).unwrap().to_rgb8();
    assert_eq!(sheet.dimensions(), (4 * 130 - 2, 2 * 130 - 2));
    for (k, (x, y)) in [(0, (0, 0)), (5, (130, 130))] {
        let phantom = image::open(data.join(format!("images/{k:06}.png"))).unwrap().to_rgb8();
        assert_eq!(image::imageops::crop_imm(&sheet, x, y, 128, 128).to_image(), phantom, "phantom {k}");
    }
    let csv = std::fs::read_to_string(data.join("metadata.csv")).unwrap();
    let mut rows = csv.lines();
    let header: Vec<&str> = rows.next().unwrap().split(',').collect();
    let (files, truth): (Vec<String>, Vec<Vec<bool>>) = rows
        .map(|r| {
            let cells: Vec<&str> = r.split(',').collect();
            // The quoted caption may hold commas; the five label columns come last.
            let labels = cells[cells.len() - 5..].iter().map(|c| *c == "1").collect();
            (data.join(cells[1]).to_str().unwrap().to_string(), labels)
        })
        .unzip();

    let mut args = vec!["classify", "--classifier"];
    let dir = classifiers().join("derm");
    args.push(dir.to_str().unwrap());
    args.extend(files.iter().map(String::as_str));
    let out = traverse(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines[0], "| image | melanoma | hair | gel_bubbles | ink | ruler |");
    assert_eq!(header[header.len() - 5..], ["melanoma", "hair", "gel_bubbles", "ink", "ruler"]);
    assert_eq!(lines.len(), 2 + files.len());
    let mut right = 0;
    for ((line, file), labels) in lines[2..].iter().zip(&files).zip(&truth) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        assert_eq!(cells[0], file);
        for (p, on) in cells[1..].iter().zip(labels) {
            let p: f64 = p.parse().unwrap();
            assert!((0.0..=1.0).contains(&p), "{line}");
            right += usize::from((p >= 0.5) == *on);
        }
    }
    // The shipped classifier is 0.98-1.00 accurate per label on phantoms.
    assert!(right >= 57, "{right} of 60 decisions right:\n{table}");

    // An unreadable image is a message, not a panic.
    let bogus = tmp.0.join("bogus.png");
    std::fs::write(&bogus, b"not a png").unwrap();
    let out = traverse(&["classify", "--classifier", dir.to_str().unwrap(), bogus.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bogus.png") && !err.contains("panicked"), "{err}");
}
