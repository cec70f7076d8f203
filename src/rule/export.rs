//! `synaptogen export`: a rule as one self-contained Python module for NumPy or PyTorch.
//!
//! Each section becomes a function of that name taking exactly the variables the section reads as
//! keyword arguments and returning a dict of every variable it writes. The functions print the
//! canonical IR ([`super::ir`]), whose expressions read the values the variables had when the section
//! began, so a slot written on one line and read on a later one is read with its new value, as the rule
//! says.
//!
//! The arithmetic is synaptogen's own, operation for operation: float32 throughout, comparisons and
//! `min`/`max` with [`super::ir::maximum`]'s NaN rules, and `exp`, `ln`, `tanh`, `sigmoid` and `**`
//! written out from [`super::math`]'s IEEE operations (its constants passed by bit pattern), so the
//! module computes what synaptogen computes bit for bit, on every input. NumPy's and PyTorch's own
//! transcendental functions would agree only to a few units in the last place, which a difference of
//! two nearly equal terms turns into any relative error at all.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::CompiledRule;
use super::ir::{BinOp, Expr, Func, Rule};
use super::math;
use super::vocab::{Scope, Section, Var};

/// The library an exported module computes with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// NumPy arrays (float32).
    Numpy,
    /// PyTorch tensors (float32), on any device.
    Torch,
}

impl Target {
    /// Every target, as `--to` lists them.
    pub const ALL: [Target; 2] = [Target::Numpy, Target::Torch];

    /// The name `--to` takes.
    pub fn name(self) -> &'static str {
        match self {
            Target::Numpy => "numpy",
            Target::Torch => "torch",
        }
    }

    /// The target called `name`.
    pub fn from_name(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == name)
    }

    /// What an array is called in this library.
    fn array(self) -> &'static str {
        match self {
            Target::Numpy => "array",
            Target::Torch => "tensor",
        }
    }
}

/// The Python module for `compiled`, read from a file named `file_name`.
pub fn python(compiled: &CompiledRule, file_name: &str, target: Target) -> String {
    let rule = &compiled.canonical;
    let mut out = String::new();
    docstring(&mut out, rule, file_name, target);
    out.push('\n');
    out.push_str(match target {
        Target::Numpy => "import numpy as np\n",
        Target::Torch => "import torch\n",
    });
    out.push('\n');
    if !rule.constants.is_empty() {
        out.push_str("# The rule's constants (the search tunes them).\n");
        for (name, value) in &rule.constants {
            let _ = writeln!(
                out,
                "{} = {}",
                constant_name(name),
                match target {
                    Target::Numpy => format!("np.float32({})", python_float(*value)),
                    Target::Torch => format!("torch.tensor({}, dtype=torch.float32)", python_float(*value)),
                }
            );
        }
        out.push('\n');
    }
    for (section, outputs) in &rule.sections {
        out.push('\n');
        function(&mut out, rule, *section, outputs, target);
    }
    out.push_str("\n\n");
    out.push_str(&helpers(target));
    out
}

/// The variables `section` reads, in vocabulary order (the order of the keyword arguments).
fn reads(rule: &Rule, section: Section) -> Vec<Var> {
    let mut read = rule.reads(section);
    read.sort();
    read
}

/// Which outputs of `section` depend on `randn()` (they cannot equal synaptogen's draws).
pub fn random_outputs(rule: &Rule, section: Section) -> Vec<Var> {
    rule.sections
        .get(&section)
        .into_iter()
        .flatten()
        .filter(|(_, e)| e.draws_noise())
        .map(|(v, _)| *v)
        .collect()
}

/// The shape a variable of `scope` takes in `section`, as the docstring's table writes it.
fn shape(scope: Scope, section: Section) -> &'static str {
    match (section, scope) {
        (_, Scope::Global) => "float",
        (Section::Neuron, _) => "(n,)",
        (_, Scope::Synapse) => "(post, pre)",
        (_, Scope::Postsynaptic | Scope::Neuron) => "(post, 1)",
        (_, Scope::Presynaptic) => "(pre,)",
    }
}

