//! Vectorised rule programs: register bytecode run array-at-a-time over whole f32 slices.
//!
//! A program is a list of instructions in SSA form, each writing one register from up to three
//! operands (a register, an input slice, or a constant). The interpreter ([`Code::interpret`]) walks the
//! elements in chunks of [`CHUNK`] and runs every instruction over the whole chunk, so the cost of
//! interpreting an instruction is paid once per chunk, not once per synapse (`benches/rule_vm.rs`: ~1 ns
//! per element for such an interpreter against ~500 ns for Rhai). The dispatch on operand kinds happens
//! once per instruction and chunk; the inner loops are monomorphised closures the compiler vectorises.
//! Booleans are 1.0 / 0.0. Identical subexpressions are computed once.
//!
//! **Hoisting by index.** Over a weight matrix a value varies per synapse, per row (a property of the
//! postsynaptic neuron), per column (of the presynaptic neuron) or not at all ([`Granularity`]); an
//! instruction varies as the finest of its operands. [`Program::run_matrix`] splits the program into
//! one part per granularity ([`Plan`]) and computes every instruction once at its own: `tanh(post)` 256
//! times for a 256 × 196 matrix, not 50,176. The per-synapse part runs row by row, reading a row's
//! values as scalars and the columns' values as slices, so nothing is expanded to every synapse.
//! Hoisting changes no bit: each value is the same operation on the same operands.
//!
//! Every part prefers its native kernel (`jit.rs`: the same instructions fused into one machine-code
//! loop, about 3× faster); the interpreter is what kernels are checked against, bit for bit, and what
//! runs wherever no kernel can be built. [`Program::interpret`] runs the whole program flat, without
//! hoisting: the reference for both.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use super::ir::{BinOp, Expr, Func, maximum, minimum};
use super::jit::Kernel;
pub use super::jit::{Backend, set_avx512};
use super::math;
use super::vocab::Var;

/// Elements per chunk: 4096 × a dozen registers stays in L2 (`benches/rule_vm.rs`).
pub const CHUNK: usize = 4096;

/// Where an instruction reads a value from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Operand {
    /// A register written by an earlier instruction.
    Reg(u16),
    /// An input variable (index into [`Program::inputs`]), or in a [`Code`] an input slot.
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

impl Op {
    /// How many of an instruction's operands it reads.
    pub fn arity(self) -> usize {
        match self {
            Op::Binary(_) => 2,
            Op::Neg | Op::Not => 1,
            Op::Call(func) => func.arity(),
            Op::Select => 3,
        }
    }
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
    /// The whole program as code over its inputs and then its `randn()` draws: what
    /// [`Program::interpret`] runs.
    whole: Code,
    /// The split into parts by granularity, one per arrangement of inputs, built on first use with
    /// their native kernels.
    plans: Plans,
    /// Derived programs that read some inputs as products of factors ([`Program::multiplied_out`]).
    factored: Factored,
}

/// Straight-line code over input slots: what the interpreter and a native kernel run, a whole program
/// or one part of one. `randn()` is never an instruction here; its draws arrive in slots.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Code {
    /// Input slots (`Operand::Input(k)` reads slot `k`).
    pub slots: usize,
    /// The instructions, in order (registers local to this code).
    pub instructions: Vec<Instruction>,
    /// Registers used.
    pub registers: usize,
    /// Where each output's value is.
    pub outputs: Vec<Operand>,
}

/// How a value varies over a `rows × cols` weight matrix (row = postsynaptic neuron, column =
/// presynaptic neuron), from the coarsest to the finest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Granularity {
    /// One value for every synapse.
    Once,
    /// One value per row.
    PerRow,
    /// One value per column.
    PerColumn,
    /// One value per synapse.
    PerSynapse,
}

impl Granularity {
    /// How a value computed from values of `self` and `other` varies.
    fn join(self, other: Granularity) -> Granularity {
        match (self, other) {
            (a, b) if a == b => a,
            (Granularity::Once, x) | (x, Granularity::Once) => x,
            _ => Granularity::PerSynapse,
        }
    }

    /// Whether values of `self` can be read where values vary as `finer` (no row value in a column).
    fn within(self, finer: Granularity) -> bool {
        self.join(finer) == finer
    }

    /// How many values of this granularity a `rows × cols` matrix has.
    fn extent(self, rows: usize, cols: usize) -> usize {
        match self {
            Granularity::Once => 1,
            Granularity::PerRow => rows,
            Granularity::PerColumn => cols,
            Granularity::PerSynapse => rows * cols,
        }
    }

    /// Values of this granularity as a matrix input.
    fn input(self, values: &[f32]) -> Input<'_> {
        match self {
            Granularity::Once => Input::Scalar(values[0]),
            Granularity::PerRow => Input::PerRow(values),
            Granularity::PerColumn => Input::PerColumn(values),
            Granularity::PerSynapse => Input::PerSynapse(values),
        }
    }
}

/// Plans by arrangement: the granularity of every input and of a single element. Clones share them,
/// with their native kernels: every learner built from one compiled rule (a search builds one per
/// seed and rung) uses the kernels the first one built.
#[derive(Clone, Default)]
struct Plans(Arc<Mutex<Vec<KeyedPlan>>>);

