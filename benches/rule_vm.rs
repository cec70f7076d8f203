//! The compiled rule program against a hand-written Rust loop of the same formula and against Rhai
//! evaluating the script per element (the target: compiled ≤ 1.5× hand-written, ≥ 100× faster than Rhai),
//! over 65,536 synapses, single thread. Throughput is in synapses per second.
//!
//! `compiled` is what training runs: the program's native kernel (src/rule/jit.rs). `interpreted` is
//! the array-at-a-time interpreter the kernel is checked against and falls back to.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use synaptogen::rng::{Purpose, Rng};
use synaptogen::rule;

const N: usize = 65_536;

/// A 12-operation synapse rule: momentum, a Hebbian decorrelation term and a soft bound.
const TWELVE: &str = "const BETA = 0.9;
const ALPHA = 0.002;
fn synapse() {
    m = BETA * m + grad;
    dw = -lr * m - ALPHA * (hebb - pre * post) * (1.0 - w * w) + 0.0001 * w0;
}";

/// Every transcendental function per synapse: the kernels compute them in vector registers
/// (src/rule/math.rs's functions); the hand-written loop calls the platform's libm.
const TRANSCENDENTAL: &str = "fn synapse() {
    dw = -lr * grad * exp(-abs(w)) + 0.001 * tanh(hebb) * sigmoid(w) - 0.0001 * ln(1.0 + w * w) * w ** 2.0;
}";

/// A fractional power per synapse: `**` computes in f64 (`ln`, then `exp`), sixteen lanes as two
/// halves of eight; the hand-written loop calls the platform's `powf`.
const POWER: &str = "fn synapse() {
    dw = -lr * grad - 0.0001 * sign(w) * abs(w) ** 1.5;
}";

fn inputs(names: &[&str]) -> Vec<Vec<f32>> {
    let mut rng = Rng::stream(0, Purpose::Synthetic, &[]);
    names
        .iter()
        .map(|n| match *n {
            "lr" => vec![0.05],
            "batch" => vec![32.0],
            "sigma" => (0..N).map(|_| 0.01 + 0.05 * rng.uniform()).collect(),
            _ => (0..N).map(|_| rng.symmetric(1.0)).collect(),
        })
        .collect()
}

/// Inputs and outputs of the hand-written loops, by vocabulary name.
struct Named<'a> {
    names: &'a [&'static str],
    values: &'a [Vec<f32>],
}

impl Named<'_> {
    fn get(&self, name: &str) -> &[f32] {
        let i = self
            .names
            .iter()
            .position(|n| *n == name)
            .expect("the rule reads it");
        &self.values[i]
    }
}

