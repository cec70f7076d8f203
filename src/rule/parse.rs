//! From Rhai source to the rule IR.
//!
//! Rhai parses (its own syntax errors keep their positions); we then walk its AST (`internals` feature,
//! pinned to rhai 1.27.0 because that API is outside Rhai's semver promise) and execute each section
//! symbolically: `let`s bind expressions, assignments update the value of a variable, and an `if`
//! statement merges both branches into `if c { a } else { b }` per variable. Every problem in the file is
//! collected with its line and column before the parse fails, so the user sees all of them at once.

use std::collections::BTreeMap;

use rhai::{ASTFlags, Engine, Expr as RExpr, Position, Stmt, StmtBlock};

use super::ir::{BinOp, Expr, Func, Rule};
use super::vocab::{self, Access, Section, Var};
use super::{Diagnostic, MAX_DEPTH, MAX_SOURCE_BYTES};

/// A value during symbolic execution, with its type.
type Value = Expr;

/// The environment of one section while it is executed symbolically.
#[derive(Clone)]
struct Env {
    /// `let` bindings, innermost last.
    locals: Vec<(String, Value)>,
    /// Vocabulary variables written so far, with their current value.
    written: BTreeMap<Var, Value>,
}

struct Walker<'a> {
    section: Section,
    constants: &'a [(String, f32)],
    /// Every function the script defines, so a call to one is named as such.
    defined: &'a [String],
    diagnostics: Vec<Diagnostic>,
}

fn at(pos: Position) -> (usize, usize) {
    (pos.line().unwrap_or(0), pos.position().unwrap_or(0))
}

