//! One update of every built-in learner on the reference network (196-256-10 LIF, T = 8, batch 32),
//! single thread, so their costs can be compared with plain SGD (the target: CBP, EWC, SI, L2-Init ≤ 1.3×
//! SGD; MESU ≤ 1.5× per Monte-Carlo sample), and training with every shipped rule and committed search
//! winner (`rule:…`: ≥ 0.70× native SGD's samples/s). Synthetic inputs shaped like the reference (196
//! pixels), but almost none of them 0: the products that skip zero pixels or zero rates (`src/snn/sparse.rs`)
//! take their dense paths here, so rules that read `hebb` or `elig` pay more than on MNIST, where a
//! quarter of the pixels are nonzero; `scripts/rule-speed.sh` measures on the real data.

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
    // Every shipped rule and every committed search winner, for the cost of training with a compiled
    // rule against the native loops (the target: every rule ≥ 0.70× native SGD's samples/s).
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut rules = learner::Rules::new();
    for path in rule_files(root) {
        let source = std::fs::read_to_string(&path).expect("a shipped rule is readable");
        let compiled = synaptogen::rule::compile(&source, &path).expect("the shipped rule compiles");
        let label = path
            .strip_prefix(root)
            .expect("under the crate")
            .with_extension("")
            .display()
            .to_string()
            .replace('/', ":");
        rules.insert(path.clone(), compiled);
        specs.push((
            label,
            LearnerSpec::Rule(synaptogen::spec::RuleSpec {
                path: Some(path),
                lr: 0.05,
                ..Default::default()
            }),
        ));
    }
    for (label, spec) in specs {
        group.bench_function(label, |b| {
            // Every measured update is one of the first 200 of a fresh learner (built and rebuilt
            // outside the timing): trained for long on one batch, a rule's weights drift (a Hebbian
            // term grows them), and the time of an update would depend on how long criterion ran.
            b.iter_custom(|iterations| {
                let mut elapsed = std::time::Duration::ZERO;
                let mut left = iterations;
                while left > 0 {
                    let mut learner = learner::build(&spec, reference_network(), 0, &rules);
                    let run = left.min(200);
                    let started = std::time::Instant::now();
                    for step in 0..run as usize {
                        // A task boundary every 100 updates, so boundary work is in the measurement.
                        let context = UpdateContext {
                            task: step / 100,
                            step: step % 100,
                            new_task: step.is_multiple_of(100),
                            updates_per_task: 100,
                        };
                        black_box(learner.update(black_box(&batch), context, &mut rng));
                    }
                    elapsed += started.elapsed();
                    left -= run;
                }
                elapsed
            })
        });
    }
    group.finish();
}

/// `rules/*/*.rhai` and `reports/*/best.rhai`, sorted.
fn rule_files(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for dir in ["rules", "reports"] {
        for entry in std::fs::read_dir(root.join(dir)).expect("ships with the crate") {
            let dir = entry.expect("readable").path();
            if !dir.is_dir() {
                continue;
            }
            for file in std::fs::read_dir(&dir).expect("readable") {
                let path = file.expect("readable").path();
                let wanted = if dir.starts_with(root.join("reports")) {
                    path.file_name().is_some_and(|n| n == "best.rhai")
                } else {
                    path.extension().is_some_and(|e| e == "rhai")
                };
                if wanted {
                    files.push(path);
                }
            }
        }
    }
    files.sort();
    files
}

criterion_group!(benches, bench);
criterion_main!(benches);
