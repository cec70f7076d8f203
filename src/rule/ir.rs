//! The rule IR: typed expression trees, one per written variable of a section, after symbolic execution
//! of `let`s, assignments and `if`s.
//!
//! The canonical form ([`Expr::canonical`]) folds constants, applies a few identities that hold for
//! every float including inf and NaN (`x + 0`, `x·1`, `x/1`, `−(−x)`; not `x·0`, which is NaN for inf) and orders the operands of commutative operators, so equivalent spellings (`a*b` and
//! `b*a`, `x + 0` and `x`) print, and therefore hash, the same. [`Rule::to_rhai`] prints valid Rhai that
//! parses back to the same canonical IR.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::math;
use super::vocab::{Section, Var};

/// Binary operators. Comparisons and logic yield booleans; the rest numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BinOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `**`
    Pow,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `&&`
    And,
    /// `||`
    Or,
}

impl BinOp {
    /// The Rhai spelling.
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Pow => "**",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::And => "&&",
            BinOp::Or => "||",
        }
    }

    /// The operator for a Rhai operator name.
    pub fn from_symbol(symbol: &str) -> Option<BinOp> {
        Some(match symbol {
            "+" => BinOp::Add,
            "-" => BinOp::Sub,
            "*" => BinOp::Mul,
            "/" => BinOp::Div,
            "**" => BinOp::Pow,
            "<" => BinOp::Lt,
            "<=" => BinOp::Le,
            ">" => BinOp::Gt,
            ">=" => BinOp::Ge,
            "==" => BinOp::Eq,
            "!=" => BinOp::Ne,
            "&&" => BinOp::And,
            "||" => BinOp::Or,
            _ => return None,
        })
    }

    /// Whether the result is a boolean.
    pub fn is_boolean(self) -> bool {
        !matches!(
            self,
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Pow
        )
    }

    /// Whether the operands are booleans.
    pub fn takes_booleans(self) -> bool {
        matches!(self, BinOp::And | BinOp::Or)
    }

    fn is_commutative(self) -> bool {
        matches!(
            self,
            BinOp::Add | BinOp::Mul | BinOp::Eq | BinOp::Ne | BinOp::And | BinOp::Or
        )
    }

    /// Binding strength in Rhai (higher binds tighter).
    fn precedence(self) -> u8 {
        match self {
            BinOp::Or => 30,
            BinOp::And => 60,
            BinOp::Eq | BinOp::Ne => 90,
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => 110,
            BinOp::Add | BinOp::Sub => 150,
            BinOp::Mul | BinOp::Div => 180,
            BinOp::Pow => 190,
        }
    }
}

/// The built-in functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Func {
    /// |x|
    Abs,
    /// −1, 0 or 1
    Sign,
    /// √x
    Sqrt,
    /// eˣ
    Exp,
    /// ln x
    Ln,
    /// tanh x
    Tanh,
    /// 1 / (1 + e⁻ˣ)
    Sigmoid,
    /// max(x, 0)
    Relu,
    /// min(a, b)
    Min,
    /// max(a, b)
    Max,
    /// min(max(x, lo), hi)
    Clamp,
    /// 1 if x > 0 else 0
    Step,
    /// a deterministic standard normal draw per element
    Randn,
}

impl Func {
    /// Every function, for messages and `synaptogen vars`.
    pub const ALL: [Func; 13] = [
        Func::Abs,
        Func::Sign,
        Func::Sqrt,
        Func::Exp,
        Func::Ln,
        Func::Tanh,
        Func::Sigmoid,
        Func::Relu,
        Func::Min,
        Func::Max,
        Func::Clamp,
        Func::Step,
        Func::Randn,
    ];

