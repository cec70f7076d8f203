//! Native kernels for rule programs: one fused SIMD loop per program, generated with Cranelift (or,
//! on a CPU with AVX-512, for code that fits its 32 vector registers, by `avx512.rs` with this
//! module's signature).
//!
//! Why: the interpreter in `program.rs` makes one pass over the chunk per instruction, so a
//! 16-instruction rule writes and rereads 16 registers per synapse, while a hand-written loop keeps
//! every intermediate in a CPU register; that costs the interpreter about 4× (`benches/rule_vm.rs`).
//! A kernel is that hand-written loop, written for the rule at run time: four synapses per iteration
//! (f32x4), one vector instruction per program instruction, [`UNROLL`] vectors per trip through the
//! loop. `exp`, `ln`, `tanh`, `sigmoid` and `**` are `math.rs`'s functions written out in vector
//! instructions over two f64x2 halves, the same operations in the same order (`**` goes lane by
//! lane, through `math::pow` itself, only in vectors holding a zero, infinite or NaN operand, a base
//! of 1 or a negative base to a fractional power).
//! Every other operation is exact in IEEE arithmetic or spelled exactly as in `ir.rs` (`maximum`,
//! `minimum`, `sign`), so a kernel's output is the interpreter's bit for bit (property-tested in
//! `tests/rule_oracle.rs`, which also runs every 4,099th f32 through each function), and the
//! interpreter stays the reference and the fallback wherever no kernel can be built.
//!
//! A kernel runs one part of a program's split by granularity (`program.rs`): the per-synapse part is
//! called once per row of the weight matrix, with the row's values as scalars and the columns' values
//! as slices.
//!
//! Invariants: the generated code reads `n` floats from every per-element slot and one from every
//! scalar slot, and writes `n` floats to every output, through raw pointers, with `n` a multiple of
//! four. [`Kernel::run_rows`] is its only caller and checks every length before the calls; the
//! remainder of a row runs through zero-padded four-element copies.

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::types::{F32, F32X4, F64X2, I8X16, I32, I32X4, I64, I64X2};
use cranelift_codegen::ir::{
    AbiParam, BlockArg, ConstantData, Endianness, Function, InstBuilder, MemFlagsData, Signature, Type,
    UserFuncName, Value,
};
use cranelift_codegen::isa::{OwnedTargetIsa, TargetIsa};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::{Context, control::ControlPlane};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use super::avx512;
use super::ir::{BinOp, Func};
use super::math;
use super::program::{Code, Input, Op, Operand};

/// Floats per vector.
const LANES: usize = 4;

/// Vectors per trip through a kernel's main loop.
const UNROLL: usize = 4;

type Entry = unsafe extern "C" fn(*const *const f32, *const *mut f32, usize);

/// Code compiled to machine code for one arrangement of scalar and per-element slots.
pub struct Kernel {
    /// Keeps the code mapped; unmapped when the kernel is dropped.
    _code: memmap2::Mmap,
    entry: Entry,
    /// Per input slot: read as one value broadcast to every element of a row.
    scalar: Vec<bool>,
    outputs: usize,
    /// Which code generator wrote it.
    backend: Backend,
    /// Why `avx512.rs` did not write it, where the CPU has AVX-512 and it is allowed.
    not_avx512: Option<String>,
}

/// The code generator of a [`Kernel`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `avx512.rs`: sixteen lanes, on a CPU with AVX-512, for code that fits its registers.
    Avx512,
    /// This module: four lanes, every operation.
    Cranelift,
}

impl Backend {
    /// How `synaptogen check` names it.
    pub fn describe(self) -> &'static str {
        match self {
            Backend::Avx512 => "AVX-512, 16 lanes",
            Backend::Cranelift => "Cranelift, 4 lanes",
        }
    }
}

/// Whether AVX-512 kernels may be generated: off, every kernel is Cranelift's (to compare the two, or
/// for output that does not depend on the CPU). The CLI sets it from `SYNAPTOGEN_JIT=cranelift`.
static WIDE: AtomicBool = AtomicBool::new(true);

/// Allows or forbids AVX-512 kernels for the whole process ([`WIDE`]); the same bits either way.
pub fn set_avx512(enabled: bool) {
    WIDE.store(enabled, Ordering::Relaxed);
}

/// Whether AVX-512 kernels are allowed and the CPU has AVX-512 (`avx512::assemble` then says whether
/// it computes every operation of a given code).
fn avx512_here() -> bool {
    #[cfg(target_arch = "x86_64")]
    let cpu = std::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    let cpu = false;
    WIDE.load(Ordering::Relaxed) && cpu
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Kernel({} inputs, {} outputs)",
            self.scalar.len(),
            self.outputs
        )
    }
}

/// The host's instruction set, detected once; `None` where Cranelift cannot target it.
fn host() -> Option<&'static OwnedTargetIsa> {
    static HOST: OnceLock<Option<OwnedTargetIsa>> = OnceLock::new();
    HOST.get_or_init(|| {
        if !cfg!(target_arch = "x86_64") {
            // Elsewhere freshly written code also needs an instruction-cache flush, which this module
            // does not do; the interpreter serves those hosts.
            return None;
        }
        let mut flags = settings::builder();
        flags.set("opt_level", "speed").ok()?;
        cranelift_native::builder()
            .ok()?
            .finish(settings::Flags::new(flags))
            .ok()
    })
    .as_ref()
}

impl Kernel {
    /// Compiles `code` for slots laid out as `scalar` says (one flag per slot: one value for a whole
    /// row, or one per element): `avx512.rs`'s kernel where the CPU has AVX-512 and the code fits its
    /// 32 vector registers, else Cranelift's. Errors name what stopped it; the caller then interprets.
    pub fn compile(code: &Code, scalar: &[bool]) -> Result<Kernel, String> {
        assert_eq!(scalar.len(), code.slots, "one flag per slot");
        // `assemble` refuses code holding more values at once than there are registers (and would
        // refuse code it failed to encode); Cranelift's kernel serves that, and keeps the reason.
        let mut not_avx512 = None;
        if avx512_here() {
            match avx512::assemble(code, scalar) {
                Ok(bytes) => return Kernel::map(bytes, code, scalar, Backend::Avx512),
                Err(why) => not_avx512 = Some(why),
            }
        }
        let mut kernel = Kernel::compile_cranelift(code, scalar)?;
        kernel.not_avx512 = not_avx512;
        Ok(kernel)
    }

