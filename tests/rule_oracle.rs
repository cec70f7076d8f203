//! Rhai's own interpreter as the oracle for the rule compiler: on random inputs, including edge values,
//! the compiled program and Rhai's evaluation of the same expression agree within 1e-5 relative.
//! Expressions are generated over the whole vocabulary of synapse() and every deterministic built-in
//! function (randn draws from our noise stream, which Rhai cannot reproduce).

use std::path::Path;

use proptest::prelude::*;
use synaptogen::rule::{self, ir::Func, vocab};

/// Rhai with our functions registered (its raw engine has operators but no math library) and exact
/// float comparisons. Rhai's own float comparisons use a relative tolerance of f32::EPSILON (with an
/// absolute one near 0: `1e-8 > 0.0` is false), which a rule such as `if w > 0.0` on small weights
/// must not inherit; synaptogen compares exactly (IEEE 754), so the oracle does too.
fn oracle() -> rhai::Engine {
    let mut engine = rhai::Engine::new_raw();
    engine.set_max_expr_depths(256, 256);
    engine.set_fast_operators(false);
    engine.register_fn("<", |x: f32, y: f32| x < y);
    engine.register_fn("<=", |x: f32, y: f32| x <= y);
    engine.register_fn(">", |x: f32, y: f32| x > y);
    engine.register_fn(">=", |x: f32, y: f32| x >= y);
    engine.register_fn("==", |x: f32, y: f32| x == y);
    engine.register_fn("!=", |x: f32, y: f32| x != y);
    engine.register_fn("!", |x: bool| !x);
    engine.register_fn("-", |x: f32| -x);
    for f in Func::ALL {
        match f.arity() {
            1 => {
                engine.register_fn(f.name(), move |x: f32| f.apply(&[x]));
            }
            2 => {
                engine.register_fn(f.name(), move |x: f32, y: f32| f.apply(&[x, y]));
            }
            3 => {
                engine.register_fn(f.name(), move |x: f32, y: f32, z: f32| f.apply(&[x, y, z]));
            }
            _ => {}
        }
    }
    engine
}

fn readable() -> Vec<&'static str> {
    vocab::visible(vocab::Section::Synapse)
        .filter(|n| vocab::access(vocab::Section::Synapse, n) != Some(vocab::Access::Write))
        .collect()
}

/// A random numeric expression as Rhai text.
fn number() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        prop::sample::select(readable()).prop_map(str::to_string),
        (-3.0f32..3.0).prop_map(|x| rule::ir::number(x).replace('-', "(-") + if x < 0.0 { ")" } else { "" }),
    ];
    leaf.prop_recursive(5, 48, 3, |inner| {
        let boolean = (
            inner.clone(),
            prop::sample::select(vec!["<", "<=", ">", ">=", "==", "!="]),
            inner.clone(),
        )
            .prop_map(|(a, op, b)| format!("{a} {op} {b}"));
        let condition = prop_oneof![
            boolean.clone(),
            (
                boolean.clone(),
                prop::sample::select(vec!["&&", "||"]),
                boolean.clone()
            )
                .prop_map(|(a, op, b)| format!("({a}) {op} ({b})")),
            boolean.prop_map(|b| format!("!({b})")),
        ];
        let functions: Vec<Func> = Func::ALL.into_iter().filter(|f| *f != Func::Randn).collect();
        prop_oneof![
            (
                inner.clone(),
                prop::sample::select(vec!["+", "-", "*", "/", "**"]),
                inner.clone()
            )
                .prop_map(|(a, op, b)| format!("({a} {op} {b})")),
            inner.clone().prop_map(|a| format!("-({a})")),
            (
                prop::sample::select(functions),
                prop::collection::vec(inner.clone(), 3)
            )
                .prop_map(|(f, args)| { format!("{}({})", f.name(), args[..f.arity()].join(", ")) }),
            (condition, inner.clone(), inner)
                .prop_map(|(c, a, b)| format!("(if {c} {{ {a} }} else {{ {b} }})")),
        ]
    })
}

/// Input values: ordinary, zero, negative and large magnitudes.
fn value() -> impl Strategy<Value = f32> {
    prop_oneof![
        4 => -2.0f32..2.0,
        1 => Just(0.0f32),
        1 => prop::sample::select(vec![-1e6f32, 1e6, -1e-6, 1e-6, 50.0, -50.0]),
    ]
}

fn agree(got: f32, want: f32) -> bool {
    (got.is_nan() && want.is_nan())
        || got == want
        || (got - want).abs() <= 1e-5 * want.abs().max(got.abs())
        || (got - want).abs() <= 1e-6
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn compiled_programs_agree_with_rhai(expr in number(), values in prop::collection::vec(value(), 30)) {
        let source = format!("fn synapse() {{ dw = {expr}; }}");
        let compiled = rule::compile(&source, Path::new("generated.rhai"))
            .map_err(|e| TestCaseError::fail(format!("{e}\n{source}")))?;
        let program = &compiled.programs[0].1;
        let names = readable();
        let inputs: Vec<f32> = program
            .inputs
            .iter()
            .map(|n| values[names.iter().position(|m| m == n).expect("a readable name")])
            .collect();
        let mut scope = rhai::Scope::new();
        for (name, v) in names.iter().zip(&values) {
            scope.push(*name, *v);
        }
        let want: f32 = oracle()
            .eval_expression_with_scope(&mut scope, &expr)
            .map_err(|e| TestCaseError::fail(format!("Rhai: {e}\n{expr}")))?;
        let got = program.eval_scalar(&inputs)[0];
        prop_assert!(agree(got, want), "{expr}\ncompiled {got}, Rhai {want}\ncanonical: {}", compiled.canonical.to_rhai());
    }

    #[test]
    fn the_parser_never_panics_on_random_token_soup(
        tokens in prop::collection::vec(
            prop::sample::select(vec![
                "fn", "synapse", "neuron", "prune", "(", ")", "{", "}", ";", "=", "dw", "w", "grad", "let", "x",
                "if", "else", "for", "in", "while", "+", "-", "*", "/", "**", "<", ">", "&&", "||", "!",
                "1.0", "2", "\"s\"", "[", "]", ",", "const", "A", "abs", "clamp", "#{", "|", ".", "return",
            ]),
            0..40,
        )
    ) {
        let source = tokens.join(" ");
        let _ = rule::compile(&source, Path::new("soup.rhai"));
    }
}