    /// The name rules call it by.
    pub fn name(self) -> &'static str {
        match self {
            Func::Abs => "abs",
            Func::Sign => "sign",
            Func::Sqrt => "sqrt",
            Func::Exp => "exp",
            Func::Ln => "ln",
            Func::Tanh => "tanh",
            Func::Sigmoid => "sigmoid",
            Func::Relu => "relu",
            Func::Min => "min",
            Func::Max => "max",
            Func::Clamp => "clamp",
            Func::Step => "step",
            Func::Randn => "randn",
        }
    }

    /// The function called `name`.
    pub fn from_name(name: &str) -> Option<Func> {
        Func::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Number of arguments.
    pub fn arity(self) -> usize {
        match self {
            Func::Randn => 0,
            Func::Min | Func::Max => 2,
            Func::Clamp => 3,
            _ => 1,
        }
    }

    /// Applies the function to scalars (constant folding and the reference semantics of the
    /// vectorised program).
    pub fn apply(self, args: &[f32]) -> f32 {
        let x = args.first().copied().unwrap_or(0.0);
        match self {
            Func::Abs => x.abs(),
            Func::Sign => {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            }
            Func::Sqrt => x.sqrt(),
            Func::Exp => math::exp(x),
            Func::Ln => math::ln(x),
            Func::Tanh => math::tanh(x),
            Func::Sigmoid => math::sigmoid(x),
            Func::Relu => maximum(x, 0.0),
            Func::Min => minimum(x, args[1]),
            Func::Max => maximum(x, args[1]),
            Func::Clamp => minimum(maximum(x, args[1]), args[2]),
            Func::Step => {
                if x > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Func::Randn => f32::NAN,
        }
    }
}

/// The larger of `x` and `y`; `y` when `x` is NaN, `x` when `y` is NaN or the two are equal.
///
/// Spelled out rather than `f32::max`, which leaves the sign of `max(-0, 0)` to the platform, so the
/// interpreter and the native kernels (`program::jit`) agree bit for bit.
pub fn maximum(x: f32, y: f32) -> f32 {
    if y > x || x.is_nan() { y } else { x }
}

/// The smaller of `x` and `y`, with the NaN and tie rules of [`maximum`].
pub fn minimum(x: f32, y: f32) -> f32 {
    if y < x || x.is_nan() { y } else { x }
}

/// An expression. Booleans appear only under comparisons, logic and `if` conditions.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// A number.
    Num(f32),
    /// A boolean literal.
    Bool(bool),
    /// A vocabulary variable's value at the start of the section.
    Var(Var),
    /// A tunable constant of the rule (index into [`Rule::constants`]).
    Const(usize),
    /// Arithmetic negation.
    Neg(Box<Expr>),
    /// Logical not.
    Not(Box<Expr>),
    /// A binary operator.
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// A built-in function.
    Call(Func, Vec<Expr>),
    /// `if c { a } else { b }`.
    Select(Box<Expr>, Box<Expr>, Box<Expr>),
}

/// A rule: its tunable constants and, per section, the final value of every variable it writes.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// `const NAME = value;` declarations, in file order.
    pub constants: Vec<(String, f32)>,
    /// Per section, `(variable, value)` for every variable written, in vocabulary order.
    pub sections: BTreeMap<Section, Vec<(Var, Expr)>>,
}

impl Expr {
    /// Whether the expression is boolean-valued.
    pub fn is_boolean(&self) -> bool {
        match self {
            Expr::Bool(_) | Expr::Not(_) => true,
            Expr::Binary(op, ..) => op.is_boolean(),
            _ => false,
        }
    }

    /// Nodes in the tree.
    pub fn size(&self) -> usize {
        1 + self.children().map(Expr::size).sum::<usize>()
    }

    /// Depth of the tree.
    pub fn depth(&self) -> usize {
        1 + self.children().map(Expr::depth).max().unwrap_or(0)
    }