type PlanKey = (Vec<Granularity>, Granularity);
type KeyedPlan = (PlanKey, Arc<Plan>);

impl fmt::Debug for Plans {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} plan(s)", self.0.lock().expect("not poisoned").len())
    }
}

/// A cache, not part of what the program computes.
impl PartialEq for Plans {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// [`Program::multiplied_out`]'s derived programs, by which inputs they factor.
#[derive(Clone, Default)]
struct Factored(Arc<Mutex<Vec<FactoredProgram>>>);

/// Which inputs a derived program reads as factors, and the program.
type FactoredProgram = (Vec<bool>, Arc<Program>);

impl fmt::Debug for Factored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} derived program(s)",
            self.0.lock().expect("not poisoned").len()
        )
    }
}

/// A cache, not part of what the program computes.
impl PartialEq for Factored {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// A program split by granularity for one arrangement of inputs: one [`Part`] per granularity that
/// has work, coarsest first, each reading only coarser parts' values; the last, at the granularity of
/// a single element, writes the outputs.
#[derive(Debug)]
struct Plan {
    parts: Vec<Part>,
    /// `randn()` instructions: each draws one value per element.
    draws: usize,
}

/// The instructions of one granularity, as code over slots.
#[derive(Debug)]
struct Part {
    granularity: Granularity,
    code: Code,
    /// Where each slot's values come from, and how they vary.
    sources: Vec<(Source, Granularity)>,
    /// The program registers this part computes for later parts (`code.outputs` in the same order);
    /// empty for the last part, whose outputs are the program's.
    exports: Vec<u16>,
    /// Built on first native run.
    kernel: OnceLock<Result<Kernel, String>>,
}

/// Where a part's slot reads from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Source {
    /// A program input.
    Input(u16),
    /// A program register computed by a coarser part.
    Value(u16),
    /// The draws of the program's `k`-th `randn()`.
    Draw(u16),
}

/// Reusable buffers for running programs.
#[derive(Debug, Default)]
pub struct Scratch {
    /// The interpreter's registers, [`CHUNK`] floats each.
    registers: Vec<Vec<f32>>,
    /// Hoisted values, by program register.
    values: Vec<Vec<f32>>,
    /// `randn()` draws, by instruction.
    draws: Vec<Vec<f32>>,
    /// One block of rows of each [`Input::Blocks`] input, by input, and their scratch.
    blocks: Vec<Vec<f32>>,
    block_scratch: Vec<f32>,
}

/// Below this many elements a part is interpreted: building a kernel costs about a millisecond.
const NATIVE_FROM: usize = 256;

/// Whether native kernels are used (the default), process-wide.
static NATIVE: AtomicBool = AtomicBool::new(true);

/// Turns native kernels on or off for the whole process: off, every program is interpreted (to compare
/// against the interpreter, or on a host where generated code misbehaves). The CLI sets it from
/// `SYNAPTOGEN_JIT=off`; results are the same bits either way.
pub fn set_native(enabled: bool) {
    NATIVE.store(enabled, Ordering::Relaxed);
}