/// Parses a rule script.
pub fn parse(source: &str) -> Result<Rule, Vec<Diagnostic>> {
    // A byte-order mark some editors write is not part of the script.
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    let error = |line, column, message: String| {
        vec![Diagnostic {
            line,
            column,
            message,
        }]
    };
    if source.len() > MAX_SOURCE_BYTES {
        return Err(error(
            1,
            1,
            format!(
                "the rule is {} bytes; rules are limited to {MAX_SOURCE_BYTES} bytes",
                source.len()
            ),
        ));
    }
    let mut engine = Engine::new_raw();
    engine.set_optimization_level(rhai::OptimizationLevel::None);
    engine.set_max_expr_depths(MAX_DEPTH, MAX_DEPTH);
    let ast = engine.compile(source).map_err(|e| {
        let (line, column) = at(e.1);
        error(line, column, e.0.to_string())
    })?;

    let mut diagnostics = Vec::new();
    // Top level: only `const NAME = number;`.
    let mut constants: Vec<(String, f32)> = Vec::new();
    for stmt in ast.statements() {
        match stmt {
            Stmt::Var(decl, flags, pos) if flags.intersects(ASTFlags::CONSTANT) => {
                let (ident, init, _) = &**decl;
                let name = ident.name.to_string();
                match constant_value(init, &constants) {
                    Some(v) if !v.is_finite() => {
                        let (l, c) = at(init.position());
                        diagnostics.push(Diagnostic::new(l, c, out_of_range(&name)));
                        // Registered anyway, so its uses are not reported as unknown names too.
                        constants.push((name, 0.0));
                    }
                    Some(v) if vocab::lookup(&name).is_none() => constants.push((name, v)),
                    Some(_) => {
                        let (l, c) = at(*pos);
                        diagnostics.push(Diagnostic::new(
                            l,
                            c,
                            format!(
                                "constant '{name}' has the name of a vocabulary variable; choose another name"
                            ),
                        ));
                    }
                    None => {
                        let (l, c) = at(init.position());
                        diagnostics.push(Diagnostic::new(
                            l,
                            c,
                            format!("constant '{name}' must be a number, e.g. const {name} = 0.01;"),
                        ));
                        if vocab::lookup(&name).is_none() {
                            constants.push((name, 0.0));
                        }
                    }
                }
            }
            other => {
                let (l, c) = at(other.position());
                diagnostics.push(Diagnostic::new(
                    l,
                    c,
                    "only `const NAME = number;` declarations and the functions synapse(), neuron() and prune() may stand at the top level".into(),
                ));
            }
        }
    }

    // rhai 1.27 does not export the type of a function body, so we collect the statements of function
    // bodies from the AST walk (depth 1) and assign them to functions by position.
    let mut top_level: Vec<Stmt> = Vec::new();
    ast.walk(&mut |path: &[rhai::ASTNode]| {
        if let [rhai::ASTNode::Stmt(stmt)] = path {
            top_level.push((*stmt).clone());
        }
        true
    });
    let mut present = Vec::new();
    let mut bodies: Vec<(Section, Vec<Stmt>, Position)> = Vec::new();
    let range = |f: &rhai::ScriptFnMetadata| {
        ast.shared_lib()
            .get_script_fn(f.name, f.params.len())
            .map_or((Position::NONE, Position::NONE), |d| {
                (d.body.start_position(), d.body.end_position())
            })
    };
    let inside = |p: Position, (start, end): (Position, Position)| {
        let (a, b, x) = (at(start), at(end), at(p));
        a < x && (x < b || end.is_none())
    };
    // Closures become anonymous functions inside a section; their bodies belong to them, not to it (the
    // closure itself is reported where it is written).
    let closures: Vec<(Position, Position)> = ast
        .iter_functions()
        .filter(|f| f.name.starts_with("anon$"))
        .map(|f| range(&f))
        .collect();
    let defined: Vec<String> = ast.iter_functions().map(|f| f.name.to_string()).collect();
    for f in ast.iter_functions().filter(|f| !f.name.starts_with("anon$")) {
        let (start, end) = range(&f);
        let (l, c) = at(start);
        match Section::from_function(f.name) {
            Some(section) if f.params.is_empty() => {
                present.push(section);
                let statements = top_level
                    .iter()
                    .filter(|s| inside(s.position(), (start, end)))
                    .filter(|s| {
                        // A closure's body may start exactly at the closure's own position.
                        let p = at(s.position());
                        !closures
                            .iter()
                            .any(|&(a, b)| at(a) <= p && (p <= at(b) || b.is_none()))
                    })
                    .cloned()
                    .collect();
                bodies.push((section, statements, start));
            }
            Some(_) => diagnostics.push(Diagnostic::new(
                l,
                c,
                format!(
                    "{}() takes no parameters: its inputs are the vocabulary variables",
                    f.name
                ),
            )),
            None => {
                let hint = crate::names::closest(f.name, Section::ALL.map(Section::function))
                    .map_or(String::new(), |n| format!(" (did you mean '{n}'?)"));
                diagnostics.push(Diagnostic::new(
                    l,
                    c,
                    format!(
                        "unknown section '{}'{hint}: a rule defines only synapse(), neuron() and prune()",
                        f.name
                    ),
                ));
            }
        }
    }
    if present.is_empty() && constants.is_empty() && diagnostics.is_empty() {
        return Err(error(
            1,
            1,
            "the rule is empty: define at least one of synapse(), neuron() or prune(), e.g. fn synapse() { dw = -lr * grad; }".into(),
        ));
    }
    if present.is_empty() && diagnostics.is_empty() {
        diagnostics.push(Diagnostic::new(
            1,
            1,
            "the rule defines no section: add synapse(), neuron() or prune()".into(),
        ));
    }

    let mut sections = BTreeMap::new();
    bodies.sort_by_key(|(s, ..)| *s);
    for (section, body, position) in bodies {
        let mut walker = Walker {
            section,
            constants: &constants,
            defined: &defined,
            diagnostics: Vec::new(),
        };
        let mut env = Env {
            locals: Vec::new(),
            written: BTreeMap::new(),
        };
        walker.statements(&body, &mut env);
        if let Some(output) = vocab::required_output(section)
            && !env.written.contains_key(&output)
            && walker.diagnostics.is_empty()
        {
            let (l, c) = at(position);
            walker.diagnostics.push(Diagnostic::new(
                l,
                c,
                format!("{}() must assign '{output}'", section.function()),
            ));
        }
        diagnostics.extend(walker.diagnostics);
        // In vocabulary order (a BTreeMap over Var already is).
        let outputs: Vec<(Var, Expr)> = env.written.into_iter().collect();
        for (name, e) in &outputs {
            if e.depth() > MAX_DEPTH {
                let (l, c) = at(position);
                diagnostics.push(Diagnostic::new(
                    l,
                    c,
                    format!(
                        "the expression for '{name}' nests {} levels deep; the limit is {MAX_DEPTH}",
                        e.depth()
                    ),
                ));
            }
        }
        sections.insert(section, outputs);
    }
    if diagnostics.is_empty() {
        Ok(Rule { constants, sections })
    } else {
        diagnostics.sort_by_key(|d| (d.line, d.column));
        Err(diagnostics)
    }
}

