//! The functional-equivalence cache's key: what a rule computes, not how it is written.

use crate::rng::{Purpose, Rng};
use crate::rule::ir::fnv1a as fnv;
use crate::rule::{CompiledRule, Program};

/// The functional-equivalence hash of a compiled rule: its outputs on a fixed probe batch of inputs,
/// quantised to about 5 significant digits (AutoML-Zero's FEC). Each variable gets the same probe
/// values in every rule, so rules that compute the same function share a hash however they are written.
/// The function is the one training computes: a slot no section writes is probed as the 0 it always
/// holds (so `sign(x) * tanh(m * y)` with `m` never written is the 0 it is), and rules with stochastic
/// weights (MESU's sampling, switched on by reading `sigma`) never share a hash with rules without.
pub fn behaviour_hash(rule: &CompiledRule) -> u64 {
    const PROBE: usize = 64;
    let mut bytes = vec![u8::from(rule.stochastic_weights())];
    for (section, outputs) in rule.effective_sections() {
        let program = Program::compile(&outputs, &rule.canonical.constants);
        let inputs: Vec<Vec<f32>> = program
            .inputs
            .iter()
            .map(|name| {
                let mut rng = Rng::stream(0, Purpose::Behaviour, &[fnv(name.name().as_bytes())]);
                (0..PROBE)
                    .map(|i| match i {
                        0 => 0.0,
                        1 => 1.0,
                        2 => -1.0,
                        _ => rng.normal() * 10f32.powf(rng.uniform() * 4.0 - 3.0),
                    })
                    .collect()
            })
            .collect();
        let slices: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
        let mut outputs = vec![vec![0.0f32; PROBE]; program.outputs.len()];
        {
            let mut outs: Vec<&mut [f32]> = outputs.iter_mut().map(Vec::as_mut_slice).collect();
            let mut noise = Rng::stream(1, Purpose::Behaviour, &[]);
            let mut randn = |chunk: &mut [f32]| chunk.iter_mut().for_each(|x| *x = noise.normal());
            program.run(PROBE, &slices, &mut outs, &mut randn, &mut Default::default());
        }
        bytes.extend_from_slice(section.function().as_bytes());
        for ((name, _), values) in program.outputs.iter().zip(&outputs) {
            bytes.extend_from_slice(name.name().as_bytes());
            for x in values {
                let q = if x.is_nan() {
                    f32::NAN.to_bits()
                } else if *x == 0.0 {
                    0
                } else {
                    (x.to_bits().wrapping_add(0x80)) & !0xff
                };
                bytes.extend_from_slice(&q.to_le_bytes());
            }
        }
    }
    fnv(&bytes)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::behaviour_hash;

    fn hash(source: &str) -> u64 {
        behaviour_hash(&crate::rule::compile(source, Path::new("t.rhai")).expect("compiles"))
    }

    #[test]
    fn rules_computing_the_same_values_share_a_hash_however_written() {
        assert_eq!(
            hash("fn synapse() { dw = -lr * grad; }"),
            hash("fn synapse() { dw = -(grad * lr) * 1.0; }")
        );
        assert_ne!(
            hash("fn synapse() { dw = -lr * grad; }"),
            hash("fn synapse() { dw = -lr * grad * 1.01; }")
        );
    }

    #[test]
    fn a_term_of_a_slot_no_section_writes_is_the_zero_it_always_holds() {
        let sgd = hash("fn synapse() { dw = -lr * grad; }");
        // `m` is never written: the second term is sign(post) * tanh(0), zero on every update.
        assert_eq!(
            sgd,
            hash("fn synapse() { dw = -lr * (grad + sign(post) * tanh(m * pre)); }")
        );
        // Written, it is not.
        assert_ne!(
            sgd,
            hash("fn synapse() { m = pre; dw = -lr * (grad + sign(post) * tanh(m * pre)); }")
        );
        // Neither is `h` once neuron() writes it.
        assert_ne!(
            sgd,
            hash("fn synapse() { dw = -lr * (grad + h * pre); }\nfn neuron() { h = rate_trace; }")
        );
    }

    #[test]
    fn stochastic_weights_are_part_of_the_behaviour() {
        // Both compute dw = -lr * grad (m is never written), but reading sigma samples the weights.
        let sampled = "fn synapse() { dw = -lr * (grad + m * sigma); }";
        assert_ne!(hash("fn synapse() { dw = -lr * grad; }"), hash(sampled));
        assert_eq!(
            hash(sampled),
            hash("fn synapse() { dw = -lr * (grad + 2.0 * m * sigma); }")
        );
    }
}