/// Whether native kernels are on ([`set_native`]).
pub fn native_enabled() -> bool {
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
            execute(op, &mut out, scalar(0), scalar(1), scalar(2));
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
    /// One value per synapse, the product of its row's and its column's factor, `rows[r] · cols[c]`:
    /// an outer product the caller did not write out (online learning's first-layer weight
    /// gradient). The program multiplies where it reads, with the bits of the written product.
    Outer(&'a [f32], &'a [f32]),
    /// One value per synapse, computed a block of rows at a time as the per-synapse part reaches
    /// them, so a value computed for one read is read while it is in cache (the first layer's `grad`
    /// and `elig` of a batch, sums of outer products).
    Blocks(&'a dyn RowBlocks),
}

/// Per-synapse values handed out a block of rows at a time ([`Input::Blocks`]).
pub trait RowBlocks: std::fmt::Debug + Sync {
    /// Rows and columns of the matrix.
    fn shape(&self) -> (usize, usize);
    /// Rows per block; the last block may have fewer.
    fn block_rows(&self) -> usize;
    /// The rows from `start` (a multiple of [`RowBlocks::block_rows`]; `out.len() / cols` of them,
    /// a whole block) into `out`, row-major. `scratch` is the caller's, for any use.
    fn rows_into(&self, start: usize, out: &mut [f32], scratch: &mut Vec<f32>);
}

impl<'a> Input<'a> {
    /// How the input varies.
    fn granularity(&self) -> Granularity {
        match self {
            Input::Scalar(_) => Granularity::Once,
            Input::PerRow(_) => Granularity::PerRow,
            Input::PerColumn(_) => Granularity::PerColumn,
            Input::PerSynapse(_) | Input::Outer(..) | Input::Blocks(_) => Granularity::PerSynapse,
        }
    }

    /// The same values over a matrix of one row or one column, where a row's or a column's values are
    /// the synapses' own, and the other kind is one value.
    fn seen_over(self, rows: usize, cols: usize) -> Input<'a> {
        match self {
            Input::PerRow(v) if rows == 1 => Input::Scalar(v[0]),
            Input::PerColumn(v) if cols == 1 => Input::Scalar(v[0]),
            Input::PerSynapse(v) if rows == 1 && cols == 1 => Input::Scalar(v[0]),
            Input::PerSynapse(v) if cols == 1 => Input::PerRow(v),
            Input::PerSynapse(v) if rows == 1 => Input::PerColumn(v),
            other => other,
        }
    }

    /// Whether it holds enough values for a `rows × cols` matrix.
    fn covers(&self, rows: usize, cols: usize) -> bool {
        match self {
            Input::Scalar(_) => true,
            Input::PerRow(v) => v.len() >= rows,
            Input::PerColumn(v) => v.len() >= cols,
            Input::PerSynapse(v) => v.len() >= rows * cols,
            Input::Outer(r, c) => r.len() >= rows && c.len() >= cols,
            Input::Blocks(b) => {
                let (r, c) = b.shape();
                r >= rows && c == cols
            }
        }
    }

    /// Row `r`'s values of a `· × cols` matrix, as an interpreter slot: one value or `cols`.
    fn row(&self, r: usize, cols: usize) -> &[f32] {
        match self {
            Input::Scalar(x) => std::slice::from_ref(x),
            Input::PerRow(v) => &v[r..r + 1],
            Input::PerColumn(v) => &v[..cols],
            Input::PerSynapse(v) => &v[r * cols..(r + 1) * cols],
            Input::Outer(..) => unreachable!("multiplied out by Program::run_planned"),
            Input::Blocks(_) => unreachable!("read by blocks in Program::run_planned"),
        }
    }

    /// Rows `start..start + count` of this input over a `· × cols` matrix, with `block` the values of
    /// those rows where the input is [`Input::Blocks`].
    fn rows(self, start: usize, count: usize, cols: usize, block: &'a [f32]) -> Input<'a> {
        match self {
            Input::PerRow(v) => Input::PerRow(&v[start..start + count]),
            Input::PerSynapse(v) => Input::PerSynapse(&v[start * cols..(start + count) * cols]),
            Input::Blocks(_) => Input::PerSynapse(block),
            Input::Scalar(_) | Input::PerColumn(_) => self,
            Input::Outer(..) => unreachable!("multiplied out by Program::run_planned"),
        }
    }
}

/// The first `rows` rows of `blocks`, written out.
fn written_out(blocks: &dyn RowBlocks, rows: usize, scratch: &mut Vec<f32>) -> Vec<f32> {
    let (_, cols) = blocks.shape();
    let mut values = vec![0.0; rows.div_ceil(blocks.block_rows()) * blocks.block_rows() * cols];
    for (k, block) in values.chunks_mut(blocks.block_rows() * cols).enumerate() {
        let start = k * blocks.block_rows();
        let count = blocks.block_rows().min(blocks.shape().0 - start);
        blocks.rows_into(start, &mut block[..count * cols], scratch);
    }
    values.truncate(rows * cols);
    values
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

/// Fills `draws[k][..len]` for each of `count` `randn()` instructions, chunk by chunk and, within a
/// chunk, in instruction order: the order every way of running a program draws in, so the values do
/// not depend on how it runs.
fn draw(count: usize, len: usize, randn: &mut dyn FnMut(&mut [f32]), draws: &mut Vec<Vec<f32>>) {
    draws.resize_with(count.max(draws.len()), Vec::new);
    for d in &mut draws[..count] {
        d.clear();
        d.resize(len, 0.0);
    }
    if count == 0 {
        return;
    }
    let mut start = 0;
    while start < len {
        let n = CHUNK.min(len - start);
        for d in &mut draws[..count] {
            randn(&mut d[start..start + n]);
        }
        start += n;
    }
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
                whole: Code::default(),
                plans: Plans::default(),
                factored: Factored::default(),
            },
            memo: HashMap::new(),
        };
        for (name, e) in outputs {
            let operand = compiler.operand(e);
            compiler.program.outputs.push((*name, operand));
        }
        let mut program = compiler.program;
        program.whole = program.whole_code();
        program
    }

    /// The program as one [`Code`]: its inputs, then one slot per `randn()` instruction.
    fn whole_code(&self) -> Code {
        let mut slot = vec![None; self.registers];
        let mut next = self.inputs.len();
        for ins in &self.instructions {
            if ins.op == Op::Call(Func::Randn) {
                slot[ins.dst as usize] = Some(next as u16);
                next += 1;
            }
        }
        let operand = |o: Operand| match o {
            Operand::Reg(r) => slot[r as usize].map_or(o, Operand::Input),
            o => o,
        };
        Code {
            slots: next,
            instructions: self
                .instructions
                .iter()
                .filter(|ins| ins.op != Op::Call(Func::Randn))
                .map(|ins| Instruction {
                    args: ins.args.map(operand),
                    ..ins.clone()
                })
                .collect(),
            registers: self.registers,
            outputs: self.outputs.iter().map(|(_, o)| operand(*o)).collect(),
        }
    }

    /// Whether the program calls `randn()` (its `randn` argument is never called otherwise).
    pub fn draws_noise(&self) -> bool {
        self.randn_count() > 0
    }

    /// How many `randn()` instructions the program has.
    fn randn_count(&self) -> usize {
        self.instructions
            .iter()
            .filter(|i| i.op == Op::Call(Func::Randn))
            .count()
    }

    /// Runs the program over `len` elements. `inputs[i]` is the slice of [`Program::inputs`]`[i]`
    /// (length `len`, or 1 for a value shared by every element); `outputs[k]` receives
    /// [`Program::outputs`]`[k]`. `randn` fills a chunk with standard normal draws when the program
    /// calls `randn()`.
    ///
    /// Runs native kernels where they can be built (`jit.rs`), else interprets; both give the same
    /// bits, and draw the same `randn()` values in the same order.
    pub fn run(
        &self,
        len: usize,
        inputs: &[&[f32]],
        outputs: &mut [&mut [f32]],
        randn: &mut dyn FnMut(&mut [f32]),
        scratch: &mut Scratch,
    ) {
        let inputs: Vec<Input> = inputs
            .iter()
            .map(|s| {
                if s.len() == 1 {
                    Input::Scalar(s[0])
                } else {
                    Input::PerSynapse(s)
                }
            })
            .collect();
        self.run_matrix(1, len, &inputs, outputs, randn, scratch);
    }

    /// Runs the program over a `rows × cols` weight matrix whose inputs may be per synapse, per row,
    /// per column or scalar; `outputs[k]` receives `rows × cols` values, row-major. Each instruction is
    /// computed once per value of its granularity (the module doc), on native kernels where they can
    /// be built: the same bits as [`Program::interpret`] on the inputs expanded to every synapse.
    pub fn run_matrix(
        &self,
        rows: usize,
        cols: usize,
        inputs: &[Input],
        outputs: &mut [&mut [f32]],
        randn: &mut dyn FnMut(&mut [f32]),
        scratch: &mut Scratch,
    ) {
        self.run_planned(rows, cols, inputs, outputs, randn, scratch, native_enabled());
    }

    /// [`Program::run_matrix`] with every part interpreted (for tests: the kernels' comparison).
    pub fn interpret_matrix(
        &self,
        rows: usize,
        cols: usize,
        inputs: &[Input],
        outputs: &mut [&mut [f32]],
        randn: &mut dyn FnMut(&mut [f32]),
        scratch: &mut Scratch,
    ) {
        self.run_planned(rows, cols, inputs, outputs, randn, scratch, false);
    }

    #[allow(clippy::too_many_arguments)]
    fn run_planned(
        &self,
        rows: usize,
        cols: usize,
        inputs: &[Input],
        outputs: &mut [&mut [f32]],
        randn: &mut dyn FnMut(&mut [f32]),
        scratch: &mut Scratch,
        native: bool,
    ) {
        assert_eq!(inputs.len(), self.inputs.len(), "one input per program input");
        assert_eq!(outputs.len(), self.outputs.len(), "one slice per output");
        let len = rows * cols;
        assert!(
            inputs.iter().all(|i| i.covers(rows, cols)),
            "an input shorter than the matrix"
        );
        assert!(
            outputs.iter().all(|o| o.len() >= len),
            "an output shorter than the matrix"
        );
        if len == 0 {
            return;
        }
        if inputs.iter().any(|i| matches!(i, Input::Outer(..))) {
            let (program, inputs) = self.multiplied_out(inputs);
            return program.run_planned(rows, cols, &inputs, outputs, randn, scratch, native);
        }
        // A matrix of one row or one column has no per-synapse part: its blocks are read whole.
        let read_whole = rows == 1 || cols == 1;
        let whole: Vec<Vec<f32>> = inputs
            .iter()
            .map(|i| match i {
                Input::Blocks(b) if read_whole => written_out(*b, rows, &mut scratch.block_scratch),
                _ => Vec::new(),
            })
            .collect();
        let inputs: Vec<Input> = inputs
            .iter()
            .zip(&whole)
            .map(|(i, whole)| match i {
                Input::Blocks(_) if read_whole => Input::PerSynapse(whole),
                other => *other,
            })
            .map(|i| i.seen_over(rows, cols))
            .collect();
        let element = match (rows == 1, cols == 1) {
            (true, true) => Granularity::Once,
            (false, true) => Granularity::PerRow,
            (true, false) => Granularity::PerColumn,
            (false, false) => Granularity::PerSynapse,
        };
        let plan = self.plan(inputs.iter().map(Input::granularity).collect(), element);
        let Scratch {
            registers,
            values,
            draws,
            blocks,
            block_scratch,
        } = scratch;
        draw(plan.draws, len, randn, draws);
        values.resize_with(self.registers, Vec::new);
        for part in &plan.parts {
            let extent = part.granularity.extent(rows, cols);
            let mut exported: Vec<Vec<f32>> = part
                .exports
                .iter()
                .map(|&r| {
                    let mut v = std::mem::take(&mut values[r as usize]);
                    v.resize(extent, 0.0);
                    v
                })
                .collect();
            {
                let sources: Vec<Input> = part
                    .sources
                    .iter()
                    .map(|&(source, granularity)| match source {
                        Source::Input(i) => inputs[i as usize],
                        Source::Value(r) => granularity.input(&values[r as usize]),
                        Source::Draw(k) => granularity.input(&draws[k as usize]),
                    })
                    .collect();
                let by_blocks = part.granularity == Granularity::PerSynapse
                    && sources.iter().any(|s| matches!(s, Input::Blocks(_)));
                if by_blocks {
                    assert!(part.exports.is_empty(), "the per-synapse part is the last");
                    part.run_by_blocks(
                        rows,
                        cols,
                        &sources,
                        outputs,
                        registers,
                        native,
                        (blocks, block_scratch),
                    );
                } else if part.exports.is_empty() {
                    part.run(rows, cols, &sources, outputs, registers, native);
                } else {
                    let mut exports: Vec<&mut [f32]> = exported.iter_mut().map(Vec::as_mut_slice).collect();
                    part.run(rows, cols, &sources, &mut exports, registers, native);
                }
            }
            for (&r, v) in part.exports.iter().zip(exported) {
                values[r as usize] = v;
            }
        }
    }

    /// The program and inputs that compute what this program does on `inputs`, with every
    /// [`Input::Outer`] input `k` read as a product: the derived program takes the row factors and
    /// the column factors as two more inputs and begins with `rows[r] · cols[c]`, whose register its
    /// instructions read instead of input `k` (then given as an unread scalar). Hoisting then runs the
    /// product in the per-synapse part, in registers: the outer product is never written out. Derived
    /// programs are cached by which inputs are factored.
    fn multiplied_out<'i>(&self, inputs: &[Input<'i>]) -> (Arc<Program>, Vec<Input<'i>>) {
        let factored: Vec<bool> = inputs.iter().map(|i| matches!(i, Input::Outer(..))).collect();
        let program = {
            let mut cache = self.factored.0.lock().expect("not poisoned");
            match cache.iter().find(|(k, _)| *k == factored) {
                Some((_, p)) => p.clone(),
                None => {
                    let p = Arc::new(self.with_factors(&factored));
                    cache.push((factored, p.clone()));
                    p
                }
            }
        };
        let mut expanded: Vec<Input> = inputs
            .iter()
            .map(|i| match i {
                Input::Outer(..) => Input::Scalar(0.0),
                other => *other,
            })
            .collect();
        for i in inputs {
            if let Input::Outer(rows, cols) = *i {
                expanded.push(Input::PerRow(rows));
                expanded.push(Input::PerColumn(cols));
            }
        }
        (program, expanded)
    }

    /// [`Program::multiplied_out`]'s derived program for the inputs marked in `factored`.
    fn with_factors(&self, factored: &[bool]) -> Program {
        let mut inputs = self.inputs.clone();
        let mut registers = self.registers;
        let mut instructions = Vec::new();
        let mut product = vec![None; self.inputs.len()];
        for (k, _) in factored.iter().enumerate().filter(|(_, f)| **f) {
            let (row, col) = (inputs.len() as u16, inputs.len() as u16 + 1);
            inputs.extend([self.inputs[k], self.inputs[k]]);
            let dst = registers as u16;
            registers += 1;
            instructions.push(Instruction {
                op: Op::Binary(BinOp::Mul),
                dst,
                args: [Operand::Input(row), Operand::Input(col), Operand::Const(0.0)],
            });
            product[k] = Some(Operand::Reg(dst));
        }
        let read = |o: Operand| match o {
            Operand::Input(k) => product[k as usize].unwrap_or(o),
            o => o,
        };
        instructions.extend(self.instructions.iter().map(|ins| Instruction {
            args: ins.args.map(read),
            ..ins.clone()
        }));
        let mut program = Program {
            inputs,
            outputs: self.outputs.iter().map(|&(v, o)| (v, read(o))).collect(),
            instructions,
            registers,
            whole: Code::default(),
            plans: Plans::default(),
            factored: Factored::default(),
        };
        program.whole = program.whole_code();
        program
    }

    /// The plan for inputs varying as `inputs` says, over elements varying as `element` (per synapse
    /// for a matrix, per row or per column for a matrix of one column or one row, once for a single
    /// element), built on first use.
    fn plan(&self, inputs: Vec<Granularity>, element: Granularity) -> Arc<Plan> {
        let key = (inputs, element);
        let mut plans = self.plans.0.lock().expect("not poisoned");
        if let Some((_, plan)) = plans.iter().find(|(k, _)| *k == key) {
            return plan.clone();
        }
        let plan = Arc::new(Plan::new(self, &key.0, element));
        plans.push((key, plan.clone()));
        plan
    }

    /// The flat reference: the whole program over `len` elements, interpreted, with nothing hoisted.
    /// Arguments as for [`Program::run`].
    pub fn interpret(
        &self,
        len: usize,
        inputs: &[&[f32]],
        outputs: &mut [&mut [f32]],
        randn: &mut dyn FnMut(&mut [f32]),
        scratch: &mut Scratch,
    ) {
        assert_eq!(inputs.len(), self.inputs.len(), "one slice per input");
        assert_eq!(outputs.len(), self.outputs.len(), "one slice per output");
        let count = self.randn_count();
        draw(count, len, randn, &mut scratch.draws);
        let slots: Vec<&[f32]> = inputs
            .iter()
            .copied()
            .chain(scratch.draws[..count].iter().map(|d| &d[..len]))
            .collect();
        self.whole.interpret(len, &slots, outputs, &mut scratch.registers);
    }

    /// Whether a run so far used a native kernel (for tests: a kernel that failed to build would
    /// otherwise pass every comparison with the interpreter silently).
    pub fn ran_natively(&self) -> bool {
        self.kernels().any(|k| k.is_ok())
    }

    /// Why a native kernel could not be built for some part, if one could not.
    pub fn native_error(&self) -> Option<String> {
        self.kernels().find_map(|k| k.err())
    }

    /// Every kernel built or attempted so far, derived programs' included.
    fn kernels(&self) -> impl Iterator<Item = Result<(), String>> {
        let plans = self.plans.0.lock().expect("not poisoned");
        let mut built: Vec<Result<(), String>> = plans
            .iter()
            .flat_map(|(_, plan)| &plan.parts)
            .filter_map(|part| part.kernel.get())
            .map(|k| k.as_ref().map(|_| ()).map_err(Clone::clone))
            .collect();
        let derived: Vec<Arc<Program>> = self
            .factored
            .0
            .lock()
            .expect("not poisoned")
            .iter()
            .map(|(_, p)| p.clone())
            .collect();
        built.extend(derived.iter().flat_map(|p| p.kernels()));
        built.into_iter()
    }

    /// Builds the native kernels for a matrix whose inputs vary as `inputs` says, as a run would, and
    /// says why they cannot be built, if they cannot (what `synaptogen check` reports).
    /// Returns the code generators of its parts' kernels, in part order (coarsest first).
    pub fn prepare_native(&self, inputs: &[Granularity]) -> Result<Vec<Backend>, String> {
        Ok(self.native_parts(inputs)?.into_iter().map(|(b, _)| b).collect())
    }

    /// [`prepare_native`](Self::prepare_native) with, for each part Cranelift's kernel runs where
    /// AVX-512 could have, why the AVX-512 code generator refused it.
    pub fn native_parts(&self, inputs: &[Granularity]) -> Result<Vec<(Backend, Option<String>)>, String> {
        let plan = self.plan(inputs.to_vec(), Granularity::PerSynapse);
        plan.parts
            .iter()
            .map(|part| match part.kernel() {
                Ok(k) => Ok((k.backend(), k.not_avx512().map(str::to_string))),
                Err(why) => Err(why.clone()),
            })
            .collect()
    }

    /// How many instructions run per synapse, per row, per column and once, for inputs varying as
    /// `inputs` says over a matrix (what `synaptogen check` prints).
    pub fn split(&self, inputs: &[Granularity]) -> [usize; 4] {
        let mut counts = [0; 4];
        for (_, g) in self.granularities(inputs, Granularity::PerSynapse) {
            counts[g as usize] += 1;
        }
        counts
    }

    /// Each instruction's index with its granularity, for inputs varying as `inputs` says and
    /// elements as `element`: the finest of its operands'; a `randn()` draw varies per element.
    fn granularities(&self, inputs: &[Granularity], element: Granularity) -> Vec<(usize, Granularity)> {
        let mut of = vec![Granularity::Once; self.registers];
        for ins in &self.instructions {
            of[ins.dst as usize] = if ins.op == Op::Call(Func::Randn) {
                element
            } else {
                ins.args.iter().fold(Granularity::Once, |g, a| {
                    g.join(match *a {
                        Operand::Reg(r) => of[r as usize],
                        Operand::Input(i) => inputs[i as usize],
                        Operand::Const(_) => Granularity::Once,
                    })
                })
            };
        }
        self.instructions
            .iter()
            .enumerate()
            .map(|(i, ins)| (i, of[ins.dst as usize]))
            .collect()
    }

    /// Evaluates the program on one element with every input a scalar (for tests and probes).
    pub fn eval_scalar(&self, inputs: &[f32]) -> Vec<f32> {
        let slices: Vec<&[f32]> = inputs.iter().map(std::slice::from_ref).collect();
        let mut out = vec![0.0f32; self.outputs.len()];
        {
            let mut outs: Vec<&mut [f32]> = out.iter_mut().map(std::slice::from_mut).collect();
            self.run(1, &slices, &mut outs, &mut |_| {}, &mut Scratch::default());
        }
        out
    }
}

