//! The rule learner's tests: the signals against their definitions computed element by element,
//! pruning and regrowth, rule biases, adaptive thresholds, and every vocabulary variable trained in
//! every section it is visible in.

use super::*;
use crate::learner::{Learner, UpdateContext};
use crate::rng::{Purpose, Rng};
use crate::rule::vocab::{self, Access, VOCABULARY};
use crate::snn::{Encoding, Init, Lif, NetworkConfig, Neuron, Pass, Reset, softmax_cross_entropy};
use crate::spec::{Biases, RuleSpec, StructureSpec};

/// With `dw = hebb`, an update moves every weight by exactly `hebb`; check it against the definition
/// computed element by element from the same forward pass.
#[test]
fn hebb_is_the_mean_over_batch_and_steps_of_post_times_pre() {
    let config = NetworkConfig {
        inputs: 6,
        hidden: vec![5, 4],
        classes: 3,
        neuron: Neuron::Lif(Lif {
            beta: 0.9,
            threshold: 0.2,
            slope: 25.0,
            reset: Reset::SameStep,
        }),
        time_steps: 3,
        encoding: Encoding::Direct,
        readout_beta: 0.9,
        init: Init::FanIn,
    };
    let network = Network::new(config.clone(), 4);
    let compiled = crate::rule::compile("fn synapse() { dw = hebb; }", std::path::Path::new("h.rhai"))
        .expect("compiles");
    let mut learner = RuleLearner::new(
        network.clone(),
        "h".into(),
        &compiled,
        Settings::new(&RuleSpec {
            lr: 0.0,
            biases: Biases::Sgd,
            ..RuleSpec::default()
        }),
        0,
    );
    let batch = Batch {
        images: (0..2 * 6).map(|i| ((i * 5 % 7) as f32) / 6.0).collect(),
        labels: vec![0, 2],
    };
    let mut rng = Rng::stream(0, Purpose::Encoding, &[]);
    learner.update(&batch, UpdateContext::default(), &mut rng.clone());
    // The same forward pass, by hand.
    let mut ws = Workspace::default();
    network.forward(&batch.images, 2, &mut ws, Pass::Train, &mut rng);
    let (t_steps, b) = (3usize, 2usize);
    let probabilities: Vec<f32> = ws
        .logits()
        .chunks_exact(3)
        .flat_map(|z| {
            let m = z.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let sum: f32 = z.iter().map(|v| (v - m).exp()).sum();
            z.iter().map(move |v| (v - m).exp() / sum).collect::<Vec<_>>()
        })
        .collect();
    for l in 0..3 {
        let before = network.layers()[l].weights();
        let after = learner.network().layers()[l].weights();
        let (outs, ins) = (network.layers()[l].outputs(), network.layers()[l].inputs());
        for i in 0..outs {
            for j in 0..ins {
                let want: f32 = if l == 2 {
                    (0..b)
                        .map(|bb| {
                            let rate: f32 = (0..t_steps)
                                .map(|t| ws.spikes(1)[(t * b + bb) * ins + j])
                                .sum::<f32>()
                                / t_steps as f32;
                            probabilities[bb * outs + i] * rate
                        })
                        .sum::<f32>()
                        / b as f32
                } else {
                    let mut sum = 0.0;
                    for t in 0..t_steps {
                        for bb in 0..b {
                            let post = ws.spikes(l)[(t * b + bb) * outs + i];
                            let pre = if l == 0 {
                                batch.images[bb * ins + j]
                            } else {
                                ws.spikes(l - 1)[(t * b + bb) * ins + j]
                            };
                            sum += post * pre;
                        }
                    }
                    sum / (t_steps * b) as f32
                };
                let got = after[i * ins + j] - before[i * ins + j];
                assert!((got - want).abs() < 1e-5, "layer {l} ({i},{j}): {got} vs {want}");
            }
        }
    }
    let active: usize = ws.spikes(0).iter().filter(|&&s| s > 0.0).count();
    assert!(active > 0, "the test must see spikes");

    // psi and theta: dw = psi + 10·theta moves row i of hidden layer l by mean ψ_i + 10·θ.
    let compiled = crate::rule::compile(
        "fn synapse() { dw = psi + 10.0 * theta; }",
        std::path::Path::new("p.rhai"),
    )
    .expect("compiles");
    let mut learner = RuleLearner::new(
        network.clone(),
        "p".into(),
        &compiled,
        Settings::new(&RuleSpec {
            lr: 0.0,
            biases: Biases::Sgd,
            ..RuleSpec::default()
        }),
        0,
    );
    learner.update(
        &batch,
        UpdateContext::default(),
        &mut Rng::stream(0, Purpose::Encoding, &[]),
    );
    for l in 0..3 {
        let (outs, ins) = (network.layers()[l].outputs(), network.layers()[l].inputs());
        for i in 0..outs {
            let want = if l == 2 {
                1.0
            } else {
                let psi = ws.surrogate(l);
                (0..t_steps * b).map(|r| psi[r * outs + i]).sum::<f32>() / (t_steps * b) as f32 + 10.0 * 0.2
            };
            let got =
                learner.network().layers()[l].weights()[i * ins] - network.layers()[l].weights()[i * ins];
            assert!((got - want).abs() < 1e-5, "layer {l} row {i}: {got} vs {want}");
        }
    }
}