    fn children(&self) -> Box<dyn Iterator<Item = &Expr> + '_> {
        match self {
            Expr::Num(_) | Expr::Bool(_) | Expr::Var(_) | Expr::Const(_) => Box::new(std::iter::empty()),
            Expr::Neg(a) | Expr::Not(a) => Box::new(std::iter::once(&**a)),
            Expr::Binary(_, a, b) => Box::new([&**a, &**b].into_iter()),
            Expr::Call(_, args) => Box::new(args.iter()),
            Expr::Select(c, a, b) => Box::new([&**c, &**a, &**b].into_iter()),
        }
    }

    /// Whether the expression calls `randn()`.
    pub fn draws_noise(&self) -> bool {
        matches!(self, Expr::Call(Func::Randn, _)) || self.children().any(Expr::draws_noise)
    }

    /// The expression with every read of a variable in `zero` replaced by the number 0.
    pub fn with_zeros(&self, zero: &[Var]) -> Expr {
        let sub = |e: &Expr| Box::new(e.with_zeros(zero));
        match self {
            Expr::Var(var) if zero.contains(var) => Expr::Num(0.0),
            Expr::Num(_) | Expr::Bool(_) | Expr::Var(_) | Expr::Const(_) => self.clone(),
            Expr::Neg(a) => Expr::Neg(sub(a)),
            Expr::Not(a) => Expr::Not(sub(a)),
            Expr::Binary(op, a, b) => Expr::Binary(*op, sub(a), sub(b)),
            Expr::Call(f, args) => Expr::Call(*f, args.iter().map(|a| a.with_zeros(zero)).collect()),
            Expr::Select(c, a, b) => Expr::Select(sub(c), sub(a), sub(b)),
        }
    }

    /// Every vocabulary variable the expression reads.
    pub fn reads(&self, out: &mut Vec<Var>) {
        if let Expr::Var(var) = self
            && !out.contains(var)
        {
            out.push(*var);
        }
        for c in self.children() {
            c.reads(out);
        }
    }

    /// The canonical form (see the module doc). Tunable constants are never folded: the search
    /// perturbs them.
    pub fn canonical(&self) -> Expr {
        match self {
            Expr::Num(_) | Expr::Bool(_) | Expr::Var(_) | Expr::Const(_) => self.clone(),
            Expr::Neg(a) => match a.canonical() {
                Expr::Num(x) => Expr::Num(-x),
                Expr::Neg(inner) => *inner,
                other => Expr::Neg(Box::new(other)),
            },
            Expr::Not(a) => match a.canonical() {
                Expr::Bool(b) => Expr::Bool(!b),
                Expr::Not(inner) => *inner,
                other => Expr::Not(Box::new(other)),
            },
            Expr::Binary(op, a, b) => simplify_binary(*op, a.canonical(), b.canonical()),
            Expr::Call(f, args) => {
                let args: Vec<Expr> = args.iter().map(Expr::canonical).collect();
                let numbers: Option<Vec<f32>> = args
                    .iter()
                    .map(|a| if let Expr::Num(x) = a { Some(*x) } else { None })
                    .collect();
                match numbers {
                    Some(xs) if *f != Func::Randn => Expr::Num(f.apply(&xs)),
                    _ => {
                        let mut args = args;
                        if matches!(f, Func::Min | Func::Max) {
                            args.sort_by_cached_key(Expr::sort_key);
                        }
                        Expr::Call(*f, args)
                    }
                }
            }
            Expr::Select(c, a, b) => {
                let (c, a, b) = (c.canonical(), a.canonical(), b.canonical());
                match c {
                    Expr::Bool(true) => a,
                    Expr::Bool(false) => b,
                    _ if a == b => a,
                    c => Expr::Select(Box::new(c), Box::new(a), Box::new(b)),
                }
            }
        }
    }

    fn sort_key(&self) -> String {
        let mut s = String::new();
        self.print(&mut s, &[], 0, Style::Rhai);
        s
    }

    /// Prints the expression as Rhai; `constants` names the tunable constants.
    pub fn to_rhai(&self, constants: &[(String, f32)]) -> String {
        let mut s = String::new();
        self.print(&mut s, constants, 0, Style::Rhai);
        s
    }

    /// Prints the expression as a formula for people: `·` for products, `^` for powers, `σ(x)`, `|x|`,
    /// `√x`, short numbers, `(c ? a : b)` for selects.
    pub fn to_formula(&self, constants: &[(String, f32)]) -> String {
        let mut s = String::new();
        self.print(&mut s, constants, 0, Style::Formula);
        s
    }

    fn print(&self, out: &mut String, constants: &[(String, f32)], context: u8, style: Style) {
        match self {
            Expr::Num(x) if style == Style::Formula => {
                let text = format!("{}", (*x as f64 * 1e6).round() / 1e6);
                let text = if text == "0" && *x != 0.0 {
                    format!("{x:e}")
                } else {
                    text
                };
                if *x < 0.0 {
                    let _ = write!(out, "({text})");
                } else {
                    out.push_str(&text);
                }
            }
            Expr::Num(x) => {
                let text = number(*x);
                if *x < 0.0 || (*x == 0.0 && x.is_sign_negative()) {
                    let _ = write!(out, "({text})");
                } else {
                    out.push_str(&text);
                }
            }
            Expr::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Expr::Var(var) => out.push_str(var.name()),
            Expr::Const(i) => match constants.get(*i) {
                Some((name, _)) => out.push_str(name),
                None => {
                    let _ = write!(out, "CONST{i}");
                }
            },
            Expr::Neg(a) => {
                out.push('-');
                a.print(out, constants, 200, style);
            }
            Expr::Not(a) => {
                out.push('!');
                a.print(out, constants, 200, style);
            }
            Expr::Binary(op, a, b) => {
                let p = op.precedence();
                // The operand slots below carry the precedence a child needs to go unwrapped.
                let wrap = p < context;
                if wrap {
                    out.push('(');
                }
                // Left-associative: the left operand may share our precedence, the right may not.
                // `**` is right-associative in Rhai, so there it is the other way round.
                let (left, right) = if *op == BinOp::Pow { (p + 1, p) } else { (p, p + 1) };
                a.print(out, constants, left, style);
                let symbol = match (style, op) {
                    (Style::Formula, BinOp::Mul) => "·",
                    (Style::Formula, BinOp::Pow) => "^",
                    (Style::Formula, BinOp::Le) => "≤",
                    (Style::Formula, BinOp::Ge) => "≥",
                    (Style::Formula, BinOp::Ne) => "≠",
                    _ => op.symbol(),
                };
                let _ = write!(out, " {symbol} ");
                b.print(out, constants, right, style);
                if wrap {
                    out.push(')');
                }
            }
            Expr::Call(Func::Abs, args) if style == Style::Formula => {
                out.push('|');
                args[0].print(out, constants, 0, style);
                out.push('|');
            }
            Expr::Call(f, args) => {
                let name = match (style, f) {
                    (Style::Formula, Func::Sigmoid) => "σ",
                    (Style::Formula, Func::Sqrt) => "√",
                    (Style::Formula, Func::Randn) => "ε",
                    _ => f.name(),
                };
                out.push_str(name);
                if style == Style::Formula && *f == Func::Randn {
                    return;
                }
                out.push('(');
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    a.print(out, constants, 0, style);
                }
                out.push(')');
            }
            Expr::Select(c, a, b) if style == Style::Formula => {
                out.push('(');
                c.print(out, constants, 0, style);
                out.push_str(" ? ");
                a.print(out, constants, 0, style);
                out.push_str(" : ");
                b.print(out, constants, 0, style);
                out.push(')');
            }
            Expr::Select(c, a, b) => {
                out.push_str("(if ");
                c.print(out, constants, 0, style);
                out.push_str(" { ");
                a.print(out, constants, 0, style);
                out.push_str(" } else { ");
                b.print(out, constants, 0, style);
                out.push_str(" })");
            }
        }
    }
}

