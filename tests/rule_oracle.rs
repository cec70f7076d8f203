//! Rhai's own interpreter as the oracle for the rule compiler: on random inputs, including edge values,
//! the compiled program and Rhai's evaluation of the same expression agree within 1e-5 relative.
//! Expressions are generated over the whole vocabulary of synapse() and every deterministic built-in
//! function (randn draws from our noise stream, which Rhai cannot reproduce).

mod util;

use std::path::Path;

use proptest::prelude::*;
use synaptogen::rule::{self, ir::Func, math, vocab};

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
        .filter(|v| v.access(vocab::Section::Synapse) != Some(vocab::Access::Write))
        .map(|v| v.name())
        .collect()
}

/// A random numeric expression as Rhai text.
fn number() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        prop::sample::select(readable()).prop_map(str::to_string),
        // Negative literals in parentheses (Rhai parses `a - -b` but not every spelling); an exponent's
        // own minus stays as it is.
        (-3.0f32..3.0).prop_map(|x| {
            let text = rule::ir::number(x);
            if x < 0.0 { format!("({text})") } else { text }
        }),
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
    fn compiled_programs_agree_with_rhai(expr in number(), values in prop::collection::vec(value(), 64)) {
        let source = format!("fn synapse() {{ dw = {expr}; }}");
        let compiled = rule::compile(&source, Path::new("generated.rhai"))
            .map_err(|e| TestCaseError::fail(format!("{e}\n{source}")))?;
        let program = &compiled.programs[0].1;
        let names = readable();
        let inputs: Vec<f32> = program
            .inputs
            .iter()
            .map(|v| values[names.iter().position(|m| *m == v.name()).expect("a readable name")])
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

/// The source text of `fn name() { … }`'s body, by brace matching (rules have no strings or nested
/// functions, so braces only nest through blocks).
fn body<'a>(source: &'a str, name: &str) -> Option<&'a str> {
    let start = source.find(&format!("fn {name}()"))?;
    let open = start + source[start..].find('{')?;
    let mut depth = 0;
    for (i, c) in source[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&source[open + 1..open + i]);
                }
            }
            _ => {}
        }
    }
    None
}

#[test]
fn every_shipped_rule_agrees_with_rhai() {
    use std::collections::BTreeMap;
    let mut engine = oracle();
    engine.register_fn("randn", || 0.0f32);
    let mut files = Vec::new();
    for dir in ["baselines", "local", "pruning"] {
        for entry in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("rules").join(dir))
            .expect("rules/ ships")
        {
            files.push(entry.expect("readable").path());
        }
    }
    assert!(files.len() >= 15, "{files:?}");
    for path in files {
        let source = std::fs::read_to_string(&path).expect("readable rule");
        let compiled = rule::compile(&source, &path).unwrap_or_else(|e| panic!("{e}"));
        for (section, program) in &compiled.programs {
            let text = body(&source, section.function()).expect("the section's body");
            let names: Vec<&str> = vocab::visible(*section).map(|v| v.name()).collect();
            for seed in 0..25u64 {
                let mut rng = synaptogen::rng::Rng::stream(seed, synaptogen::rng::Purpose::Synthetic, &[]);
                let values: BTreeMap<&str, f32> = names
                    .iter()
                    .map(|n| {
                        // Positive where the rule's meaning needs it (ages, sigma, traces), signed otherwise.
                        let v = match *n {
                            "age" | "sigma" | "in_w" | "out_w" | "fan_in" | "fan_out" => {
                                0.05 + rng.uniform() * 3.0
                            }
                            _ => rng.symmetric(2.0),
                        };
                        // Edge cases first: every input zero, then large magnitudes.
                        let v = match seed {
                            0 => 0.0,
                            1 => v * 1e4,
                            _ => v,
                        };
                        (*n, v)
                    })
                    .collect();
                let mut scope = rhai::Scope::new();
                for (name, value) in &compiled.rule.constants {
                    scope.push_constant(name.as_str(), *value);
                }
                for (name, v) in &values {
                    scope.push(*name, *v);
                }
                engine
                    .run_with_scope(&mut scope, text)
                    .unwrap_or_else(|e| panic!("{}: {}(): Rhai: {e}", path.display(), section.function()));
                let inputs: Vec<f32> = program.inputs.iter().map(|v| values[v.name()]).collect();
                let slices: Vec<&[f32]> = inputs.iter().map(std::slice::from_ref).collect();
                let mut out = vec![0.0f32; program.outputs.len()];
                let mut outs: Vec<&mut [f32]> = out.iter_mut().map(std::slice::from_mut).collect();
                program.run(
                    1,
                    &slices,
                    &mut outs,
                    &mut |chunk| chunk.fill(0.0),
                    &mut Default::default(),
                );
                for ((name, _), got) in program.outputs.iter().zip(&out) {
                    let want: f32 = scope.get_value(name.name()).expect("the section assigned it");
                    assert!(
                        agree(*got, want),
                        "{}: {}(): {name} = {got} compiled, {want} Rhai, inputs {values:?}",
                        path.display(),
                        section.function()
                    );
                }
            }
        }
    }
}

