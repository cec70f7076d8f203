//! The functional-equivalence cache's key: what a rule computes, not how it is written.

use crate::rng::{Purpose, Rng};
use crate::rule::CompiledRule;
use crate::rule::ir::fnv1a as fnv;

/// The functional-equivalence hash of a compiled rule: its outputs on a fixed probe batch of inputs,
/// quantised to about 5 significant digits (AutoML-Zero's FEC). Each variable gets the same probe
/// values in every rule, so rules that compute the same function share a hash however they are written.
pub fn behaviour_hash(rule: &CompiledRule) -> u64 {
    const PROBE: usize = 64;
    let mut bytes = Vec::new();
    for (section, program) in &rule.programs {
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
