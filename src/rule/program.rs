//! Vectorised rule programs: register bytecode run array-at-a-time over whole f32 slices.
//!
//! A program is a list of instructions in SSA form, each writing one register from up to three
//! operands (a register, an input slice, or a constant). [`Program::run`] walks the elements in chunks
//! of [`CHUNK`] and runs every instruction over the whole chunk, so the cost of interpreting an
//! instruction is paid once per chunk, not once per synapse (`benches/rule_vm.rs`: ~1 ns per element for
//! such an interpreter against ~500 ns for Rhai). The dispatch on operand kinds happens once per
//! instruction and chunk; the inner loops are monomorphised closures the compiler vectorises.
//! Booleans are 1.0 / 0.0. Identical subexpressions are computed once.
//!
//! [`Program::run`] prefers the program's native kernel (`jit.rs`: the same instructions fused into one
//! machine-code loop, about 3× faster); this interpreter is what it is checked against, bit for bit,
//! and what runs wherever no kernel can be built.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::ir::{BinOp, Expr, Func, maximum, minimum};
use super::jit::Kernel;
use super::vocab::Var;

/// Elements per chunk: 4096 × a dozen registers stays in L2 (`benches/rule_vm.rs`).
pub const CHUNK: usize = 4096;

/// Where an instruction reads a value from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Operand {
    /// A register written by an earlier instruction.
    Reg(u16),
    /// An input variable (index into [`Program::inputs`]).
    Input(u16),
    /// A constant.
    Const(f32),
}

/// What an instruction computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// A binary operator.
    Binary(BinOp),
    /// −a
    Neg,
    /// !a
    Not,
    /// A built-in function.
    Call(Func),
    /// a ≠ 0 ? b : c
    Select,
}

/// One instruction: `dst = op(args…)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Instruction {
    /// The operation.
    pub op: Op,
    /// Destination register.
    pub dst: u16,
    /// Operands (unused ones are `Const(0)`).
    pub args: [Operand; 3],
}

/// A compiled section.
#[derive(Clone, Debug, PartialEq)]
pub struct Program {
    /// Vocabulary variables read, in operand order.
    pub inputs: Vec<Var>,
    /// `(variable, where its value is)` for every variable the section writes.
    pub outputs: Vec<(Var, Operand)>,
    /// The instructions, in order.
    pub instructions: Vec<Instruction>,
    /// Registers used.
    pub registers: usize,
    /// Native kernels built so far, one per arrangement of scalar inputs (`jit.rs`).
    kernels: Kernels,
}

/// Native kernels by input arrangement (which input slots are scalars), built on first use.
/// An error records that building failed (and why), so it is not retried.
#[derive(Default)]
struct Kernels(Mutex<Vec<(Vec<bool>, BuiltKernel)>>);

/// A kernel, or why none could be built.
type BuiltKernel = Result<Arc<Kernel>, String>;

impl Clone for Kernels {
    fn clone(&self) -> Self {
        Kernels(Mutex::new(self.0.lock().expect("not poisoned").clone()))
    }
}

impl fmt::Debug for Kernels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} kernel(s)", self.0.lock().expect("not poisoned").len())
    }
}

/// A cache, not part of what the program computes.
impl PartialEq for Kernels {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// Below this many elements the interpreter is used: building a kernel costs about a millisecond.
const NATIVE_FROM: usize = 256;

/// Whether native kernels are used (the default), process-wide.
static NATIVE: AtomicBool = AtomicBool::new(true);

/// Turns native kernels on or off for the whole process: off, every program is interpreted (to compare
/// against the interpreter, or on a host where generated code misbehaves). The CLI sets it from
/// `SYNAPTOGEN_JIT=off`; results are the same bits either way.
pub fn set_native(enabled: bool) {
    NATIVE.store(enabled, Ordering::Relaxed);
}

fn native_enabled() -> bool {
    NATIVE.load(Ordering::Relaxed)
}

struct Compiler<'a> {
    constants: &'a [(String, f32)],
    program: Program,
    memo: HashMap<String, Operand>,
}

