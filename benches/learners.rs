//! One update of every built-in learner on the reference network (196-256-10 LIF, T = 8, batch 32),
//! single thread, so their costs can be compared with plain SGD (the target: CBP, EWC, SI, L2-Init ≤ 1.3×
//! SGD; MESU ≤ 1.5× per Monte-Carlo sample). Synthetic inputs shaped like the reference (196 pixels): the
//! dense products cost the same whatever the pixels are.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use synaptogen::data::Batch;
use synaptogen::learner::{self, UpdateContext};
use synaptogen::rng::{Purpose, Rng};
use synaptogen::snn::Network;
use synaptogen::spec::{LEARNER_NAMES, LearnerSpec, RunSpec};

/// The reference network, from the spec that defines it (`searches/pmnist-quick.ron`).
fn reference_network() -> Network {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("searches/pmnist-quick.ron");
    let text = std::fs::read_to_string(&path).expect("searches/pmnist-quick.ron ships with the crate");
    let spec = RunSpec::parse(&text, &path).expect("the shipped spec is valid");
    Network::new(spec.network_config(196, 10), 0)
}

fn bench(c: &mut Criterion) {
    let mut rng = Rng::stream(0, Purpose::Synthetic, &[]);
    let batch = Batch {
        images: (0..32 * 196).map(|_| rng.uniform()).collect(),
        labels: (0..32).map(|i| (i % 10) as u8).collect(),
    };
    let mut group = c.benchmark_group("learner_update");
    group.throughput(Throughput::Elements(32));
    let mut specs: Vec<(String, LearnerSpec)> = LEARNER_NAMES
        .iter()
        .map(|name| {
            (
                name.to_string(),
                LearnerSpec::named(name, 0.05).expect("a known name"),
            )
        })
        .collect();
    // MESU's cost per Monte-Carlo sample: one sample per update.
    if let Some(LearnerSpec::Mesu(p)) = LearnerSpec::named("mesu", 0.05) {
        specs.push((
            "mesu_1_sample".into(),
            LearnerSpec::Mesu(synaptogen::spec::MesuParams { samples: 1, ..p }),
        ));
    }
    // The sgd rule script, for the cost of running a compiled rule instead of the native loop.
    let rule_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/baselines/sgd.rhai");
    let source = std::fs::read_to_string(&rule_path).expect("rules/baselines/sgd.rhai ships");
    let mut rules = learner::Rules::new();
    rules.insert(
        rule_path.clone(),
        synaptogen::rule::compile(&source, &rule_path).expect("the shipped rule compiles"),
    );
    specs.push((
        "sgd_rule".into(),
        LearnerSpec::Rule(synaptogen::spec::RuleSpec {
            path: Some(rule_path),
            lr: 0.05,
            ..Default::default()
        }),
    ));
    for (label, spec) in specs {
        let mut learner = learner::build(&spec, reference_network(), 0, &rules);
        let mut step = 0usize;
        group.bench_function(label, |b| {
            b.iter(|| {
                // A task boundary every 100 updates, so boundary work is in the measurement.
                let context = UpdateContext {
                    task: step / 100,
                    step: step % 100,
                    new_task: step.is_multiple_of(100),
                    updates_per_task: 100,
                };
                step += 1;
                black_box(learner.update(black_box(&batch), context, &mut rng))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