/// `len` values for one input: mostly ordinary, with zeros, negatives, large and tiny magnitudes mixed
/// in, or one shared value when `scalar`.
fn column(seed: u64, input: usize, len: usize, scalar: bool) -> Vec<f32> {
    let mut rng = synaptogen::rng::Rng::stream(seed, synaptogen::rng::Purpose::Synthetic, &[input as u64]);
    let edges = [0.0f32, -0.0, -1e6, 1e6, -1e-6, 1e-6, 50.0, -50.0];
    (0..if scalar { 1 } else { len })
        .map(|_| {
            let pick = rng.uniform();
            if pick < 0.2 {
                edges[(rng.uniform() * edges.len() as f32) as usize % edges.len()]
            } else {
                rng.symmetric(2.0)
            }
        })
        .collect()
}

/// Runs `program` natively (`run`) and interpreted over the same inputs and `randn()` stream and
/// asserts the outputs are the same bits (NaNs of any payload count as equal).
fn assert_native_matches_interpreter(program: &rule::Program, seed: u64, len: usize, what: &str) {
    let inputs: Vec<Vec<f32>> = program
        .inputs
        .iter()
        .enumerate()
        .map(|(i, name)| {
            column(
                seed,
                i,
                len,
                matches!(name.name(), "lr" | "batch") || (seed + i as u64).is_multiple_of(5),
            )
        })
        .collect();
    let slices: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
    let outputs = |native: bool| {
        let mut out = vec![vec![0.0f32; len]; program.outputs.len()];
        let mut outs: Vec<&mut [f32]> = out.iter_mut().map(Vec::as_mut_slice).collect();
        let mut noise = synaptogen::rng::Rng::stream(seed, synaptogen::rng::Purpose::Synthetic, &[99]);
        let mut randn = |chunk: &mut [f32]| chunk.iter_mut().for_each(|x| *x = noise.normal());
        if native {
            program.run(len, &slices, &mut outs, &mut randn, &mut Default::default());
        } else {
            program.interpret(len, &slices, &mut outs, &mut randn, &mut Default::default());
        }
        out
    };
    let (native, interpreted) = (outputs(true), outputs(false));
    if cfg!(target_arch = "x86_64") {
        assert!(
            program.ran_natively(),
            "{what}: no native kernel was built\n{program}"
        );
    }
    for ((name, _), (got, want)) in program.outputs.iter().zip(native.iter().zip(&interpreted)) {
        for (e, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                "{what}: {name}[{e}]: native {g}, interpreter {w}\n{program}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// The native kernels (src/rule/jit.rs) compute exactly what the interpreter computes, over lengths
    /// that are not a multiple of the vector width and with some inputs shared by every element.
    #[test]
    fn native_kernels_match_the_interpreter_bit_for_bit(expr in number(), seed in 0u64..1_000_000, len in 256usize..1200) {
        let source = format!("fn synapse() {{ dw = {expr}; }}");
        let compiled = rule::compile(&source, Path::new("generated.rhai"))
            .map_err(|e| TestCaseError::fail(format!("{e}\n{source}")))?;
        assert_native_matches_interpreter(&compiled.programs[0].1, seed, len, &expr);
    }
}

#[test]
fn every_shipped_rule_runs_natively_as_interpreted() {
    for dir in ["baselines", "local", "pruning"] {
        for entry in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("rules").join(dir))
            .expect("rules/ ships")
        {
            let path = entry.expect("readable").path();
            let source = std::fs::read_to_string(&path).expect("readable rule");
            let compiled = rule::compile(&source, &path).unwrap_or_else(|e| panic!("{e}"));
            for (section, program) in &compiled.programs {
                // Spans two chunks, so randn() draws cross a chunk boundary.
                for (seed, len) in [(0, 4096 * 2 + 3), (1, 257), (2, 1000)] {
                    let what = format!("{}: {}()", path.display(), section.function());
                    assert_native_matches_interpreter(program, seed, len, &what);
                }
            }
        }
    }
}

/// Per-synapse values handed out by blocks of `block` rows ([`Input::Blocks`]), from memory.
#[derive(Debug)]
struct VecBlocks {
    values: Vec<f32>,
    rows: usize,
    cols: usize,
    block: usize,
}

impl synaptogen::rule::program::RowBlocks for VecBlocks {
    fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    fn block_rows(&self) -> usize {
        self.block
    }

    fn rows_into(&self, start: usize, out: &mut [f32], scratch: &mut Vec<f32>) {
        assert!(
            start.is_multiple_of(self.block),
            "rows from {start}: not a block's first"
        );
        let count = out.len() / self.cols;
        assert_eq!(count, self.block.min(self.rows - start), "not a whole block");
        // Through the scratch, as a kernel that writes a block transposed would.
        scratch.clear();
        scratch.extend_from_slice(&self.values[start * self.cols..(start + count) * self.cols]);
        out.copy_from_slice(scratch);
    }
}

/// Runs `program` over a `rows × cols` matrix whose inputs vary as `layout` says (0 per synapse, 1 per
/// row, 2 per column, 3 shared, 4 per synapse as an outer product of row and column factors, 5 per
/// synapse handed out by blocks of rows), natively and interpreted with hoisting, and asserts both equal the
/// flat reference interpreter over the inputs expanded to every synapse, bit for bit, with the same
/// `randn()` stream.
fn assert_hoisting_changes_no_bit(
    program: &rule::Program,
    seed: u64,
    rows: usize,
    cols: usize,
    layout: &[u8],
) {
    use synaptogen::rule::program::Input;
    let len = rows * cols;
    let values: Vec<Vec<f32>> = program
        .inputs
        .iter()
        .enumerate()
        .map(|(i, _)| {
            let n = match layout[i % layout.len()] {
                0 => len,
                1 => rows,
                2 => cols,
                3 => 1,
                4 => rows + cols,
                _ => len,
            };
            column(seed, i, n, n == 1)
        })
        .collect();
    // Blocks of a size that leaves a shorter last block wherever there are enough rows.
    let blocks: Vec<VecBlocks> = values
        .iter()
        .map(|v| VecBlocks {
            values: v.clone(),
            rows,
            cols,
            block: 1 + (seed as usize + rows) % 7,
        })
        .collect();
    let inputs: Vec<Input> = values
        .iter()
        .zip(&blocks)
        .enumerate()
        .map(|(i, (v, blocks))| match layout[i % layout.len()] {
            0 => Input::PerSynapse(v),
            1 => Input::PerRow(v),
            2 => Input::PerColumn(v),
            3 => Input::Scalar(v[0]),
            4 => Input::Outer(&v[..rows], &v[rows..]),
            _ => Input::Blocks(blocks),
        })
        .collect();
    let expanded: Vec<Vec<f32>> = values
        .iter()
        .enumerate()
        .map(|(i, v)| match layout[i % layout.len()] {
            0 | 3 => v.clone(),
            1 => (0..len).map(|e| v[e / cols]).collect(),
            2 => (0..len).map(|e| v[e % cols]).collect(),
            // What the backward pass would have written: gemm's k = 1 product, a[i]·b[j].
            4 => (0..len).map(|e| v[e / cols] * v[rows + e % cols]).collect(),
            _ => v.clone(),
        })
        .collect();
    let run = |how: u8| {
        let mut out = vec![vec![0.0f32; len]; program.outputs.len()];
        let mut outs: Vec<&mut [f32]> = out.iter_mut().map(Vec::as_mut_slice).collect();
        let mut noise = synaptogen::rng::Rng::stream(seed, synaptogen::rng::Purpose::Synthetic, &[99]);
        let mut randn = |chunk: &mut [f32]| chunk.iter_mut().for_each(|x| *x = noise.normal());
        let mut scratch = Default::default();
        match how {
            0 => program.run_matrix(rows, cols, &inputs, &mut outs, &mut randn, &mut scratch),
            1 => program.interpret_matrix(rows, cols, &inputs, &mut outs, &mut randn, &mut scratch),
            _ => {
                let slices: Vec<&[f32]> = expanded.iter().map(Vec::as_slice).collect();
                program.interpret(len, &slices, &mut outs, &mut randn, &mut scratch)
            }
        }
        out
    };
    let reference = run(2);
    let native = run(0);
    // Read by blocks, the per-synapse part runs block by block: natively where a block is as large.
    let by_blocks = inputs.iter().any(|i| matches!(i, Input::Blocks(_))) && rows > 1 && cols > 1;
    let run_len = if by_blocks {
        blocks[0].block.min(rows) * cols
    } else {
        len
    };
    if cfg!(target_arch = "x86_64") && run_len >= 256 {
        assert!(program.ran_natively(), "no native kernel was built\n{program}");
    }
    for (how, name) in [(0, "native"), (1, "interpreted")] {
        let got = if how == 0 { native.clone() } else { run(how) };
        for ((var, _), (got, want)) in program.outputs.iter().zip(got.iter().zip(&reference)) {
            for (e, (g, w)) in got.iter().zip(want).enumerate() {
                assert!(
                    g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                    "{rows}×{cols}, layout {layout:?}: {var}[{e}]: {name} {g}, flat {w}\n{program}"
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 150, ..ProptestConfig::default() })]

    /// Hoisting by granularity (src/rule/program.rs) computes what the flat program computes, over
    /// matrices of every shape (one row, one column, widths that are not a multiple of the vector
    /// width, several chunks) and inputs of every layout, with `randn()` draws in the same order.
    #[test]
    fn hoisted_matrix_runs_match_the_flat_interpreter(
        a in number(),
        b in number(),
        seed in 0u64..1_000_000,
        rows in prop_oneof![Just(1usize), 2usize..40, Just(300)],
        cols in prop_oneof![Just(1usize), 2usize..300],
        layout in prop::collection::vec(0u8..6, 1..8),
    ) {
        let source = format!("fn synapse() {{ dw = {a}; m = ({b}) * randn() + w; }}");
        let compiled = rule::compile(&source, Path::new("generated.rhai"))
            .map_err(|e| TestCaseError::fail(format!("{e}\n{source}")))?;
        assert_hoisting_changes_no_bit(&compiled.programs[0].1, seed, rows, cols, &layout);
    }
}

#[test]
fn every_shipped_rule_hoists_without_changing_a_bit() {
    let files = util::shipped_rules();
    for path in files {
        let source = std::fs::read_to_string(&path).expect("readable rule");
        let compiled = rule::compile(&source, &path).unwrap_or_else(|e| panic!("{e}"));
        for (_, program) in &compiled.programs {
            for (seed, rows, cols, layout) in [
                (0, 256, 196, &[0u8, 1, 2, 3][..]),
                (1, 10, 257, &[2, 0, 1][..]),
                (4, 100, 196, &[4, 0, 1, 2][..]),
                (5, 7, 300, &[0, 4][..]),
                (6, 256, 196, &[5, 1, 0, 2, 5][..]),
                (7, 1, 300, &[5, 2][..]),
                (8, 70, 1, &[5, 1][..]),
                (2, 33, 1, &[1, 0][..]),
                (3, 1, 5000, &[0, 3, 2][..]),
            ] {
                assert_hoisting_changes_no_bit(program, seed, rows, cols, layout);
            }
        }
    }
}

/// Runs the one-output program of `expr` (reading `w`, and `grad` if it appears) natively over
/// `w` and `grad`, and asserts every element equals `want(w, grad)` bit for bit (NaN: any NaN).
fn assert_kernel_computes(expr: &str, w: &[f32], grad: &[f32], want: impl Fn(f32, f32) -> f32) {
    let source = format!("fn synapse() {{ dw = {expr}; }}");
    let compiled = rule::compile(&source, Path::new("generated.rhai")).expect("compiles");
    let program = &compiled.programs[0].1;
    let slices: Vec<&[f32]> = program
        .inputs
        .iter()
        .map(|v| if v.name() == "w" { w } else { grad })
        .collect();
    let mut out = vec![0.0f32; w.len()];
    let mut randn = |_: &mut [f32]| unreachable!("no randn()");
    program.run(
        w.len(),
        &slices,
        &mut [out.as_mut_slice()],
        &mut randn,
        &mut Default::default(),
    );
    if cfg!(target_arch = "x86_64") {
        assert!(program.ran_natively(), "{expr}: no native kernel was built");
    }
    for ((&x, &y), &got) in w.iter().zip(grad).zip(&out) {
        let want = want(x, y);
        assert!(
            got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
            "{expr} at w = {x:e}, grad = {y:e}: kernel {got:e}, math.rs {want:e}"
        );
    }
}

/// The vectorised `exp`, `ln`, `tanh` and `sigmoid` of the kernels, and `**` to constant powers of
/// each kind (integer, negative, fractional: multiplied out or through `ln` and `exp`), equal
/// `src/rule/math.rs` on every `stride`-th f32 bit pattern (all signs, exponents, subnormals,
/// infinities and NaNs).
fn assert_unary_kernels_match_math(stride: usize) {
    type Unary = fn(f32) -> f32;
    let functions: [(&str, Unary); 8] = [
        ("exp(w)", math::exp),
        ("ln(w)", math::ln),
        ("tanh(w)", math::tanh),
        ("sigmoid(w)", math::sigmoid),
        ("w ** 3.0", |x| math::pow(x, 3.0)),
        ("w ** (-2.0)", |x| math::pow(x, -2.0)),
        ("w ** 1.5", |x| math::pow(x, 1.5)),
        ("w ** (-0.25)", |x| math::pow(x, -0.25)),
    ];
    let all: Vec<u32> = (0..=u32::MAX).step_by(stride).collect();
    for chunk in all.chunks(1 << 22) {
        let w: Vec<f32> = chunk.iter().map(|&b| f32::from_bits(b)).collect();
        for (expr, f) in functions {
            assert_kernel_computes(expr, &w, &w, |x, _| f(x));
        }
    }
}

#[test]
fn vector_transcendentals_equal_math_rs_on_a_spread_of_f32() {
    assert_unary_kernels_match_math(4099);
}

#[test]
#[ignore = "every f32 through eight kernels, about 12 minutes"]
fn vector_transcendentals_equal_math_rs_on_every_f32() {
    assert_unary_kernels_match_math(1);
}

/// `**` in a kernel equals `math::pow` over bases and exponents of every kind, special lanes (zero,
/// infinite, NaN, 1, negative base to a fractional power) mixed into vectors with ordinary ones.
#[test]
fn vector_pow_equals_math_rs() {
    let mut rng = synaptogen::rng::Rng::stream(7, synaptogen::rng::Purpose::Synthetic, &[]);
    let specials = [
        0.0f32,
        -0.0,
        1.0,
        -1.0,
        0.5,
        -0.5,
        2.0,
        -2.0,
        3.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
    ];
    let draw = |rng: &mut synaptogen::rng::Rng| {
        let pick = rng.uniform();
        if pick < 0.05 {
            specials[(rng.next_u64() % specials.len() as u64) as usize]
        } else if pick < 0.3 {
            ((rng.uniform() * 2.0 - 1.0) * 20.0).trunc()
        } else if pick < 0.6 {
            f32::from_bits(rng.next_u64() as u32)
        } else {
            (rng.uniform() * 2.0 - 1.0) * 2f32.powi((rng.next_u64() % 20) as i32 - 10)
        }
    };
    let n = 1 << 20;
    let w: Vec<f32> = (0..n).map(|_| draw(&mut rng)).collect();
    let grad: Vec<f32> = (0..n).map(|_| draw(&mut rng)).collect();
    assert_kernel_computes("w ** grad", &w, &grad, math::pow);
    // All-ordinary vectors take the vector path only: ln and exp, then multiplication alone.
    let w: Vec<f32> = (0..n).map(|_| 0.1 + rng.uniform() * 3.0).collect();
    let grad: Vec<f32> = (0..n).map(|_| (rng.uniform() * 2.0 - 1.0) * 30.0).collect();
    assert_kernel_computes("w ** grad", &w, &grad, math::pow);
    let w: Vec<f32> = (0..n).map(|_| (rng.uniform() * 2.0 - 1.0) * 3.0).collect();
    let grad: Vec<f32> = (0..n)
        .map(|_| ((rng.uniform() * 2.0 - 1.0) * 64.0).trunc())
        .collect();
    assert_kernel_computes("w ** grad", &w, &grad, math::pow);
    assert_kernel_computes("w ** 2.0", &w, &grad, |x, _| math::pow(x, 2.0));
    // Constant exponents of every kind over bases of every kind (specials included).
    let w: Vec<f32> = (0..n).map(|_| draw(&mut rng)).collect();
    for y in [
        3.0f32,
        -3.0,
        2.0,
        -2.0,
        0.5,
        -1.5,
        65.0,
        -70.0,
        0.0,
        f32::INFINITY,
        f32::NAN,
    ] {
        let expr = format!("w ** ({})", rule::ir::number(y));
        assert_kernel_computes(&expr, &w, &w, |x, _| math::pow(x, y));
    }
}

/// Every operation the AVX-512 kernels compute (`src/rule/avx512.rs`, `exp`, `tanh`, `sigmoid`,
/// `ln` and `**` among them), alone and combined, over
/// values chosen to tell rounding, NaN and signed-zero rules apart, at lengths that end on every
/// masked tail: the interpreter's bits, and (where the CPU has AVX-512) on sixteen lanes.
#[test]
fn avx512_kernels_give_the_interpreters_bits_for_every_exact_operation() {
    use synaptogen::rule::program::{Backend, Granularity};
    let specials = [
        0.0f32,
        -0.0,
        1.0,
        -1.0,
        0.1,
        -2.5,
        f32::NAN,
        -f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MIN_POSITIVE / 8.0,
        -f32::MIN_POSITIVE / 8.0,
        f32::MAX,
        3.0e-39,
        1.0e30,
    ];
    let expressions = [
        "w + grad",
        "w - grad",
        "w * grad",
        "w / grad",
        "-w",
        "if w < grad { 1.0 } else { 0.0 }",
        "if w <= grad { hebb } else { w }",
        "if w > grad { hebb } else { grad }",
        "if w >= grad { 2.0 } else { hebb }",
        "if w == grad { w } else { 0.5 }",
        "if w != grad { grad } else { hebb }",
        "if w > 0.0 && grad < 0.0 { 1.0 } else { -1.0 }",
        "if w > 0.0 || grad < 0.0 { hebb } else { -hebb }",
        "if !(w > grad) { w } else { grad }",
        "abs(w) - abs(grad)",
        "sign(w) * sign(grad)",
        "sqrt(w) + sqrt(abs(grad))",
        "relu(w) + relu(grad)",
        "min(w, grad) + max(grad, w)",
        "max(w, grad) - min(hebb, w)",
        "clamp(w, grad, hebb)",
        "clamp(w, -0.5, 0.5) * lr",
        "step(w) + step(grad) * hebb",
        "-lr * grad + 0.001 * w * (hebb - w * w) / (1.0 + abs(hebb))",
        "exp(w) + tanh(grad) * sigmoid(hebb)",
        "sigmoid(w * grad) - exp(-abs(w)) / tanh(hebb)",
        "-lr * grad * exp(-abs(w) / (0.1 + hebb * 0.001)) + tanh(w - grad)",
        "ln(w) + ln(abs(grad)) * hebb",
        "w ** grad",
        "w ** 2.0 + hebb ** (-3.0)",
        "w ** 0.0 - grad ** 1.5",
        "abs(w) ** 0.5 * grad ** 65.0",
        "w ** (-1.5) + grad ** 3.0 - hebb ** (-2.0)",
    ];
    // 60 values, never more than three alive at once: the kernel reuses a register once its value
    // has been read for the last time, so this fits the 32 vector registers.
    let deep = (0..20).fold("w".to_string(), |e, _| format!("tanh({e}) * grad - hebb"));
    #[cfg(target_arch = "x86_64")]
    let avx512 = std::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    let avx512 = false;
    for expr in expressions.into_iter().chain([deep.as_str()]) {
        let source = format!("fn synapse() {{ dw = {expr}; }}");
        let compiled = rule::compile(&source, Path::new("exact.rhai")).unwrap_or_else(|e| panic!("{e}"));
        let program = &compiled.programs[0].1;
        if avx512 {
            let layout = vec![Granularity::PerSynapse; program.inputs.len()];
            let backends = program
                .prepare_native(&layout)
                .unwrap_or_else(|e| panic!("{expr}: {e}"));
            assert!(
                backends.iter().all(|b| *b == Backend::Avx512),
                "{expr}: {backends:?}"
            );
        }
        for len in [4, 8, 12, 16, 20, 28, 196, 1001] {
            // Every pair of specials meets in some lane (offsets differ per input), the rest random.
            let inputs: Vec<Vec<f32>> = (0..program.inputs.len())
                .map(|i| {
                    let mut column = column(len as u64, i, len, false);
                    for (e, x) in column.iter_mut().enumerate() {
                        if e % 3 != 2 {
                            *x = specials[(e * (i + 1) + e / specials.len()) % specials.len()];
                        }
                    }
                    column
                })
                .collect();
            let slices: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
            let outputs = |native: bool| {
                let mut out = vec![vec![0.0f32; len]; program.outputs.len()];
                let mut outs: Vec<&mut [f32]> = out.iter_mut().map(Vec::as_mut_slice).collect();
                let mut randn = |_: &mut [f32]| unreachable!("no randn() here");
                if native {
                    program.run(len, &slices, &mut outs, &mut randn, &mut Default::default());
                } else {
                    program.interpret(len, &slices, &mut outs, &mut randn, &mut Default::default());
                }
                out
            };
            for (got, want) in outputs(true).iter().zip(&outputs(false)) {
                for (e, (g, w)) in got.iter().zip(want).enumerate() {
                    assert!(
                        g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                        "{expr}, length {len}, element {e}: native {g}, interpreter {w}"
                    );
                }
            }
        }
    }
}
