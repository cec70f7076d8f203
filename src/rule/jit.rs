//! Native kernels for rule programs: one fused SIMD loop per program, generated with Cranelift.
//!
//! Why: the interpreter in `program.rs` makes one pass over the chunk per instruction, so a
//! 16-instruction rule writes and rereads 16 registers per synapse, while a hand-written loop keeps
//! every intermediate in a CPU register; that costs the interpreter about 4× (`benches/rule_vm.rs`).
//! A kernel is that hand-written loop, written for the rule at run time: four synapses per iteration
//! (f32x4), one vector instruction per program instruction. Functions with no vector instruction
//! (`exp`, `ln`, `tanh`, `sigmoid`, `**`) are called lane by lane on the same Rust functions the
//! interpreter uses, as a hand-written loop would. Every other operation is exact in IEEE arithmetic
//! or spelled exactly as in `ir.rs` (`maximum`, `minimum`, `sign`), so a kernel's output is the
//! interpreter's bit for bit (property-tested in `tests/rule_oracle.rs`), and the interpreter stays
//! the reference and the fallback wherever no kernel can be built.
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
use cranelift_codegen::ir::types::{F32, F32X4};
use cranelift_codegen::ir::{
    AbiParam, BlockArg, Endianness, Function, InstBuilder, MemFlagsData, Signature, UserFuncName, Value,
};
use cranelift_codegen::isa::{OwnedTargetIsa, TargetIsa};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::{Context, control::ControlPlane};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use std::sync::OnceLock;

use super::ir::{BinOp, Func};
use super::program::{Code, Input, Op, Operand};

/// Floats per vector.
const LANES: usize = 4;

type Entry = unsafe extern "C" fn(*const *const f32, *const *mut f32, usize);

/// Code compiled to machine code for one arrangement of scalar and per-element slots.
pub struct Kernel {
    /// Keeps the code mapped; unmapped when the kernel is dropped.
    _code: memmap2::Mmap,
    entry: Entry,
    /// Per input slot: read as one value broadcast to every element of a row.
    scalar: Vec<bool>,
    outputs: usize,
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
    /// row, or one per element). Errors name what stopped it; the caller then interprets.
    pub fn compile(code: &Code, scalar: &[bool]) -> Result<Kernel, String> {
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
        let bytes = compiled.code_buffer();
        let mut map = memmap2::MmapMut::map_anon(bytes.len()).map_err(|e| e.to_string())?;
        map.copy_from_slice(bytes);
        let mapped = map.make_exec().map_err(|e| e.to_string())?;
        // SAFETY: the mapping holds a complete function of signature `Entry` (the one `generate`
        // declares), compiled for this host, with no relocations left to apply, and it lives as long
        // as `mapped`, which `self` owns.
        let entry = unsafe { std::mem::transmute::<*const u8, Entry>(mapped.as_ptr()) };
        Ok(Kernel {
            _code: mapped,
            entry,
            scalar: scalar.to_vec(),
            outputs: code.outputs.len(),
        })
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

/// The functions a kernel calls lane by lane: the interpreter's own, so results match bit for bit.
extern "C" fn call_exp(x: f32) -> f32 {
    Func::Exp.apply(&[x])
}
extern "C" fn call_ln(x: f32) -> f32 {
    Func::Ln.apply(&[x])
}
extern "C" fn call_tanh(x: f32) -> f32 {
    Func::Tanh.apply(&[x])
}
extern "C" fn call_sigmoid(x: f32) -> f32 {
    Func::Sigmoid.apply(&[x])
}
extern "C" fn call_pow(x: f32, y: f32) -> f32 {
    x.powf(y)
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
    let end = b.ins().ishl_imm_u(n, 2);
    let header = b.create_block();
    let offset = b.append_block_param(header, pointer);
    let body = b.create_block();
    let exit = b.create_block();
    let zero = b.ins().iconst(pointer, 0);
    b.ins().jump(header, &[BlockArg::Value(zero)]);

    b.switch_to_block(header);
    let more = b.ins().icmp(IntCC::UnsignedLessThan, offset, end);
    b.ins().brif(more, body, &[], exit, &[]);

    b.switch_to_block(body);
    let mut emit = Emitter {
        b: &mut b,
        pointer,
        memory,
        offset,
        input_base: &input_base,
        broadcast: &broadcast,
        loaded: vec![None; scalar.len()],
        registers: vec![None; code.registers],
    };
    for instruction in &code.instructions {
        let args = instruction.args.map(|a| emit.operand(a));
        let value = emit.operation(instruction.op, args);
        emit.registers[instruction.dst as usize] = Some(value);
    }
    for (k, operand) in code.outputs.iter().enumerate() {
        let value = emit.operand(*operand);
        let address = emit.b.ins().iadd(output_base[k], offset);
        emit.b.ins().store(memory, value, address, 0);
    }
    let next = b.ins().iadd_imm_u(offset, (LANES * 4) as i64);
    b.ins().jump(header, &[BlockArg::Value(next)]);

    b.switch_to_block(exit);
    b.ins().return_(&[]);
    b.seal_all_blocks();
    b.finalize(isa.frontend_config());
    function
}

/// Emits one loop iteration's vector code.
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
                BinOp::Pow => self.per_lane(call_pow as *const (), &[a, b]),
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
                Func::Exp => self.per_lane(call_exp as *const (), &[a]),
                Func::Ln => self.per_lane(call_ln as *const (), &[a]),
                Func::Tanh => self.per_lane(call_tanh as *const (), &[a]),
                Func::Sigmoid => self.per_lane(call_sigmoid as *const (), &[a]),
                Func::Randn => unreachable!("randn() draws arrive in slots"),
            },
        }
    }
}
