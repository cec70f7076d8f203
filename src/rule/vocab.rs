//! The fixed vocabulary of neuron-local variables a rule may use: each variable as a [`Var`], with what
//! it means, where its value lives and how each section may use it. `synaptogen vars` prints this
//! table; the compiler checks every name against it.
//!
//! A variable is added in one place, the [`vocabulary!`] table below. Every part of the code that gives a
//! variable its value or applies what a rule wrote (the learner's per-section inputs and outputs)
//! matches on [`Var`] without a catch-all, so the compiler lists every site a new variable needs.

/// The three sections a rule file may define.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Section {
    /// `fn synapse()`: per synapse, once per update; writes `dw`.
    Synapse,
    /// `fn neuron()`: per hidden neuron, once per update.
    Neuron,
    /// `fn prune()`: per synapse while the pruning window is open; writes `score`.
    Prune,
}

impl Section {
    /// Every section, in file order.
    pub const ALL: [Section; 3] = [Section::Synapse, Section::Neuron, Section::Prune];

    /// The function name that defines it.
    pub fn function(self) -> &'static str {
        match self {
            Section::Synapse => "synapse",
            Section::Neuron => "neuron",
            Section::Prune => "prune",
        }
    }

    /// The section a function name defines.
    pub fn from_function(name: &str) -> Option<Section> {
        Section::ALL.into_iter().find(|s| s.function() == name)
    }
}

/// Where a variable's value lives: how many values one update has. It fixes the granularity a
/// subexpression over it needs (per synapse, per neuron or once).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// One value per synapse.
    Synapse,
    /// One value per presynaptic neuron, shared by the synapses leaving it.
    Presynaptic,
    /// One value per postsynaptic neuron, shared by the synapses entering it.
    Postsynaptic,
    /// One value per neuron: in `synapse()` and `prune()` the postsynaptic neuron's, in `neuron()`
    /// the neuron's own.
    Neuron,
    /// One value per update (or per layer).
    Global,
}

impl Scope {
    /// How `synaptogen vars` names it.
    pub fn describe(self) -> &'static str {
        match self {
            Scope::Synapse => "synapse",
            Scope::Presynaptic => "pre neuron",
            Scope::Postsynaptic => "post neuron",
            Scope::Neuron => "neuron",
            Scope::Global => "update",
        }
    }
}

/// How a section may use a variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read only.
    Read,
    /// Read and write (persistent state).
    ReadWrite,
    /// Write only (an output).
    Write,
}

/// One vocabulary entry.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Variable {
    /// The variable.
    pub var: Var,
    /// Where its value lives.
    pub scope: Scope,
    /// What it means, one line.
    pub meaning: &'static str,
    /// Access in `synapse()`, `neuron()` and `prune()`, in that order; `None`: not visible there.
    pub access: [Option<Access>; 3],
}

impl Variable {
    /// The name rules use.
    pub fn name(&self) -> &'static str {
        self.var.name()
    }
}

const R: Option<Access> = Some(Access::Read);
const RW: Option<Access> = Some(Access::ReadWrite);
const W: Option<Access> = Some(Access::Write);
const NO: Option<Access> = None;

/// Declares [`Var`], its names and [`VOCABULARY`] from one table: `Variant "name" Scope [synapse neuron
/// prune] "meaning"`. The table's order is the order outputs are written in and the order
/// `synaptogen vars` lists them (and the search draws from), so a new variable goes at the end of its
/// group without disturbing the others.
macro_rules! vocabulary {
    ($($var:ident $name:literal $scope:ident [$syn:ident $neu:ident $pru:ident] $meaning:literal;)*) => {
        /// A vocabulary variable. Its name is [`Var::name`]; its entry, [`Var::entry`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Var {
            $(#[doc = $meaning] $var,)*
        }

        impl Var {
            /// Every variable, in vocabulary order.
            pub const ALL: &'static [Var] = &[$(Var::$var),*];

            /// The name rules use.
            pub fn name(self) -> &'static str {
                match self {
                    $(Var::$var => $name,)*
                }
            }
        }

        /// The vocabulary, v1, in [`Var`] order. Extend deliberately; every name here is documented by
        /// `synaptogen vars`.
        pub const VOCABULARY: &[Variable] = &[
            $(Variable { var: Var::$var, scope: Scope::$scope, meaning: $meaning, access: [$syn, $neu, $pru] },)*
        ];
    };
}