fn lif_network(hidden: Vec<usize>, time_steps: usize) -> Network {
    Network::new(
        NetworkConfig {
            inputs: 6,
            hidden,
            classes: 3,
            neuron: Neuron::Lif(Lif {
                beta: 0.9,
                threshold: 0.2,
                slope: 25.0,
                reset: Reset::SameStep,
            }),
            time_steps,
            encoding: Encoding::Direct,
            readout_beta: 0.8,
            init: Init::FanIn,
        },
        4,
    )
}

fn batch() -> Batch {
    Batch {
        images: (0..2 * 6).map(|i| ((i * 5 % 7) as f32) / 6.0).collect(),
        labels: vec![0, 2],
    }
}

/// The weight change of one update with `dw = <expr>` and lr 0 (biases untouched).
fn delta(network: &Network, expr: &str) -> Vec<Vec<f32>> {
    let compiled = crate::rule::compile(
        &format!("fn synapse() {{ dw = {expr}; }}"),
        std::path::Path::new("t.rhai"),
    )
    .expect("compiles");
    let mut learner = RuleLearner::new(
        network.clone(),
        "t".into(),
        &compiled,
        Settings::new(&RuleSpec {
            lr: 0.0,
            biases: Biases::Sgd,
            ..RuleSpec::default()
        }),
        0,
    );
    learner.update(
        &batch(),
        UpdateContext::default(),
        &mut Rng::stream(0, Purpose::Encoding, &[]),
    );
    (0..network.layers().len())
        .map(|l| {
            let (a, b) = (
                learner.network().layers()[l].weights(),
                network.layers()[l].weights(),
            );
            a.iter().zip(b).map(|(x, y)| x - y).collect()
        })
        .collect()
}

#[test]
fn elig_is_the_mean_of_post_surrogate_times_presynaptic_trace() {
    let network = lif_network(vec![5, 4], 3);
    let got = delta(&network, "elig");
    let mut ws = Workspace::default();
    let b = batch();
    network.forward(
        &b.images,
        2,
        &mut ws,
        Pass::Train,
        &mut Rng::stream(0, Purpose::Encoding, &[]),
    );
    let (t_steps, rows, betas) = (3usize, 2usize, [0.9f32, 0.9, 0.8]);
    for l in 0..3 {
        let (outs, ins) = (network.layers()[l].outputs(), network.layers()[l].inputs());
        let x = |t: usize, bb: usize, j: usize| {
            if l == 0 {
                b.images[bb * ins + j]
            } else {
                ws.spikes(l - 1)[(t * rows + bb) * ins + j]
            }
        };
        for i in 0..outs {
            for j in 0..ins {
                let mut sum = 0.0;
                for bb in 0..rows {
                    let mut trace = 0.0;
                    for t in 0..t_steps {
                        trace = betas[l] * trace + x(t, bb, j);
                        let psi = if l == 2 {
                            1.0
                        } else {
                            ws.surrogate(l)[(t * rows + bb) * outs + i]
                        };
                        sum += psi * trace;
                    }
                }
                let want = sum / (t_steps * rows) as f32;
                assert!(
                    (got[l][i * ins + j] - want).abs() < 1e-5,
                    "layer {l} ({i},{j}): {} vs {want}",
                    got[l][i * ins + j]
                );
            }
        }
    }
}

#[test]
fn v_is_the_mean_pre_reset_membrane_and_err_the_error_at_the_output() {
    // T = 1: the pre-reset membrane is the input current W·x + b, and ∂L/∂s of the last hidden
    // layer is g·W_o (c_0 = 1), with g = (softmax − one-hot)/batch.
    let network = lif_network(vec![5], 1);
    let b = batch();
    let v = delta(&network, "v");
    let err = delta(&network, "err");
    let (w1, b1) = (network.layers()[0].weights(), network.layers()[0].bias());
    let mut ws = Workspace::default();
    network.forward(
        &b.images,
        2,
        &mut ws,
        Pass::Eval,
        &mut Rng::stream(0, Purpose::Encoding, &[]),
    );
    assert!(
        ws.spikes(0).iter().any(|&s| s > 0.0),
        "some unit fires, so the v + s·θ reconstruction is exercised"
    );
    let logits = ws.logits().to_vec();
    let mut g = vec![0.0f32; 6];
    softmax_cross_entropy(&logits, &b.labels, 3, &mut g);
    let wo = network.layers()[1].weights();
    for i in 0..5 {
        let current: f32 = (0..2)
            .map(|bb| b1[i] + (0..6).map(|j| w1[i * 6 + j] * b.images[bb * 6 + j]).sum::<f32>())
            .sum::<f32>()
            / 2.0;
        assert!(
            (v[0][i * 6] - current).abs() < 1e-5,
            "v of unit {i}: {} vs {current}",
            v[0][i * 6]
        );
        let e: f32 = (0..2)
            .map(|bb| (0..3).map(|k| g[bb * 3 + k] * wo[k * 5 + i]).sum::<f32>())
            .sum();
        assert!(
            (err[0][i * 6] - e).abs() < 1e-6,
            "err of unit {i}: {} vs {e}",
            err[0][i * 6]
        );
    }
    for k in 0..3 {
        let mean_logit = (logits[k] + logits[3 + k]) / 2.0;
        assert!((v[1][k * 5] - mean_logit).abs() < 1e-5, "readout v");
        let e = g[k] + g[3 + k];
        assert!(
            (err[1][k * 5] - e).abs() < 1e-6,
            "readout err {} vs {e}",
            err[1][k * 5]
        );
    }
}