impl Compiler<'_> {
    fn operand(&mut self, e: &Expr) -> Operand {
        match e {
            Expr::Num(x) => return Operand::Const(*x),
            Expr::Bool(b) => return Operand::Const(if *b { 1.0 } else { 0.0 }),
            Expr::Const(i) => return Operand::Const(self.constants[*i].1),
            Expr::Var(var) => {
                let i = match self.program.inputs.iter().position(|v| v == var) {
                    Some(i) => i,
                    None => {
                        self.program.inputs.push(*var);
                        self.program.inputs.len() - 1
                    }
                };
                return Operand::Input(i as u16);
            }
            _ => {}
        }
        let key = e.to_rhai(self.constants);
        if let Some(&op) = self.memo.get(&key) {
            return op;
        }
        let (op, args) = match e {
            Expr::Neg(a) => (Op::Neg, vec![self.operand(a)]),
            Expr::Not(a) => (Op::Not, vec![self.operand(a)]),
            Expr::Binary(op, a, b) => (Op::Binary(*op), vec![self.operand(a), self.operand(b)]),
            Expr::Call(f, args) => (Op::Call(*f), args.iter().map(|a| self.operand(a)).collect()),
            Expr::Select(c, a, b) => (
                Op::Select,
                vec![self.operand(c), self.operand(a), self.operand(b)],
            ),
            Expr::Num(_) | Expr::Bool(_) | Expr::Const(_) | Expr::Var(_) => unreachable!("handled above"),
        };
        // Tunable constants are baked in here, so an operation on constants alone is folded now
        // instead of being recomputed for every element.
        if op != Op::Call(Func::Randn) && args.iter().all(|a| matches!(a, Operand::Const(_))) {
            let scalar = |i: usize| match args.get(i) {
                Some(Operand::Const(x)) => Src::Scalar(*x),
                _ => Src::Scalar(0.0),
            };
            let mut out = [0.0f32];
            execute(op, &mut out, scalar(0), scalar(1), scalar(2), &mut |_| {});
            let folded = Operand::Const(out[0]);
            self.memo.insert(key, folded);
            return folded;
        }
        let dst = self.program.registers as u16;
        self.program.registers += 1;
        let mut fixed = [Operand::Const(0.0); 3];
        fixed[..args.len()].copy_from_slice(&args);
        self.program
            .instructions
            .push(Instruction { op, dst, args: fixed });
        let result = Operand::Reg(dst);
        self.memo.insert(key, result);
        result
    }
}

