//! The batched GEMM implementation checked against a naive per-example, per-step reference written
//! straight from the equations (explicit readout recursion, no `c_t` shortcut), and the ANN mode against
//! finite differences.

// The reference mirrors the equations index by index on purpose.
#![allow(clippy::needless_range_loop)]

use super::*;

fn config(neuron: Neuron, hidden: Vec<usize>, time_steps: usize) -> NetworkConfig {
    NetworkConfig {
        inputs: 6,
        hidden,
        classes: 3,
        neuron,
        time_steps,
        encoding: Encoding::Direct,
        readout_beta: 0.8,
        init: Init::FanIn,
    }
}

fn lif(reset: Reset) -> Neuron {
    Neuron::Lif(Lif {
        beta: 0.9,
        threshold: 0.3,
        slope: 5.0,
        reset,
    })
}

fn inputs(batch: usize) -> (Vec<f32>, Vec<u8>) {
    let x = (0..batch * 6).map(|i| ((i * 7 % 11) as f32) / 10.0).collect();
    let y = (0..batch).map(|i| (i % 3) as u8).collect();
    (x, y)
}

/// Reference forward + backward for one network, straight from the model in `src/snn/mod.rs`. Returns (logits, grads).
fn reference(net: &Network, x: &[f32], labels: &[u8]) -> (Vec<f32>, Vec<DenseGradient>) {
    let cfg = net.config();
    let t_steps = cfg.time_steps;
    let batch = labels.len();
    let layers = net.layers();
    let hidden = cfg.hidden.len();
    let mut grads: Vec<DenseGradient> = layers
        .iter()
        .map(|d| DenseGradient {
            weights: vec![0.0; d.weights().len()],
            bias: vec![0.0; d.bias().len()],
        })
        .collect();
    let mut all_logits = vec![];
    for b in 0..batch {
        let xb = &x[b * cfg.inputs..(b + 1) * cfg.inputs];
        // acts[l][t] = input to layer l at step t; psis[l][t] for hidden layers.
        let mut acts: Vec<Vec<Vec<f32>>> = vec![vec![xb.to_vec(); t_steps]];
        let mut psis: Vec<Vec<Vec<f32>>> = vec![];
        for layer in &layers[..hidden] {
            let mut v = vec![0.0f32; layer.outputs()];
            let mut prev = vec![0.0f32; layer.outputs()];
            let (mut outs, mut ps) = (vec![], vec![]);
            for t in 0..t_steps {
                let input = &acts.last().expect("input layer pushed first")[t];
                let mut s = vec![0.0; layer.outputs()];
                let mut p = vec![0.0; layer.outputs()];
                for i in 0..layer.outputs() {
                    let cur: f32 = layer.bias()[i]
                        + (0..layer.inputs())
                            .map(|j| layer.weights()[i * layer.inputs() + j] * input[j])
                            .sum::<f32>();
                    match cfg.neuron {
                        Neuron::Relu => {
                            s[i] = cur.max(0.0);
                            p[i] = if cur > 0.0 { 1.0 } else { 0.0 };
                        }
                        Neuron::Lif(n) => {
                            let reset_prev = if n.reset == Reset::NextStep {
                                prev[i] * n.threshold
                            } else {
                                0.0
                            };
                            v[i] = n.beta * v[i] + cur - reset_prev;
                            s[i] = if v[i] > n.threshold { 1.0 } else { 0.0 };
                            p[i] = 1.0 / (1.0 + n.slope * (v[i] - n.threshold).abs()).powi(2);
                            if n.reset == Reset::SameStep {
                                v[i] -= s[i] * n.threshold;
                            }
                        }
                    }
                }
                prev = s.clone();
                outs.push(s);
                ps.push(p);
            }
            acts.push(outs);
            psis.push(ps);
        }
        let readout = &layers[hidden];
        let mut u = vec![0.0f32; cfg.classes];
        let mut logits = vec![0.0f32; cfg.classes];
        for t in 0..t_steps {
            let s = &acts[hidden][t];
            for k in 0..cfg.classes {
                let z: f32 = readout.bias()[k]
                    + (0..readout.inputs())
                        .map(|j| readout.weights()[k * readout.inputs() + j] * s[j])
                        .sum::<f32>();
                u[k] = cfg.readout_beta * u[k] + z;
                logits[k] += u[k] / t_steps as f32;
            }
        }
        // Backward.
        let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let sum: f32 = logits.iter().map(|z| (z - max).exp()).sum();
        let g: Vec<f32> = (0..cfg.classes)
            .map(|k| {
                ((logits[k] - max).exp() / sum - if k == labels[b] as usize { 1.0 } else { 0.0 })
                    / batch as f32
            })
            .collect();
        all_logits.extend_from_slice(&logits);
        let mut du = vec![0.0f32; cfg.classes];
        let mut ds: Vec<Vec<f32>> = vec![vec![0.0; readout.inputs()]; t_steps];
        for t in (0..t_steps).rev() {
            for k in 0..cfg.classes {
                du[k] = g[k] / t_steps as f32 + cfg.readout_beta * du[k];
                grads[hidden].bias[k] += du[k];
                for j in 0..readout.inputs() {
                    grads[hidden].weights[k * readout.inputs() + j] += du[k] * acts[hidden][t][j];
                    ds[t][j] += readout.weights()[k * readout.inputs() + j] * du[k];
                }
            }
        }
        let beta = match cfg.neuron {
            Neuron::Lif(n) => n.beta,
            Neuron::Relu => 0.0,
        };
        for l in (0..hidden).rev() {
            let layer = &layers[l];
            let mut dv = vec![0.0f32; layer.outputs()];
            let mut ds_below = vec![vec![0.0f32; layer.inputs()]; t_steps];
            for t in (0..t_steps).rev() {
                for i in 0..layer.outputs() {
                    dv[i] = ds[t][i] * psis[l][t][i] + beta * dv[i];
                    grads[l].bias[i] += dv[i];
                    for j in 0..layer.inputs() {
                        grads[l].weights[i * layer.inputs() + j] += dv[i] * acts[l][t][j];
                        ds_below[t][j] += layer.weights()[i * layer.inputs() + j] * dv[i];
                    }
                }
            }
            ds = ds_below;
        }
    }
    (all_logits, grads)
}