vocabulary! {
    W "w" Synapse [R NO R] "current weight";
    W0 "w0" Synapse [R NO R] "weight when the synapse was (re)created";
    Grad "grad" Synapse [R NO R] "∂L/∂w from surrogate-gradient BPTT (batch mean)";
    Hebb "hebb" Synapse [R NO R] "mean over batch and time of pre spike × post spike";
    Elig "elig" Synapse [R NO R]
        "mean over batch and time of post psi × presynaptic trace (e-prop eligibility)";
    Age "age" Synapse [R R R]
        "updates since the synapse (or, in neuron(), the neuron) was created or regrown";
    M "m" Synapse [RW NO R] "free persistent slot, starts at 0";
    U "u" Synapse [RW NO R] "free persistent slot, starts at 0";
    Sigma "sigma" Synapse [RW NO R]
        "weight std; reading or writing it turns stochastic weights on (w = μ + σε, w is μ)";
    GradSigma "grad_sigma" Synapse [R NO R] "∂L/∂σ (batch mean), estimated over the weight samples";
    Pre "pre" Presynaptic [R NO R] "presynaptic mean activity this update";
    PreTrace "pre_trace" Presynaptic [R NO R] "slow running average of pre";
    Post "post" Postsynaptic [R NO R] "postsynaptic rate this update";
    PostTrace "post_trace" Postsynaptic [R NO R] "slow running average of post";
    Dw "dw" Synapse [W NO NO] "output: the weight change";
    Rate "rate" Neuron [NO R NO] "the neuron's firing rate this update";
    RateTrace "rate_trace" Neuron [R R R] "slow running average of rate";
    InW "in_w" Neuron [R R R] "mean |incoming w|";
    OutW "out_w" Neuron [R R R] "mean |outgoing w|";
    ActDev "act_dev" Neuron [R R R] "|activity − its running mean|";
    Util "util" Neuron [R R R] "running contribution utility (continual backprop)";
    H "h" Neuron [R RW R] "free persistent slot, starts at 0; written by neuron()";
    PreRateTrace "pre_rate_trace" Presynaptic [R NO R] "the presynaptic neuron's rate_trace (0 for inputs)";
    PreInW "pre_in_w" Presynaptic [R NO R] "the presynaptic neuron's in_w (0 for inputs)";
    PreOutW "pre_out_w" Presynaptic [R NO R] "the presynaptic neuron's out_w (0 for inputs)";
    PreActDev "pre_act_dev" Presynaptic [R NO R] "the presynaptic neuron's act_dev (0 for inputs)";
    PreUtil "pre_util" Presynaptic [R NO R] "the presynaptic neuron's util (0 for inputs)";
    PreH "pre_h" Presynaptic [R NO R] "the presynaptic neuron's h (0 for inputs)";
    V "v" Neuron [R R R] "mean membrane of the (postsynaptic) neuron";
    Err "err" Neuron [R R R] "backpropagated error at the (postsynaptic) neuron";
    Psi "psi" Neuron [R R R] "mean surrogate derivative of the (postsynaptic) neuron";
    Theta "theta" Neuron [R RW R] "firing threshold of the (postsynaptic) neuron; writable in neuron()";
    Score "score" Synapse [NO W W] "output: pruning score in prune(), replacement score in neuron()";
    Lr "lr" Global [R R R] "the learner's step size";
    Step "step" Global [R R R] "updates since the task began";
    NewTask "new_task" Global [R R R] "1 on a task's first update when boundaries are visible, else 0";
    Batch "batch" Global [R R R] "examples in this update (the batch size)";
    Loss "loss" Global [R R R] "this update's mean loss";
    LossTrace "loss_trace" Global [R R R] "slow running average of loss";
    FanIn "fan_in" Global [R R R] "inputs per neuron of this layer";
    FanOut "fan_out" Global [R R R] "outputs per neuron of this layer";
    Layer "layer" Global [R R R] "index of this layer, from 0";
    LayerRate "layer_rate" Global [R R R]
        "mean firing rate of the (postsynaptic) layer's neurons this update; 0 for the readout";
}