impl Plan {
    /// Splits `program` for inputs varying as `inputs` says and elements as `element`.
    fn new(program: &Program, inputs: &[Granularity], element: Granularity) -> Plan {
        let granularity = program.granularities(inputs, element);
        let mut of = vec![Granularity::Once; program.registers];
        let mut draw = vec![None; program.registers];
        let mut draws = 0u16;
        for &(i, g) in &granularity {
            let ins = &program.instructions[i];
            of[ins.dst as usize] = g;
            if ins.op == Op::Call(Func::Randn) {
                draw[ins.dst as usize] = Some(draws);
                draws += 1;
            }
        }
        // A register is exported when an instruction of another granularity, or an output (written by
        // the last part), reads it.
        let mut exported = vec![false; program.registers];
        for ins in &program.instructions {
            for a in ins.args {
                if let Operand::Reg(r) = a
                    && of[r as usize] != of[ins.dst as usize]
                {
                    exported[r as usize] = true;
                }
            }
        }
        for (_, o) in &program.outputs {
            if let Operand::Reg(r) = *o
                && of[r as usize] != element
            {
                exported[r as usize] = true;
            }
        }
        let source_granularity = |s: Source| match s {
            Source::Input(i) => inputs[i as usize],
            Source::Value(r) => of[r as usize],
            Source::Draw(_) => element,
        };
        let mut parts = Vec::new();
        for level in [
            Granularity::Once,
            Granularity::PerRow,
            Granularity::PerColumn,
            Granularity::PerSynapse,
        ] {
            if !level.within(element) {
                continue;
            }
            let last = level == element;
            let mut code = Code::default();
            let mut sources: Vec<(Source, Granularity)> = Vec::new();
            let mut local = vec![None; program.registers];
            let mut operand = |o: Operand, local: &[Option<u16>]| -> Operand {
                let source = match o {
                    Operand::Const(_) => return o,
                    Operand::Input(i) => Source::Input(i),
                    Operand::Reg(r) => match (draw[r as usize], local[r as usize]) {
                        (Some(k), _) => Source::Draw(k),
                        (None, Some(l)) => return Operand::Reg(l),
                        (None, None) => Source::Value(r),
                    },
                };
                let slot = match sources.iter().position(|(s, _)| *s == source) {
                    Some(k) => k,
                    None => {
                        sources.push((source, source_granularity(source)));
                        sources.len() - 1
                    }
                };
                Operand::Input(slot as u16)
            };
            for &(i, g) in &granularity {
                let ins = &program.instructions[i];
                if g != level || draw[ins.dst as usize].is_some() {
                    continue;
                }
                let args = ins.args.map(|a| operand(a, &local));
                local[ins.dst as usize] = Some(code.registers as u16);
                code.instructions.push(Instruction {
                    op: ins.op,
                    dst: code.registers as u16,
                    args,
                });
                code.registers += 1;
            }
            let exports: Vec<u16> = if last {
                code.outputs = program.outputs.iter().map(|(_, o)| operand(*o, &local)).collect();
                Vec::new()
            } else {
                let exports: Vec<u16> = (0..program.registers as u16)
                    .filter(|&r| exported[r as usize] && local[r as usize].is_some())
                    .collect();
                code.outputs = exports
                    .iter()
                    .map(|&r| Operand::Reg(local[r as usize].expect("computed here")))
                    .collect();
                exports
            };
            if !last && exports.is_empty() {
                continue;
            }
            code.slots = sources.len();
            parts.push(Part {
                granularity: level,
                code,
                sources,
                exports,
                kernel: OnceLock::new(),
            });
        }
        Plan {
            parts,
            draws: draws as usize,
        }
    }
}