    /// Cranelift's kernel, whatever the CPU.
    fn compile_cranelift(code: &Code, scalar: &[bool]) -> Result<Kernel, String> {
        assert_eq!(scalar.len(), code.slots, "one flag per slot");
        let isa = host().ok_or("no native code generator for this CPU")?;
        let function = generate(code, scalar, &**isa);
        let mut context = Context::for_function(function);
        let compiled = context
            .compile(&**isa, &mut ControlPlane::default())
            .map_err(|e| format!("{:?}", e.inner))?;
        if !compiled.buffer.relocs().is_empty() {
            return Err("the kernel needs relocations".into());
        }
        Kernel::map(compiled.code_buffer().to_vec(), code, scalar, Backend::Cranelift)
    }

    /// Maps `bytes`, a complete position-independent function of signature [`Entry`] for `code`'s
    /// slots laid out as `scalar` says, with no relocations left to apply, as executable code.
    fn map(bytes: Vec<u8>, code: &Code, scalar: &[bool], backend: Backend) -> Result<Kernel, String> {
        let mut map = memmap2::MmapMut::map_anon(bytes.len()).map_err(|e| e.to_string())?;
        map.copy_from_slice(&bytes);
        let mapped = map.make_exec().map_err(|e| e.to_string())?;
        // SAFETY: the mapping holds a complete function of signature `Entry` (the one both code
        // generators write), for this host, with no relocations left to apply, and it lives as long
        // as `mapped`, which `self` owns.
        let entry = unsafe { std::mem::transmute::<*const u8, Entry>(mapped.as_ptr()) };
        Ok(Kernel {
            _code: mapped,
            entry,
            scalar: scalar.to_vec(),
            outputs: code.outputs.len(),
            backend,
            not_avx512: None,
        })
    }

    /// Which code generator wrote it.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Why the AVX-512 code generator did not write it, where the CPU has AVX-512 and
    /// `SYNAPTOGEN_JIT=cranelift` is not set (`synaptogen check` prints it).
    pub fn not_avx512(&self) -> Option<&str> {
        self.not_avx512.as_deref()
    }

    /// Runs over a `rows × cols` matrix, one call of the generated loop per row: `slots[k]` is
    /// `Scalar` or `PerRow` where the kernel was compiled with slot `k` scalar, `PerColumn` or
    /// `PerSynapse` otherwise; each output receives `rows × cols` values, row-major.
    pub fn run_rows(&self, rows: usize, cols: usize, slots: &[Input], outputs: &mut [&mut [f32]]) {
        assert_eq!(slots.len(), self.scalar.len(), "one input per slot");
        assert_eq!(outputs.len(), self.outputs, "one slice per output");
        for (slot, &scalar) in slots.iter().zip(&self.scalar) {
            let fits = match slot {
                Input::Scalar(_) => scalar,
                Input::PerRow(v) => scalar && v.len() >= rows,
                Input::PerColumn(v) => !scalar && v.len() >= cols,
                Input::PerSynapse(v) => !scalar && v.len() >= rows * cols,
                // `Program::run_matrix` multiplies the factors out before any kernel runs.
                Input::Outer(..) | Input::Blocks(_) => false,
            };
            assert!(fits, "a slot laid out otherwise than the kernel reads it");
        }
        assert!(
            outputs.iter().all(|o| o.len() >= rows * cols),
            "output shorter than the kernel writes"
        );
        let body = cols - cols % LANES;
        let rest = cols - body;
        let mut ins: Vec<*const f32> = vec![std::ptr::null(); slots.len()];
        let mut outs: Vec<*mut f32> = vec![std::ptr::null_mut(); outputs.len()];
        let mut padded = vec![[0.0f32; LANES]; if rest > 0 { slots.len() } else { 0 }];
        let mut results = vec![[0.0f32; LANES]; if rest > 0 { outputs.len() } else { 0 }];
        for r in 0..rows {
            let start = r * cols;
            if body > 0 {
                for (p, slot) in ins.iter_mut().zip(slots) {
                    *p = match slot {
                        Input::Scalar(x) => x as *const f32,
                        Input::PerRow(v) => v[r..].as_ptr(),
                        Input::PerColumn(v) => v.as_ptr(),
                        Input::PerSynapse(v) => v[start..].as_ptr(),
                        Input::Outer(..) | Input::Blocks(_) => unreachable!("refused above"),
                    };
                }
                for (p, out) in outs.iter_mut().zip(outputs.iter_mut()) {
                    *p = out[start..].as_mut_ptr();
                }
                // SAFETY: every per-element slot holds at least `body` floats from its pointer and every
                // scalar slot one (asserted above: `r < rows`, `body ≤ cols`); every output `body` floats
                // from `start`; `body` is a multiple of `LANES`; the pointer arrays have one entry per
                // slot and per output, as the code was generated for.
                unsafe { (self.entry)(ins.as_ptr(), outs.as_ptr(), body) };
            }
            if rest > 0 {
                // The row's last `rest` elements, through zero-padded copies of one vector.
                for ((lanes, slot), &scalar) in padded.iter_mut().zip(slots).zip(&self.scalar) {
                    *lanes = [0.0; LANES];
                    match slot {
                        Input::Scalar(x) => lanes[0] = *x,
                        Input::PerRow(v) => lanes[0] = v[r],
                        Input::PerColumn(v) => lanes[..rest].copy_from_slice(&v[body..cols]),
                        Input::PerSynapse(v) => lanes[..rest].copy_from_slice(&v[start + body..start + cols]),
                        Input::Outer(..) | Input::Blocks(_) => unreachable!("refused above"),
                    }
                    debug_assert_eq!(scalar, matches!(slot, Input::Scalar(_) | Input::PerRow(_)));
                }
                for (p, lanes) in ins.iter_mut().zip(&padded) {
                    *p = lanes.as_ptr();
                }
                for (p, lanes) in outs.iter_mut().zip(results.iter_mut()) {
                    *p = lanes.as_mut_ptr();
                }
                // SAFETY: as above, over `LANES` elements of the padded copies.
                unsafe { (self.entry)(ins.as_ptr(), outs.as_ptr(), LANES) };
                for (out, lanes) in outputs.iter_mut().zip(&results) {
                    out[start + body..start + cols].copy_from_slice(&lanes[..rest]);
                }
            }
        }
    }
}