fn pruning_learner(lr: f32, structure: StructureSpec) -> (Network, RuleLearner) {
    let network = lif_network(vec![5, 4], 3);
    let compiled = crate::rule::compile(
        "fn synapse() { dw = -lr * grad; }\nfn prune() { score = abs(w); }",
        std::path::Path::new("magnitude.rhai"),
    )
    .expect("compiles");
    let settings = Settings::new(&RuleSpec {
        lr,
        biases: Biases::Sgd,
        structure: Some(structure.clone()),
        ..RuleSpec::default()
    });
    let learner = RuleLearner::new(network.clone(), "m".into(), &compiled, settings, 3);
    (network, learner)
}

fn context(task: usize, step: usize) -> UpdateContext {
    UpdateContext {
        task,
        step,
        new_task: step == 0,
        updates_per_task: 4,
    }
}

fn present_per_row(learner: &RuleLearner, l: usize) -> Vec<usize> {
    let inputs = learner.network().layers()[l].inputs();
    let present = learner.present(l).expect("every matrix follows the rule");
    present
        .chunks(inputs)
        .map(|r| r.iter().filter(|&&p| p).count())
        .collect()
}

#[test]
fn pruning_keeps_each_neurons_strongest_synapses_at_the_window_end() {
    // lr 0: nothing moves, so the survivors must be the initial largest |w| of each row.
    let structure = StructureSpec {
        target_density: 0.5,
        window: 1.0,
        prune_steps: 2,
        ..StructureSpec::default()
    };
    let (network, mut learner) = pruning_learner(0.0, structure);
    let mut rng = Rng::stream(0, Purpose::Encoding, &[]);
    for step in 0..4 {
        learner.update(&batch(), context(0, step), &mut rng);
        let expected_density = match step {
            // Event 1 of 2 after update 2: 1 → 0.5 + 0.5·(1/2)³ of each row.
            0 => 1.0,
            1..=2 => 0.5 + 0.5 / 8.0,
            _ => 0.5,
        };
        for l in 0..3 {
            let inputs = network.layers()[l].inputs();
            let keep = (expected_density * inputs as f64).round() as usize;
            assert!(
                present_per_row(&learner, l).iter().all(|&n| n == keep),
                "layer {l} step {step}"
            );
        }
    }
    for l in 0..3 {
        let inputs = network.layers()[l].inputs();
        let initial = network.layers()[l].weights();
        let now = learner.network().layers()[l].weights();
        let present = learner.present(l).expect("structured");
        for (r, row) in present.chunks(inputs).enumerate() {
            let w = |j: usize| initial[r * inputs + j].abs();
            let weakest_kept = (0..inputs)
                .filter(|&j| row[j])
                .map(w)
                .fold(f32::INFINITY, f32::min);
            let strongest_removed = (0..inputs).filter(|&j| !row[j]).map(w).fold(0.0, f32::max);
            assert!(weakest_kept >= strongest_removed, "layer {l} row {r}");
            for j in 0..inputs {
                let got = now[r * inputs + j];
                assert_eq!(got, if row[j] { initial[r * inputs + j] } else { 0.0 });
            }
        }
    }
    assert!(
        (crate::metrics::density(
            learner.network(),
            &[learner.present(0), learner.present(1), learner.present(2)]
        ) - 0.5)
            .abs()
            < 0.1
    );
}

#[test]
fn absent_synapses_stay_at_zero_and_regrow_at_task_start() {
    let structure = StructureSpec {
        initial_density: 0.5,
        target_density: 0.5,
        window: 1.0,
        prune_steps: 1,
        regrow: 0.5,
        ..StructureSpec::default()
    };
    let (network, mut learner) = pruning_learner(0.5, structure);
    let mut rng = Rng::stream(0, Purpose::Encoding, &[]);
    let start: Vec<Vec<usize>> = (0..3).map(|l| present_per_row(&learner, l)).collect();
    for step in 0..4 {
        learner.update(&batch(), context(0, step), &mut rng);
        for (l, start) in start.iter().enumerate() {
            let present = learner.present(l).expect("structured");
            let w = learner.network().layers()[l].weights();
            assert!(
                w.iter().zip(present).all(|(w, &p)| p || *w == 0.0),
                "absent weights stay 0"
            );
            assert_eq!(
                &present_per_row(&learner, l),
                start,
                "at the target: nothing pruned"
            );
        }
    }
    learner.update(&batch(), context(1, 0), &mut rng);
    for (l, start) in start.iter().enumerate() {
        let inputs = network.layers()[l].inputs();
        for (&before, &after) in start.iter().zip(&present_per_row(&learner, l)) {
            let absent = inputs - before;
            assert_eq!(
                after,
                before + (0.5 * absent as f64).round() as usize,
                "layer {l}"
            );
        }
    }
    // Task 1's window prunes back to the target by its last update.
    for step in 1..4 {
        learner.update(&batch(), context(1, step), &mut rng);
    }
    assert_eq!(present_per_row(&learner, 0), start[0]);
}