impl Part {
    /// The part's kernel, built on first use. A slot is one value for a whole run of the kernel over
    /// a row: a value computed once, or, in the per-synapse part, the row's value.
    fn kernel(&self) -> &Result<Kernel, String> {
        self.kernel.get_or_init(|| {
            let scalar: Vec<bool> = self
                .sources
                .iter()
                .map(|&(_, g)| {
                    g == Granularity::Once
                        || (g == Granularity::PerRow && self.granularity == Granularity::PerSynapse)
                })
                .collect();
            Kernel::compile(&self.code, &scalar)
        })
    }

    /// Runs the part: over every value of its granularity, reading `sources` (one per slot) and
    /// writing `outputs` (its exports, or the program's outputs for the last part). The per-synapse
    /// part runs row by row.
    fn run(
        &self,
        rows: usize,
        cols: usize,
        sources: &[Input],
        outputs: &mut [&mut [f32]],
        registers: &mut Vec<Vec<f32>>,
        native: bool,
    ) {
        // Parts coarser than a synapse are one row of their values.
        let along: Vec<Input>;
        let (rows, cols, sources) = if self.granularity == Granularity::PerSynapse {
            (rows, cols, sources)
        } else {
            let extent = self.granularity.extent(rows, cols);
            along = sources
                .iter()
                .map(|s| match *s {
                    Input::Scalar(x) => Input::Scalar(x),
                    Input::PerRow(v) | Input::PerColumn(v) | Input::PerSynapse(v) => {
                        Input::PerColumn(&v[..extent])
                    }
                    Input::Outer(..) => unreachable!("multiplied out by Program::run_planned"),
                    Input::Blocks(_) => unreachable!("a per-synapse input is read by per-synapse parts"),
                })
                .collect();
            (1, extent, &along[..])
        };
        if native && rows * cols >= NATIVE_FROM {
            // A kernel that cannot be built leaves the interpreter to run the part (same bits,
            // slower); the reason stays for `Program::native_error`.
            if let Ok(kernel) = self.kernel() {
                kernel.run_rows(rows, cols, sources, outputs);
                return;
            }
        }
        for r in 0..rows {
            let slots: Vec<&[f32]> = sources.iter().map(|s| s.row(r, cols)).collect();
            let mut row: Vec<&mut [f32]> = outputs
                .iter_mut()
                .map(|o| &mut o[r * cols..(r + 1) * cols])
                .collect();
            self.code.interpret(cols, &slots, &mut row, registers);
        }
    }

