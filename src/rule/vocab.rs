//! The fixed vocabulary of neuron-local variables a rule may use (DESIGN §3), with what each means,
//! where it lives and which section may read or write it. `synaptogen vars` prints this table; the
//! compiler checks every name against it.

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

/// Where a variable's value comes from, which fixes the sections that can see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// One value per synapse (synapse and prune sections).
    Synapse,
    /// A property of the synapse's presynaptic or postsynaptic neuron (synapse and prune sections).
    Connection,
    /// One value per hidden neuron (neuron section).
    Neuron,
    /// One value per update or layer, in every section.
    Global,
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
    /// The name rules use.
    pub name: &'static str,
    /// Where it lives.
    pub scope: Scope,
    /// What it means, one line.
    pub meaning: &'static str,
    /// Access in the sections it is visible in (`Write` outputs belong to one section only).
    pub access: Access,
    /// For outputs and section-specific state: the only section that may use it.
    pub only_in: Option<Section>,
}

const fn var(name: &'static str, scope: Scope, access: Access, meaning: &'static str) -> Variable {
    Variable {
        name,
        scope,
        meaning,
        access,
        only_in: None,
    }
}

const fn only(mut v: Variable, section: Section) -> Variable {
    v.only_in = Some(section);
    v
}

use Access::{Read, ReadWrite, Write};
use Scope::{Connection, Global, Neuron, Synapse};

/// The vocabulary, v1. Extend deliberately; every name here is documented by `synaptogen vars`.
pub const VOCABULARY: &[Variable] = &[
    var("w", Synapse, Read, "current weight"),
    var("w0", Synapse, Read, "weight when the synapse was (re)created"),
    var(
        "grad",
        Synapse,
        Read,
        "∂L/∂w from surrogate-gradient BPTT (batch mean)",
    ),
    var(
        "hebb",
        Synapse,
        Read,
        "mean over batch and time of pre spike × post spike",
    ),
    var(
        "elig",
        Synapse,
        Read,
        "mean over batch and time of post psi × presynaptic trace (e-prop eligibility)",
    ),
    var(
        "age",
        Synapse,
        Read,
        "updates since the synapse (or, in neuron(), the neuron) was created or regrown",
    ),
    var("m", Synapse, ReadWrite, "free persistent slot, starts at 0"),
    var("u", Synapse, ReadWrite, "free persistent slot, starts at 0"),
    var(
        "sigma",
        Synapse,
        ReadWrite,
        "weight std; reading or writing it turns stochastic weights on (w = μ + σε, w is μ)",
    ),
    var(
        "grad_sigma",
        Synapse,
        Read,
        "∂L/∂σ (batch mean), estimated over the weight samples",
    ),
    var("pre", Connection, Read, "presynaptic mean activity this update"),
    var("pre_trace", Connection, Read, "slow running average of pre"),
    var("post", Connection, Read, "postsynaptic rate this update"),
    var("post_trace", Connection, Read, "slow running average of post"),
    only(
        var("dw", Synapse, Write, "output: the weight change"),
        Section::Synapse,
    ),
    var("rate", Neuron, Read, "the neuron's firing rate this update"),
    var("rate_trace", Neuron, Read, "slow running average of rate"),
    var("in_w", Neuron, Read, "mean |incoming w|"),
    var("out_w", Neuron, Read, "mean |outgoing w|"),
    var("act_dev", Neuron, Read, "|activity − its running mean|"),
    var(
        "util",
        Neuron,
        Read,
        "running contribution utility (continual backprop)",
    ),
    only(
        var("h", Neuron, ReadWrite, "free persistent slot, starts at 0"),
        Section::Neuron,
    ),
    var("v", Global, Read, "mean membrane of the (postsynaptic) neuron"),
    var(
        "err",
        Global,
        Read,
        "backpropagated error at the (postsynaptic) neuron",
    ),
    var(
        "psi",
        Global,
        Read,
        "mean surrogate derivative of the (postsynaptic) neuron",
    ),
    var(
        "theta",
        Global,
        Read,
        "firing threshold of the (postsynaptic) neuron; writable in neuron()",
    ),
    var(
        "score",
        Global,
        Write,
        "output: pruning score in prune(), replacement score in neuron()",
    ),
    var("lr", Global, Read, "the learner's step size"),
    var("step", Global, Read, "updates since the task began"),
    var(
        "new_task",
        Global,
        Read,
        "1 on a task's first update when boundaries are visible, else 0",
    ),
    var("batch", Global, Read, "examples in this update (the batch size)"),
    var("loss", Global, Read, "this update's mean loss"),
    var("loss_trace", Global, Read, "slow running average of loss"),
    var("fan_in", Global, Read, "inputs per neuron of this layer"),
    var("fan_out", Global, Read, "outputs per neuron of this layer"),
    var("layer", Global, Read, "index of this layer, from 0"),
];

