//! The rule language: Rhai scripts over a fixed vocabulary, compiled to vectorised programs.
//!
//! Stages, one type each: Rhai source → [`parse`] (Rhai's parser, then a walk of its AST
//! with symbolic execution) → [`ir::Rule`] (typed expression trees; canonical form, printing back to
//! Rhai, structural hash) → [`program::Program`] per section (register bytecode evaluated
//! array-at-a-time over whole f32 slices). [`vocab`] is the vocabulary every stage checks against.
//!
//! This module does no IO and knows nothing about learners or the search: it turns text into programs
//! and says which variables each program reads, so the learner computes only those.

mod avx512;
mod jit;
mod parse;

pub mod export;
pub mod ir;
pub mod math;
pub mod program;
pub mod vocab;

use std::fmt;
use std::path::{Path, PathBuf};

pub use ir::Rule;
pub use program::Program;
pub use vocab::Section;

/// Rules larger than this are refused (a rule is a few lines; this stops pathological input early).
pub const MAX_SOURCE_BYTES: usize = 64 * 1024;
/// Deepest expression nesting accepted, in Rhai's parser and in the IR after substitution.
pub const MAX_DEPTH: usize = 64;

/// One problem in a rule file, at a 1-based line and column (0 when unknown).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
    /// What is wrong and, where possible, how to fix it.
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic at `line:column`.
    pub fn new(line: usize, column: usize, message: String) -> Diagnostic {
        Diagnostic {
            line,
            column,
            message,
        }
    }
}

/// A rule file that does not compile: every diagnostic found in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// The rule file.
    pub path: PathBuf,
    /// The problems, in file order.
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(
                f,
                "{}:{}:{}: {}",
                self.path.display(),
                d.line,
                d.column,
                d.message
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// A parsed, checked rule with its compiled programs.
#[derive(Clone, Debug)]
pub struct CompiledRule {
    /// The rule as parsed (before canonicalisation).
    pub rule: Rule,
    /// The canonical form.
    pub canonical: Rule,
    /// One program per section present, compiled from the canonical form.
    pub programs: Vec<(Section, Program)>,
    /// The `synapse()` program with `dw` replaced by `w + dw`, the weights after the update: a learner
    /// stores them in place of the old ones, so the addition runs inside the program's loop instead of
    /// as a pass of its own over `dw` (the same single rounding either way). `None` without a
    /// `synapse()` section. Compiled here, once per rule, so the learners built from the rule share
    /// its native kernels (clones of a [`Program`] do); slots no section writes are read as the number
    /// 0 they always hold ([`Rule::never_written`]).
    pub synapse_applied: Option<Program>,
}

impl CompiledRule {
    /// Whether the rule's weights are stochastic, `w = μ + σ·ε` sampled on every update (MESU's
    /// scheme): it reads `sigma` or `grad_sigma`, or writes `sigma`. The learner then runs one forward
    /// and backward pass per weight sample, so two rules whose programs compute the same values still
    /// train differently if only one of them does.
    pub fn stochastic_weights(&self) -> bool {
        self.programs.iter().any(|(_, p)| {
            p.inputs
                .iter()
                .any(|v| matches!(v, vocab::Var::Sigma | vocab::Var::GradSigma))
                || p.outputs.iter().any(|(v, _)| *v == vocab::Var::Sigma)
        })
    }

    /// Each section's outputs as the learner computes them: the slots no section writes read as the 0
    /// they always hold ([`Rule::never_written`]), except in a section that draws randn().
    pub fn effective_sections(&self) -> Vec<(Section, Vec<(vocab::Var, ir::Expr)>)> {
        let zero = self.canonical.never_written();
        self.canonical
            .sections
            .iter()
            .map(|(section, outputs)| (*section, with_zeros(outputs, &zero)))
            .collect()
    }
}

/// `outputs` with the variables in `zero` read as the number 0, unless one of them draws randn():
/// subexpressions made equal are computed once, which could merge two draws into one.
fn with_zeros(outputs: &[(vocab::Var, ir::Expr)], zero: &[vocab::Var]) -> Vec<(vocab::Var, ir::Expr)> {
    let draws = outputs.iter().any(|(_, e)| e.draws_noise());
    outputs
        .iter()
        .map(|(var, e)| (*var, if draws { e.clone() } else { e.with_zeros(zero) }))
        .collect()
}

/// [`CompiledRule::synapse_applied`] with the variables in `zero` read as the number 0. A slot no
/// section writes is 0 throughout, so reading it as the number computes the same values, and what
/// depends on it alone is computed once per update instead of once per synapse (evolved rules often
/// carry such terms: `tanh(m * x)` with `m` never written).
pub(crate) fn applied_synapse(canonical: &Rule, zero: &[vocab::Var]) -> Option<Program> {
    let outputs = canonical.sections.get(&Section::Synapse)?;
    let applied: Vec<(vocab::Var, ir::Expr)> = with_zeros(outputs, zero)
        .into_iter()
        .map(|(var, e)| match var {
            vocab::Var::Dw => (
                var,
                ir::Expr::Binary(
                    ir::BinOp::Add,
                    Box::new(ir::Expr::Var(vocab::Var::W)),
                    Box::new(e),
                ),
            ),
            _ => (var, e),
        })
        .collect();
    Some(Program::compile(&applied, &canonical.constants))
}

/// Parses, checks, canonicalises and compiles `source`; `path` is used in messages only.
pub fn compile(source: &str, path: &Path) -> Result<CompiledRule, Error> {
    let rule = parse::parse(source).map_err(|diagnostics| Error {
        path: path.to_path_buf(),
        diagnostics,
    })?;
    let canonical = rule.canonical();
    let programs = canonical
        .sections
        .iter()
        .map(|(section, outputs)| (*section, Program::compile(outputs, &canonical.constants)))
        .collect();
    let synapse_applied = applied_synapse(&canonical, &canonical.never_written());
    Ok(CompiledRule {
        rule,
        canonical,
        programs,
        synapse_applied,
    })
}

#[cfg(test)]
mod tests;
