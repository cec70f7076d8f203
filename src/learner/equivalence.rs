//! The baselines written as rules (`rules/baselines/`) against the native learners, on the same run:
//! `sgd.rhai` bit for bit, `l2_init.rhai` and `mesu.rhai` within float tolerance, `cbp.rhai` replacing
//! the same units.

use crate::data::{Dataset, StreamConfig, TaskStream, synthetic};
use crate::learner::cbp::ContinualBackprop;
use crate::learner::rule_learner::{RuleLearner, Settings};
use crate::learner::{Learner, Rules};
use crate::metrics::{AccuracyMatrix, TaskRecord};
use crate::run::{Observer, RunOptions, RunOutcome, run};
use crate::snn::{Network, NetworkConfig};
use crate::spec::{Biases, CbpParams, LearnerSpec, ReplacementSpec, RuleSpec, Utility};

struct Quiet;
impl Observer for Quiet {
    fn task_finished(&mut self, _: &TaskRecord, _: &AccuracyMatrix) {}
}

fn data() -> Dataset {
    synthetic(300, 100).pooled(2).expect("2 divides 16")
}

fn stream(data: &Dataset) -> TaskStream<'_> {
    TaskStream::new(
        data,
        StreamConfig {
            tasks: 3,
            train_per_task: 300,
            test_per_task: 100,
            batch: 10,
            epochs: 2,
            seed: 5,
        },
    )
    .expect("sizes fit")
}

fn config() -> NetworkConfig {
    NetworkConfig::test_lif(64, vec![32, 24], 10)
}

fn options() -> RunOptions {
    RunOptions {
        retention_sample: 2,
        probe_size: 50,
        dormant_threshold: 0.025,
        boundaries_visible: true,
        eval_batch: 64,
    }
}

fn shipped(name: &str) -> crate::rule::CompiledRule {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("rules/baselines")
        .join(name);
    let source = std::fs::read_to_string(&path).expect("the shipped rule");
    crate::rule::compile(&source, &path).expect("compiles")
}

fn rule_learner(compiled: &crate::rule::CompiledRule, settings: Settings) -> RuleLearner {
    RuleLearner::new(Network::new(config(), 5), "rule".into(), compiled, settings, 5)
}

fn native(spec: &LearnerSpec) -> Box<dyn Learner> {
    crate::learner::build(spec, Network::new(config(), 5), 5, &Rules::new())
}

fn plasticity(r: &RunOutcome) -> Vec<f32> {
    r.records.iter().map(|t| t.plasticity).collect()
}

/// Every parameter within `tolerance` (relative, plus absolute near 0).
fn assert_close(a: &Network, b: &Network, tolerance: f32) {
    for (x, y) in a.parameters().flatten().zip(b.parameters().flatten()) {
        assert!((x - y).abs() <= tolerance * (1.0 + x.abs()), "{x} vs {y}");
    }
}

#[test]
fn sgd_rhai_with_rule_biases_is_native_sgd_bit_for_bit() {
    let (lr, data) = (0.1, data());
    let mut sgd = native(&LearnerSpec::Sgd { lr });
    let compiled = shipped("sgd.rhai");
    let mut rule = rule_learner(
        &compiled,
        Settings::new(&RuleSpec {
            lr,
            biases: Biases::Rule,
            ..RuleSpec::default()
        }),
    );
    let (a, b) = (
        run(&stream(&data), &mut *sgd, &options(), &mut Quiet),
        run(&stream(&data), &mut rule, &options(), &mut Quiet),
    );
    assert_eq!(plasticity(&a), plasticity(&b));
    assert_close(sgd.network(), rule.network(), 0.0);
}

#[test]
fn l2_init_rhai_with_rule_biases_matches_native_l2_init() {
    let (lr, data) = (0.1, data());
    // A strength large enough that the pull toward θ₀ shapes the run.
    let strength = 0.05;
    let mut l2 = native(&LearnerSpec::L2Init { lr, strength });
    let source = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/baselines/l2_init.rhai"),
    )
    .expect("the shipped rule");
    assert!(source.contains("const STRENGTH = 0.001;"));
    let compiled = crate::rule::compile(
        &source.replace("const STRENGTH = 0.001;", "const STRENGTH = 0.05;"),
        std::path::Path::new("l2_init.rhai"),
    )
    .expect("compiles");
    let mut rule = rule_learner(
        &compiled,
        Settings::new(&RuleSpec {
            lr,
            biases: Biases::Rule,
            ..RuleSpec::default()
        }),
    );
    let (a, b) = (
        run(&stream(&data), &mut *l2, &options(), &mut Quiet),
        run(&stream(&data), &mut rule, &options(), &mut Quiet),
    );
    assert_close(l2.network(), rule.network(), 1e-4);
    for (x, y) in plasticity(&a).iter().zip(plasticity(&b)) {
        assert!((x - y).abs() <= 0.02, "plasticity {x} vs {y}");
    }
    // The rule's biases matter: with plain-SGD biases the run differs.
    let mut sgd_biases = rule_learner(
        &compiled,
        Settings::new(&RuleSpec {
            lr,
            biases: Biases::Sgd,
            ..RuleSpec::default()
        }),
    );
    run(&stream(&data), &mut sgd_biases, &options(), &mut Quiet);
    let differs = l2
        .network()
        .parameters()
        .flatten()
        .zip(sgd_biases.network().parameters().flatten())
        .any(|(x, y)| (x - y).abs() > 1e-3);
    assert!(differs);
}