/// `**` for the lanes outside its vector path (zeros, infinities, NaN, `x = 1`, `y = 0`, a negative
/// base to a fractional power): the interpreter's own function.
extern "C" fn call_pow(x: f32, y: f32) -> f32 {
    math::pow(x, y)
}

/// Writes the kernel's IR: `fn(inputs, outputs, n)` looping over byte offsets 0, 16, … < 4n.
fn generate(code: &Code, scalar: &[bool], isa: &dyn TargetIsa) -> Function {
    let pointer = isa.pointer_type();
    let mut signature = Signature::new(isa.default_call_conv());
    signature.params = vec![AbiParam::new(pointer); 3];
    let mut function = Function::with_name_signature(UserFuncName::user(0, 0), signature);
    let mut context = FunctionBuilderContext::new();
    let mut b = FunctionBuilder::new(&mut function, &mut context);
    // Slices promise only 4-byte alignment, so the accesses carry no alignment flag.
    let memory = MemFlagsData::new().with_notrap();

    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    let (inputs, outputs, n) = {
        let p = b.block_params(entry);
        (p[0], p[1], p[2])
    };
    let width = pointer.bytes() as i32;
    let input_base: Vec<Value> = (0..scalar.len())
        .map(|k| b.ins().load(pointer, memory, inputs, k as i32 * width))
        .collect();
    let output_base: Vec<Value> = (0..code.outputs.len())
        .map(|k| b.ins().load(pointer, memory, outputs, k as i32 * width))
        .collect();
    let broadcast: Vec<Option<Value>> = scalar
        .iter()
        .zip(&input_base)
        .map(|(&is_scalar, &base)| {
            is_scalar.then(|| {
                let x = b.ins().load(F32, memory, base, 0);
                b.ins().splat(F32X4, x)
            })
        })
        .collect();
    // UNROLL vectors per trip through the loop (fewer compares, branches and offset updates per
    // synapse), then one vector per trip for the rest.
    let end = b.ins().ishl_imm_u(n, 2);
    let vector = (LANES * 4) as i64;
    let header = b.create_block();
    let offset = b.append_block_param(header, pointer);
    let body = b.create_block();
    let rest = b.create_block();
    let rest_offset = b.append_block_param(rest, pointer);
    let rest_body = b.create_block();
    let exit = b.create_block();
    let bases = (&input_base[..], &output_base[..], &broadcast[..]);
    let zero = b.ins().iconst(pointer, 0);
    b.ins().jump(header, &[BlockArg::Value(zero)]);

    b.switch_to_block(header);
    let last = b.ins().iadd_imm_u(offset, (UNROLL as i64 - 1) * vector);
    let full = b.ins().icmp(IntCC::UnsignedLessThan, last, end);
    b.ins().brif(full, body, &[], rest, &[BlockArg::Value(offset)]);

    b.switch_to_block(body);
    for k in 0..UNROLL {
        let at = if k == 0 {
            offset
        } else {
            b.ins().iadd_imm_u(offset, k as i64 * vector)
        };
        emit_vector(&mut b, code, scalar, bases, at, memory, pointer);
    }
    let next = b.ins().iadd_imm_u(offset, UNROLL as i64 * vector);
    b.ins().jump(header, &[BlockArg::Value(next)]);

    b.switch_to_block(rest);
    let more = b.ins().icmp(IntCC::UnsignedLessThan, rest_offset, end);
    b.ins().brif(more, rest_body, &[], exit, &[]);

    b.switch_to_block(rest_body);
    emit_vector(&mut b, code, scalar, bases, rest_offset, memory, pointer);
    let next = b.ins().iadd_imm_u(rest_offset, vector);
    b.ins().jump(rest, &[BlockArg::Value(next)]);

    b.switch_to_block(exit);
    b.ins().return_(&[]);
    b.seal_all_blocks();
    b.finalize(isa.frontend_config());
    function
}

/// Emits the code for one vector of elements, `offset` bytes past each per-element slot's and each
/// output's base address (`bases`: the inputs', the outputs', and the scalar slots' broadcasts).
fn emit_vector(
    b: &mut FunctionBuilder,
    code: &Code,
    scalar: &[bool],
    (input_base, output_base, broadcast): (&[Value], &[Value], &[Option<Value>]),
    offset: Value,
    memory: MemFlagsData,
    pointer: Type,
) {
    let mut emit = Emitter {
        b,
        pointer,
        memory,
        offset,
        input_base,
        broadcast,
        loaded: vec![None; scalar.len()],
        registers: vec![None; code.registers],
    };
    for instruction in &code.instructions {
        let args = instruction.args.map(|a| emit.operand(a));
        let value = match (instruction.op, instruction.args[1]) {
            // `x ** 2.0` and the like: the multiplications for that exponent, nothing else.
            (Op::Binary(BinOp::Pow), Operand::Const(y)) => emit.pow(args[0], args[1], Some(y)),
            _ => emit.operation(instruction.op, args),
        };
        emit.registers[instruction.dst as usize] = Some(value);
    }
    for (k, operand) in code.outputs.iter().enumerate() {
        let value = emit.operand(*operand);
        let address = emit.b.ins().iadd(output_base[k], offset);
        emit.b.ins().store(memory, value, address, 0);
    }
}