fn check(cfg: NetworkConfig) {
    let net = Network::new(cfg, 5);
    let (x, y) = inputs(4);
    let mut ws = Workspace::default();
    let mut grads = net.zero_gradients();
    let mut rng = Rng::stream(0, Purpose::Encoding, &[]);
    net.forward(&x, 4, &mut ws, Pass::Train, &mut rng);
    net.backward(&x, &y, &mut ws, &mut grads);
    let (want_logits, want_grads) = reference(&net, &x, &y);
    for (a, b) in ws.logits().iter().zip(&want_logits) {
        assert!(
            (a - b).abs() < 1e-5,
            "logits {:?} vs {want_logits:?}",
            ws.logits()
        );
    }
    for (l, (got, want)) in grads.layers.iter().zip(&want_grads).enumerate() {
        for (a, b) in got
            .weights
            .iter()
            .zip(&want.weights)
            .chain(got.bias.iter().zip(&want.bias))
        {
            assert!((a - b).abs() < 1e-5 * (1.0 + b.abs()), "layer {l}: {a} vs {b}");
        }
    }
    let nonzero = grads.layers[0].weights.iter().filter(|g| **g != 0.0).count();
    assert!(nonzero > 0, "the test must exercise the first layer's gradient");
}

#[test]
fn spiking_bptt_matches_the_reference_same_step_reset() {
    check(config(lif(Reset::SameStep), vec![8, 5], 6));
}

#[test]
fn spiking_bptt_matches_the_reference_next_step_reset() {
    check(config(lif(Reset::NextStep), vec![7], 5));
}

#[test]
fn ann_mode_matches_the_reference() {
    check(config(Neuron::Relu, vec![9, 4], 1));
}