/// How [`Expr`] prints: valid Rhai, or a formula for people.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    Rhai,
    Formula,
}

/// A float literal Rhai parses back to the same f32: always with a decimal point, exponent form
/// `1.5e-7` when the shortest representation needs one.
pub fn number(x: f32) -> String {
    if x.is_nan() {
        return "(0.0 / 0.0)".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "(1.0 / 0.0)" } else { "(-1.0 / 0.0)" }.into();
    }
    let text = format!("{:?}", x.abs());
    let text = match text.split_once('e') {
        Some((mantissa, exponent)) if !mantissa.contains('.') => format!("{mantissa}.0e{exponent}"),
        _ if !text.contains('.') && !text.contains('e') => format!("{text}.0"),
        _ => text,
    };
    if x < 0.0 || (x == 0.0 && x.is_sign_negative()) {
        format!("-{text}")
    } else {
        text
    }
}

/// FNV-1a, 64 bits: a hash that is the same on every run, machine and Rust version (std's hashers
/// promise none of that), for keys that are saved and compared across sessions.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    fnv1a_parts(&[bytes])
}

/// [`fnv1a`] of the concatenation of `parts`, without concatenating them.
pub fn fnv1a_parts(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in parts.iter().flat_map(|p| p.iter()) {
        hash ^= *byte as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

fn simplify_binary(op: BinOp, a: Expr, b: Expr) -> Expr {
    use Expr::{Bool, Num};
    match (&a, &b) {
        (Num(x), Num(y)) => {
            let (x, y) = (*x, *y);
            return match op {
                BinOp::Add => Num(x + y),
                BinOp::Sub => Num(x - y),
                BinOp::Mul => Num(x * y),
                BinOp::Div => Num(x / y),
                BinOp::Pow => Num(math::pow(x, y)),
                BinOp::Lt => Bool(x < y),
                BinOp::Le => Bool(x <= y),
                BinOp::Gt => Bool(x > y),
                BinOp::Ge => Bool(x >= y),
                BinOp::Eq => Bool(x == y),
                BinOp::Ne => Bool(x != y),
                BinOp::And | BinOp::Or => Expr::Binary(op, Box::new(a), Box::new(b)),
            };
        }
        (Bool(x), Bool(y)) if op.takes_booleans() => {
            return Bool(if op == BinOp::And { *x && *y } else { *x || *y });
        }
        _ => {}
    }
    let is = |e: &Expr, v: f32| matches!(e, Num(x) if *x == v);
    match op {
        BinOp::Add if is(&a, 0.0) => return b,
        BinOp::Add | BinOp::Sub if is(&b, 0.0) => return a,
        BinOp::Sub if is(&a, 0.0) => return Expr::Neg(Box::new(b)).canonical(),
        BinOp::Mul if is(&a, 1.0) => return b,
        BinOp::Mul | BinOp::Div | BinOp::Pow if is(&b, 1.0) => return a,
        _ => {}
    }
    let (a, b) = if op.is_commutative() && b.sort_key() < a.sort_key() {
        (b, a)
    } else {
        (a, b)
    };
    Expr::Binary(op, Box::new(a), Box::new(b))
}

impl Rule {
    /// The canonical form of every section.
    pub fn canonical(&self) -> Rule {
        Rule {
            constants: self.constants.clone(),
            sections: self
                .sections
                .iter()
                .map(|(s, outs)| (*s, outs.iter().map(|(n, e)| (*n, e.canonical())).collect()))
                .collect(),
        }
    }

    /// The rule as a Rhai script (constants, then one function per section).
    pub fn to_rhai(&self) -> String {
        let mut out = String::new();
        for (name, value) in &self.constants {
            let _ = writeln!(out, "const {name} = {};", number(*value));
        }
        for (section, outputs) in &self.sections {
            if !out.is_empty() {
                out.push('\n');
            }
            let _ = writeln!(out, "fn {}() {{", section.function());
            // Each expression reads the values before the section ran. Printed as assignments in a
            // row, a variable written on one line and read on a later one would be read with its new
            // value; then every value is computed into a `let` first and assigned after.
            let mut written: Vec<Var> = Vec::new();
            let mut reads_a_new_value = false;
            for (name, expr) in outputs {
                let mut reads = Vec::new();
                expr.reads(&mut reads);
                reads_a_new_value |= written.iter().any(|w| reads.contains(w));
                written.push(*name);
            }
            if reads_a_new_value {
                let local = |name: &Var| {
                    let mut local = format!("new_{name}");
                    while self.constants.iter().any(|(c, _)| *c == local) {
                        local.insert(0, '_');
                    }
                    local
                };
                for (name, expr) in outputs {
                    let _ = writeln!(
                        out,
                        "    let {} = {};",
                        local(name),
                        expr.to_rhai(&self.constants)
                    );
                }
                for (name, _) in outputs {
                    let _ = writeln!(out, "    {name} = {};", local(name));
                }
            } else {
                for (name, expr) in outputs {
                    let _ = writeln!(out, "    {name} = {};", expr.to_rhai(&self.constants));
                }
            }
            out.push_str("}\n");
        }
        out
    }

    /// The rule as formulas for people, one line per output (`Δw = …` for `dw`, `m ← …` for state),
    /// then the constants' values.
    pub fn to_formula(&self) -> String {
        let mut out = String::new();
        for outputs in self.sections.values() {
            for (name, expr) in outputs {
                let target = if *name == Var::Dw {
                    "Δw = ".to_string()
                } else {
                    format!("{name} ← ")
                };
                let _ = writeln!(out, "{target}{}", expr.to_formula(&self.constants));
            }
        }
        if !self.constants.is_empty() {
            let values: Vec<String> = self
                .constants
                .iter()
                .map(|(n, v)| format!("{n} = {}", (*v as f64 * 1e6).round() / 1e6))
                .collect();
            let _ = writeln!(out, "where {}", values.join(", "));
        }
        out
    }

    /// A 64-bit structural hash of the canonical form: equal for equivalent spellings, stable across
    /// runs, machines and Rust versions (FNV-1a over the canonical text with constants inlined by name
    /// and value).
    pub fn structural_hash(&self) -> u64 {
        fnv1a(self.canonical().to_rhai().as_bytes())
    }

    /// The free persistent slots the rule reads but never writes: they keep their starting value, 0,
    /// for the whole run. `m` and `u` are written only by `synapse()`, `h` only by `neuron()`, and
    /// `pre_h` is the presynaptic neuron's `h`.
    pub fn never_written(&self) -> Vec<Var> {
        let writes = |section: Section, var: Var| {
            self.sections
                .get(&section)
                .is_some_and(|outputs| outputs.iter().any(|(v, _)| *v == var))
        };
        let read: Vec<Var> = Section::ALL.into_iter().flat_map(|s| self.reads(s)).collect();
        [
            (Var::M, Section::Synapse, Var::M),
            (Var::U, Section::Synapse, Var::U),
            (Var::H, Section::Neuron, Var::H),
            (Var::PreH, Section::Neuron, Var::H),
        ]
        .into_iter()
        .filter(|&(var, section, slot)| read.contains(&var) && !writes(section, slot))
        .map(|(var, _, _)| var)
        .collect()
    }

    /// Every vocabulary variable the rule reads, per section.
    pub fn reads(&self, section: Section) -> Vec<Var> {
        let mut out = Vec::new();
        for (_, e) in self.sections.get(&section).into_iter().flatten() {
            e.reads(&mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(n: &str) -> Expr {
        Expr::Var(Var::from_name(n).expect("a vocabulary name"))
    }
    fn bin(op: BinOp, a: Expr, b: Expr) -> Expr {
        Expr::Binary(op, Box::new(a), Box::new(b))
    }

    #[test]
    fn equivalent_spellings_share_a_canonical_form() {
        let ab = bin(BinOp::Mul, var("w"), var("grad")).canonical();
        let ba = bin(BinOp::Mul, var("grad"), var("w")).canonical();
        assert_eq!(ab, ba);
        assert_eq!(bin(BinOp::Add, var("w"), Expr::Num(0.0)).canonical(), var("w"));
        assert_eq!(
            bin(
                BinOp::Mul,
                bin(BinOp::Mul, Expr::Neg(Box::new(var("w"))), Expr::Num(0.5)),
                Expr::Num(2.0)
            )
            .canonical()
            .to_rhai(&[]),
            "-w * 0.5 * 2.0",
            "left-associative products are not reassociated (floats are not associative)"
        );
        assert_eq!(
            Expr::Neg(Box::new(Expr::Neg(Box::new(var("w"))))).canonical(),
            var("w")
        );
    }

    #[test]
    fn printing_keeps_precedence_and_associativity() {
        let e = bin(BinOp::Sub, var("w"), bin(BinOp::Sub, var("m"), var("u")));
        assert_eq!(e.to_rhai(&[]), "w - (m - u)");
        let e = bin(BinOp::Mul, bin(BinOp::Add, var("w"), var("m")), var("u"));
        assert_eq!(e.to_rhai(&[]), "(w + m) * u");
        let e = bin(BinOp::Pow, bin(BinOp::Pow, var("w"), var("m")), var("u"));
        assert_eq!(e.to_rhai(&[]), "(w ** m) ** u");
        assert_eq!(Expr::Num(-0.5).to_rhai(&[]), "(-0.5)");
    }

    #[test]
    fn numbers_print_as_rhai_floats() {
        assert_eq!(number(2.0), "2.0");
        assert_eq!(number(0.002), "0.002");
        assert_eq!(number(1e-7), "1.0e-7");
        assert_eq!(number(-3.5e12), "-3500000000000.0");
        for x in [0.1f32, 1e-5, 123456.79, f32::MIN_POSITIVE, 3.4e38] {
            let printed = number(x);
            let back: f32 = printed.parse().expect("valid float text");
            assert_eq!(back, x, "{printed}");
        }
    }
}