/// Emits one vector's code.
struct Emitter<'a, 'b> {
    b: &'a mut FunctionBuilder<'b>,
    pointer: cranelift_codegen::ir::Type,
    memory: MemFlagsData,
    offset: Value,
    input_base: &'a [Value],
    broadcast: &'a [Option<Value>],
    /// Per-element inputs already loaded in this iteration.
    loaded: Vec<Option<Value>>,
    registers: Vec<Option<Value>>,
}

impl Emitter<'_, '_> {
    fn input(&mut self, slot: usize) -> Value {
        if let Some(v) = self.broadcast[slot].or(self.loaded[slot]) {
            return v;
        }
        let address = self.b.ins().iadd(self.input_base[slot], self.offset);
        let v = self.b.ins().load(F32X4, self.memory, address, 0);
        self.loaded[slot] = Some(v);
        v
    }

    fn constant(&mut self, x: f32) -> Value {
        let c = self.b.ins().f32const(x);
        self.b.ins().splat(F32X4, c)
    }

    fn operand(&mut self, o: Operand) -> Value {
        match o {
            Operand::Reg(r) => self.registers[r as usize].expect("SSA: registers are written before read"),
            Operand::Input(i) => self.input(i as usize),
            Operand::Const(x) => self.constant(x),
        }
    }

    /// 1.0 where the lane mask is set, 0.0 elsewhere.
    fn flag(&mut self, mask: Value) -> Value {
        let one = self.constant(1.0);
        let bits = self.float_bits(mask);
        self.b.ins().band(bits, one)
    }

    /// Reinterprets an integer lane mask as floats, for bitwise selects.
    fn float_bits(&mut self, mask: Value) -> Value {
        let lanes = MemFlagsData::new().with_endianness(Endianness::Little);
        self.b.ins().bitcast(F32X4, lanes, mask)
    }

    fn select(&mut self, mask: Value, yes: Value, no: Value) -> Value {
        let mask = self.float_bits(mask);
        self.b.ins().bitselect(mask, yes, no)
    }

    /// Lanes where `x ≠ 0` (NaN counts as true, as `truth` in the interpreter).
    fn truth(&mut self, x: Value) -> Value {
        let zero = self.constant(0.0);
        self.b.ins().fcmp(FloatCC::NotEqual, x, zero)
    }

    /// `ir::maximum` lane by lane: `y` where `y > x` or `x` is NaN, else `x`.
    fn maximum(&mut self, x: Value, y: Value) -> Value {
        let greater = self.b.ins().fcmp(FloatCC::GreaterThan, y, x);
        let nan = self.b.ins().fcmp(FloatCC::Unordered, x, x);
        let take = self.b.ins().bor(greater, nan);
        self.select(take, y, x)
    }

    /// `ir::minimum` lane by lane.
    fn minimum(&mut self, x: Value, y: Value) -> Value {
        let less = self.b.ins().fcmp(FloatCC::LessThan, y, x);
        let nan = self.b.ins().fcmp(FloatCC::Unordered, x, x);
        let take = self.b.ins().bor(less, nan);
        self.select(take, y, x)
    }

    fn compare(&mut self, cc: FloatCC, x: Value, y: Value) -> Value {
        let mask = self.b.ins().fcmp(cc, x, y);
        self.flag(mask)
    }

    /// Calls `f` on each lane (`args` are vectors) and gathers the results into a vector.
    fn per_lane(&mut self, f: *const (), args: &[Value]) -> Value {
        let mut signature = Signature::new(self.b.func.signature.call_conv);
        signature.params = vec![AbiParam::new(F32); args.len()];
        signature.returns = vec![AbiParam::new(F32)];
        let signature = self.b.import_signature(signature);
        let callee = self.b.ins().iconst(self.pointer, f as usize as i64);
        let mut result = None;
        for lane in 0..LANES as u8 {
            let scalars: Vec<Value> = args.iter().map(|&a| self.b.ins().extractlane(a, lane)).collect();
            let call = self.b.ins().call_indirect(signature, callee, &scalars);
            let r = self.b.inst_results(call)[0];
            result = Some(match result {
                None => self.b.ins().splat(F32X4, r),
                Some(v) => self.b.ins().insertlane(v, r, lane),
            });
        }
        result.expect("LANES > 0")
    }

    fn operation(&mut self, op: Op, [a, b, c]: [Value; 3]) -> Value {
        match op {
            Op::Neg => self.b.ins().fneg(a),
            Op::Not => {
                let zero = self.constant(0.0);
                self.compare(FloatCC::Equal, a, zero)
            }
            Op::Select => {
                let mask = self.truth(a);
                self.select(mask, b, c)
            }
            Op::Binary(op) => match op {
                BinOp::Add => self.b.ins().fadd(a, b),
                BinOp::Sub => self.b.ins().fsub(a, b),
                BinOp::Mul => self.b.ins().fmul(a, b),
                BinOp::Div => self.b.ins().fdiv(a, b),
                BinOp::Pow => self.pow(a, b, None),
                BinOp::Lt => self.compare(FloatCC::LessThan, a, b),
                BinOp::Le => self.compare(FloatCC::LessThanOrEqual, a, b),
                BinOp::Gt => self.compare(FloatCC::GreaterThan, a, b),
                BinOp::Ge => self.compare(FloatCC::GreaterThanOrEqual, a, b),
                BinOp::Eq => self.compare(FloatCC::Equal, a, b),
                BinOp::Ne => self.compare(FloatCC::NotEqual, a, b),
                BinOp::And | BinOp::Or => {
                    let (x, y) = (self.truth(a), self.truth(b));
                    let both = if op == BinOp::And {
                        self.b.ins().band(x, y)
                    } else {
                        self.b.ins().bor(x, y)
                    };
                    self.flag(both)
                }
            },
            Op::Call(f) => match f {
                Func::Abs => self.b.ins().fabs(a),
                Func::Sqrt => self.b.ins().sqrt(a),
                Func::Sign => {
                    let zero = self.constant(0.0);
                    let positive = self.b.ins().fcmp(FloatCC::GreaterThan, a, zero);
                    let negative = self.b.ins().fcmp(FloatCC::LessThan, a, zero);
                    let (one, minus_one) = (self.constant(1.0), self.constant(-1.0));
                    let low = self.select(negative, minus_one, zero);
                    self.select(positive, one, low)
                }
                Func::Step => {
                    let zero = self.constant(0.0);
                    self.compare(FloatCC::GreaterThan, a, zero)
                }
                Func::Relu => {
                    let zero = self.constant(0.0);
                    self.maximum(a, zero)
                }
                Func::Min => self.minimum(a, b),
                Func::Max => self.maximum(a, b),
                Func::Clamp => {
                    let low = self.maximum(a, b);
                    self.minimum(low, c)
                }
                Func::Exp => self.exp(a),
                Func::Ln => self.ln(a),
                Func::Tanh => self.tanh(a),
                Func::Sigmoid => self.sigmoid(a),
                Func::Randn => unreachable!("randn() draws arrive in slots"),
            },
        }
    }
}

