//! The estimator's accuracy goals, checked against the reference counts of the corpus (the
//! weights were fitted on a different training set, see `examples/fit_estimator.rs`).

mod support;

use std::collections::BTreeMap;

use support::corpus;
use tokenbudget_counter::{CounterId, Encoding, Estimator, Exactness, LocalCounter};

fn factor(estimate: u64, exact: u64) -> f64 {
    let (e, x) = (estimate.max(1) as f64, exact as f64);
    (e / x).max(x / e)
}

#[test]
fn chunk_error_meets_the_goals_and_nothing_is_off_by_more_than_2x() {
    let refs = corpus::references();
    for encoding in Encoding::ALL {
        let estimator = Estimator::new(encoding);
        let mut errors: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        for file in &refs.files {
            let text = file.text();
            let exact = file.count(encoding.name());
            if exact == 0 {
                assert_eq!(estimator.estimate(&text), 0, "{}", file.path);
                continue;
            }
            // The bound, for every file and chunk of every category.
            let limit = 2.0;
            let f = factor(estimator.estimate(&text), exact);
            assert!(f <= limit, "{encoding} {}: off by {f:.2}x", file.path);
            for (chunk, &exact) in corpus::chunks(&text)
                .iter()
                .zip(file.chunks(encoding.name()))
            {
                let estimate = estimator.estimate(chunk);
                let f = factor(estimate, exact);
                assert!(f <= limit, "{encoding} {} chunk: off by {f:.2}x", file.path);
                let error = (estimate as f64 - exact as f64).abs() / exact as f64 * 100.0;
                errors.entry(&file.category).or_default().push(error);
            }
        }
        for (category, goal) in [
            ("prose", 8.0),
            ("code", 8.0),
            ("json", 8.0),
            ("nonlatin", 15.0),
        ] {
            let e = &errors[category];
            let mean = e.iter().sum::<f64>() / e.len() as f64;
            assert!(
                mean <= goal,
                "{encoding} {category}: mean chunk error {mean:.1}% > {goal}%"
            );
        }
    }
}

#[test]
fn pathological_megabyte_inputs_stay_within_2x() {
    let refs = corpus::references();
    for (spec, reference) in corpus::generated_specs().iter().zip(&refs.generated) {
        let text = spec.text();
        for encoding in Encoding::ALL {
            let f = factor(
                Estimator::new(encoding).estimate(&text),
                reference.count(encoding.name()),
            );
            assert!(f <= 2.0, "{encoding} {}: off by {f:.2}x", spec.name);
        }
    }
}

#[test]
fn beats_a_quarter_of_the_characters_on_non_latin_text() {
    let refs = corpus::references();
    let (mut ours, mut quarter) = (0.0, 0.0);
    for file in refs.files.iter().filter(|f| f.category == "nonlatin") {
        let text = file.text();
        let exact = file.cl100k_base as f64;
        ours += (Estimator::default().estimate(&text) as f64 - exact).abs() / exact;
        quarter += ((text.chars().count() as f64 / 4.0).ceil() - exact).abs() / exact;
    }
    assert!(
        ours * 5.0 < quarter,
        "estimator {ours:.2} vs chars/4 {quarter:.2}"
    );
}

#[test]
fn counts_are_marked_estimated() {
    let count = Estimator::new(Encoding::O200kBase).count_sync("hello world");
    assert_eq!(count.exactness, Exactness::Estimated);
    assert_eq!(count.counter, CounterId::Estimator(Encoding::O200kBase));
    assert!((1..=4).contains(&count.tokens), "{count:?}");
}