/// With `biases: Rule`, a bias is a synapse from an always-on input: `dw = hebb` moves it by its
/// neuron's mean activity (`post`), and since nothing reads a gradient no backward pass runs.
#[test]
fn rule_biases_see_pre_1_and_a_gradient_free_rule_skips_the_backward_pass() {
    let network = lif_network(vec![5, 4], 3);
    let compiled = crate::rule::compile(
        "fn synapse() { dw = hebb + 0.0 * pre; }",
        std::path::Path::new("hebb.rhai"),
    )
    .expect("compiles");
    let settings = Settings::new(&RuleSpec {
        lr: 0.0,
        biases: Biases::Rule,
        ..RuleSpec::default()
    });
    let mut learner = RuleLearner::new(network.clone(), "h".into(), &compiled, settings, 0);
    assert!(!learner.backward);
    let b = batch();
    let mut ws = Workspace::default();
    network.forward(
        &b.images,
        2,
        &mut ws,
        Pass::Train,
        &mut Rng::stream(0, Purpose::Encoding, &[]),
    );
    learner.update(
        &b,
        UpdateContext::default(),
        &mut Rng::stream(0, Purpose::Encoding, &[]),
    );
    assert!(
        learner
            .core
            .gradients
            .slices()
            .all(|g| g.iter().all(|&x| x == 0.0))
    );
    for l in 0..2 {
        let width = network.layers()[l].outputs();
        let spikes = ws.spikes(l);
        let steps = spikes.len() / (2 * width);
        for i in 0..width {
            let rate: f32 = (0..steps * 2).map(|r| spikes[r * width + i]).sum::<f32>() / (steps * 2) as f32;
            let moved = learner.network().layers()[l].bias()[i] - network.layers()[l].bias()[i];
            assert!(
                (moved - rate).abs() < 1e-6,
                "layer {l} unit {i}: {moved} vs {rate}"
            );
        }
    }
    // The readout's post is its mean softmax probability, which sums to 1 over the classes.
    let readout = 2;
    let moved: f32 = learner.network().layers()[readout]
        .bias()
        .iter()
        .zip(network.layers()[readout].bias())
        .map(|(a, b)| a - b)
        .sum();
    assert!((moved - 1.0).abs() < 1e-5, "{moved}");
    // Reading grad brings the backward pass back.
    let with_grad = crate::rule::compile(
        "fn synapse() { dw = -lr * grad; }",
        std::path::Path::new("g.rhai"),
    )
    .expect("compiles");
    assert!(RuleLearner::new(network, "g".into(), &with_grad, settings, 0).backward);
}

/// `neuron()` writing `theta` sets each hidden neuron's own threshold; the synapse section reads
/// its postsynaptic neuron's threshold, and the next forward pass uses it.
#[test]
fn neuron_thresholds_adapt_and_the_simulator_uses_them() {
    let network = lif_network(vec![5, 4], 3);
    let compiled = crate::rule::compile(
        "fn synapse() { dw = 0.0 * w; }\nfn neuron() { theta = theta + 0.25 * (layer + 1.0); }",
        std::path::Path::new("t.rhai"),
    )
    .expect("compiles");
    let settings = Settings::new(&RuleSpec {
        lr: 0.0,
        biases: Biases::Sgd,
        ..RuleSpec::default()
    });
    let mut learner = RuleLearner::new(network.clone(), "t".into(), &compiled, settings, 0);
    let mut rng = Rng::stream(0, Purpose::Encoding, &[]);
    learner.update(&batch(), UpdateContext::default(), &mut rng);
    learner.update(&batch(), UpdateContext::default(), &mut rng);
    for l in 0..2 {
        let start = network.thresholds(l)[0];
        let want = start + 2.0 * 0.25 * (l as f32 + 1.0);
        assert!(
            learner
                .network()
                .thresholds(l)
                .iter()
                .all(|&t| (t - want).abs() < 1e-6)
        );
    }
    // Higher thresholds, fewer spikes.
    let mut ws = Workspace::default();
    let b = batch();
    network.forward(&b.images, 2, &mut ws, Pass::Eval, &mut rng);
    let before: f32 = ws.spikes(0).iter().sum();
    learner
        .network()
        .forward(&b.images, 2, &mut ws, Pass::Eval, &mut rng);
    let after: f32 = ws.spikes(0).iter().sum();
    assert!(after < before, "{after} spikes vs {before}");
    // theta in synapse() is the postsynaptic neuron's own threshold.
    let reads = crate::rule::compile("fn synapse() { dw = theta; }", std::path::Path::new("r.rhai"))
        .expect("compiles");
    let mut adapted = learner.network().clone();
    adapted.thresholds_mut(0)[2] = 7.0;
    let mut probe = RuleLearner::new(adapted.clone(), "r".into(), &reads, settings, 0);
    probe.update(&batch(), UpdateContext::default(), &mut rng);
    let inputs = adapted.layers()[0].inputs();
    for (i, (a, b)) in probe.network().layers()[0]
        .weights()
        .chunks(inputs)
        .zip(adapted.layers()[0].weights().chunks(inputs))
        .enumerate()
    {
        let want = adapted.thresholds(0)[i];
        assert!(
            a.iter().zip(b).all(|(x, y)| (x - y - want).abs() < 1e-5),
            "row {i}"
        );
    }
}