/// `math.rs`'s functions in vector registers: each f32x4 is widened to two f64x2, computed with the
/// same operations in the same order as `math.rs`, and rounded back, so every lane equals the scalar
/// function's result bit for bit (property-tested in `tests/rule_oracle.rs`, checked on every f32 in
/// `tests`).
impl Emitter<'_, '_> {
    fn f64s(&mut self, x: f64) -> Value {
        let c = self.b.ins().f64const(x);
        self.b.ins().splat(F64X2, c)
    }

    fn i64s(&mut self, x: u64) -> Value {
        let c = self.b.ins().iconst(I64, x as i64);
        self.b.ins().splat(I64X2, c)
    }

    fn cast(&mut self, to: Type, x: Value) -> Value {
        let lanes = MemFlagsData::new().with_endianness(Endianness::Little);
        self.b.ins().bitcast(to, lanes, x)
    }

    fn shuffle(&mut self, a: Value, b: Value, bytes: [u8; 16]) -> Value {
        let (a, b) = (self.cast(I8X16, a), self.cast(I8X16, b));
        let mask = self.b.func.dfg.immediates.push(ConstantData::from(&bytes[..]));
        let shuffled = self.b.ins().shuffle(a, b, mask);
        self.cast(F32X4, shuffled)
    }

    /// Lanes 0–1 and lanes 2–3 of an f32x4, each widened (exactly) to f64x2.
    fn widen(&mut self, x: Value) -> [Value; 2] {
        let low = self.b.ins().fvpromote_low(x);
        let high_first = self.shuffle(x, x, [8, 9, 10, 11, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15]);
        let high = self.b.ins().fvpromote_low(high_first);
        [low, high]
    }

    /// Two f64x2, each rounded to f32, as one f32x4 (the inverse of [`Emitter::widen`]).
    fn narrow(&mut self, [low, high]: [Value; 2]) -> Value {
        let (low, high) = (self.b.ins().fvdemote(low), self.b.ins().fvdemote(high));
        self.shuffle(
            low,
            high,
            [0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23],
        )
    }

    fn select64(&mut self, mask: Value, yes: Value, no: Value) -> Value {
        let mask = self.cast(F64X2, mask);
        self.b.ins().bitselect(mask, yes, no)
    }

    /// `math::clamp`: compare-and-select, so NaN passes through.
    fn clamp64(&mut self, z: Value, limit: f64) -> Value {
        let (high, low) = (self.f64s(limit), self.f64s(-limit));
        let above = self.b.ins().fcmp(FloatCC::GreaterThan, z, high);
        let z = self.select64(above, high, z);
        let below = self.b.ins().fcmp(FloatCC::LessThan, z, low);
        self.select64(below, low, z)
    }

    /// `math::exp_parts`.
    fn exp_parts64(&mut self, z: Value) -> (Value, Value) {
        let (log2e, shift) = (self.f64s(math::LOG2_E), self.f64s(math::ROUND_SHIFT));
        let scaled = self.b.ins().fmul(z, log2e);
        let shifted = self.b.ins().fadd(scaled, shift);
        let k = self.b.ins().fsub(shifted, shift);
        let (hi, lo) = (self.f64s(math::LN2_HI), self.f64s(math::LN2_LO));
        let k_hi = self.b.ins().fmul(k, hi);
        let r = self.b.ins().fsub(z, k_hi);
        let k_lo = self.b.ins().fmul(k, lo);
        let r = self.b.ins().fsub(r, k_lo);
        let mut p = self.f64s(math::EXP_SERIES[0]);
        for &c in &math::EXP_SERIES[1..] {
            let c = self.f64s(c);
            let pr = self.b.ins().fmul(p, r);
            p = self.b.ins().fadd(pr, c);
        }
        let pr = self.b.ins().fmul(p, r);
        let prr = self.b.ins().fmul(pr, r);
        let q = self.b.ins().fadd(prr, r);
        let bits = self.cast(I64X2, shifted);
        let shift_bits = self.i64s(math::ROUND_SHIFT.to_bits());
        let k_bits = self.b.ins().isub(bits, shift_bits);
        let bias = self.i64s(1023);
        let biased = self.b.ins().iadd(k_bits, bias);
        let exponent = self.b.ins().ishl_imm_u(biased, 52);
        (self.cast(F64X2, exponent), q)
    }

    /// `math::exp_f64`.
    fn exp64(&mut self, z: Value) -> Value {
        let (s, q) = self.exp_parts64(z);
        let sq = self.b.ins().fmul(s, q);
        self.b.ins().fadd(sq, s)
    }