#[test]
fn ann_gradient_matches_finite_differences() {
    let mut net = Network::new(config(Neuron::Relu, vec![5], 1), 3);
    let (x, y) = inputs(3);
    let mut ws = Workspace::default();
    let mut grads = net.zero_gradients();
    let mut rng = Rng::stream(0, Purpose::Encoding, &[]);
    net.forward(&x, 3, &mut ws, Pass::Train, &mut rng);
    net.backward(&x, &y, &mut ws, &mut grads);
    let loss = |net: &Network, ws: &mut Workspace, rng: &mut Rng| {
        net.forward(&x, 3, ws, Pass::Eval, rng);
        let mut g = vec![0.0; 9];
        softmax_cross_entropy(ws.logits(), &y, 3, &mut g).0 as f64
    };
    let eps = 1e-2f32;
    for (l, i) in [(0usize, 4usize), (0, 17), (1, 2), (1, 11)] {
        let w = net.layers()[l].weights()[i];
        net.layers_mut()[l].weights_mut()[i] = w + eps;
        let up = loss(&net, &mut ws, &mut rng);
        net.layers_mut()[l].weights_mut()[i] = w - eps;
        let down = loss(&net, &mut ws, &mut rng);
        net.layers_mut()[l].weights_mut()[i] = w;
        let fd = (up - down) / (2.0 * eps as f64);
        let g = grads.layers[l].weights[i] as f64;
        assert!(
            (fd - g).abs() < 1e-3 + 1e-2 * g.abs(),
            "layer {l} weight {i}: fd {fd} vs {g}"
        );
    }
}

#[test]
fn readout_step_weights_sum_the_leaky_mean() {
    // With β_o = 0.8 and T = 2: c_0 = (1 + 0.8)/2, c_1 = 1/2.
    let net = Network::new(config(lif(Reset::SameStep), vec![2], 2), 0);
    assert!((net.step_weights[0] - 0.9).abs() < 1e-6 && (net.step_weights[1] - 0.5).abs() < 1e-6);
}

#[test]
fn same_seed_same_weights_different_seed_different_weights() {
    let a = Network::new(config(Neuron::Relu, vec![5], 1), 1);
    let b = Network::new(config(Neuron::Relu, vec![5], 1), 1);
    let c = Network::new(config(Neuron::Relu, vec![5], 1), 2);
    assert_eq!(a.layers()[0].weights(), b.layers()[0].weights());
    assert_ne!(a.layers()[0].weights(), c.layers()[0].weights());
    let bound = 1.0 / 6f32.sqrt();
    assert!(a.layers()[0].weights().iter().all(|w| w.abs() <= bound));
}

#[test]
fn bernoulli_encoding_of_binary_pixels_equals_direct_current() {
    // With pixels in {0, 1} every Bernoulli draw is certain, so the per-step input path (all-steps GEMM,
    // ∂W over T·batch rows) must reproduce the constant-input path exactly.
    let direct = config(lif(Reset::SameStep), vec![8, 5], 4);
    let bernoulli = NetworkConfig {
        encoding: Encoding::Bernoulli,
        ..direct.clone()
    };
    let (a, b) = (Network::new(direct, 2), Network::new(bernoulli, 2));
    let x: Vec<f32> = (0..4 * 6).map(|i| if i % 3 == 0 { 1.0 } else { 0.0 }).collect();
    let y = vec![0, 1, 2, 0];
    let mut rng = Rng::stream(0, Purpose::Encoding, &[]);
    let mut results = vec![];
    for net in [&a, &b] {
        let mut ws = Workspace::default();
        let mut grads = net.zero_gradients();
        net.forward(&x, 4, &mut ws, Pass::Train, &mut rng);
        net.backward(&x, &y, &mut ws, &mut grads);
        results.push((ws.logits().to_vec(), grads));
    }
    for (p, q) in results[0].0.iter().zip(&results[1].0) {
        assert!((p - q).abs() < 1e-5, "logits differ: {p} vs {q}");
    }
    for (g, h) in results[0].1.layers.iter().zip(&results[1].1.layers) {
        for (p, q) in g.weights.iter().zip(&h.weights) {
            assert!((p - q).abs() < 1e-5, "gradients differ: {p} vs {q}");
        }
    }
}

