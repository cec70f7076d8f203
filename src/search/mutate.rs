//! Mutations on the rule IR (AutoML-Zero's, Real et al. 2020, on expression trees): each takes a parent rule and returns a child and a one-line
//! description of what changed, or `None` when the parent offers nothing to change (a rule without
//! constants cannot have one perturbed); the caller then draws another kind.
//!
//! Mutations act on the expression trees of the evolved sections' outputs. They keep every tree
//! well-typed by construction (numbers replace numbers, comparisons replace comparisons); the caller
//! still prints the child to Rhai and compiles it, so a child is checked by the same compiler as a
//! hand-written rule.

use crate::rng::Rng;
use crate::rule::ir::{BinOp, Expr, Func, number};
use crate::rule::vocab::{self, Access, Var};
use crate::rule::{Rule, Section};

/// The mutation kinds, in the order of [`crate::search::spec::MutationWeights::as_array`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Multiply a constant by exp(σ·N(0, 1)), σ = 0.5; a tenth of the time also flip its sign.
    PerturbConstant,
    /// Replace a constant by ±10^U(−4, 1).
    ReplaceConstant,
    /// Replace a variable by another one the section can read.
    SwapVariable,
    /// Replace an operator by another of its kind, or a function by another of its arity.
    SwapOperator,
    /// `e` → `e op t`, with `t` a variable, a constant or their product.
    InsertTerm,
    /// Replace an operator or call by one of its operands.
    DeleteSubtree,
    /// `e` → `f(e)` for a one-argument function.
    WrapFunction,
    /// Replace a subtree by a subtree of a second parent.
    Crossover,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 8] = [
        Kind::PerturbConstant,
        Kind::ReplaceConstant,
        Kind::SwapVariable,
        Kind::SwapOperator,
        Kind::InsertTerm,
        Kind::DeleteSubtree,
        Kind::WrapFunction,
        Kind::Crossover,
    ];

    /// The name used in journals, lineage and reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::PerturbConstant => "perturb_constant",
            Kind::ReplaceConstant => "replace_constant",
            Kind::SwapVariable => "swap_variable",
            Kind::SwapOperator => "swap_operator",
            Kind::InsertTerm => "insert_term",
            Kind::DeleteSubtree => "delete_subtree",
            Kind::WrapFunction => "wrap_function",
            Kind::Crossover => "crossover",
        }
    }
}

/// A draw from `weights` (not all zero).
pub fn choose_kind(weights: &[f32; 8], rng: &mut Rng) -> Kind {
    let total: f32 = weights.iter().sum();
    let mut x = rng.uniform() * total;
    for (kind, w) in Kind::ALL.into_iter().zip(weights) {
        if x < *w {
            return kind;
        }
        x -= w;
    }
    Kind::ALL[weights.iter().rposition(|w| *w > 0.0).unwrap_or(0)]
}

/// The variables `section` can read, in vocabulary order: what a swapped or inserted variable is
/// drawn from (training computes every one of them).
pub fn readable(section: Section) -> Vec<Var> {
    vocab::visible(section)
        .filter(|v| matches!(v.access(section), Some(Access::Read | Access::ReadWrite)))
        .collect()
}

/// Where a node is: section, output index, then child indices from the root.
#[derive(Clone, Debug)]
struct Site {
    section: Section,
    output: usize,
    path: Vec<usize>,
}

fn children_mut(e: &mut Expr) -> Vec<&mut Expr> {
    match e {
        Expr::Num(_) | Expr::Bool(_) | Expr::Var(_) | Expr::Const(_) => vec![],
        Expr::Neg(a) | Expr::Not(a) => vec![&mut **a],
        Expr::Binary(_, a, b) => vec![&mut **a, &mut **b],
        Expr::Call(_, args) => args.iter_mut().collect(),
        Expr::Select(c, a, b) => vec![&mut **c, &mut **a, &mut **b],
    }
}

fn children(e: &Expr) -> Vec<&Expr> {
    match e {
        Expr::Num(_) | Expr::Bool(_) | Expr::Var(_) | Expr::Const(_) => vec![],
        Expr::Neg(a) | Expr::Not(a) => vec![&**a],
        Expr::Binary(_, a, b) => vec![&**a, &**b],
        Expr::Call(_, args) => args.iter().collect(),
        Expr::Select(c, a, b) => vec![&**c, &**a, &**b],
    }
}

fn collect(e: &Expr, path: &mut Vec<usize>, out: &mut Vec<(Vec<usize>, Expr)>) {
    out.push((path.clone(), e.clone()));
    for (i, c) in children(e).into_iter().enumerate() {
        path.push(i);
        collect(c, path, out);
        path.pop();
    }
}