fn docstring(out: &mut String, rule: &Rule, file_name: &str, target: Target) {
    let library = match target {
        Target::Numpy => "NumPy",
        Target::Torch => "PyTorch",
    };
    let _ = writeln!(
        out,
        "\"\"\"{file_name}: a synaptogen rule, exported for {library}."
    );
    out.push('\n');
    let _ = writeln!(
        out,
        "Structural hash {:016x} (what `synaptogen check` prints). The rule in canonical Rhai:",
        rule.structural_hash()
    );
    out.push('\n');
    for line in rule.to_rhai().lines() {
        if line.is_empty() {
            out.push('\n');
        } else {
            let _ = writeln!(out, "    {line}");
        }
    }
    out.push('\n');
    let array = target.array();
    let _ = writeln!(
        out,
        "Each section is a function below that takes the variables the section reads as keyword\n\
         arguments and returns a dict of every variable it writes, computed from the values the\n\
         variables had when the section began (a slot the rule writes and then reads is read with its\n\
         new value, as the rule says). Arguments are float32 {array}s (or anything that converts) that\n\
         broadcast against each other: (post, pre) has one value per synapse, laid out like a weight\n\
         matrix (torch.nn.Linear.weight); (post, 1) one per postsynaptic neuron; (pre,) one per\n\
         presynaptic neuron; (n,) one per neuron; float one per update. What each variable means is\n\
         synaptogen's definition (`synaptogen vars`):\n"
    );
    for section in rule.sections.keys() {
        let read = reads(rule, *section);
        let _ = writeln!(out, "{}():", section.function());
        for var in &read {
            let _ = writeln!(
                out,
                "    {:<15}{:<13}{}",
                var.name(),
                shape(var.scope_in(*section), *section),
                var.entry().meaning
            );
        }
        let written: Vec<&str> = rule.sections[section].iter().map(|(v, _)| v.name()).collect();
        let _ = writeln!(out, "  returns {}", written.join(", "));
        out.push('\n');
    }
    if !rule.sections.contains_key(&Section::Synapse) {
        out.push_str("The rule has no synapse() section: synaptogen then trains with dw = -lr * grad.\n\n");
    }
    let _ = writeln!(
        out,
        "Arithmetic: float32, operation for operation as synaptogen computes it, with synaptogen's own\n\
         exp, ln, tanh, sigmoid and ** (defined at the end of this module from IEEE operations only),\n\
         so the results equal synaptogen's bit for bit. {} own functions would agree within a few units\n\
         in the last place.",
        match target {
            Target::Numpy => "NumPy's",
            Target::Torch => "PyTorch's",
        }
    );
    if rule.sections.values().flatten().any(|(_, e)| e.draws_noise()) {
        out.push('\n');
        out.push_str(match target {
            Target::Numpy => {
                "randn(): one standard normal draw per element from `rng` (a numpy.random.Generator,\n\
                 default numpy.random.default_rng()), shared by every randn() of the section as in\n\
                 synaptogen; NumPy's generator, so not synaptogen's draws.\n"
            }
            Target::Torch => {
                "randn(): one standard normal draw per element from torch.randn (pass `generator=` to\n\
                 seed it), shared by every randn() of the section as in synaptogen; PyTorch's\n\
                 generator, so not synaptogen's draws.\n"
            }
        });
    }
    out.push_str("\"\"\"\n");
}