    /// `math::powi_f64`, the base's bit taken by selects.
    fn powi64(&mut self, x: Value, n: Value) -> Value {
        let mut bits = self.b.ins().fabs(n);
        let mut base = x;
        let mut result = self.f64s(1.0);
        let half_constant = self.f64s(0.5);
        for _ in 0..7 {
            let half = self.b.ins().fmul(bits, half_constant);
            let whole = self.b.ins().trunc(half);
            let odd = self.b.ins().fcmp(FloatCC::NotEqual, half, whole);
            let times = self.b.ins().fmul(result, base);
            result = self.select64(odd, times, result);
            base = self.b.ins().fmul(base, base);
            bits = whole;
        }
        let zero = self.f64s(0.0);
        let negative = self.b.ins().fcmp(FloatCC::LessThan, n, zero);
        let one = self.f64s(1.0);
        let reciprocal = self.b.ins().fdiv(one, result);
        self.select64(negative, reciprocal, result)
    }

    /// `math::ln_f64`.
    fn ln64(&mut self, x: Value) -> Value {
        let bits = self.cast(I64X2, x);
        let fraction_mask = self.i64s(0x000f_ffff_ffff_ffff);
        let fraction = self.b.ins().band(bits, fraction_mask);
        let one = self.i64s(1f64.to_bits());
        let mantissa = self.b.ins().bor(fraction, one);
        let mantissa = self.cast(F64X2, mantissa);
        let sqrt2 = self.f64s(std::f64::consts::SQRT_2);
        let above = self.b.ins().fcmp(FloatCC::GreaterThan, mantissa, sqrt2);
        let half = self.f64s(0.5);
        let halved = self.b.ins().fmul(mantissa, half);
        let m = self.select64(above, halved, mantissa);
        let exponent = self.b.ins().ushr_imm_u(bits, 52);
        // `above` is all ones (−1) where set: subtracting it adds one.
        let biased = self.b.ins().isub(exponent, above);
        let two52 = self.i64s(math::TWO_52.to_bits());
        let e = self.b.ins().bor(two52, biased);
        let e = self.cast(F64X2, e);
        let offset = self.f64s(math::TWO_52 + 1023.0);
        let e = self.b.ins().fsub(e, offset);
        let one = self.f64s(1.0);
        let numerator = self.b.ins().fsub(m, one);
        let denominator = self.b.ins().fadd(m, one);
        let s = self.b.ins().fdiv(numerator, denominator);
        let w = self.b.ins().fmul(s, s);
        let mut p = self.f64s(math::LN_SERIES[0]);
        for &c in &math::LN_SERIES[1..] {
            let c = self.f64s(c);
            let pw = self.b.ins().fmul(p, w);
            p = self.b.ins().fadd(pw, c);
        }
        let ln2 = self.f64s(std::f64::consts::LN_2);
        let e_ln2 = self.b.ins().fmul(e, ln2);
        let sp = self.b.ins().fmul(s, p);
        self.b.ins().fadd(e_ln2, sp)
    }

    /// `x` itself in NaN lanes of `x`, `value` elsewhere.
    fn nan_passes(&mut self, x: Value, value: Value) -> Value {
        let nan = self.b.ins().fcmp(FloatCC::Unordered, x, x);
        self.select(nan, x, value)
    }

    fn i32s(&mut self, x: i32) -> Value {
        let c = self.b.ins().iconst(I32, i64::from(x));
        self.b.ins().splat(I32X4, c)
    }

    /// `math::clamp_32`: compare-and-select, so NaN passes through.
    fn clamp32(&mut self, x: Value, low: f32, high: f32) -> Value {
        let (high, low) = (self.constant(high), self.constant(low));
        let above = self.b.ins().fcmp(FloatCC::GreaterThan, x, high);
        let below = self.b.ins().fcmp(FloatCC::LessThan, x, low);
        let x = self.select(above, high, x);
        self.select(below, low, x)
    }

    /// `math::reduce_32`: `(k, r)`, k as i32 lanes.
    fn reduce32(&mut self, x: Value) -> (Value, Value) {
        let (log2e, shift) = (
            self.constant(math::LOG2_E_32),
            self.constant(math::ROUND_SHIFT_32),
        );
        let scaled = self.b.ins().fmul(x, log2e);
        let shifted = self.b.ins().fadd(scaled, shift);
        let k = self.b.ins().fsub(shifted, shift);
        let (hi, lo) = (self.constant(math::LN2_HI_32), self.constant(math::LN2_LO_32));
        let k_hi = self.b.ins().fmul(k, hi);
        let r = self.b.ins().fsub(x, k_hi);
        let k_lo = self.b.ins().fmul(k, lo);
        let r = self.b.ins().fsub(r, k_lo);
        let bits = self.cast(I32X4, shifted);
        let shift_bits = self.i32s(math::ROUND_SHIFT_32.to_bits() as i32);
        (self.b.ins().isub(bits, shift_bits), r)
    }

    /// `math::expm1_reduced_32`.
    fn expm1_reduced32(&mut self, r: Value) -> Value {
        let mut p = self.constant(math::EXP_SERIES_32[0]);
        for &c in &math::EXP_SERIES_32[1..] {
            let c = self.constant(c);
            let pr = self.b.ins().fmul(p, r);
            p = self.b.ins().fadd(pr, c);
        }
        let rr = self.b.ins().fmul(r, r);
        let rrp = self.b.ins().fmul(rr, p);
        self.b.ins().fadd(rrp, r)
    }

    /// `math::power_of_two_32`.
    fn power_of_two32(&mut self, k: Value) -> Value {
        let bias = self.i32s(127);
        let biased = self.b.ins().iadd(k, bias);
        let bits = self.b.ins().ishl_imm_u(biased, 23);
        self.cast(F32X4, bits)
    }

    /// `math::exp_clamped_32`.
    fn exp_clamped32(&mut self, x: Value) -> Value {
        let (k, r) = self.reduce32(x);
        let q = self.expm1_reduced32(r);
        let half = self.b.ins().sshr_imm_u(k, 1);
        let rest = self.b.ins().isub(k, half);
        let one = self.constant(1.0);
        let e = self.b.ins().fadd(one, q);
        let first = self.power_of_two32(half);
        let e = self.b.ins().fmul(e, first);
        let second = self.power_of_two32(rest);
        self.b.ins().fmul(e, second)
    }