/// Trains four updates (a pruning event falls on the last) with `source`, and checks every weight
/// and bias stays finite. Any variable the learner cannot supply panics here.
fn trains(source: &str) {
    let compiled =
        crate::rule::compile(source, std::path::Path::new("v.rhai")).unwrap_or_else(|e| panic!("{e}"));
    let has_prune = compiled.programs.iter().any(|(s, _)| *s == Section::Prune);
    let settings = Settings::new(&RuleSpec {
        lr: 0.01,
        biases: Biases::Rule,
        structure: has_prune.then(one_event_schedule),
        ..RuleSpec::default()
    });
    let network = lif_network(vec![5, 4], 3);
    let mut learner = RuleLearner::new(network, "v".into(), &compiled, settings, 1);
    let mut rng = Rng::stream(0, Purpose::Encoding, &[]);
    for step in 0..4 {
        learner.update(&batch(), context(0, step), &mut rng);
    }
    for (l, layer) in learner.network().layers().iter().enumerate() {
        assert!(
            layer.weights().iter().chain(layer.bias()).all(|x| x.is_finite()),
            "{source}: layer {l} is not finite"
        );
    }
    if has_prune {
        assert!(
            learner.present(0).expect("pruned").iter().any(|p| !p),
            "{source}: the pruning event removed nothing"
        );
    }
}

/// Every vocabulary variable with every section that can read it.
fn readable() -> impl Iterator<Item = (Var, Section)> {
    VOCABULARY.iter().flat_map(|v| {
        Section::ALL
            .into_iter()
            .filter(|&section| {
                matches!(
                    vocab::access(section, v.name()),
                    Some(Access::Read | Access::ReadWrite)
                )
            })
            .map(|section| (v.var, section))
    })
}

/// A structure schedule whose one pruning event a few updates reach.
fn one_event_schedule() -> StructureSpec {
    StructureSpec {
        target_density: 0.5,
        window: 1.0,
        prune_steps: 1,
        ..StructureSpec::default()
    }
}

#[test]
fn every_visible_variable_trains_in_every_section() {
    for (v, section) in readable() {
        let name = v.name();
        // Scaled down so that reading `step` or `fan_in` does not blow the weights up.
        let source = match section {
            Section::Synapse => format!("fn synapse() {{ dw = 1.0e-4 * {name}; }}"),
            Section::Neuron => format!("fn neuron() {{ h = {name}; score = {name}; }}"),
            Section::Prune => format!("fn prune() {{ score = {name} + 1.0e-3 * abs(w); }}"),
        };
        trains(&source);
    }
    // Every output of every section.
    trains("fn synapse() { dw = -lr * grad; m = w; u = grad; sigma = 0.01; }");
    trains("fn neuron() { h = rate; theta = theta + 0.01; score = util; }");
    trains("fn prune() { score = abs(w); }");
}