/// One section as a Python function.
fn function(out: &mut String, rule: &Rule, section: Section, outputs: &[(Var, Expr)], target: Target) {
    let read = reads(rule, section);
    let random = outputs.iter().any(|(_, e)| e.draws_noise());
    let mut params: Vec<String> = read.iter().map(|v| v.name().to_string()).collect();
    if random {
        params.push(match target {
            Target::Numpy => "rng=None".into(),
            Target::Torch => "generator=None".into(),
        });
    }
    if params.is_empty() {
        let _ = writeln!(out, "def {}():", section.function());
    } else {
        let _ = writeln!(out, "def {}(*, {}):", section.function(), params.join(", "));
    }
    let written: Vec<&str> = outputs.iter().map(|(v, _)| v.name()).collect();
    let _ = writeln!(
        out,
        "    \"\"\"{}() of the rule: returns {{{}}}.\"\"\"",
        section.function(),
        written
            .iter()
            .map(|w| format!("\"{w}\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let names: Vec<&str> = read.iter().map(|v| v.name()).collect();
    if !names.is_empty() {
        let converted: Vec<String> = names.iter().map(|n| format!("_f32({n})")).collect();
        let _ = writeln!(out, "    {} = {}", names.join(", "), converted.join(", "));
    }
    if random {
        let arrays = if names.is_empty() {
            "()".to_string()
        } else {
            format!("({},)", names.join(", "))
        };
        let _ = writeln!(
            out,
            "    noise = _randn({arrays}, {})",
            match target {
                Target::Numpy => "rng",
                Target::Torch => "generator",
            }
        );
    }
    let shared = Shared::find(outputs.iter().map(|(_, e)| e));
    let printer = Printer {
        constants: &rule.constants,
        shared: &shared.names,
        target,
    };
    let indent = match target {
        Target::Numpy => {
            out.push_str("    with np.errstate(all=\"ignore\"):\n");
            "        "
        }
        Target::Torch => "    ",
    };
    for (text, name) in &shared.order {
        let expr = &shared.exprs[text];
        let _ = writeln!(out, "{indent}{name} = {}", printer.expand(expr, 0));
    }
    for (var, expr) in outputs {
        let _ = writeln!(out, "{indent}new_{} = {}", var.name(), printer.top(expr));
    }
    let entries: Vec<String> = outputs
        .iter()
        .map(|(v, _)| format!("\"{0}\": new_{0}", v.name()))
        .collect();
    let _ = writeln!(out, "    return {{{}}}", entries.join(", "));
}

/// Subexpressions that occur more than once in a section, computed once into `t1`, `t2`, … (children
/// before the expressions that use them).
struct Shared {
    /// Canonical text → name.
    names: BTreeMap<String, String>,
    /// Canonical text → expression.
    exprs: BTreeMap<String, Expr>,
    /// `(canonical text, name)` in the order they are computed.
    order: Vec<(String, String)>,
}

impl Shared {
    fn find<'e>(outputs: impl Iterator<Item = &'e Expr> + Clone) -> Shared {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for e in outputs.clone() {
            count(e, &mut counts);
        }
        let mut shared = Shared {
            names: BTreeMap::new(),
            exprs: BTreeMap::new(),
            order: Vec::new(),
        };
        for e in outputs {
            shared.collect(e, &counts);
        }
        shared
    }

    /// Post-order: a shared child is named before the shared expression that contains it.
    fn collect(&mut self, e: &Expr, counts: &BTreeMap<String, usize>) {
        if is_leaf(e) {
            return;
        }
        let key = e.to_rhai(&[]);
        if self.names.contains_key(&key) {
            return;
        }
        for child in children(e) {
            self.collect(child, counts);
        }
        if counts.get(&key).copied().unwrap_or(0) > 1 {
            let name = format!("t{}", self.order.len() + 1);
            self.names.insert(key.clone(), name.clone());
            self.exprs.insert(key.clone(), e.clone());
            self.order.push((key, name));
        }
    }
}

fn is_leaf(e: &Expr) -> bool {
    match e {
        Expr::Num(_) | Expr::Bool(_) | Expr::Var(_) | Expr::Const(_) => true,
        // Every randn() of a section is the same draw: `noise`.
        Expr::Call(Func::Randn, _) => true,
        Expr::Neg(a) => matches!(**a, Expr::Var(_) | Expr::Const(_) | Expr::Num(_)),
        _ => false,
    }
}

fn children(e: &Expr) -> Vec<&Expr> {
    match e {
        Expr::Num(_) | Expr::Bool(_) | Expr::Var(_) | Expr::Const(_) => vec![],
        Expr::Neg(a) | Expr::Not(a) => vec![a],
        Expr::Binary(_, a, b) => vec![a, b],
        Expr::Call(_, args) => args.iter().collect(),
        Expr::Select(c, a, b) => vec![c, a, b],
    }
}

fn count(e: &Expr, counts: &mut BTreeMap<String, usize>) {
    if is_leaf(e) {
        return;
    }
    *counts.entry(e.to_rhai(&[])).or_default() += 1;
    for child in children(e) {
        count(child, counts);
    }
}

/// Prints expressions as Python over the module's helpers.
struct Printer<'a> {
    constants: &'a [(String, f32)],
    shared: &'a BTreeMap<String, String>,
    target: Target,
}

impl Printer<'_> {
    /// An expression at the top of an assignment: a boolean value becomes 1.0 or 0.0, as
    /// synaptogen stores it.
    fn top(&self, e: &Expr) -> String {
        let text = self.print(e, 0);
        if e.is_boolean() {
            format!("_where({text}, _f32(1.0), _f32(0.0))")
        } else {
            text
        }
    }

    /// `e` as Python, in parentheses when it binds less tightly than `context` (Python's
    /// precedences: comparisons 3, `|` 4, `&` 6, `+ -` 8, `* /` 9, unary 10, calls and names 12).
    fn print(&self, e: &Expr, context: u8) -> String {
        if !is_leaf(e)
            && let Some(name) = self.shared.get(&e.to_rhai(&[]))
        {
            return name.clone();
        }
        self.expand(e, context)
    }

    /// `e` itself written out (its subexpressions may be shared names; it is not, even when it is
    /// shared: this is how a shared name is defined).
    fn expand(&self, e: &Expr, context: u8) -> String {
        let (text, precedence) = match e {
            Expr::Num(x) => (literal(*x), 12),
            Expr::Bool(b) => (
                match self.target {
                    Target::Numpy => format!("np.bool_({})", if *b { "True" } else { "False" }),
                    Target::Torch => format!("torch.tensor({})", if *b { "True" } else { "False" }),
                },
                12,
            ),
            Expr::Var(v) => (v.name().to_string(), 12),
            Expr::Const(i) => (
                self.constants
                    .get(*i)
                    .map_or_else(|| format!("CONST{i}"), |(n, _)| constant_name(n)),
                12,
            ),
            Expr::Neg(a) => (format!("-{}", self.print(a, 10)), 10),
            Expr::Not(a) => (format!("~{}", self.print(a, 10)), 10),
            Expr::Binary(BinOp::Pow, a, b) => {
                (format!("_pow({}, {})", self.print(a, 0), self.print(b, 0)), 12)
            }
            Expr::Binary(op, a, b) => {
                let (symbol, p) = match op {
                    BinOp::Add => ("+", 8),
                    BinOp::Sub => ("-", 8),
                    BinOp::Mul => ("*", 9),
                    BinOp::Div => ("/", 9),
                    BinOp::And => ("&", 6),
                    BinOp::Or => ("|", 4),
                    // Python chains comparisons (`a < b < c`): an operand that is one is wrapped.
                    _ => (op.symbol(), 3),
                };
                // Left-associative: the left operand may share the precedence, the right may not.
                let left = if p == 3 { p + 1 } else { p };
                (
                    format!("{} {symbol} {}", self.print(a, left), self.print(b, p + 1)),
                    p,
                )
            }
            Expr::Call(Func::Randn, _) => ("noise".into(), 12),
            Expr::Call(f, args) => {
                let args: Vec<String> = args.iter().map(|a| self.print(a, 0)).collect();
                let name = match f {
                    Func::Abs => "_abs",
                    Func::Sign => "_sign",
                    Func::Sqrt => "_sqrt",
                    Func::Exp => "_exp",
                    Func::Ln => "_ln",
                    Func::Tanh => "_tanh",
                    Func::Sigmoid => "_sigmoid",
                    Func::Relu => "_relu",
                    Func::Min => "_min",
                    Func::Max => "_max",
                    Func::Clamp => "_clamp",
                    Func::Step => "_step",
                    Func::Randn => unreachable!("printed as noise above"),
                };
                (format!("{name}({})", args.join(", ")), 12)
            }
            Expr::Select(c, a, b) => (
                format!(
                    "_where({}, {}, {})",
                    self.print(c, 0),
                    self.print(a, 0),
                    self.print(b, 0)
                ),
                12,
            ),
        };
        if precedence < context {
            format!("({text})")
        } else {
            text
        }
    }
}