fn node_mut<'a>(e: &'a mut Expr, path: &[usize]) -> &'a mut Expr {
    match path.split_first() {
        None => e,
        Some((&i, rest)) => {
            let child = children_mut(e)
                .into_iter()
                .nth(i)
                .expect("paths come from the same tree");
            node_mut(child, rest)
        }
    }
}

/// Every node of the evolved sections with its site, in a fixed order.
fn sites(rule: &Rule, sections: &[Section]) -> Vec<(Site, Expr)> {
    let mut out = Vec::new();
    for (section, outputs) in &rule.sections {
        if !sections.contains(section) {
            continue;
        }
        for (output, (_, e)) in outputs.iter().enumerate() {
            let mut nodes = Vec::new();
            collect(e, &mut Vec::new(), &mut nodes);
            out.extend(nodes.into_iter().map(|(path, e)| {
                (
                    Site {
                        section: *section,
                        output,
                        path,
                    },
                    e,
                )
            }));
        }
    }
    out
}

fn pick<'a, T>(items: &'a [T], rng: &mut Rng) -> Option<&'a T> {
    (!items.is_empty()).then(|| &items[rng.below(items.len())])
}

fn replace(rule: &Rule, site: &Site, with: Expr) -> Rule {
    let mut child = rule.clone();
    let outputs = child.sections.get_mut(&site.section).expect("site of this rule");
    *node_mut(&mut outputs[site.output].1, &site.path) = with;
    child
}

fn fresh_constant(rng: &mut Rng) -> f32 {
    let magnitude = 10f32.powf(-4.0 + 5.0 * rng.uniform());
    // Three significant digits: a constant a person can read in the report.
    let digits = 10f32.powf(magnitude.log10().floor() - 2.0);
    let magnitude = (magnitude / digits).round() * digits;
    if rng.below(2) == 0 { magnitude } else { -magnitude }
}

fn fresh_leaf(section: Section, rng: &mut Rng) -> Expr {
    let vars = readable(section);
    let var = Expr::Var(vars[rng.below(vars.len())]);
    match rng.below(3) {
        0 => var,
        1 => Expr::Num(fresh_constant(rng)),
        _ => Expr::Binary(
            BinOp::Mul,
            Box::new(Expr::Num(fresh_constant(rng))),
            Box::new(var),
        ),
    }
}

const ARITHMETIC: [BinOp; 4] = [BinOp::Add, BinOp::Sub, BinOp::Mul, BinOp::Div];
const COMPARISON: [BinOp; 4] = [BinOp::Lt, BinOp::Le, BinOp::Gt, BinOp::Ge];
const UNARY: [Func; 7] = [
    Func::Abs,
    Func::Sign,
    Func::Tanh,
    Func::Sigmoid,
    Func::Relu,
    Func::Step,
    Func::Exp,
];