/// How `section` may use `name`, or `None` when the name is not visible there.
pub fn access(section: Section, name: &str) -> Option<Access> {
    let v = lookup(name)?;
    if v.only_in.is_some_and(|s| s != section) {
        return None;
    }
    // v, err, psi, theta, score are per neuron: the postsynaptic neuron's in synapse/prune, the neuron's
    // own in neuron(); hence "Global" scope with per-section rules below.
    let visible = match (v.scope, section) {
        (Synapse | Connection, Section::Synapse | Section::Prune) => true,
        (Neuron, Section::Neuron) => true,
        (Global, _) => true,
        _ => name == "age",
    };
    if !visible {
        return None;
    }
    Some(match (name, section) {
        ("theta", Section::Neuron) => ReadWrite,
        ("score", Section::Synapse) => return None,
        ("m" | "u" | "sigma", Section::Prune) => Read,
        _ => v.access,
    })
}

/// The vocabulary entry for `name`.
pub fn lookup(name: &str) -> Option<&'static Variable> {
    VOCABULARY.iter().find(|v| v.name == name)
}

/// The names visible in `section`, for "did you mean" suggestions.
pub fn visible(section: Section) -> impl Iterator<Item = &'static str> {
    VOCABULARY
        .iter()
        .map(|v| v.name)
        .filter(move |n| access(section, n).is_some())
}

/// The name of the output a section must write.
pub fn required_output(section: Section) -> Option<&'static str> {
    match section {
        Section::Synapse => Some("dw"),
        Section::Prune => Some("score"),
        Section::Neuron => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_follows_design_section_3() {
        assert_eq!(access(Section::Synapse, "w"), Some(Read));
        assert_eq!(access(Section::Synapse, "dw"), Some(Write));
        assert_eq!(access(Section::Synapse, "m"), Some(ReadWrite));
        assert_eq!(access(Section::Prune, "m"), Some(Read));
        assert_eq!(access(Section::Prune, "score"), Some(Write));
        assert_eq!(access(Section::Synapse, "score"), None);
        assert_eq!(access(Section::Neuron, "dw"), None);
        assert_eq!(access(Section::Neuron, "theta"), Some(ReadWrite));
        assert_eq!(access(Section::Synapse, "theta"), Some(Read));
        assert_eq!(access(Section::Neuron, "rate"), Some(Read));
        assert_eq!(access(Section::Synapse, "rate"), None);
        assert_eq!(access(Section::Neuron, "w"), None);
        assert_eq!(access(Section::Neuron, "h"), Some(ReadWrite));
        assert_eq!(access(Section::Neuron, "age"), Some(Read));
        assert_eq!(access(Section::Neuron, "lr"), Some(Read));
    }

    #[test]
    fn names_are_unique() {
        for (i, a) in VOCABULARY.iter().enumerate() {
            assert!(
                VOCABULARY[i + 1..].iter().all(|b| b.name != a.name),
                "{} twice",
                a.name
            );
        }
    }
}
