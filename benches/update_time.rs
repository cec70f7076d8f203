//! One update of native SGD and of rules, on real batches: the least time each of 250 updates took
//! over several rounds, summed, so a machine whose speed drifts (shared cloud cores do, by tens of
//! percent within a minute) adds less than to a mean: a round slowed by a neighbour loses to a
//! quiet one. Where `scripts/rule-speed.sh` gives samples/s of whole runs, this gives microseconds
//! per update, to weigh a change of a few of them.
//!
//! The batches are the first 250 of task 0 of `searches/pmnist-quick.ron` (196-256-10 LIF, T = 8,
//! batch 32, one thread), read from `data/` (`scripts/fetch-data.sh`). Rules and rounds:
//!
//!   cargo bench --bench update_time                         (the control's winner, 10 rounds)
//!   UPDATE_TIME_RULES=rules/local/oja.rhai,my.rhai UPDATE_TIME_ROUNDS=20 cargo bench --bench update_time
//!
//! Each learner starts from the same network and sees the same batches in every round; rounds
//! interleave the learners, so each is timed across the same stretch of the machine's drift.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

use synaptogen::data::{self, Batch, TaskStream};
use synaptogen::learner::{self, UpdateContext};
use synaptogen::rng::{Purpose, Rng};
use synaptogen::snn::Network;
use synaptogen::spec::{LearnerSpec, RuleSpec, RunSpec};

const UPDATES: usize = 250;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing and expects no work.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = root.join("searches/pmnist-quick.ron");
    let text = std::fs::read_to_string(&path).expect("searches/pmnist-quick.ron ships with the crate");
    let spec = RunSpec::parse(&text, &path).expect("the shipped spec is valid");
    let locator = data::Locator {
        explicit: spec.benchmark.data_path.clone(),
        roots: vec![root.join("data")],
    };
    let dataset = data::load(spec.benchmark.dataset, &locator)
        .and_then(|d| d.pooled(spec.benchmark.pool))
        .unwrap_or_else(|e| panic!("{e} (scripts/fetch-data.sh downloads the data)"));
    let stream = TaskStream::new(&dataset, spec.stream_config()).expect("the shipped spec's stream");
    let task = stream.task(0);
    let batches: Vec<Batch> = task
        .examples
        .chunks(32)
        .take(UPDATES)
        .map(|indices| {
            let mut batch = Batch::default();
            stream.fill_train(&task, indices, &mut batch);
            batch
        })
        .collect();
    let rule_paths: Vec<PathBuf> = std::env::var("UPDATE_TIME_RULES")
        .unwrap_or_else(|_| "reports/quickstart-random/best.rhai".into())
        .split(',')
        .map(|p| root.join(p.trim()))
        .collect();
    let rounds: usize = std::env::var("UPDATE_TIME_ROUNDS")
        .map(|r| r.parse().expect("UPDATE_TIME_ROUNDS is a number of rounds"))
        .unwrap_or(10);
    let mut rules = learner::Rules::new();
    let mut learners = vec![(
        "native sgd".to_string(),
        LearnerSpec::named("sgd", 0.05).expect("sgd"),
    )];
    for path in rule_paths {
        let source = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let compiled = synaptogen::rule::compile(&source, &path).unwrap_or_else(|e| panic!("{e}"));
        rules.insert(path.clone(), compiled);
        let spec = RuleSpec {
            path: Some(path.clone()),
            lr: 0.05,
            ..Default::default()
        };
        learners.push((
            path.strip_prefix(root).unwrap_or(&path).display().to_string(),
            LearnerSpec::Rule(spec),
        ));
    }
    let network = Network::new(spec.network_config(dataset.pixels(), dataset.classes), 0);
    let mut least = vec![vec![f64::MAX; batches.len()]; learners.len()];
    for _ in 0..rounds {
        for ((_, spec), least) in learners.iter().zip(&mut least) {
            let mut learner = learner::build(spec, network.clone(), 0, &rules);
            for (step, batch) in batches.iter().enumerate() {
                let context = UpdateContext {
                    task: 0,
                    step,
                    new_task: step == 0,
                    updates_per_task: UPDATES,
                };
                let mut rng = Rng::stream(0, Purpose::Encoding, &[0, step as u64]);
                let start = Instant::now();
                black_box(learner.update(batch, context, &mut rng));
                least[step] = least[step].min(start.elapsed().as_secs_f64() * 1e6);
            }
        }
    }
    let per_update: Vec<f64> = least
        .iter()
        .map(|l| l.iter().sum::<f64>() / l.len() as f64)
        .collect();
    println!("least time of each of {UPDATES} updates over {rounds} rounds, averaged:");
    for ((name, _), &us) in learners.iter().zip(&per_update) {
        println!(
            "{name:<45} {us:8.2} µs/update  {:.3}× native sgd",
            per_update[0] / us
        );
    }
}