/// Applies `kind` to `parent` (`other` is the second parent of a crossover). The child is not yet
/// canonical or checked.
pub fn mutate(
    parent: &Rule,
    other: &Rule,
    kind: Kind,
    sections: &[Section],
    rng: &mut Rng,
) -> Option<(Rule, String)> {
    let nodes = sites(parent, sections);
    let numeric: Vec<&(Site, Expr)> = nodes.iter().filter(|(_, e)| !e.is_boolean()).collect();
    match kind {
        Kind::PerturbConstant | Kind::ReplaceConstant => {
            // Literal numbers in the trees and the named constants are equally likely targets.
            let literals: Vec<&(Site, Expr)> =
                nodes.iter().filter(|(_, e)| matches!(e, Expr::Num(_))).collect();
            let named = parent.constants.len();
            let total = literals.len() + named;
            if total == 0 {
                return None;
            }
            let i = rng.below(total);
            let old = if i < literals.len() {
                let Expr::Num(x) = literals[i].1 else {
                    unreachable!("filtered to numbers")
                };
                x
            } else {
                parent.constants[i - literals.len()].1
            };
            let new = if kind == Kind::PerturbConstant {
                let factor = (0.5 * rng.normal()).exp();
                let sign = if rng.below(10) == 0 { -1.0 } else { 1.0 };
                old * factor * sign
            } else {
                fresh_constant(rng)
            };
            if !new.is_finite() || new == old {
                return None;
            }
            let detail = format!("{} → {}", number(old), number(new));
            if i < literals.len() {
                Some((replace(parent, &literals[i].0, Expr::Num(new)), detail))
            } else {
                let mut child = parent.clone();
                let (name, value) = &mut child.constants[i - literals.len()];
                *value = new;
                let detail = format!("{name}: {detail}");
                Some((child, detail))
            }
        }
        Kind::SwapVariable => {
            let vars: Vec<&(Site, Expr)> = nodes.iter().filter(|(_, e)| matches!(e, Expr::Var(_))).collect();
            let (site, e) = pick(&vars, rng)?;
            let Expr::Var(old) = e else {
                unreachable!("filtered to variables")
            };
            let choices: Vec<Var> = readable(site.section).into_iter().filter(|v| v != old).collect();
            let new = *pick(&choices, rng)?;
            Some((replace(parent, site, Expr::Var(new)), format!("{old} → {new}")))
        }
        Kind::SwapOperator => {
            let ops: Vec<&(Site, Expr)> = nodes
                .iter()
                .filter(|(_, e)| match e {
                    Expr::Binary(op, ..) => *op != BinOp::Pow,
                    Expr::Call(f, _) => *f != Func::Randn,
                    _ => false,
                })
                .collect();
            let (site, e) = pick(&ops, rng)?;
            let (with, detail) = match e {
                Expr::Binary(op, a, b) => {
                    let family: &[BinOp] = if ARITHMETIC.contains(op) {
                        &ARITHMETIC
                    } else if COMPARISON.contains(op) {
                        &COMPARISON
                    } else {
                        &[BinOp::And, BinOp::Or, BinOp::Eq, BinOp::Ne]
                    };
                    let family: Vec<BinOp> = family
                        .iter()
                        .copied()
                        .filter(|o| o != op && o.takes_booleans() == op.takes_booleans())
                        .collect();
                    let new = *pick(&family, rng)?;
                    (
                        Expr::Binary(new, a.clone(), b.clone()),
                        format!("{} → {}", op.symbol(), new.symbol()),
                    )
                }
                Expr::Call(f, args) => {
                    let family: Vec<Func> = Func::ALL
                        .into_iter()
                        .filter(|g| g != f && g.arity() == f.arity() && *g != Func::Randn)
                        .collect();
                    let new = *pick(&family, rng)?;
                    (
                        Expr::Call(new, args.clone()),
                        format!("{} → {}", f.name(), new.name()),
                    )
                }
                _ => unreachable!("filtered to operators and calls"),
            };
            Some((replace(parent, site, with), detail))
        }
        Kind::InsertTerm => {
            let (site, e) = pick(&numeric, rng)?;
            let op = [BinOp::Add, BinOp::Sub, BinOp::Mul][rng.below(3)];
            let term = fresh_leaf(site.section, rng);
            let detail = format!("{} {}", op.symbol(), term.to_rhai(&parent.constants));
            let with = Expr::Binary(op, Box::new(e.clone()), Box::new(term));
            Some((replace(parent, site, with), detail))
        }
        Kind::DeleteSubtree => {
            let inner: Vec<&(Site, Expr)> = numeric
                .iter()
                .copied()
                .filter(|(_, e)| children(e).iter().any(|c| !c.is_boolean()))
                .collect();
            let (site, e) = pick(&inner, rng)?;
            let operands: Vec<&Expr> = children(e).into_iter().filter(|c| !c.is_boolean()).collect();
            let keep = (*pick(&operands, rng)?).clone();
            let detail = format!(
                "{} → {}",
                e.to_rhai(&parent.constants),
                keep.to_rhai(&parent.constants)
            );
            Some((replace(parent, site, keep), detail))
        }
        Kind::WrapFunction => {
            let (site, e) = pick(&numeric, rng)?;
            let f = UNARY[rng.below(UNARY.len())];
            let with = Expr::Call(f, vec![e.clone()]);
            let detail = format!("wrap in {}()", f.name());
            Some((replace(parent, site, with), detail))
        }
        Kind::Crossover => {
            let (site, _) = pick(&numeric, rng)?;
            let donors: Vec<(Site, Expr)> = sites(other, &[site.section])
                .into_iter()
                .filter(|(_, e)| !e.is_boolean() && !contains_const(e))
                .collect();
            let (_, graft) = pick(&donors, rng)?;
            let detail = format!("graft {}", graft.to_rhai(&other.constants));
            Some((replace(parent, site, graft.clone()), detail))
        }
    }
}

/// Named constants belong to their rule; a graft that refers to one would point at the wrong slot.
fn contains_const(e: &Expr) -> bool {
    matches!(e, Expr::Const(_)) || children(e).into_iter().any(contains_const)
}

