//! The shipped attribute classifiers (public/classifiers/) are int8, load, and see each attribute flip on
//! ground-truth counterfactual pairs of phantoms they were not trained on (seed 777).

use burn::prelude::*;
use traverse::classifier::Classifier;
use traverse::synthetic::{Kind, Phantom};

fn input(p: &Phantom, size: usize, device: &Device) -> Tensor<4> {
    let img = p.render(size);
    Tensor::from_data(TensorData::new(img.to_planar(img.channels), [1, img.channels, size, size]), device)
}

#[test]
fn shipped_classifiers_follow_counterfactuals() {
    let device = Device::flex();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("public/classifiers");
    for (kind, dir) in [(Kind::Chest, "chest"), (Kind::Derm, "derm")] {
        let weights = traverse::codec::WeightFile::Path(root.join(dir).join("model.safetensors"));
        let table = traverse::codec::inspect(&weights).unwrap();
        assert!(traverse::quantize::is_quantized(&table), "{dir}: the shipped classifier is int8");
        let Classifier { model, config } = Classifier::load_dir(&root.join(dir), &device).unwrap();
        let (mut agree, mut total) = (0, 0);
        for i in 0..6 {
            let base = Phantom::sample(kind, 777, i);
            for (j, label) in config.labels.iter().enumerate() {
                for on in [false, true] {
                    let p = base.with_attribute(label, on).unwrap();
                    let prob = model.predict(input(&p, config.image_size, &device)).into_data().convert::<f32>();
                    let prob = prob.as_slice::<f32>().unwrap()[j];
                    agree += ((prob >= 0.5) == on) as usize;
                    total += 1;
                }
            }
        }
        println!("{dir}: {agree}/{total} counterfactual predictions correct");
        assert!(agree as f64 >= 0.9 * total as f64, "{dir}: only {agree}/{total}");
    }
}