    /// [`Part::run`] of the per-synapse part a block of rows at a time, each [`Input::Blocks`]
    /// source's rows computed into `blocks` just before the block runs (elementwise, so the bits of
    /// running the whole matrix at once).
    #[allow(clippy::too_many_arguments)]
    fn run_by_blocks(
        &self,
        rows: usize,
        cols: usize,
        sources: &[Input],
        outputs: &mut [&mut [f32]],
        registers: &mut Vec<Vec<f32>>,
        native: bool,
        (blocks, scratch): (&mut Vec<Vec<f32>>, &mut Vec<f32>),
    ) {
        let block_rows = sources
            .iter()
            .find_map(|s| match s {
                Input::Blocks(b) => Some(b.block_rows()),
                _ => None,
            })
            .expect("a source read by blocks");
        assert!(
            sources.iter().all(|s| match s {
                Input::Blocks(b) => b.block_rows() == block_rows,
                _ => true,
            }),
            "inputs read by blocks share their block size"
        );
        blocks.resize_with(sources.len(), Vec::new);
        for start in (0..rows).step_by(block_rows) {
            let count = block_rows.min(rows - start);
            for (s, block) in sources.iter().zip(blocks.iter_mut()) {
                if let Input::Blocks(b) = s {
                    block.resize(count * cols, 0.0);
                    b.rows_into(start, block, scratch);
                }
            }
            let sources: Vec<Input> = sources
                .iter()
                .zip(blocks.iter())
                .map(|(s, block)| s.rows(start, count, cols, block))
                .collect();
            let mut outputs: Vec<&mut [f32]> = outputs
                .iter_mut()
                .map(|o| &mut o[start * cols..(start + count) * cols])
                .collect();
            self.run(count, cols, &sources, &mut outputs, registers, native);
        }
    }
}