/// What reading `var` in `section` costs beyond the forward pass, stated here from the vocabulary's
/// meaning rather than taken from the code that decides it. The rule's other sections read only `w`.
fn cost(var: Var, section: Section) -> Work {
    let signals = |reads: Reads| Work {
        signals: reads,
        ..Work::default()
    };
    let none = Reads::default();
    let neuron = |n: NeuronWork| Work {
        neuron: Some(n),
        ..Work::default()
    };
    let plain = NeuronWork::default();
    // `h` that no neuron() writes is 0 throughout, and the synapse program the learner runs reads it
    // as that number (`rule::applied_synapse`): nothing to compute.
    if matches!(var, Var::H | Var::PreH) && section == Section::Synapse {
        return Work::default();
    }
    // The neuron statistics, read by any section: the neuron pass runs and computes just that one.
    let statistic = match var {
        Var::RateTrace | Var::PreRateTrace | Var::H | Var::PreH => Some(plain),
        Var::ActDev | Var::PreActDev => Some(NeuronWork {
            act_dev: true,
            ..plain
        }),
        Var::InW | Var::PreInW => Some(NeuronWork { in_w: true, ..plain }),
        Var::OutW | Var::PreOutW => Some(NeuronWork { out_w: true, ..plain }),
        Var::Util | Var::PreUtil => Some(NeuronWork {
            act_dev: true,
            in_w: true,
            out_w: true,
            util: true,
            ..plain
        }),
        _ => None,
    };
    if let Some(work) = statistic {
        return neuron(work);
    }
    if section == Section::Neuron {
        return match var {
            Var::ActDev => neuron(NeuronWork {
                act_dev: true,
                ..plain
            }),
            Var::InW => neuron(NeuronWork { in_w: true, ..plain }),
            Var::OutW => neuron(NeuronWork { out_w: true, ..plain }),
            Var::Util => neuron(NeuronWork {
                act_dev: true,
                in_w: true,
                out_w: true,
                util: true,
                ..plain
            }),
            Var::Psi => neuron(NeuronWork { psi: true, ..plain }),
            Var::V => Work {
                recorded: (true, false),
                ..neuron(NeuronWork { v: true, ..plain })
            },
            Var::Err => Work {
                backward: true,
                recorded: (false, true),
                ..neuron(NeuronWork { err: true, ..plain })
            },
            _ => neuron(plain),
        };
    }
    match var {
        Var::Grad => Work {
            backward: true,
            weight_gradients: true,
            ..Work::default()
        },
        Var::Sigma | Var::GradSigma => Work {
            backward: true,
            weight_gradients: true,
            sampled_weights: true,
            ..Work::default()
        },
        Var::Pre | Var::PreTrace => signals(Reads { pre: true, ..none }),
        // layer_rate is the mean of the postsynaptic layer's post.
        Var::Post | Var::PostTrace | Var::LayerRate => signals(Reads { post: true, ..none }),
        // On the readout, hebb and err use the softmax that post computes.
        Var::Hebb => signals(Reads {
            hebb: true,
            post: true,
            ..none
        }),
        Var::Err => Work {
            backward: true,
            recorded: (false, true),
            ..signals(Reads {
                err: true,
                post: true,
                ..none
            })
        },
        Var::V => Work {
            recorded: (true, false),
            ..signals(Reads { v: true, ..none })
        },
        Var::Psi => signals(Reads { psi: true, ..none }),
        Var::Elig => signals(Reads { elig: true, ..none }),
        Var::Age => signals(Reads { age: true, ..none }),
        Var::W
        | Var::W0
        | Var::M
        | Var::U
        | Var::Theta
        | Var::Lr
        | Var::Step
        | Var::NewTask
        | Var::Batch
        | Var::Loss
        | Var::LossTrace
        | Var::FanIn
        | Var::FanOut
        | Var::Layer => Work::default(),
        Var::Dw | Var::Score | Var::Rate => {
            unreachable!("'{var}' is not readable in synapse() or prune()")
        }
        Var::RateTrace
        | Var::InW
        | Var::OutW
        | Var::ActDev
        | Var::Util
        | Var::H
        | Var::PreRateTrace
        | Var::PreInW
        | Var::PreOutW
        | Var::PreActDev
        | Var::PreUtil
        | Var::PreH => unreachable!("statistics are handled above"),
    }
}

/// Only what a rule reads is computed: for every vocabulary entry and every section that can read
/// it, a rule reading just that entry pays for exactly what the entry needs (the backward pass, the
/// `hebb` GEMM, eligibility traces, recorded membranes and errors, weight samples, neuron
/// statistics) and nothing else.
#[test]
fn a_rule_pays_only_for_what_it_reads() {
    for (var, section) in readable() {
        let name = var.name();
        let source = match section {
            Section::Synapse => format!("fn synapse() {{ dw = 1.0e-4 * {name}; }}"),
            Section::Neuron => format!("fn synapse() {{ dw = 0.0 * w; }}\nfn neuron() {{ h = {name}; }}"),
            Section::Prune => {
                format!("fn synapse() {{ dw = 0.0 * w; }}\nfn prune() {{ score = {name}; }}")
            }
        };
        let compiled =
            crate::rule::compile(&source, std::path::Path::new("c.rhai")).unwrap_or_else(|e| panic!("{e}"));
        let settings = Settings::new(&RuleSpec {
            lr: 0.01,
            biases: Biases::Rule,
            structure: (section == Section::Prune).then(one_event_schedule),
            ..RuleSpec::default()
        });
        let mut learner = RuleLearner::new(lif_network(vec![5, 4], 3), "c".into(), &compiled, settings, 1);
        let mut rng = Rng::stream(0, Purpose::Encoding, &[]);
        // The pruning event, where prune() runs, falls on the last of these updates.
        for step in 0..4 {
            learner.update(&batch(), context(0, step), &mut rng);
        }
        assert_eq!(learner.work(), cost(var, section), "{source}");
    }
}

/// Runs `source` for `updates` updates with lr 0 and no weight change; returns the learner.
fn statistics_learner(source: &str, updates: usize) -> RuleLearner {
    let compiled =
        crate::rule::compile(source, std::path::Path::new("s.rhai")).unwrap_or_else(|e| panic!("{e}"));
    let settings = Settings::new(&RuleSpec {
        lr: 0.0,
        biases: Biases::Sgd,
        ..RuleSpec::default()
    });
    let mut learner = RuleLearner::new(lif_network(vec![5, 4], 3), "s".into(), &compiled, settings, 2);
    let mut rng = Rng::stream(0, Purpose::Encoding, &[]);
    for step in 0..updates {
        learner.update(&batch(), context(0, step), &mut rng);
    }
    learner
}