/// Names a function's own code uses, or Python reserves.
const RESERVED: &[&str] = &[
    "np",
    "torch",
    "noise",
    "rng",
    "generator",
    "False",
    "None",
    "True",
    "and",
    "as",
    "assert",
    "async",
    "await",
    "break",
    "class",
    "continue",
    "def",
    "del",
    "elif",
    "else",
    "except",
    "finally",
    "for",
    "from",
    "global",
    "if",
    "import",
    "in",
    "is",
    "lambda",
    "nonlocal",
    "not",
    "or",
    "pass",
    "raise",
    "return",
    "try",
    "while",
    "with",
    "yield",
];

/// The Python name of a rule constant: its own, unless that would collide with a name the module
/// uses (a local `t1` or `new_dw`, a keyword, a variable), then with `_` appended; helpers' leading
/// underscore gets a `c` in front.
fn constant_name(name: &str) -> String {
    let taken = |n: &str| {
        RESERVED.contains(&n)
            || n.starts_with("new_")
            || (n.len() > 1 && n.starts_with('t') && n[1..].bytes().all(|b| b.is_ascii_digit()))
            || Var::from_name(n).is_some()
    };
    // Helpers start with `_`; a constant that does too gets a letter in front.
    let mut python = if name.starts_with('_') {
        format!("c{name}")
    } else {
        name.to_string()
    };
    while taken(&python) {
        python.push('_');
    }
    python
}