    /// `math::ln_positive_32`.
    fn ln_positive32(&mut self, x: Value) -> Value {
        let smallest_normal = self.constant(f32::MIN_POSITIVE);
        let subnormal = self.b.ins().fcmp(FloatCC::LessThan, x, smallest_normal);
        let scale = self.constant(8_388_608.0);
        let scaled = self.b.ins().fmul(x, scale);
        let y = self.select(subnormal, scaled, x);
        let bits = self.cast(I32X4, y);
        let fraction_mask = self.i32s(0x007f_ffff);
        let fraction = self.b.ins().band(bits, fraction_mask);
        let one_bits = self.i32s(0x3f80_0000);
        let mantissa = self.b.ins().bor(fraction, one_bits);
        let mantissa = self.cast(F32X4, mantissa);
        let sqrt2 = self.constant(std::f32::consts::SQRT_2);
        let above = self.b.ins().fcmp(FloatCC::GreaterThan, mantissa, sqrt2);
        let half = self.constant(0.5);
        let halved = self.b.ins().fmul(mantissa, half);
        let m = self.select(above, halved, mantissa);
        let exponent = self.b.ins().sshr_imm_u(bits, 23);
        let bias = self.i32s(127);
        let exponent = self.b.ins().isub(exponent, bias);
        // `above` is all ones (−1) where set: subtracting it adds one.
        let exponent = self.b.ins().isub(exponent, above);
        let twenty_three = self.i32s(23);
        let subnormal_shift = self.b.ins().band(subnormal, twenty_three);
        let exponent = self.b.ins().isub(exponent, subnormal_shift);
        let e = self.b.ins().fcvt_from_sint(F32X4, exponent);
        let (one, two) = (self.constant(1.0), self.constant(2.0));
        let f = self.b.ins().fsub(m, one);
        let denominator = self.b.ins().fadd(two, f);
        let s = self.b.ins().fdiv(f, denominator);
        let w = self.b.ins().fmul(s, s);
        let mut p = self.constant(math::LN_SERIES_32[0]);
        for &c in &math::LN_SERIES_32[1..] {
            let c = self.constant(c);
            let pw = self.b.ins().fmul(p, w);
            p = self.b.ins().fadd(pw, c);
        }
        let r = self.b.ins().fmul(w, p);
        let (hi, lo) = (self.constant(math::LN2_HI_32), self.constant(math::LN2_LO_32));
        let f_r = self.b.ins().fsub(f, r);
        let correction = self.b.ins().fmul(s, f_r);
        let e_lo = self.b.ins().fmul(e, lo);
        let correction = self.b.ins().fsub(correction, e_lo);
        let low_part = self.b.ins().fsub(f, correction);
        let e_hi = self.b.ins().fmul(e, hi);
        self.b.ins().fadd(e_hi, low_part)
    }

    /// `math::exp`.
    fn exp(&mut self, x: Value) -> Value {
        let clamped = self.clamp32(x, math::EXP_LOW_32, math::EXP_HIGH_32);
        let y = self.exp_clamped32(clamped);
        self.nan_passes(x, y)
    }

    /// `math::ln`.
    fn ln(&mut self, x: Value) -> Value {
        let y = self.ln_positive32(x);
        let infinity = self.constant(f32::INFINITY);
        let at_infinity = self.b.ins().fcmp(FloatCC::Equal, x, infinity);
        let y = self.select(at_infinity, infinity, y);
        let zero = self.constant(0.0);
        let at_zero = self.b.ins().fcmp(FloatCC::Equal, x, zero);
        let minus_infinity = self.constant(f32::NEG_INFINITY);
        let y = self.select(at_zero, minus_infinity, y);
        let invalid = self.b.ins().fcmp(FloatCC::UnorderedOrLessThan, x, zero);
        let nan = self.constant(f32::NAN);
        self.select(invalid, nan, y)
    }

    /// `math::tanh`.
    fn tanh(&mut self, x: Value) -> Value {
        let magnitude = self.b.ins().fabs(x);
        let a = self.clamp32(magnitude, 0.0, math::TANH_LIMIT_32);
        let two = self.constant(2.0);
        let z = self.b.ins().fmul(two, a);
        let (k, r) = self.reduce32(z);
        let s = self.power_of_two32(k);
        let q = self.expm1_reduced32(r);
        let sq = self.b.ins().fmul(s, q);
        let one = self.constant(1.0);
        let s1 = self.b.ins().fsub(s, one);
        let em1 = self.b.ins().fadd(sq, s1);
        let denominator = self.b.ins().fadd(em1, two);
        let t = self.b.ins().fdiv(em1, denominator);
        // copysign(t, x): t ≥ 0, so the sign bit is x's.
        let sign = self.constant(-0.0);
        let sign = self.b.ins().band(x, sign);
        let y = self.b.ins().bor(t, sign);
        self.nan_passes(x, y)
    }

    /// `math::sigmoid`.
    fn sigmoid(&mut self, x: Value) -> Value {
        let magnitude = self.b.ins().fabs(x);
        let minus = self.b.ins().fneg(magnitude);
        let clamped = self.clamp32(minus, math::EXP_LOW_32, math::EXP_HIGH_32);
        let e = self.exp_clamped32(clamped);
        let zero = self.constant(0.0);
        let negative = self.b.ins().fcmp(FloatCC::LessThan, x, zero);
        let one = self.constant(1.0);
        let numerator = self.select(negative, e, one);
        let denominator = self.b.ins().fadd(one, e);
        let y = self.b.ins().fdiv(numerator, denominator);
        self.nan_passes(x, y)
    }