/// `m` and `u` of weight matrix `l`, as (row, column) → value.
fn slots(learner: &RuleLearner, l: usize) -> (Vec<f32>, Vec<f32>, usize) {
    let inputs = learner.network().layers()[l].inputs();
    (
        learner.matrices[l].m.clone(),
        learner.matrices[l].u.clone(),
        inputs,
    )
}

#[test]
fn synapse_reads_its_post_and_presynaptic_neurons_statistics_from_the_previous_pass() {
    let source = "fn synapse() { dw = 0.0 * w; m = in_w; u = pre_out_w; }";
    // Before any neuron pass: 0 everywhere.
    let first = statistics_learner(source, 1);
    for l in 0..3 {
        let (m, u, _) = slots(&first, l);
        assert!(
            m.iter().chain(&u).all(|&x| x == 0.0),
            "layer {l} after one update"
        );
    }
    // After one pass: the weights never move (dw = 0, lr 0), so in_w and out_w are the network's.
    let second = statistics_learner(source, 2);
    for (l, layer) in second.network().layers().iter().enumerate() {
        let (m, u, inputs) = slots(&second, l);
        let in_w = (l < 2).then(|| crate::learner::cbp::incoming_magnitude(layer));
        // The out_w of hidden layer l − 1's neurons is the mean |w| of their columns in matrix l.
        let pre_out_w = (l > 0).then(|| crate::learner::cbp::outgoing_magnitude(layer));
        for (i, (&mi, &ui)) in m.iter().zip(&u).enumerate() {
            let (row, column) = (i / inputs, i % inputs);
            assert_eq!(
                mi,
                in_w.as_ref().map_or(0.0, |v| v[row]),
                "in_w, matrix {l}, synapse {i}"
            );
            assert_eq!(
                ui,
                pre_out_w.as_ref().map_or(0.0, |v| v[column]),
                "pre_out_w, matrix {l}"
            );
        }
    }
}

#[test]
fn pre_h_is_the_presynaptic_neurons_h_and_layer_rate_the_layers_mean_rate() {
    let source = "fn synapse() { dw = 0.0 * w; m = pre_h; u = layer_rate; }\nfn neuron() { h = rate + 1.0; }";
    let once = statistics_learner(source, 1);
    let h_after_one: Vec<Vec<f32>> = (0..2)
        .map(|l| once.neurons.as_ref().expect("a neuron pass").stats(l).h.to_vec())
        .collect();
    let twice = statistics_learner(source, 2);
    let h_after_two: Vec<Vec<f32>> = (0..2)
        .map(|l| twice.neurons.as_ref().expect("a neuron pass").stats(l).h.to_vec())
        .collect();
    for l in 0..3 {
        let (m, u, inputs) = slots(&twice, l);
        for (i, &mi) in m.iter().enumerate() {
            let expected = if l == 0 {
                0.0
            } else {
                h_after_one[l - 1][i % inputs]
            };
            assert_eq!(mi, expected, "pre_h, matrix {l}, synapse {i}");
        }
        // This update's rates, which neuron() saw as h − 1; the readout has none.
        let expected = if l < 2 {
            h_after_two[l].iter().map(|h| h - 1.0).sum::<f32>() / h_after_two[l].len() as f32
        } else {
            0.0
        };
        assert!(
            u.iter().all(|&x| (x - expected).abs() < 1e-6),
            "layer_rate, matrix {l}: {u:?} vs {expected}"
        );
    }
    assert!(
        h_after_one.iter().flatten().any(|&h| h > 1.0),
        "some unit fired, so the test sees rates"
    );
}

/// A slot no section writes is read as the number 0 by the program the learner runs
/// (`rule::applied_synapse`): training gives the bits of the program that reads the slot's buffer, which
/// holds 0 throughout.
#[test]
fn reading_a_never_written_slot_as_zero_changes_no_bit() {
    let network = Network::new(NetworkConfig::test_lif(20, vec![30], 3), 3);
    let source =
        "fn synapse() { dw = -lr * (grad + sign(m) * tanh(tanh(m * (step + 2.84)))) + u * hebb + h * w; }";
    let compiled = crate::rule::compile(source, std::path::Path::new("z.rhai")).expect("compiles");
    let zeroed = compiled.synapse_applied.as_ref().expect("has synapse()");
    assert!(
        zeroed
            .inputs
            .iter()
            .all(|v| !matches!(v, Var::M | Var::U | Var::H)),
        "{:?}",
        zeroed.inputs
    );
    let mut reference = compiled.clone();
    reference.synapse_applied = crate::rule::applied_synapse(&compiled.canonical, &[]);
    let reads_slots = &reference.synapse_applied.as_ref().expect("has synapse()").inputs;
    assert!([Var::M, Var::U, Var::H].iter().all(|v| reads_slots.contains(v)));
    let settings = || {
        Settings::new(&RuleSpec {
            lr: 0.05,
            ..RuleSpec::default()
        })
    };
    let mut learners = [&compiled, &reference]
        .map(|rule| RuleLearner::new(network.clone(), "z".into(), rule, settings(), 0));
    let mut data = Rng::stream(1, Purpose::Synthetic, &[]);
    for step in 0..6 {
        let batch = Batch {
            images: (0..4 * 20).map(|_| data.uniform()).collect(),
            labels: (0..4).map(|i| ((i + step) % 3) as u8).collect(),
        };
        let context = UpdateContext {
            step,
            ..UpdateContext::default()
        };
        for learner in &mut learners {
            learner.update(
                &batch,
                context,
                &mut Rng::stream(2, Purpose::Encoding, &[step as u64]),
            );
        }
    }
    let bits = |l: &RuleLearner| -> Vec<u32> {
        l.network()
            .layers()
            .iter()
            .flat_map(|layer| layer.weights().iter().chain(layer.bias()).map(|x| x.to_bits()))
            .collect()
    };
    assert_eq!(bits(&learners[0]), bits(&learners[1]));
    assert_ne!(bits(&learners[0]), {
        let fresh = RuleLearner::new(network, "z".into(), &compiled, settings(), 0);
        bits(&fresh)
    });
}