/// A float32 literal that parses back to exactly `x`.
fn literal(x: f32) -> String {
    format!("_f32({})", python_float(x))
}

/// `x` as a Python float literal whose value, rounded to float32, is exactly `x`: the shortest text
/// when it survives the round trip through float64, else the float64 value itself (exact, since every
/// float32 is a float64).
fn python_float(x: f32) -> String {
    if x.is_nan() {
        return "float(\"nan\")".into();
    }
    if x.is_infinite() {
        return if x > 0.0 {
            "float(\"inf\")"
        } else {
            "-float(\"inf\")"
        }
        .into();
    }
    let short = format!("{x:?}");
    let survives = short
        .parse::<f64>()
        .is_ok_and(|d| (d as f32).to_bits() == x.to_bits());
    if survives {
        short
    } else {
        format!("{:?}", f64::from(x))
    }
}

/// The helper functions, after the sections: the backend's primitives, then synaptogen's arithmetic
/// written over them (the same text for every backend).
fn helpers(target: Target) -> String {
    let primitives = match target {
        Target::Numpy => NUMPY_PRIMITIVES,
        Target::Torch => TORCH_PRIMITIVES,
    };
    let mut text = String::new();
    text.push_str(primitives);
    text.push('\n');
    let mut arithmetic = ARITHMETIC.to_string();
    let f32_constants: [(&str, f32); 11] = [
        ("LOG2_E_32", math::LOG2_E_32),
        ("LN2_HI_32", math::LN2_HI_32),
        ("LN2_LO_32", math::LN2_LO_32),
        ("ROUND_SHIFT_32", math::ROUND_SHIFT_32),
        ("EXP_HIGH_32", math::EXP_HIGH_32),
        ("EXP_LOW_32", math::EXP_LOW_32),
        ("TANH_LIMIT_32", math::TANH_LIMIT_32),
        ("SQRT_2_32", std::f32::consts::SQRT_2),
        ("MIN_POSITIVE_32", f32::MIN_POSITIVE),
        ("TWO_23_32", 8_388_608.0),
        ("POWI_LIMIT_32", math::POWI_LIMIT),
    ];
    for (name, value) in f32_constants {
        arithmetic = arithmetic.replace(
            &format!("{{{name}}}"),
            &format!("_f32_bits(0x{:08x})", value.to_bits()),
        );
    }
    let f64_constants: [(&str, f64); 8] = [
        ("LOG2_E", math::LOG2_E),
        ("LN2_HI", math::LN2_HI),
        ("LN2_LO", math::LN2_LO),
        ("ROUND_SHIFT", math::ROUND_SHIFT),
        ("TWO_52", math::TWO_52),
        ("EXP_LIMIT", math::EXP_LIMIT),
        ("SQRT_2", std::f64::consts::SQRT_2),
        ("LN_2", std::f64::consts::LN_2),
    ];
    for (name, value) in f64_constants {
        arithmetic = arithmetic.replace(
            &format!("{{{name}}}"),
            &format!("_f64_bits(0x{:016x})", value.to_bits()),
        );
    }
    let series = |values: &[u64]| -> String {
        values
            .iter()
            .map(|b| format!("_f64_bits(0x{b:016x})"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let series_32 = |values: &[u32]| -> String {
        values
            .iter()
            .map(|b| format!("_f32_bits(0x{b:08x})"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let bits64 = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let bits32 = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    arithmetic = arithmetic
        .replace("{EXP_SERIES}", &series(&bits64(&math::EXP_SERIES)))
        .replace("{LN_SERIES}", &series(&bits64(&math::LN_SERIES)))
        .replace("{EXP_SERIES_32}", &series_32(&bits32(&math::EXP_SERIES_32)))
        .replace("{LN_SERIES_32}", &series_32(&bits32(&math::LN_SERIES_32)));
    debug_assert!(!arithmetic.contains("{LOG") && !arithmetic.contains("_32}"));
    text.push_str(&arithmetic);
    text
}

/// NumPy's spelling of the primitives [`ARITHMETIC`] is written over. Every constant is typed, so
/// NumPy's promotion rules (value-based before 2.0, NEP 50 after) keep float32 float32.
const NUMPY_PRIMITIVES: &str = r#"# ---- synaptogen's arithmetic, over NumPy --------------------------------------------------------

def _f32(x):
    return np.asarray(x, dtype=np.float32)


def _f32_bits(bits):
    return np.asarray(bits, dtype=np.uint32).view(np.float32)


def _f64_bits(bits):
    return np.asarray(bits, dtype=np.uint64).view(np.float64)


def _i32(n):
    return np.asarray(n, dtype=np.int32)


def _i64(n):
    return np.asarray(n, dtype=np.int64)


_where = np.where
_isnan = np.isnan
_isinf = np.isinf
_abs = np.abs
_sqrt = np.sqrt
_trunc = np.trunc
_copysign = np.copysign


def _bits32(x):
    return np.asarray(x, dtype=np.float32).view(np.int32)


def _from_bits32(bits):
    return np.asarray(bits, dtype=np.int32).view(np.float32)


def _bits64(x):
    return np.asarray(x, dtype=np.float64).view(np.int64)


def _from_bits64(bits):
    return np.asarray(bits, dtype=np.int64).view(np.float64)


def _to_f64(x):
    return np.asarray(x).astype(np.float64)


def _to_f32(x):
    return np.asarray(x).astype(np.float32)


def _randn(arrays, rng):
    rng = np.random.default_rng() if rng is None else rng
    shape = np.broadcast_shapes(*(np.shape(a) for a in arrays))
    return rng.standard_normal(shape, dtype=np.float32)
"#;

/// PyTorch's spelling of the primitives: tensor operations only (no Python branching on values), so
/// `torch.func` and `torch.compile` accept the functions.
const TORCH_PRIMITIVES: &str = r#"# ---- synaptogen's arithmetic, over PyTorch ------------------------------------------------------

def _f32(x):
    return torch.as_tensor(x, dtype=torch.float32)


def _f32_bits(bits):
    return torch.tensor(bits - (1 << 32) if bits >= 1 << 31 else bits, dtype=torch.int32).view(torch.float32)


def _f64_bits(bits):
    return torch.tensor(bits - (1 << 64) if bits >= 1 << 63 else bits, dtype=torch.int64).view(torch.float64)


def _i32(n):
    return torch.as_tensor(n, dtype=torch.int32)


def _i64(n):
    return torch.as_tensor(n, dtype=torch.int64)


_where = torch.where
_isnan = torch.isnan
_isinf = torch.isinf
_abs = torch.abs


def _sqrt(x):
    # torch's float32 sqrt on CPU can be one unit in the last place off; float64's, rounded once to
    # float32, is the correctly rounded float32 square root (53 >= 2 * 24 + 2 bits).
    return torch.sqrt(x.to(torch.float64)).to(torch.float32)

_trunc = torch.trunc
_copysign = torch.copysign


def _bits32(x):
    return x.to(torch.float32).view(torch.int32)


def _from_bits32(bits):
    return bits.to(torch.int32).view(torch.float32)


def _bits64(x):
    return x.to(torch.float64).view(torch.int64)


def _from_bits64(bits):
    return bits.to(torch.int64).view(torch.float64)


def _to_f64(x):
    return x.to(torch.float64)


def _to_f32(x):
    return x.to(torch.float32)


def _randn(arrays, generator):
    shape = torch.broadcast_shapes(*(a.shape for a in arrays))
    device = arrays[0].device if arrays else None
    return torch.randn(shape, generator=generator, dtype=torch.float32, device=device)
"#;

/// synaptogen's arithmetic (`src/rule/math.rs` and `src/rule/ir.rs`), vectorised: every branch is
/// computed and the right one selected, which gives the same values because each branch is a pure
/// function of its inputs. `{NAME}` stands for a constant, filled in by bit pattern.
const ARITHMETIC: &str = r#"def _max(x, y):
    """The larger of x and y; y when x is NaN, x when y is NaN or they are equal."""
    return _where((y > x) | _isnan(x), y, x)


def _min(x, y):
    """The smaller of x and y, with _max's NaN and tie rules."""
    return _where((y < x) | _isnan(x), y, x)


def _clamp(x, low, high):
    return _min(_max(x, low), high)


def _relu(x):
    return _max(x, _f32(0.0))


def _step(x):
    return _where(x > 0, _f32(1.0), _f32(0.0))


def _sign(x):
    return _where(x > 0, _f32(1.0), _where(x < 0, _f32(-1.0), _f32(0.0)))


def _clamp_32(x, low, high):
    return _where(x > high, high, _where(x < low, low, x))


def _reduce_32(x):
    """x = k ln 2 + r, |r| <= ln 2 / 2: returns (k as int32, r)."""
    shifted = x * {LOG2_E_32} + {ROUND_SHIFT_32}
    k = shifted - {ROUND_SHIFT_32}
    r = (x - k * {LN2_HI_32}) - k * {LN2_LO_32}
    return _bits32(shifted) - _bits32({ROUND_SHIFT_32}), r


def _expm1_reduced_32(r):
    p = None
    for c in ({EXP_SERIES_32}):
        p = c if p is None else p * r + c
    return (r * r) * p + r


def _power_of_two_32(k):
    return _from_bits32((k + _i32(127)) << _i32(23))


def _exp_clamped_32(x):
    k, r = _reduce_32(x)
    q = _expm1_reduced_32(r)
    half = k >> _i32(1)
    return ((_f32(1.0) + q) * _power_of_two_32(half)) * _power_of_two_32(k - half)


def _exp(x):
    """e**x."""
    return _where(_isnan(x), x, _exp_clamped_32(_clamp_32(x, {EXP_LOW_32}, {EXP_HIGH_32})))


def _ln_positive_32(x):
    subnormal = x < {MIN_POSITIVE_32}
    y = _where(subnormal, x * {TWO_23_32}, x)
    bits = _bits32(y)
    mantissa = _from_bits32((bits & _i32(0x007FFFFF)) | _i32(0x3F800000))
    above = mantissa > {SQRT_2_32}
    m = _where(above, mantissa * _f32(0.5), mantissa)
    exponent = (bits >> _i32(23)) - _i32(127) + _where(above, _i32(1), _i32(0)) - _where(subnormal, _i32(23), _i32(0))
    e = _to_f32(exponent)
    f = m - _f32(1.0)
    s = f / (_f32(2.0) + f)
    w = s * s
    p = None
    for c in ({LN_SERIES_32}):
        p = c if p is None else p * w + c
    r = w * p
    return e * {LN2_HI_32} + (f - (s * (f - r) - e * {LN2_LO_32}))


def _ln(x):
    """Natural logarithm: NaN below zero, -inf at zero."""
    ordinary = (x > 0) & ~_isinf(x)
    value = _ln_positive_32(_where(ordinary, x, _f32(1.0)))
    value = _where(_isinf(x) & (x > 0), x, value)
    value = _where(x == 0, _f32(-float("inf")), value)
    return _where(_isnan(x) | (x < 0), _f32(float("nan")), value)


def _tanh(x):
    a = _clamp_32(_abs(x), _f32(0.0), {TANH_LIMIT_32})
    k, r = _reduce_32(_f32(2.0) * a)
    s = _power_of_two_32(k)
    em1 = s * _expm1_reduced_32(r) + (s - _f32(1.0))
    return _where(_isnan(x), x, _copysign(em1 / (em1 + _f32(2.0)), x))


def _sigmoid(x):
    """1 / (1 + e**-x), as e**x / (1 + e**x) below zero."""
    e = _exp_clamped_32(_clamp_32(-_abs(x), {EXP_LOW_32}, {EXP_HIGH_32}))
    numerator = _where(x < 0, e, _f32(1.0))
    return _where(_isnan(x), x, numerator / (_f32(1.0) + e))


def _exp_f64(z):
    shifted = z * {LOG2_E} + {ROUND_SHIFT}
    k = shifted - {ROUND_SHIFT}
    r = (z - k * {LN2_HI}) - k * {LN2_LO}
    p = None
    for c in ({EXP_SERIES}):
        p = c if p is None else p * r + c
    q = (p * r) * r + r
    biased = _bits64(shifted) - _bits64({ROUND_SHIFT}) + _i64(1023)
    s = _from_bits64(biased << _i64(52))
    return s * q + s


def _ln_f64(x):
    bits = _bits64(x)
    mantissa = _from_bits64((bits & _i64(0x000FFFFFFFFFFFFF)) | _bits64(_f64_bits(0x3FF0000000000000)))
    above = mantissa > {SQRT_2}
    m = _where(above, mantissa * _f64_bits(0x3FE0000000000000), mantissa)
    biased = (bits >> _i64(52)) + _where(above, _i64(1), _i64(0))
    e = _from_bits64(_bits64({TWO_52}) | biased) - ({TWO_52} + _f64_bits(0x408FF80000000000))
    one = _f64_bits(0x3FF0000000000000)
    s = (m - one) / (m + one)
    w = s * s
    p = None
    for c in ({LN_SERIES}):
        p = c if p is None else p * w + c
    return e * {LN_2} + s * p


def _powi_f64(x, n):
    """x**n for an integer |n| <= 64, by binary powering (seven rounds)."""
    bits = _abs(n)
    base = x
    result = _f64_bits(0x3FF0000000000000)
    for _ in range(7):
        half = bits * _f64_bits(0x3FE0000000000000)
        whole = _trunc(half)
        result = _where(half != whole, result * base, result)
        base = base * base
        bits = whole
    return _where(n < 0, _f64_bits(0x3FF0000000000000) / result, result)


def _pow(x, y):
    """x**y with C99's special values: x**0 = 1 and 1**y = 1 even for NaN, a negative x only to an
    integer power."""
    nan, inf, one, zero = _f32(float("nan")), _f32(float("inf")), _f32(1.0), _f32(0.0)
    y_integer = y == _trunc(y)
    y_odd = y_integer & ((y * _f32(0.5)) != _trunc(y * _f32(0.5)))
    ax = _to_f64(_abs(x))
    y64 = _to_f64(y)
    limit = {EXP_LIMIT}
    z = y64 * _ln_f64(_where(ax > 0, ax, _f64_bits(0x3FF0000000000000)))
    z = _where(z > limit, limit, _where(z < -limit, -limit, z))
    by_powers = y_integer & (_abs(y) <= {POWI_LIMIT_32})
    magnitude = _to_f32(_where(by_powers, _powi_f64(ax, y64), _exp_f64(z)))
    value = _where((x < 0) & y_odd, -magnitude, magnitude)
    value = _where((x < 0) & ~y_integer, nan, value)
    inf_x = _where(y < 0, zero, inf)
    value = _where(_isinf(x), _where((x < 0) & y_odd, -inf_x, inf_x), value)
    a = _abs(x)
    inf_y = _where(a == one, one, _where((a < one) == (y < 0), inf, zero))
    value = _where(_isinf(y), inf_y, value)
    zero_x = _where(y < 0, inf, zero)
    value = _where(x == 0, _where(y_odd, _copysign(zero_x, x), zero_x), value)
    value = _where(_isnan(x) | _isnan(y), nan, value)
    return _where((y == 0) | (x == one), one, value)
"#;