impl Var {
    /// The variable called `name`.
    pub fn from_name(name: &str) -> Option<Var> {
        Var::ALL.iter().copied().find(|v| v.name() == name)
    }

    /// Its vocabulary entry.
    pub fn entry(self) -> &'static Variable {
        &VOCABULARY[self as usize]
    }

    /// How `section` may use it, or `None` when it is not visible there.
    pub fn access(self, section: Section) -> Option<Access> {
        self.entry().access[section as usize]
    }

    /// Where its value lives in `section`. `age` is the synapse's in `synapse()` and `prune()`, the
    /// neuron's own in `neuron()`; `score` is per synapse in `prune()`, per neuron in `neuron()`.
    pub fn scope_in(self, section: Section) -> Scope {
        match (self, section) {
            (Var::Age | Var::Score, Section::Neuron) => Scope::Neuron,
            _ => self.entry().scope,
        }
    }
}

impl std::fmt::Display for Var {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How `section` may use the variable called `name`, or `None` when no such variable is visible there.
pub fn access(section: Section, name: &str) -> Option<Access> {
    Var::from_name(name)?.access(section)
}

/// The vocabulary entry called `name`.
pub fn lookup(name: &str) -> Option<&'static Variable> {
    Var::from_name(name).map(Var::entry)
}

/// The variables visible in `section`, in vocabulary order.
pub fn visible(section: Section) -> impl Iterator<Item = Var> {
    Var::ALL
        .iter()
        .copied()
        .filter(move |v| v.access(section).is_some())
}

/// The output a section must write.
pub fn required_output(section: Section) -> Option<Var> {
    match section {
        Section::Synapse => Some(Var::Dw),
        Section::Prune => Some(Var::Score),
        Section::Neuron => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Access::{Read, ReadWrite, Write};

    #[test]
    fn access_per_section() {
        let check = |s: Section, n: &str, a: Option<Access>| assert_eq!(access(s, n), a, "{n} in {s:?}");
        check(Section::Synapse, "w", Some(Read));
        check(Section::Synapse, "dw", Some(Write));
        check(Section::Synapse, "m", Some(ReadWrite));
        check(Section::Prune, "m", Some(Read));
        check(Section::Prune, "score", Some(Write));
        check(Section::Synapse, "score", None);
        check(Section::Neuron, "dw", None);
        check(Section::Neuron, "theta", Some(ReadWrite));
        check(Section::Synapse, "theta", Some(Read));
        check(Section::Neuron, "rate", Some(Read));
        check(Section::Synapse, "rate", None);
        check(Section::Neuron, "w", None);
        check(Section::Neuron, "h", Some(ReadWrite));
        check(Section::Neuron, "age", Some(Read));
        check(Section::Neuron, "lr", Some(Read));
        check(Section::Synapse, "nonsense", None);
    }

    #[test]
    fn names_are_unique_and_entries_follow_var_order() {
        for (i, v) in VOCABULARY.iter().enumerate() {
            assert_eq!(v.var as usize, i, "{} is out of order", v.name());
            assert_eq!(Var::from_name(v.name()), Some(v.var));
            assert!(
                VOCABULARY[i + 1..].iter().all(|b| b.name() != v.name()),
                "{} twice",
                v.name()
            );
        }
    }

    #[test]
    fn every_section_has_its_output_and_every_variable_a_section() {
        for s in Section::ALL {
            if let Some(out) = required_output(s) {
                assert_eq!(out.access(s), Some(Write));
            }
        }
        for v in Var::ALL {
            assert!(
                Section::ALL.iter().any(|s| v.access(*s).is_some()),
                "{v} is visible nowhere"
            );
        }
    }
}