/// Expression nodes over the evolved sections: the complexity the hall of fame bins by.
pub fn complexity(rule: &Rule, sections: &[Section]) -> usize {
    rule.sections
        .iter()
        .filter(|(s, _)| sections.contains(s))
        .flat_map(|(_, outputs)| outputs.iter().map(|(_, e)| e.size()))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Purpose;
    use std::path::Path;

    fn rule(source: &str) -> Rule {
        crate::rule::compile(source, Path::new("t.rhai"))
            .expect("valid rule")
            .canonical
    }

    #[test]
    fn every_kind_yields_a_rule_that_compiles() {
        let parent = rule("const A = 0.01;\nfn synapse() { dw = -lr * grad + A * pre * (post - 0.5); }");
        let other = rule("fn synapse() { dw = -lr * grad - 0.001 * w; }");
        for kind in Kind::ALL {
            let mut changed = 0;
            for i in 0..50 {
                let mut rng = Rng::stream(1, Purpose::Learner, &[i]);
                let Some((child, detail)) = mutate(&parent, &other, kind, &[Section::Synapse], &mut rng)
                else {
                    continue;
                };
                let text = child.canonical().to_rhai();
                crate::rule::compile(&text, Path::new("child.rhai"))
                    .unwrap_or_else(|e| panic!("{kind:?} ({detail}) gave an invalid rule:\n{text}\n{e}"));
                if child.canonical() != parent {
                    changed += 1;
                }
            }
            assert!(
                changed > 25,
                "{kind:?} changed the rule only {changed} times in 50"
            );
        }
    }

    /// Every shipped rule file and committed winner, compiled to its canonical form.
    fn shipped_rules() -> Vec<(String, Rule)> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut paths = Vec::new();
        for dir in [
            "rules/baselines",
            "rules/local",
            "rules/pruning",
            "reports/quickstart",
            "reports/overproduce",
            "reports/overnight",
        ] {
            for entry in std::fs::read_dir(root.join(dir))
                .expect("shipped directory")
                .flatten()
            {
                if entry.path().extension().is_some_and(|e| e == "rhai") {
                    paths.push(entry.path());
                }
            }
        }
        paths.sort();
        paths
            .into_iter()
            .map(|p| {
                let text = std::fs::read_to_string(&p).expect("readable");
                (p.display().to_string(), rule(&text))
            })
            .collect()
    }

    #[test]
    fn chains_of_mutations_print_rules_that_parse_back_to_themselves() {
        // The search stores a candidate as its printed canonical form and compiles it again on resume:
        // whatever the mutations make must print as Rhai that parses back to the same rule.
        let shipped = shipped_rules();
        let mut checked = 0;
        for (i, (name, seed)) in shipped.iter().enumerate() {
            let sections: Vec<Section> = seed.sections.keys().copied().collect();
            let other = &shipped[(i + 1) % shipped.len()].1;
            for chain in 0..8u64 {
                let mut rng = Rng::stream(7, Purpose::Learner, &[i as u64, chain]);
                let mut current = seed.clone();
                for _ in 0..12 {
                    let kind = Kind::ALL[rng.below(Kind::ALL.len())];
                    let Some((child, detail)) = mutate(&current, other, kind, &sections, &mut rng) else {
                        continue;
                    };
                    let text = child.canonical().to_rhai();
                    let again = crate::rule::compile(&text, Path::new("child.rhai"))
                        .unwrap_or_else(|e| panic!("{name}: {kind:?} ({detail}) printed\n{text}\n{e}"));
                    assert_eq!(again.canonical.to_rhai(), text, "{name}: {kind:?} ({detail})");
                    current = again.canonical;
                    checked += 1;
                }
            }
        }
        assert!(checked > 500, "only {checked} mutations applied");
    }

    #[test]
    fn a_rule_without_constants_has_none_to_perturb() {
        let parent = rule("fn synapse() { dw = -lr * grad; }");
        let mut rng = Rng::stream(1, Purpose::Learner, &[]);
        assert!(
            mutate(
                &parent,
                &parent,
                Kind::PerturbConstant,
                &[Section::Synapse],
                &mut rng
            )
            .is_none()
        );
    }

    #[test]
    fn weights_select_kinds() {
        let mut weights = [0.0; 8];
        weights[4] = 1.0;
        let mut rng = Rng::stream(1, Purpose::Learner, &[]);
        assert!((0..100).all(|_| choose_kind(&weights, &mut rng) == Kind::InsertTerm));
    }
}