    /// `|x|ʸ` for vectors on `**`'s vector path: integer exponents up to `POWI_LIMIT` multiply
    /// (`math::powi_f64`), the rest go through `ln` and `exp`; when every lane has such an integer,
    /// `ln` and `exp` are skipped.
    fn pow_magnitude(&mut self, abs_x: Value, y: Value, y_integer: Value) -> Value {
        let abs_y = self.b.ins().fabs(y);
        let limit = self.constant(math::POWI_LIMIT);
        let small = self.b.ins().fcmp(FloatCC::LessThanOrEqual, abs_y, limit);
        let small_integer = self.b.ins().band(small, y_integer);
        let all_small = self.b.ins().vall_true(small_integer);
        let [x_low, x_high] = self.widen(abs_x);
        let [y_low, y_high] = self.widen(y);
        let (only_powi, general, magnitudes) = (
            self.b.create_block(),
            self.b.create_block(),
            self.b.create_block(),
        );
        let magnitude = self.b.append_block_param(magnitudes, F32X4);
        self.b.ins().brif(all_small, only_powi, &[], general, &[]);

        self.b.switch_to_block(only_powi);
        let halves = [self.powi64(x_low, y_low), self.powi64(x_high, y_high)];
        let value = self.narrow(halves);
        self.b.ins().jump(magnitudes, &[BlockArg::Value(value)]);

        self.b.switch_to_block(general);
        let mut halves = [x_low, x_high];
        for (half, y) in halves.iter_mut().zip([y_low, y_high]) {
            let ln = self.ln64(*half);
            let z = self.b.ins().fmul(y, ln);
            let z = self.clamp64(z, math::EXP_LIMIT);
            *half = self.exp64(z);
        }
        let by_exp = self.narrow(halves);
        let halves = [self.powi64(x_low, y_low), self.powi64(x_high, y_high)];
        let by_powi = self.narrow(halves);
        let value = self.select(small_integer, by_powi, by_exp);
        self.b.ins().jump(magnitudes, &[BlockArg::Value(value)]);

        self.b.switch_to_block(magnitudes);
        magnitude
    }

    /// `math::powi_f64` for a known exponent: the same multiplications in the same order, the
    /// exponent's bits read at compile time.
    fn powi64_constant(&mut self, x: Value, n: f32) -> Value {
        let mut bits = n.abs() as u32;
        let mut base = x;
        let mut result: Option<Value> = None;
        for _ in 0..7 {
            if bits & 1 == 1 {
                // 1·base is base exactly, so the first factor needs no multiplication.
                result = Some(match result {
                    None => base,
                    Some(r) => self.b.ins().fmul(r, base),
                });
            }
            bits >>= 1;
            if bits == 0 {
                break;
            }
            base = self.b.ins().fmul(base, base);
        }
        let result = match result {
            Some(r) => r,
            None => self.f64s(1.0),
        };
        if n < 0.0 {
            let one = self.f64s(1.0);
            self.b.ins().fdiv(one, result)
        } else {
            result
        }
    }

    /// `math::pow`: the vector path where every lane has a finite nonzero base other than 1, a finite
    /// nonzero exponent, and an integer exponent if the base is negative; otherwise lane by lane.
    fn pow(&mut self, x: Value, y: Value, constant: Option<f32>) -> Value {
        let zero = self.constant(0.0);
        let (one, infinity) = (self.constant(1.0), self.constant(f32::INFINITY));
        let abs_x = self.b.ins().fabs(x);
        let abs_y = self.b.ins().fabs(y);
        let x_finite = self.b.ins().fcmp(FloatCC::LessThan, abs_x, infinity);
        let y_finite = self.b.ins().fcmp(FloatCC::LessThan, abs_y, infinity);
        let x_nonzero = self.b.ins().fcmp(FloatCC::NotEqual, x, zero);
        let y_nonzero = self.b.ins().fcmp(FloatCC::NotEqual, y, zero);
        let x_not_one = self.b.ins().fcmp(FloatCC::NotEqual, x, one);
        let y_whole = self.b.ins().trunc(y);
        let y_integer = self.b.ins().fcmp(FloatCC::Equal, y, y_whole);
        let x_positive = self.b.ins().fcmp(FloatCC::GreaterThan, x, zero);
        let sign_allowed = self.b.ins().bor(x_positive, y_integer);
        let mut ok = self.b.ins().band(x_finite, y_finite);
        for condition in [x_nonzero, y_nonzero, x_not_one, sign_allowed] {
            ok = self.b.ins().band(ok, condition);
        }
        let every_lane = self.b.ins().vall_true(ok);
        let (vector, lanes, merge) = (
            self.b.create_block(),
            self.b.create_block(),
            self.b.create_block(),
        );
        let result = self.b.append_block_param(merge, F32X4);
        self.b.ins().brif(every_lane, vector, &[], lanes, &[]);

        self.b.switch_to_block(vector);
        let magnitude = match constant {
            Some(n) if n == n.trunc() && n.abs() <= math::POWI_LIMIT => {
                let halves = self.widen(abs_x).map(|half| self.powi64_constant(half, n));
                self.narrow(halves)
            }
            _ => self.pow_magnitude(abs_x, y, y_integer),
        };
        let half = self.constant(0.5);
        let y_half = self.b.ins().fmul(y, half);
        let y_half_whole = self.b.ins().trunc(y_half);
        let y_half_fraction = self.b.ins().fcmp(FloatCC::NotEqual, y_half, y_half_whole);
        let y_odd = self.b.ins().band(y_integer, y_half_fraction);
        let x_negative = self.b.ins().fcmp(FloatCC::LessThan, x, zero);
        let flip = self.b.ins().band(x_negative, y_odd);
        let negated = self.b.ins().fneg(magnitude);
        let value = self.select(flip, negated, magnitude);
        self.b.ins().jump(merge, &[BlockArg::Value(value)]);

        self.b.switch_to_block(lanes);
        let value = self.per_lane(call_pow as *const (), &[x, y]);
        self.b.ins().jump(merge, &[BlockArg::Value(value)]);

        self.b.switch_to_block(merge);
        result
    }
}