/// `Pass::Predict` sums the last hidden layer's spikes into the readout as they come instead of
/// storing them: the logits are `Pass::Eval`'s bit for bit, in both reset timings, with one or two
/// hidden layers and either encoding, and a later pass still starts from zero spikes.
#[test]
fn predict_gives_the_logits_of_eval_bit_for_bit() {
    for reset in [Reset::SameStep, Reset::NextStep] {
        for hidden in [vec![5], vec![4, 7]] {
            for encoding in [Encoding::Direct, Encoding::Bernoulli] {
                let net = Network::new(
                    NetworkConfig {
                        encoding,
                        ..config(lif(reset), hidden.clone(), 5)
                    },
                    3,
                );
                let (x, _) = inputs(9);
                let run = |pass: Pass, ws: &mut Workspace| {
                    let mut rng = Rng::stream(0, crate::rng::Purpose::Encoding, &[]);
                    net.forward(&x, 9, ws, pass, &mut rng);
                    ws.logits().iter().map(|v| v.to_bits()).collect::<Vec<u32>>()
                };
                let mut ws = Workspace::default();
                let eval = run(Pass::Eval, &mut ws);
                assert_eq!(
                    run(Pass::Predict, &mut ws),
                    eval,
                    "{reset:?} {hidden:?} {encoding:?}"
                );
                assert_eq!(run(Pass::Eval, &mut ws), eval, "after a prediction");
            }
        }
    }
}

#[test]
fn rates_summed_during_the_pass_have_the_bits_of_rates_summed_after_it() {
    for neuron in [lif(Reset::SameStep), lif(Reset::NextStep), Neuron::Relu] {
        let net = Network::new(config(neuron, vec![5, 7], 6), 4);
        let (x, _) = inputs(9);
        let rates = |record: bool, pass: Pass| {
            let mut ws = Workspace::default();
            ws.record_rates(record);
            let mut rng = Rng::stream(0, crate::rng::Purpose::Encoding, &[]);
            net.forward(&x, 9, &mut ws, pass, &mut rng);
            let recorded = ws.layers.iter().all(|b| b.spike_sum_pass == Some(ws.pass_id()));
            assert_eq!(
                recorded, record,
                "the sums are read only when recorded for this pass"
            );
            [5, 7]
                .iter()
                .enumerate()
                .map(|(l, &width)| ws.activity(l, width).iter().map(|v| v.to_bits()).collect())
                .collect::<Vec<Vec<u32>>>()
        };
        for pass in [Pass::Train, Pass::Eval] {
            let summed_after = rates(false, pass);
            assert!(
                summed_after.iter().flatten().any(|&v| v != 0),
                "{neuron:?}: no activity to compare"
            );
            assert_eq!(rates(true, pass), summed_after, "{neuron:?} {pass:?}");
        }
    }
}

#[test]
fn a_surrogate_summed_during_the_pass_has_the_bits_of_one_summed_after_it() {
    let steps = 6;
    let weights: Vec<f32> = (0..steps).map(|t| 1.0 + 0.37 * t as f32).collect();
    for neuron in [lif(Reset::SameStep), lif(Reset::NextStep), Neuron::Relu] {
        let net = Network::new(config(neuron, vec![5, 7], steps), 4);
        let (x, _) = inputs(9);
        let mut ws = Workspace::default();
        ws.record_weighted_surrogate(Some(weights.clone()));
        let mut rng = Rng::stream(0, crate::rng::Purpose::Encoding, &[]);
        net.forward(&x, 9, &mut ws, Pass::Train, &mut rng);
        let mut want = vec![f32::NAN; 9 * 5];
        neuron::weighted_sum_over_steps(ws.surrogate(0), &weights, &mut want);
        assert!(
            want.iter().any(|&v| v != 0.0),
            "{neuron:?}: no surrogate to compare"
        );
        let got = ws.weighted_surrogate(&weights).expect("recorded in this pass");
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(got), bits(&want), "{neuron:?}");
        // Other weights, or a pass that is not training, find nothing recorded.
        assert!(ws.weighted_surrogate(&weights[..steps - 1]).is_none());
        net.forward(&x, 9, &mut ws, Pass::Eval, &mut rng);
        assert!(
            ws.weighted_surrogate(&weights).is_none(),
            "{neuron:?}: an eval pass"
        );
    }
}
