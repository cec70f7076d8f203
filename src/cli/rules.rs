//! What `synaptogen check` and `synaptogen vars` print.

use std::fmt::Write;
use std::path::Path;

use crate::rule::program::{self, Granularity, Program};
use crate::rule::vocab::{Access, Scope, Section, VOCABULARY, Var};
use crate::rule::{CompiledRule, ir::Func};

/// The report of `synaptogen check`.
pub fn check_report(path: &Path, compiled: &CompiledRule) -> String {
    let mut out = String::new();
    let rule = &compiled.canonical;
    let _ = writeln!(
        out,
        "{}: ok (structural hash {:016x})",
        path.display(),
        rule.structural_hash()
    );
    if !rule.constants.is_empty() {
        let names: Vec<String> = rule
            .constants
            .iter()
            .map(|(n, v)| format!("{n} = {}", crate::rule::ir::number(*v)))
            .collect();
        let _ = writeln!(out, "constants (tuned by the search): {}", names.join(", "));
    }
    let _ = writeln!(out, "\ncanonical form:\n");
    for line in rule.to_rhai().lines() {
        let _ = writeln!(out, "    {line}");
    }
    let never_written = rule.never_written();
    for (section, program) in &compiled.programs {
        let written: Vec<Var> = program.outputs.iter().map(|(v, _)| *v).collect();
        let _ = writeln!(out, "\n{}():", section.function());
        let _ = writeln!(out, "  reads:  {}", list(&program.inputs));
        let _ = writeln!(out, "  writes: {}", list(&written));
        let zero: Vec<Var> = program
            .inputs
            .iter()
            .copied()
            .filter(|v| never_written.contains(v))
            .collect();
        if !zero.is_empty() {
            let training = match (section, &compiled.synapse_applied) {
                (Section::Synapse, Some(applied)) => format!(
                    "; training reads it as the number 0 and runs {} (adding dw to w included)",
                    split(*section, applied)
                ),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "  note:   no section writes {}, so it stays 0{training}",
                list(&zero)
            );
        }
        let _ = writeln!(
            out,
            "  program: {} operations over {} registers, array-at-a-time",
            program.instructions.len(),
            program.registers
        );
        let _ = writeln!(out, "  {}", work(*section, program));
        for line in program.to_string().lines() {
            let _ = writeln!(out, "    {line}");
        }
    }
    let missing: Vec<&str> = Section::ALL
        .into_iter()
        .filter(|s| !compiled.programs.iter().any(|(p, _)| p == s))
        .map(Section::function)
        .collect();
    if !missing.is_empty() {
        let _ = writeln!(
            out,
            "\nnot defined: {} (synapse() defaults to dw = -lr * grad; no neuron rule; no pruning)",
            missing
                .iter()
                .map(|m| format!("{m}()"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    out
}

/// Where a section's operations run: how many per synapse, per neuron and once per update (each is
/// computed once at the finest granularity of what it reads), and whether on native code.
fn work(section: Section, program: &Program) -> String {
    let inputs = granularities(section, program);
    let split = split(section, program);
    let path = if !program::native_enabled() {
        "interpreted (SYNAPTOGEN_JIT=off)".to_string()
    } else {
        match program.native_parts(&inputs) {
            Ok(parts) => {
                // Each code generator once, in part order: AVX-512 where the CPU has it and a part
                // fits its registers, Cranelift for the rest (with why, the first time).
                let mut names: Vec<String> = Vec::new();
                for (backend, why) in parts {
                    let name = backend.describe();
                    if !names.iter().any(|n| n.starts_with(name)) {
                        names.push(match why {
                            Some(why) => format!("{name}: {why}"),
                            None => name.to_string(),
                        });
                    }
                }
                format!("native code ({})", names.join(" and "))
            }
            Err(why) => format!("interpreted: no native kernel ({why})"),
        }
    };
    format!("runs: {split}; {path}")
}

/// How each of `program`'s inputs varies over what `section` runs on.
fn granularities(section: Section, program: &Program) -> Vec<Granularity> {
    program
        .inputs
        .iter()
        .map(|v| match v.scope_in(section) {
            Scope::Synapse => Granularity::PerSynapse,
            Scope::Postsynaptic | Scope::Neuron => Granularity::PerRow,
            Scope::Presynaptic => Granularity::PerColumn,
            Scope::Global => Granularity::Once,
        })
        .collect()
}

/// How many of `program`'s operations run per synapse, per neuron and once per update.
fn split(section: Section, program: &Program) -> String {
    let [once, per_row, per_column, per_synapse] = program.split(&granularities(section, program));
    if section == Section::Neuron {
        format!("{per_row} per neuron, {once} once per update")
    } else {
        format!(
            "{per_synapse} per synapse, {per_row} per postsynaptic neuron, {per_column} per presynaptic neuron, {once} once per update"
        )
    }
}

fn list(vars: &[Var]) -> String {
    if vars.is_empty() {
        "(nothing)".into()
    } else {
        vars.iter().map(|v| v.name()).collect::<Vec<_>>().join(", ")
    }
}

/// The table of `synaptogen vars`.
pub fn vocabulary_table() -> String {
    let mut out = String::from(
        "The vocabulary of rules. Access per section: r read, rw read/write, w write, · not visible.\nIn synapse() and prune(), a per-neuron value is the postsynaptic neuron's (pre_*: the presynaptic\nneuron's); the neuron statistics there (rate_trace, in_w, out_w, act_dev, util, h and their pre_*)\nare those the previous update's neuron pass left, 0 before it and for inputs and readout units.\n\n",
    );
    let _ = writeln!(
        out,
        "{:<14} {:<14} {:<8} {:<8} {:<8}  meaning",
        "name", "one value per", "synapse", "neuron", "prune"
    );
    for v in VOCABULARY {
        // `age` and `score` are the synapse's in synapse() and prune(), the neuron's own in neuron().
        let in_neuron = v.var.scope_in(Section::Neuron);
        let scope = if v.var.access(Section::Neuron).is_some() && in_neuron != v.scope {
            format!("{}/{}", v.scope.describe(), in_neuron.describe())
        } else {
            v.scope.describe().to_string()
        };
        let cell = |s: Section| match v.var.access(s) {
            Some(Access::Read) => "r",
            Some(Access::ReadWrite) => "rw",
            Some(Access::Write) => "w",
            None => "·",
        };
        let _ = writeln!(
            out,
            "{:<14} {:<14} {:<8} {:<8} {:<8}  {}",
            v.name(),
            scope,
            cell(Section::Synapse),
            cell(Section::Neuron),
            cell(Section::Prune),
            v.meaning
        );
    }
    let _ = writeln!(out, "\nFunctions:");
    for f in Func::ALL {
        let args = match f.arity() {
            0 => "()",
            1 => "(x)",
            2 => "(a, b)",
            _ => "(x, lo, hi)",
        };
        let what = match f {
            Func::Abs => "|x|",
            Func::Sign => "-1, 0 or 1",
            Func::Sqrt => "√x",
            Func::Exp => "e^x",
            Func::Ln => "natural logarithm",
            Func::Tanh => "hyperbolic tangent",
            Func::Sigmoid => "1 / (1 + e^-x)",
            Func::Relu => "max(x, 0)",
            Func::Min => "smaller of a and b",
            Func::Max => "larger of a and b",
            Func::Clamp => "x limited to [lo, hi]",
            Func::Step => "1 if x > 0, else 0",
            Func::Randn => "a deterministic standard normal draw per element",
        };
        let _ = writeln!(out, "  {:<18} {what}", format!("{}{args}", f.name()));
    }
    let _ = writeln!(
        out,
        "\nOperators: + - * / ** < <= > >= == != && || !, if c {{ a }} else {{ b }}, let, +=, -=, *=, /=.\nNumbers are floats: 1/2 is 0.5."
    );
    out
}