/// An input of [`Program::run_matrix`]: how a variable's values lay over a weight matrix of
/// `rows × cols` synapses (row = postsynaptic neuron, column = presynaptic neuron).
#[derive(Clone, Copy, Debug)]
pub enum Input<'a> {
    /// One value per synapse, row-major.
    PerSynapse(&'a [f32]),
    /// One value per row (a property of the postsynaptic neuron).
    PerRow(&'a [f32]),
    /// One value per column (a property of the presynaptic neuron).
    PerColumn(&'a [f32]),
    /// One value for every synapse.
    Scalar(f32),
}

/// A source of values for one chunk: a slice, or a scalar broadcast over it.
#[derive(Clone, Copy)]
enum Src<'a> {
    Slice(&'a [f32]),
    Scalar(f32),
}

impl Src<'_> {
    #[inline(always)]
    fn get(self, i: usize) -> f32 {
        match self {
            Src::Slice(s) => s[i],
            Src::Scalar(x) => x,
        }
    }
}

#[inline(always)]
fn unary(dst: &mut [f32], a: Src, f: impl Fn(f32) -> f32) {
    match a {
        Src::Slice(a) => {
            let n = dst.len();
            for (d, &x) in dst.iter_mut().zip(&a[..n]) {
                *d = f(x);
            }
        }
        Src::Scalar(x) => dst.fill(f(x)),
    }
}

#[inline(always)]
fn binary(dst: &mut [f32], a: Src, b: Src, f: impl Fn(f32, f32) -> f32) {
    let n = dst.len();
    match (a, b) {
        (Src::Slice(a), Src::Slice(b)) => {
            for ((d, &x), &y) in dst.iter_mut().zip(&a[..n]).zip(&b[..n]) {
                *d = f(x, y);
            }
        }
        (Src::Slice(a), Src::Scalar(y)) => {
            for (d, &x) in dst.iter_mut().zip(&a[..n]) {
                *d = f(x, y);
            }
        }
        (Src::Scalar(x), Src::Slice(b)) => {
            for (d, &y) in dst.iter_mut().zip(&b[..n]) {
                *d = f(x, y);
            }
        }
        (Src::Scalar(x), Src::Scalar(y)) => dst.fill(f(x, y)),
    }
}

#[inline(always)]
fn ternary(dst: &mut [f32], a: Src, b: Src, c: Src, f: impl Fn(f32, f32, f32) -> f32) {
    for (i, d) in dst.iter_mut().enumerate() {
        *d = f(a.get(i), b.get(i), c.get(i));
    }
}

fn truth(x: f32) -> bool {
    x != 0.0
}

fn flag(b: bool) -> f32 {
    if b { 1.0 } else { 0.0 }
}

impl Program {
    /// Compiles a section's outputs (canonical IR) with the rule's constants baked in.
    pub fn compile(outputs: &[(Var, Expr)], constants: &[(String, f32)]) -> Program {
        let mut compiler = Compiler {
            constants,
            program: Program {
                inputs: Vec::new(),
                outputs: Vec::new(),
                instructions: Vec::new(),
                registers: 0,
                kernels: Kernels::default(),
            },
            memo: HashMap::new(),
        };
        for (name, e) in outputs {
            let operand = compiler.operand(e);
            compiler.program.outputs.push((*name, operand));
        }
        compiler.program
    }

    /// Runs the program over `len` elements. `inputs[i]` is the slice of [`Program::inputs`]`[i]`
    /// (length `len`, or 1 for a value shared by every element); `outputs[k]` receives
    /// [`Program::outputs`]`[k]`. `randn` fills a chunk with standard normal draws when the program
    /// calls `randn()`. `registers` is reusable scratch.
    ///
    /// Runs the program's native kernel where one can be built (`jit.rs`), else interprets; both
    /// give the same bits, and draw the same `randn()` values in the same order.
    pub fn run(
        &self,
        len: usize,
        inputs: &[&[f32]],
        outputs: &mut [&mut [f32]],
        randn: &mut dyn FnMut(&mut [f32]),
        registers: &mut Vec<Vec<f32>>,
    ) {
        match self.native_kernel(len, inputs.iter().map(|s| s.len() == 1)) {
            Some(kernel) => self.run_native(&kernel, len, inputs, outputs, randn, registers),
            None => self.interpret(len, inputs, outputs, randn, registers),
        }
    }

    /// The kernel to run over `len` elements whose inputs are scalar as `scalar` says, or `None`
    /// where the interpreter runs instead (short slices, [`set_native`] off, no kernel).
    fn native_kernel(&self, len: usize, scalar: impl Iterator<Item = bool>) -> Option<Arc<Kernel>> {
        if len < NATIVE_FROM || !native_enabled() {
            return None;
        }
        self.kernel(scalar)
    }

    /// Whether a run so far used a native kernel (for tests: a kernel that failed to build would
    /// otherwise pass every comparison with the interpreter silently).
    pub fn ran_natively(&self) -> bool {
        let kernels = self.kernels.0.lock().expect("not poisoned");
        kernels.iter().any(|(_, kernel)| kernel.is_ok())
    }

    /// Why a native kernel could not be built for some arrangement of inputs, if one could not.
    pub fn native_error(&self) -> Option<String> {
        let kernels = self.kernels.0.lock().expect("not poisoned");
        kernels.iter().find_map(|(_, kernel)| kernel.clone().err())
    }

    /// How many `randn()` instructions the program has: each is one more input slot of a kernel.
    fn randn_count(&self) -> usize {
        self.instructions
            .iter()
            .filter(|i| i.op == Op::Call(Func::Randn))
            .count()
    }

    /// The kernel for this arrangement of scalar inputs, built on first use.
    fn kernel(&self, scalar: impl Iterator<Item = bool>) -> Option<Arc<Kernel>> {
        let mut scalar: Vec<bool> = scalar.collect();
        scalar.resize(self.inputs.len() + self.randn_count(), false);
        let mut kernels = self.kernels.0.lock().expect("not poisoned");
        if let Some((_, kernel)) = kernels.iter().find(|(s, _)| *s == scalar) {
            return kernel.clone().ok();
        }
        // A kernel that cannot be built leaves the interpreter to run the program (same bits, slower);
        // the reason stays for `native_error`.
        let kernel = Kernel::compile(self, &scalar).map(Arc::new);
        kernels.push((scalar, kernel.clone()));
        kernel.ok()
    }

    /// Runs `kernel` over `len` elements. `randn()` values are drawn chunk by chunk, in instruction
    /// order, exactly as [`Program::interpret`] draws them.
    fn run_native(
        &self,
        kernel: &Kernel,
        len: usize,
        inputs: &[&[f32]],
        outputs: &mut [&mut [f32]],
        randn: &mut dyn FnMut(&mut [f32]),
        registers: &mut Vec<Vec<f32>>,
    ) {
        let draws = self.randn_count();
        if draws == 0 {
            kernel.run(len, inputs, outputs);
            return;
        }
        registers.resize_with(draws.max(registers.len()), Vec::new);
        let mut start = 0;
        while start < len {
            let n = CHUNK.min(len - start);
            for buffer in &mut registers[..draws] {
                buffer.resize(CHUNK, 0.0);
                randn(&mut buffer[..n]);
            }
            let mut slots: Vec<&[f32]> = inputs
                .iter()
                .map(|s| if s.len() == 1 { *s } else { &s[start..start + n] })
                .collect();
            slots.extend(registers[..draws].iter().map(|b| &b[..n]));
            let mut chunk: Vec<&mut [f32]> = outputs.iter_mut().map(|o| &mut o[start..start + n]).collect();
            kernel.run(n, &slots, &mut chunk);
            start += n;
        }
    }

    /// [`Program::run`] without native code: every instruction in turn over each chunk. The reference
    /// the kernels are tested against.
    pub fn interpret(
        &self,
        len: usize,
        inputs: &[&[f32]],
        outputs: &mut [&mut [f32]],
        randn: &mut dyn FnMut(&mut [f32]),
        registers: &mut Vec<Vec<f32>>,
    ) {
        assert_eq!(inputs.len(), self.inputs.len(), "one slice per input");
        assert_eq!(outputs.len(), self.outputs.len(), "one slice per output");
        registers.resize_with(self.registers, Vec::new);
        for r in registers.iter_mut() {
            r.resize(CHUNK, 0.0);
        }
        // A register whose operands are all scalars holds one value for every element: it is computed
        // once per run and read as a scalar, instead of being filled chunk after chunk.
        let mut uniform: Vec<Option<f32>> = vec![None; self.registers];
        let mut start = 0;
        while start < len {
            let n = CHUNK.min(len - start);
            for instruction in &self.instructions {
                let dst_index = instruction.dst as usize;
                if start > 0 && uniform[dst_index].is_some() {
                    continue;
                }
                let mut dst = std::mem::take(&mut registers[dst_index]);
                {
                    let src = |o: Operand| -> Src {
                        match o {
                            Operand::Reg(r) => match uniform[r as usize] {
                                Some(x) => Src::Scalar(x),
                                None => Src::Slice(&registers[r as usize][..n]),
                            },
                            Operand::Input(i) => {
                                let s = inputs[i as usize];
                                if s.len() == 1 {
                                    Src::Scalar(s[0])
                                } else {
                                    Src::Slice(&s[start..start + n])
                                }
                            }
                            Operand::Const(x) => Src::Scalar(x),
                        }
                    };
                    let [a, b, c] = instruction.args.map(src);
                    let all_scalar = [a, b, c].iter().all(|s| matches!(s, Src::Scalar(_)));
                    if all_scalar && instruction.op != Op::Call(Func::Randn) {
                        let mut one = [0.0f32];
                        execute(instruction.op, &mut one, a, b, c, randn);
                        uniform[dst_index] = Some(one[0]);
                    } else {
                        execute(instruction.op, &mut dst[..n], a, b, c, randn);
                    }
                }
                registers[dst_index] = dst;
            }
            for ((_, operand), out) in self.outputs.iter().zip(outputs.iter_mut()) {
                let out = &mut out[start..start + n];
                match *operand {
                    Operand::Reg(r) => match uniform[r as usize] {
                        Some(x) => out.fill(x),
                        None => out.copy_from_slice(&registers[r as usize][..n]),
                    },
                    Operand::Input(i) => {
                        let s = inputs[i as usize];
                        if s.len() == 1 {
                            out.fill(s[0])
                        } else {
                            out.copy_from_slice(&s[start..start + n])
                        }
                    }
                    Operand::Const(x) => out.fill(x),
                }
            }
            start += n;
        }
    }

    /// Runs the program over a `rows × cols` weight matrix whose inputs may be per synapse, per row,
    /// per column or scalar. Per-row and per-column inputs are expanded one chunk at a time into
    /// `broadcast` scratch, so no full-size copy is ever made.
    #[allow(clippy::too_many_arguments)]
    pub fn run_matrix(
        &self,
        rows: usize,
        cols: usize,
        inputs: &[Input],
        outputs: &mut [&mut [f32]],
        randn: &mut dyn FnMut(&mut [f32]),
        registers: &mut Vec<Vec<f32>>,
        broadcast: &mut Vec<Vec<f32>>,
    ) {
        let len = rows * cols;
        // Chosen once for the whole matrix, not per chunk: the lookup locks and allocates.
        let kernel = self.native_kernel(len, inputs.iter().map(|i| matches!(i, Input::Scalar(_))));
        broadcast.resize_with(inputs.len(), Vec::new);
        let mut start = 0;
        while start < len {
            let n = CHUNK.min(len - start);
            for (input, buffer) in inputs.iter().zip(broadcast.iter_mut()) {
                match *input {
                    Input::PerRow(values) => {
                        buffer.clear();
                        buffer.extend((start..start + n).map(|e| values[e / cols]));
                    }
                    Input::PerColumn(values) => {
                        buffer.clear();
                        buffer.extend((start..start + n).map(|e| values[e % cols]));
                    }
                    Input::PerSynapse(_) | Input::Scalar(_) => {}
                }
            }
            let slices: Vec<&[f32]> = inputs
                .iter()
                .zip(broadcast.iter())
                .map(|(input, buffer)| match input {
                    Input::PerSynapse(values) => &values[start..start + n],
                    Input::PerRow(_) | Input::PerColumn(_) => &buffer[..n],
                    Input::Scalar(x) => std::slice::from_ref(x),
                })
                .collect();
            let mut chunk_outputs: Vec<&mut [f32]> =
                outputs.iter_mut().map(|o| &mut o[start..start + n]).collect();
            match &kernel {
                Some(kernel) => self.run_native(kernel, n, &slices, &mut chunk_outputs, randn, registers),
                None => self.interpret(n, &slices, &mut chunk_outputs, randn, registers),
            }
            start += n;
        }
    }

    /// Evaluates the program on one element with every input a scalar (for tests and probes).
    pub fn eval_scalar(&self, inputs: &[f32]) -> Vec<f32> {
        let slices: Vec<&[f32]> = inputs.iter().map(std::slice::from_ref).collect();
        let mut out = vec![0.0f32; self.outputs.len()];
        {
            let mut outs: Vec<&mut [f32]> = out.iter_mut().map(std::slice::from_mut).collect();
            self.run(1, &slices, &mut outs, &mut |_| {}, &mut Vec::new());
        }
        out
    }
}

fn execute(op: Op, dst: &mut [f32], a: Src, b: Src, c: Src, randn: &mut dyn FnMut(&mut [f32])) {
    match op {
        Op::Neg => unary(dst, a, |x| -x),
        Op::Not => unary(dst, a, |x| flag(!truth(x))),
        Op::Binary(op) => match op {
            BinOp::Add => binary(dst, a, b, |x, y| x + y),
            BinOp::Sub => binary(dst, a, b, |x, y| x - y),
            BinOp::Mul => binary(dst, a, b, |x, y| x * y),
            BinOp::Div => binary(dst, a, b, |x, y| x / y),
            BinOp::Pow => binary(dst, a, b, f32::powf),
            BinOp::Lt => binary(dst, a, b, |x, y| flag(x < y)),
            BinOp::Le => binary(dst, a, b, |x, y| flag(x <= y)),
            BinOp::Gt => binary(dst, a, b, |x, y| flag(x > y)),
            BinOp::Ge => binary(dst, a, b, |x, y| flag(x >= y)),
            BinOp::Eq => binary(dst, a, b, |x, y| flag(x == y)),
            BinOp::Ne => binary(dst, a, b, |x, y| flag(x != y)),
            BinOp::And => binary(dst, a, b, |x, y| flag(truth(x) && truth(y))),
            BinOp::Or => binary(dst, a, b, |x, y| flag(truth(x) || truth(y))),
        },
        Op::Call(f) => match f {
            Func::Abs => unary(dst, a, f32::abs),
            Func::Sign => unary(dst, a, |x| Func::Sign.apply(&[x])),
            Func::Sqrt => unary(dst, a, f32::sqrt),
            Func::Exp => unary(dst, a, f32::exp),
            Func::Ln => unary(dst, a, f32::ln),
            Func::Tanh => unary(dst, a, f32::tanh),
            Func::Sigmoid => unary(dst, a, |x| 1.0 / (1.0 + (-x).exp())),
            Func::Relu => unary(dst, a, |x| maximum(x, 0.0)),
            Func::Step => unary(dst, a, |x| flag(x > 0.0)),
            Func::Min => binary(dst, a, b, minimum),
            Func::Max => binary(dst, a, b, maximum),
            Func::Clamp => ternary(dst, a, b, c, |x, lo, hi| minimum(maximum(x, lo), hi)),
            Func::Randn => randn(dst),
        },
        Op::Select => ternary(dst, a, b, c, |c, x, y| if truth(c) { x } else { y }),
    }
}

impl fmt::Display for Program {
    /// One line per instruction, e.g. `r2 = mul r0 in1`, then the outputs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |o: &Operand| match o {
            Operand::Reg(r) => format!("r{r}"),
            Operand::Input(i) => self.inputs[*i as usize].to_string(),
            Operand::Const(x) => super::ir::number(*x),
        };
        for ins in &self.instructions {
            let (name, arity) = match ins.op {
                Op::Binary(op) => (format!("{op:?}").to_lowercase(), 2),
                Op::Neg => ("neg".into(), 1),
                Op::Not => ("not".into(), 1),
                Op::Call(func) => (func.name().to_string(), func.arity()),
                Op::Select => ("select".into(), 3),
            };
            let args: Vec<String> = ins.args[..arity].iter().map(show).collect();
            writeln!(f, "r{} = {name} {}", ins.dst, args.join(" "))?;
        }
        for (name, o) in &self.outputs {
            writeln!(f, "{name} ← {}", show(o))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::compile;
    use std::path::Path;

    #[test]
    fn matrix_inputs_broadcast_by_row_and_column() {
        let compiled = compile(
            "fn synapse() { dw = w + 10.0 * post + 100.0 * pre + lr; }",
            Path::new("t.rhai"),
        )
        .expect("compiles");
        let program = &compiled.programs[0].1;
        let (rows, cols) = (3, 5000); // spans two chunks
        let w: Vec<f32> = (0..rows * cols).map(|e| (e % 7) as f32).collect();
        let post = [1.0, 2.0, 3.0];
        let pre: Vec<f32> = (0..cols).map(|j| (j % 3) as f32).collect();
        let inputs: Vec<Input> = program
            .inputs
            .iter()
            .map(|v| match v {
                Var::W => Input::PerSynapse(&w),
                Var::Post => Input::PerRow(&post),
                Var::Pre => Input::PerColumn(&pre),
                _ => Input::Scalar(0.5),
            })
            .collect();
        let mut dw = vec![0.0f32; rows * cols];
        program.run_matrix(
            rows,
            cols,
            &inputs,
            &mut [&mut dw],
            &mut |_| {},
            &mut Vec::new(),
            &mut Vec::new(),
        );
        for e in [0, 1, 4999, 5000, 9999, 14_999] {
            let want = w[e] + 10.0 * post[e / cols] + 100.0 * pre[e % cols] + 0.5;
            assert_eq!(dw[e], want, "element {e}");
        }
    }
}