impl Code {
    /// Runs the code over `len` elements, every instruction in turn over each chunk. `slots[k]` has
    /// `len` values, or 1 shared by every element; `outputs[k]` receives `len` values. `registers` is
    /// reusable scratch.
    pub fn interpret(
        &self,
        len: usize,
        slots: &[&[f32]],
        outputs: &mut [&mut [f32]],
        registers: &mut Vec<Vec<f32>>,
    ) {
        assert_eq!(slots.len(), self.slots, "one slice per slot");
        assert_eq!(outputs.len(), self.outputs.len(), "one slice per output");
        registers.resize_with(self.registers.max(registers.len()), Vec::new);
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
                                let s = slots[i as usize];
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
                    if [a, b, c].iter().all(|s| matches!(s, Src::Scalar(_))) {
                        let mut one = [0.0f32];
                        execute(instruction.op, &mut one, a, b, c);
                        uniform[dst_index] = Some(one[0]);
                    } else {
                        execute(instruction.op, &mut dst[..n], a, b, c);
                    }
                }
                registers[dst_index] = dst;
            }
            for (operand, out) in self.outputs.iter().zip(outputs.iter_mut()) {
                let out = &mut out[start..start + n];
                match *operand {
                    Operand::Reg(r) => match uniform[r as usize] {
                        Some(x) => out.fill(x),
                        None => out.copy_from_slice(&registers[r as usize][..n]),
                    },
                    Operand::Input(i) => {
                        let s = slots[i as usize];
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
}

fn execute(op: Op, dst: &mut [f32], a: Src, b: Src, c: Src) {
    match op {
        Op::Neg => unary(dst, a, |x| -x),
        Op::Not => unary(dst, a, |x| flag(!truth(x))),
        Op::Binary(op) => match op {
            BinOp::Add => binary(dst, a, b, |x, y| x + y),
            BinOp::Sub => binary(dst, a, b, |x, y| x - y),
            BinOp::Mul => binary(dst, a, b, |x, y| x * y),
            BinOp::Div => binary(dst, a, b, |x, y| x / y),
            BinOp::Pow => binary(dst, a, b, math::pow),
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
            Func::Exp => unary(dst, a, math::exp),
            Func::Ln => unary(dst, a, math::ln),
            Func::Tanh => unary(dst, a, math::tanh),
            Func::Sigmoid => unary(dst, a, math::sigmoid),
            Func::Relu => unary(dst, a, |x| maximum(x, 0.0)),
            Func::Step => unary(dst, a, |x| flag(x > 0.0)),
            Func::Min => binary(dst, a, b, minimum),
            Func::Max => binary(dst, a, b, maximum),
            Func::Clamp => ternary(dst, a, b, c, |x, lo, hi| minimum(maximum(x, lo), hi)),
            Func::Randn => unreachable!("randn() draws arrive in slots"),
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
            let name = match ins.op {
                Op::Binary(op) => format!("{op:?}").to_lowercase(),
                Op::Neg => "neg".into(),
                Op::Not => "not".into(),
                Op::Call(func) => func.name().to_string(),
                Op::Select => "select".into(),
            };
            let args: Vec<String> = ins.args[..ins.op.arity()].iter().map(show).collect();
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
            &mut Scratch::default(),
        );
        for e in [0, 1, 4999, 5000, 9999, 14_999] {
            let want = w[e] + 10.0 * post[e / cols] + 100.0 * pre[e % cols] + 0.5;
            assert_eq!(dw[e], want, "element {e}");
        }
    }
}