fn bench_rule(
    c: &mut Criterion,
    label: &str,
    source: &str,
    native: impl Fn(&Named, &mut [Vec<f32>], &[&'static str]),
) {
    let compiled = rule::compile(source, Path::new(label)).expect("the benchmark rule compiles");
    let program = &compiled.programs[0].1;
    // The same program with Cranelift's 4-lane kernel, where the CPU would get AVX-512's: kernels are
    // built on a program's first run, so that run happens with AVX-512 kernels off.
    let cranelift = rule::compile(source, Path::new(label)).expect("the benchmark rule compiles");
    let cranelift = &cranelift.programs[0].1;
    let input_names: Vec<&'static str> = program.inputs.iter().map(|v| v.name()).collect();
    let data = inputs(&input_names);
    let mut outputs: Vec<Vec<f32>> = program.outputs.iter().map(|_| vec![0.0; N]).collect();
    let mut scratch = rule::program::Scratch::default();
    let mut group = c.benchmark_group(format!("rule_vm/{label}"));
    group.throughput(Throughput::Elements(N as u64));
    // `compiled` is Program::run (the native kernel: AVX-512's where the CPU has it and the rule's
    // operations are all exact, else Cranelift's), `compiled_cranelift` the same with Cranelift's;
    // `interpreted` the reference both are checked against.
    let mut run = |program: &rule::Program, native: bool| {
        let slices: Vec<&[f32]> = data.iter().map(Vec::as_slice).collect();
        let mut outs: Vec<&mut [f32]> = outputs.iter_mut().map(Vec::as_mut_slice).collect();
        let mut randn = |chunk: &mut [f32]| chunk.fill(0.0);
        if native {
            program.run(N, &slices, &mut outs, &mut randn, &mut scratch);
        } else {
            program.interpret(N, &slices, &mut outs, &mut randn, &mut scratch);
        }
        black_box(&outs);
    };
    rule::program::set_avx512(false);
    run(cranelift, true);
    rule::program::set_avx512(true);
    for (name, program, native) in [
        ("compiled", program, true),
        ("compiled_cranelift", cranelift, true),
        ("interpreted", program, false),
    ] {
        group.bench_function(name, |b| b.iter(|| run(program, native)));
    }
    let output_names: Vec<&'static str> = program.outputs.iter().map(|(v, _)| v.name()).collect();
    group.bench_function("hand_written", |b| {
        b.iter(|| {
            let named = Named {
                names: &input_names,
                values: black_box(&data),
            };
            native(&named, &mut outputs, &output_names);
            black_box(&outputs);
        })
    });
    // Rhai per element: the same expression with a reused scope (the fastest way we found to run Rhai per element).
    let engine = {
        let mut e = rhai::Engine::new_raw();
        e.register_fn("max", |a: f32, b: f32| a.max(b));
        e.register_fn("abs", |x: f32| x.abs());
        e.register_fn("sign", |x: f32| rule::ir::Func::Sign.apply(&[x]));
        e.register_fn("exp", |x: f32| x.exp());
        e.register_fn("ln", |x: f32| x.ln());
        e.register_fn("tanh", |x: f32| x.tanh());
        e.register_fn("sigmoid", |x: f32| 1.0 / (1.0 + (-x).exp()));
        e.register_fn("**", |x: f32, y: f32| x.powf(y));
        e
    };
    let body = program
        .outputs
        .iter()
        .map(|(name, _)| name.to_string())
        .collect::<Vec<_>>();
    let script = compiled.canonical.to_rhai();
    let text =
        script[script.find('{').expect("a section") + 1..script.rfind('}').expect("closed")].to_string();
    let ast = engine.compile(&text).expect("the canonical form is valid Rhai");
    let constants = compiled.canonical.constants.clone();
    group.sample_size(10);
    group.throughput(Throughput::Elements((N / 64) as u64));
    group.bench_function("rhai_per_element", |b| {
        b.iter(|| {
            let mut scope = rhai::Scope::new();
            for (name, v) in &constants {
                scope.push_constant(name.as_str(), *v);
            }
            // Only every 64th element: per-element Rhai is microseconds, so the full 65,536 would take
            // the whole measurement; the throughput counts the elements actually evaluated.
            for i in (0..N).step_by(64) {
                scope.rewind(constants.len());
                for (name, values) in input_names.iter().zip(&data) {
                    scope.push(*name, if values.len() == 1 { values[0] } else { values[i] });
                }
                for name in &body {
                    if scope.get_value::<f32>(name).is_none() {
                        scope.push(name.as_str(), 0.0f32);
                    }
                }
                engine.run_ast_with_scope(&mut scope, &ast).expect("runs");
                black_box(scope.get_value::<f32>(&body[0]));
            }
        })
    });
    group.finish();
}

fn bench(c: &mut Criterion) {
    let mesu =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/baselines/mesu.rhai"))
            .expect("rules/baselines/mesu.rhai ships");
    bench_rule(c, "mesu", &mesu, |d, out, names| {
        assert_eq!(names, ["sigma", "dw"]);
        let (sigma, grad, w, grad_sigma) = (d.get("sigma"), d.get("grad"), d.get("w"), d.get("grad_sigma"));
        let batch = d.get("batch")[0];
        let forget = 1.0 / 300000.0f32;
        let (s_out, dw) = out.split_at_mut(1);
        // Zipped iterators: no bounds checks, so the compiler vectorises (the fair baseline).
        for (((((d, so), &s), &g), &w), &gs) in dw[0]
            .iter_mut()
            .zip(s_out[0].iter_mut())
            .zip(sigma)
            .zip(grad)
            .zip(w)
            .zip(grad_sigma)
        {
            let s2 = s * s;
            *d = -s2 * g * batch + s2 * (0.0 - w) * forget;
            *so = s + 0.5 * (-s2 * gs * batch + s * (1.0 - s2) * forget);
        }
    });
    bench_rule(c, "twelve_ops", TWELVE, |d, out, names| {
        assert_eq!(names, ["m", "dw"]);
        let (m, grad, lr, hebb) = (d.get("m"), d.get("grad"), d.get("lr")[0], d.get("hebb"));
        let (post, pre, w, w0) = (d.get("post"), d.get("pre"), d.get("w"), d.get("w0"));
        let (m_out, dw) = out.split_at_mut(1);
        let synapses = m.iter().zip(grad).zip(hebb).zip(post).zip(pre).zip(w).zip(w0);
        for ((mo, d), ((((((&m, &g), &h), &po), &pr), &w), &w0)) in
            m_out[0].iter_mut().zip(dw[0].iter_mut()).zip(synapses)
        {
            let mm = 0.9 * m + g;
            *mo = mm;
            *d = -lr * mm - 0.002 * (h - pr * po) * (1.0 - w * w) + 0.0001 * w0;
        }
    });
    bench_rule(c, "transcendental", TRANSCENDENTAL, |d, out, names| {
        assert_eq!(names, ["dw"]);
        let (grad, lr, hebb, w) = (d.get("grad"), d.get("lr")[0], d.get("hebb"), d.get("w"));
        for (((d, &g), &h), &w) in out[0].iter_mut().zip(grad).zip(hebb).zip(w) {
            *d = -lr * g * (-w.abs()).exp() + 0.001 * h.tanh() * (1.0 / (1.0 + (-w).exp()))
                - 0.0001 * (1.0 + w * w).ln() * w.powf(2.0);
        }
    });
    bench_rule(c, "power", POWER, |d, out, names| {
        assert_eq!(names, ["dw"]);
        let (grad, lr, w) = (d.get("grad"), d.get("lr")[0], d.get("w"));
        for ((d, &g), &w) in out[0].iter_mut().zip(grad).zip(w) {
            *d = -lr * g - 0.0001 * w.signum() * w.abs().powf(1.5);
        }
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
