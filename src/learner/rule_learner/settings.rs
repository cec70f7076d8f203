//! How a rule trains: the spec's `learner` settings of a rule learner, resolved once into the values
//! the learner uses.

use super::neurons::Replacement;
use crate::learner::stochastic::Sampling;
use crate::learner::structure::Schedule;
use crate::rule::{CompiledRule, Section};
use crate::spec::{Biases, RuleLayers, RuleSpec, StructureSpec};

/// How a rule trains: the spec's `learner` settings, resolved.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    /// The step size the rule reads as `lr`.
    pub lr: f32,
    /// The readout follows plain SGD.
    pub hidden_only: bool,
    /// The structure schedule a `prune()` section drives (the default one when the spec gives none).
    pub structure: Schedule,
    /// How a `neuron()` score replaces hidden units (continual backprop's defaults when absent).
    pub replacement: Replacement,
    /// Biases follow the synapse rule too (else plain SGD).
    pub biases_follow_rule: bool,
    /// Weight sampling, when the rule reads or writes `sigma` (MESU's defaults when absent).
    pub sampling: Sampling,
}

impl Settings {
    /// The settings of a rule learner's spec (a run's `Rule` learner, or a search's `learner`).
    pub fn new(spec: &RuleSpec) -> Settings {
        let RuleSpec {
            lr,
            apply_to,
            biases,
            ref structure,
            ref replacement,
            ref stochastic,
            ..
        } = *spec;
        let (structure, replacement, stochastic) =
            (structure.as_ref(), replacement.as_ref(), stochastic.as_ref());
        let replacement = replacement.cloned().unwrap_or_default();
        let stochastic = stochastic.cloned().unwrap_or_default();
        Settings {
            sampling: Sampling {
                samples: stochastic.samples,
                test_samples: stochastic.test_samples,
                sigma_init: stochastic.sigma_init,
                sigma_min: stochastic.sigma_min,
            },
            lr,
            hidden_only: apply_to == RuleLayers::Hidden,
            biases_follow_rule: biases == Biases::Rule,
            structure: structure.cloned().unwrap_or_default().schedule(),
            replacement: Replacement {
                rate: replacement.rate,
                maturity: replacement.maturity,
            },
        }
    }
}

/// Why a rule does not fit the settings it would train with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unfit {
    /// A structure schedule prunes by the `prune()` score, and the rule has none.
    #[error(
        "the learner has a structure schedule but the rule has no prune() section to score synapses; \
         add one (rules/pruning/ has examples) or remove `structure`"
    )]
    StructureWithoutScore,
}

/// Why `structure` cannot be used with `rule`: a schedule prunes by the `prune()` score.
pub fn structure_without_score(rule: &CompiledRule, structure: Option<&StructureSpec>) -> Option<Unfit> {
    let scores = rule.programs.iter().any(|(s, _)| *s == Section::Prune);
    (structure.is_some() && !scores).then_some(Unfit::StructureWithoutScore)
}