/// The message for a number literal outside the f32 range.
fn out_of_range(what: &str) -> String {
    format!(
        "{what} is outside the range of a 32-bit float (magnitude below 3.4e38), in which rules compute; \
         write a smaller number"
    )
}

/// The value of a constant's initialiser: a number, possibly negated, or an earlier constant.
fn constant_value(init: &RExpr, constants: &[(String, f32)]) -> Option<f32> {
    match init {
        RExpr::FloatConstant(f, _) => Some(**f),
        RExpr::IntegerConstant(i, _) => Some(*i as f32),
        RExpr::FnCall(call, _) if call.name == "-" && call.args.len() == 1 => {
            constant_value(&call.args[0], constants).map(|v| -v)
        }
        RExpr::Variable(v, _, _) => constants
            .iter()
            .find(|(n, _)| n.as_str() == v.1.as_str())
            .map(|(_, v)| *v),
        _ => None,
    }
}

impl Walker<'_> {
    fn error(&mut self, pos: Position, message: String) {
        let (line, column) = at(pos);
        self.diagnostics.push(Diagnostic::new(line, column, message));
    }

    fn block(&mut self, block: &StmtBlock, env: &mut Env) {
        self.statements(block.statements(), env);
    }

    fn statements(&mut self, statements: &[Stmt], env: &mut Env) {
        let depth = env.locals.len();
        for stmt in statements {
            self.statement(stmt, env);
        }
        env.locals.truncate(depth);
    }

    fn statement(&mut self, stmt: &Stmt, env: &mut Env) {
        match stmt {
            Stmt::Noop(_) => {}
            Stmt::Var(decl, flags, pos) => {
                let (ident, init, _) = &**decl;
                let name = ident.name.to_string();
                if flags.intersects(ASTFlags::CONSTANT) {
                    self.error(
                        *pos,
                        "declare constants at the top level, outside the section functions".into(),
                    );
                    return;
                }
                if vocab::lookup(&name).is_some() || self.constants.iter().any(|(n, _)| *n == name) {
                    self.error(
                        *pos,
                        format!("'let {name}' would hide the variable '{name}'; choose another name"),
                    );
                    return;
                }
                if matches!(init, RExpr::Unit(_)) {
                    self.error(*pos, format!("'let {name}' needs a value: let {name} = ...;"));
                    return;
                }
                if let Some(v) = self.expr(init, env) {
                    env.locals.push((name, v));
                }
            }
            Stmt::Assignment(assignment) => {
                let (op, binary) = &**assignment;
                let RExpr::Variable(var, _, pos) = &binary.lhs else {
                    self.error(binary.lhs.position(), "only variables can be assigned to".into());
                    return;
                };
                let name = var.1.as_str();
                let Some(mut value) = self.expr(&binary.rhs, env) else {
                    return;
                };
                if let Some((_, _, _, _, _, op_syntax)) = op.get_op_assignment_info() {
                    let Some(bin) = BinOp::from_symbol(op_syntax).filter(|b| !b.is_boolean()) else {
                        self.error(*pos, format!("the operator '{op_syntax}=' is not supported"));
                        return;
                    };
                    let Some(current) = self.read(name, *pos, env) else {
                        return;
                    };
                    value = Expr::Binary(bin, Box::new(current), Box::new(value));
                }
                self.assign(name, value, *pos, env);
            }
            Stmt::If(flow, pos) => {
                let Some(cond) = self.condition(&flow.expr, env) else {
                    return;
                };
                let mut then_env = env.clone();
                self.block(&flow.body, &mut then_env);
                let mut else_env = env.clone();
                self.block(&flow.branch, &mut else_env);
                for local in &mut env.locals {
                    // A `let` declared outside and reassigned inside would need local assignment,
                    // which Rhai allows; we merge it like a vocabulary variable.
                    let then_v = then_env
                        .locals
                        .iter()
                        .find(|(n, _)| *n == local.0)
                        .map(|(_, v)| v.clone());
                    let else_v = else_env
                        .locals
                        .iter()
                        .find(|(n, _)| *n == local.0)
                        .map(|(_, v)| v.clone());
                    if let (Some(a), Some(b)) = (then_v, else_v) {
                        local.1 = select(&cond, a, b);
                    }
                }
                let names: Vec<Var> = then_env
                    .written
                    .keys()
                    .chain(else_env.written.keys())
                    .copied()
                    .collect();
                for name in names {
                    let before = env.written.get(&name).cloned();
                    let fallback = || before.clone().unwrap_or(Expr::Var(name));
                    let a = then_env.written.get(&name).cloned().unwrap_or_else(fallback);
                    let b = else_env.written.get(&name).cloned().unwrap_or_else(fallback);
                    if before.is_none() && name.access(self.section) == Some(Access::Write) {
                        let assigned_in_both =
                            then_env.written.contains_key(&name) && else_env.written.contains_key(&name);
                        if !assigned_in_both {
                            self.error(
                                *pos,
                                format!("'{name}' is assigned in only one branch of this if; assign it before the if or in both branches"),
                            );
                            continue;
                        }
                    }
                    env.written.insert(name, select(&cond, a, b));
                }
            }
            Stmt::Expr(e) => {
                // A bare expression has no effect on the outputs; an if-expression statement is fine.
                if let RExpr::Stmt(block) = &**e {
                    self.block(block, env);
                } else {
                    self.error(
                        e.position(),
                        "this expression has no effect: assign it to a variable".into(),
                    );
                }
            }
            Stmt::Block(block) => self.block(block, env),
            Stmt::FnCall(call, pos) => {
                self.error(
                    *pos,
                    format!(
                        "calling '{}' as a statement has no effect: assign its result",
                        call.name
                    ),
                );
            }
            Stmt::While(_, pos) | Stmt::Do(_, _, pos) | Stmt::For(_, pos) => self.error(
                *pos,
                "loops are not supported: a rule runs once per update for every synapse or neuron".into(),
            ),
            Stmt::Return(_, _, pos) => self.error(
                *pos,
                "return is not supported: assign the section's outputs instead".into(),
            ),
            other => self.error(
                other.position(),
                "this statement is not supported in a rule".into(),
            ),
        }
    }

    fn assign(&mut self, name: &str, value: Expr, pos: Position, env: &mut Env) {
        if value.is_boolean() {
            self.error(
                pos,
                format!("type mismatch: '{name}' needs a number, but this is a comparison; use step(x) or if c {{ 1.0 }} else {{ 0.0 }}"),
            );
            return;
        }
        if let Some(local) = env.locals.iter_mut().rev().find(|(n, _)| n == name) {
            local.1 = value;
            return;
        }
        if self.constants.iter().any(|(n, _)| n == name) {
            self.error(pos, format!("'{name}' is a constant and cannot be assigned"));
            return;
        }
        match vocab::access(self.section, name) {
            Some(Access::Write | Access::ReadWrite) => {
                let var = Var::from_name(name).expect("access() found it");
                env.written.insert(var, value);
            }
            Some(Access::Read) => self.error(
                pos,
                format!("'{name}' is read-only in {}()", self.section.function()),
            ),
            None => self.unknown(name, pos, "assign"),
        }
    }

    fn unknown(&mut self, name: &str, pos: Position, verb: &str) {
        let section = self.section;
        if vocab::lookup(name).is_some() {
            let elsewhere: Vec<&str> = Section::ALL
                .into_iter()
                .filter(|s| vocab::access(*s, name).is_some())
                .map(Section::function)
                .collect();
            self.error(
                pos,
                format!(
                    "'{name}' is not available in {}(); it belongs to {}()",
                    section.function(),
                    elsewhere.join("() and ")
                ),
            );
            return;
        }
        let known: Vec<String> = vocab::visible(section)
            .map(|v| v.name().to_string())
            .chain(self.constants.iter().map(|(n, _)| n.clone()))
            .collect();
        let hint = crate::names::closest(name, known.iter().map(String::as_str))
            .map_or(String::new(), |n| format!(" (did you mean '{n}'?)"));
        self.error(pos, format!("cannot {verb} unknown variable '{name}'{hint}"));
    }

    fn read(&mut self, name: &str, pos: Position, env: &Env) -> Option<Expr> {
        if let Some((_, v)) = env.locals.iter().rev().find(|(n, _)| n == name) {
            return Some(v.clone());
        }
        if let Some(i) = self.constants.iter().position(|(n, _)| n == name) {
            return Some(Expr::Const(i));
        }
        match vocab::access(self.section, name) {
            Some(access) => {
                let var = Var::from_name(name).expect("access() found it");
                if let Some(value) = env.written.get(&var) {
                    Some(value.clone())
                } else if access == Access::Write {
                    self.error(pos, format!("'{name}' is an output: assign it before reading it"));
                    None
                } else {
                    Some(Expr::Var(var))
                }
            }
            None => {
                self.unknown(name, pos, "read");
                None
            }
        }
    }

    fn condition(&mut self, e: &RExpr, env: &Env) -> Option<Expr> {
        let cond = self.expr(e, env)?;
        if cond.is_boolean() {
            Some(cond)
        } else {
            self.error(
                e.position(),
                "type mismatch: a condition must be a comparison (e.g. w > 0.0), not a number".into(),
            );
            None
        }
    }

    fn number(&mut self, e: &RExpr, env: &Env) -> Option<Expr> {
        let v = self.expr(e, env)?;
        if v.is_boolean() {
            self.error(
                e.position(),
                "type mismatch: a number is needed here, but this is a comparison; use step(x) or if c { 1.0 } else { 0.0 }".into(),
            );
            return None;
        }
        Some(v)
    }

    fn expr(&mut self, e: &RExpr, env: &Env) -> Option<Expr> {
        match e {
            RExpr::FloatConstant(f, pos) if !f.is_finite() => {
                self.error(*pos, out_of_range("this number"));
                None
            }
            RExpr::FloatConstant(f, _) => Some(Expr::Num(**f)),
            RExpr::IntegerConstant(i, _) => Some(Expr::Num(*i as f32)),
            RExpr::BoolConstant(b, _) => Some(Expr::Bool(*b)),
            RExpr::Variable(v, _, pos) => self.read(v.1.as_str(), *pos, env),
            RExpr::And(parts, _) | RExpr::Or(parts, _) => {
                let op = if matches!(e, RExpr::And(..)) {
                    BinOp::And
                } else {
                    BinOp::Or
                };
                let mut values = Vec::new();
                for p in parts.iter() {
                    values.push(self.condition(p, env)?);
                }
                values
                    .into_iter()
                    .reduce(|a, b| Expr::Binary(op, Box::new(a), Box::new(b)))
            }
            RExpr::FnCall(call, pos) => {
                let name = call.name.as_str();
                if call.op_token.is_some() || name == "!" {
                    return self.operator(name, &call.args, *pos, env);
                }
                let Some(func) = Func::from_name(name) else {
                    let hint = crate::names::closest(name, Func::ALL.map(Func::name))
                        .map_or(String::new(), |n| format!(" (did you mean '{n}'?)"));
                    let what =
                        if self.defined.iter().any(|d| d == name) || Section::from_function(name).is_some() {
                            format!("calls to other functions are not supported ('{name}')")
                        } else {
                            format!(
                                "unknown function '{name}'{hint}; the functions are {}",
                                Func::ALL.map(Func::name).join(" ")
                            )
                        };
                    self.error(*pos, what);
                    return None;
                };
                if call.args.len() != func.arity() {
                    self.error(
                        *pos,
                        format!(
                            "{name}() takes {} argument(s), got {}",
                            func.arity(),
                            call.args.len()
                        ),
                    );
                    return None;
                }
                let mut args = Vec::new();
                for a in call.args.iter() {
                    args.push(self.number(a, env)?);
                }
                Some(Expr::Call(func, args))
            }
            RExpr::Stmt(block) => self.if_expression(block, e.position(), env),
            RExpr::StringConstant(_, pos)
            | RExpr::InterpolatedString(_, pos)
            | RExpr::CharConstant(_, pos) => {
                self.error(*pos, "strings are not supported: rules compute numbers".into());
                None
            }
            RExpr::Array(_, pos) => {
                self.error(
                    *pos,
                    "arrays are not supported: a rule sees one synapse or neuron at a time".into(),
                );
                None
            }
            RExpr::Map(_, pos) => {
                self.error(*pos, "object maps are not supported".into());
                None
            }
            RExpr::Dot(_, _, pos) | RExpr::MethodCall(_, pos) => {
                self.error(
                    *pos,
                    "method-call syntax is not supported: write abs(x), not x.abs()".into(),
                );
                None
            }
            RExpr::Index(_, _, pos) => {
                self.error(*pos, "indexing is not supported".into());
                None
            }
            RExpr::DynamicConstant(_, pos) => {
                self.error(*pos, "closures and other dynamic values are not supported".into());
                None
            }
            RExpr::Unit(pos) => {
                self.error(*pos, "() has no value: a number is needed".into());
                None
            }
            other => {
                self.error(
                    other.position(),
                    "this construct is not supported in a rule".into(),
                );
                None
            }
        }
    }

    fn operator(&mut self, name: &str, args: &[RExpr], pos: Position, env: &Env) -> Option<Expr> {
        match (name, args) {
            ("-", [a]) => Some(Expr::Neg(Box::new(self.number(a, env)?))),
            ("+", [a]) => self.number(a, env),
            ("!", [a]) => Some(Expr::Not(Box::new(self.condition(a, env)?))),
            (_, [a, b]) => {
                let Some(op) = BinOp::from_symbol(name) else {
                    self.error(pos, format!("the operator '{name}' is not supported"));
                    return None;
                };
                let (x, y) = if op.takes_booleans() {
                    (self.condition(a, env)?, self.condition(b, env)?)
                } else {
                    (self.number(a, env)?, self.number(b, env)?)
                };
                Some(Expr::Binary(op, Box::new(x), Box::new(y)))
            }
            _ => {
                self.error(pos, format!("the operator '{name}' is not supported"));
                None
            }
        }
    }

    /// `if c { a } else { b }` used as an expression: a block holding one `if` whose branches end in an
    /// expression.
    fn if_expression(&mut self, block: &StmtBlock, pos: Position, env: &Env) -> Option<Expr> {
        let [Stmt::If(flow, if_pos)] = block.statements() else {
            self.error(
                pos,
                "only `if c { a } else { b }` may be used as a block expression".into(),
            );
            return None;
        };
        let cond = self.condition(&flow.expr, env)?;
        let branch_value = |b: &StmtBlock, walker: &mut Self| -> Option<Expr> {
            let mut inner = env.clone();
            let statements = b.statements();
            let Some((last, init)) = statements.split_last() else {
                walker.error(
                    *if_pos,
                    "both branches of an if-expression need a value: if c { a } else { b }".into(),
                );
                return None;
            };
            for s in init {
                walker.statement(s, &mut inner);
            }
            if !inner.written.is_empty() && inner.written != env.written {
                walker.error(
                    *if_pos,
                    "an if-expression may not assign variables; use an if statement".into(),
                );
                return None;
            }
            match last {
                Stmt::Expr(e) => walker.number(e, &inner),
                Stmt::FnCall(call, p) => walker.number(&RExpr::FnCall(call.clone(), *p), &inner),
                other => {
                    walker.error(
                        other.position(),
                        "a branch of an if-expression must end with its value".into(),
                    );
                    None
                }
            }
        };
        let a = branch_value(&flow.body, self)?;
        let b = branch_value(&flow.branch, self)?;
        Some(select(&cond, a, b))
    }
}

fn select(cond: &Expr, a: Expr, b: Expr) -> Expr {
    if a == b {
        a
    } else {
        Expr::Select(Box::new(cond.clone()), Box::new(a), Box::new(b))
    }
}