/// The first layer's weight gradient reaches the synapse and prune programs as its factors
/// (`Workspace::factor_first_gradient`): online multiplied where it is read (`Input::Outer`), for a
/// batch computed by blocks of rows (`Input::Blocks`; 100 units make a short last block, and four
/// fifths of the pixels zero make blocks pay). Training gives the bits of the gradient written out,
/// for rules that read `grad` once, twice, under functions and beside other per-synapse variables
/// (`elig`, itself by blocks for a batch), with zero pixels (−0 and +0 products) among the inputs.
#[test]
fn a_gradient_read_as_factors_changes_no_bit() {
    for (batch_size, network) in [
        (1, Network::new(NetworkConfig::test_lif(40, vec![30, 20], 3), 5)),
        (32, Network::new(NetworkConfig::test_lif(40, vec![100, 20], 3), 5)),
    ] {
        gradient_read_as_factors_changes_no_bit(batch_size, network);
    }
}

fn gradient_read_as_factors_changes_no_bit(batch_size: usize, network: Network) {
    for source in [
        "fn synapse() { dw = -lr * grad; }",
        "fn synapse() { dw = -tanh(abs(lr)) * (0.01 * (w - w0 - w0) + grad); }",
        "fn synapse() { dw = -lr * grad * sign(grad) + 0.001 * elig * w; m = grad * grad; }",
        "fn synapse() { dw = -lr * grad + 0.01 * (hebb - elig) * w; }",
        "fn synapse() { dw = -lr * grad - 0.002 * (hebb - pre * post); }",
        "fn synapse() { dw = -lr * grad; } fn prune() { score = abs(w * grad); }",
    ] {
        let compiled = crate::rule::compile(source, std::path::Path::new("g.rhai")).expect("compiles");
        let settings = || {
            Settings::new(&RuleSpec {
                lr: 0.05,
                structure: Some(one_event_schedule()),
                ..RuleSpec::default()
            })
        };
        let mut learners = [true, false].map(|factor| {
            let mut learner = RuleLearner::new(network.clone(), "g".into(), &compiled, settings(), 0);
            learner.core.workspace.factor_first_gradient(factor);
            learner
        });
        let mut data = Rng::stream(1, Purpose::Synthetic, &[]);
        let zeros = if batch_size == 1 { 0.33 } else { 0.8 };
        for step in 0..8 {
            let batch = Batch {
                images: (0..40 * batch_size)
                    .map(|_| {
                        let x = data.uniform();
                        if x < zeros { 0.0 } else { x }
                    })
                    .collect(),
                labels: (0..batch_size).map(|e| ((step + e) % 3) as u8).collect(),
            };
            for learner in &mut learners {
                learner.update(
                    &batch,
                    context(0, step),
                    &mut Rng::stream(2, Purpose::Encoding, &[step as u64]),
                );
            }
            assert!(
                learners[0].core.workspace.first_gradient_factors().is_some(),
                "{source}"
            );
            assert!(
                learners[1].core.workspace.first_gradient_factors().is_none(),
                "{source}"
            );
            #[cfg(target_arch = "x86_64")]
            if batch_size > 1 && std::is_x86_feature_detected!("avx512f") {
                assert!(learners[0].grad_rows.whole().is_none(), "{source}: not by blocks");
            }
        }
        let bits = |l: &RuleLearner| -> Vec<u32> {
            l.network()
                .layers()
                .iter()
                .flat_map(|layer| layer.weights().iter().chain(layer.bias()).map(|x| x.to_bits()))
                .chain(l.matrices.iter().flat_map(|m| m.m.iter().map(|x| x.to_bits())))
                .collect()
        };
        let (factored, written) = (bits(&learners[0]), bits(&learners[1]));
        let first_difference = factored.iter().zip(&written).position(|(a, b)| a != b);
        assert_eq!(
            (first_difference, factored.len()),
            (None, written.len()),
            "{source}, batch {batch_size}"
        );
        let fresh = RuleLearner::new(network.clone(), "g".into(), &compiled, settings(), 0);
        assert_ne!(
            bits(&learners[0]),
            bits(&fresh),
            "{source}: training moved nothing"
        );
    }
}