/// `rules/baselines/cbp.rhai` against the native continual-backprop learner on the same 3-task run:
/// the same units are replaced at the same updates, and the networks end equal.
#[test]
fn the_cbp_rule_replaces_the_same_units_as_native_continual_backprop() {
    let (rate, maturity, lr, data) = (0.01, 20, 0.1, data());
    let mut native = ContinualBackprop::new(
        Network::new(config(), 5),
        CbpParams {
            lr,
            replacement_rate: rate,
            maturity,
            decay: 0.99,
            utility: Utility::Adaptable,
            bias_transfer: false,
        },
        5,
    );
    let native_run = run(&stream(&data), &mut native, &options(), &mut Quiet);
    assert!(
        native.replaced_units().len() > 10,
        "{:?}",
        native.replaced_units()
    );
    let replacement = ReplacementSpec { rate, maturity };
    let settings = Settings::new(&RuleSpec {
        lr,
        biases: Biases::Sgd,
        replacement: Some(replacement.clone()),
        ..RuleSpec::default()
    });
    // The shipped rule computes the utility itself from act_dev, in_w, out_w and age; `util` is the
    // same utility computed by the learner.
    let by_util = crate::rule::compile("fn neuron() { score = util; }", std::path::Path::new("util.rhai"))
        .expect("compiles");
    for compiled in [shipped("cbp.rhai"), by_util] {
        let mut rule = rule_learner(&compiled, settings);
        let rule_run = run(&stream(&data), &mut rule, &options(), &mut Quiet);
        assert_eq!(native.replaced_units(), rule.replaced_units());
        assert_close(native.network(), rule.network(), 1e-5);
        assert_eq!(plasticity(&native_run), plasticity(&rule_run));
    }
}

#[test]
fn mesu_rhai_with_rule_biases_matches_native_mesu() {
    let data = data();
    let spec = LearnerSpec::named("mesu", 0.0).expect("a built-in learner");
    let LearnerSpec::Mesu(params) = &spec else {
        panic!("mesu")
    };
    // A short memory, so the forgetting terms matter within the run.
    let params = crate::spec::MesuParams {
        memory: 3000.0,
        samples: 3,
        test_samples: 3,
        ..params.clone()
    };
    let mut mesu = native(&LearnerSpec::Mesu(params.clone()));
    let source = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/baselines/mesu.rhai"),
    )
    .expect("the shipped rule");
    assert!(source.contains("const MEMORY = 300000.0;"));
    let compiled = crate::rule::compile(
        &source.replace("const MEMORY = 300000.0;", "const MEMORY = 3000.0;"),
        std::path::Path::new("mesu.rhai"),
    )
    .expect("compiles");
    let sampling = crate::spec::StochasticSpec {
        samples: params.samples,
        test_samples: params.test_samples,
        sigma_init: params.sigma_init,
        sigma_min: params.sigma_min,
    };
    let settings = Settings::new(&RuleSpec {
        lr: 0.0,
        biases: Biases::Rule,
        stochastic: Some(sampling.clone()),
        ..RuleSpec::default()
    });
    let mut rule = rule_learner(&compiled, settings);
    let (a, b) = (
        run(&stream(&data), &mut *mesu, &options(), &mut Quiet),
        run(&stream(&data), &mut rule, &options(), &mut Quiet),
    );
    // Equal to float rounding (the batch factor is applied in a different order), while MESU moved
    // hundreds of parameters by up to about 0.2.
    assert_close(mesu.network(), rule.network(), 1e-6);
    for (x, y) in plasticity(&a).iter().zip(plasticity(&b)) {
        assert!((x - y).abs() <= 0.02, "plasticity {x} vs {y}");
    }
    let initial = Network::new(config(), 5);
    let moves: Vec<f32> = mesu
        .network()
        .parameters()
        .flatten()
        .zip(initial.parameters().flatten())
        .map(|(x, y)| (x - y).abs())
        .collect();
    assert!(moves.iter().filter(|&&m| m > 1e-4).count() > 500);
    assert!(moves.iter().fold(0.0f32, |a, &b| a.max(b)) > 0.05);
}
