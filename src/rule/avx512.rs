//! Native kernels with sixteen lanes, for the parts of rule programs whose every operation is exact in
//! IEEE arithmetic: `+ − × /`, `sqrt`, comparisons and logic, `select`, `abs`, `sign`, `step`,
//! `relu`, `min`, `max`, `clamp`; and `exp`, `tanh`, `sigmoid`, `ln` and `**`, which `math.rs` defines
//! as sequences of such operations (and integer ones on the bits).
//!
//! Why: Cranelift (0.135) lowers only 128-bit vectors on x86-64, so its kernels (`jit.rs`) run four
//! synapses per instruction where an AVX-512 core runs sixteen (`cargo bench --bench rule_vm`:
//! `compiled` against `compiled_cranelift`). Those operations are single AVX-512 instructions (or a
//! compare and a masked move) that round exactly as the interpreter's scalar ones, so they give the
//! interpreter's bits by construction; `exp`, `tanh`, `sigmoid` and `ln` are `math.rs`'s operations
//! in its order, lane by lane, their constants read by broadcast from a table rather than kept in
//! registers. A per-synapse `exp` left to Cranelift cost a rule half its speed (a `pmnist-quick`
//! update's 50,176 synapses at four lanes: 0.47× native SGD instead of 0.73×). `**` computes its
//! magnitude in f64 as `math::pow` does, eight lanes at a time (each half of the sixteen widened, then
//! rounded once to f32), and then sets `math::pow`'s special values with masked moves: 4.8× Cranelift's
//! kernel for a fractional power (`rule_vm/power`), whose four lanes fall back to scalar calls
//! wherever a weight is 0. The machine code is encoded with `iced-x86`'s assembler, from AVX-512
//! Foundation alone (the bitwise `abs` and `−` as the integer `vpandd`/`vpxord`: `vandps`/`vxorps`
//! on 512 bits need AVX-512DQ).
//!
//! The generated function has `jit.rs`'s signature and contract (`Entry`): `(inputs, outputs, n)`, a
//! pointer per slot (one float for a scalar slot, `n` for the others) and per output (`n` floats), with
//! `n` a multiple of four. It runs sixteen elements per trip, then the last `n mod 16` under a mask
//! (masked-off lanes are neither loaded nor stored). Values live in registers for the whole loop:
//! constants and scalar slots are broadcast once, per-element slots loaded at the top of each trip, and
//! each of the program's values holds a register from the instruction that computes it to its last
//! reader, after which the next value takes it. A program needing more than the 32 vector registers
//! at once is refused (and stays with Cranelift).

use iced_x86::code_asm::*;

use super::ir::{BinOp, Func};
use super::math;
use super::program::{Code, Op, Operand};

/// Elements per vector.
const LANES: u32 = 16;

/// `vcmpps` predicates: each the interpreter's comparison, NaN included (ordered and false, or for
/// `≠` unordered and true, as Rust's `<`, `<=`, `>`, `>=`, `==`, `!=` on `f32`).
const EQ_OQ: i32 = 0x00;
const UNORD_Q: i32 = 0x03;
const NEQ_UQ: i32 = 0x04;
const LT_OQ: i32 = 0x11;
const LE_OQ: i32 = 0x12;
const GE_OQ: i32 = 0x1D;
const GT_OQ: i32 = 0x1E;
const NGE_UQ: i32 = 0x19;

/// The vector registers, by number.
const ZMM: [AsmRegisterZmm; 32] = [
    zmm0, zmm1, zmm2, zmm3, zmm4, zmm5, zmm6, zmm7, zmm8, zmm9, zmm10, zmm11, zmm12, zmm13, zmm14, zmm15,
    zmm16, zmm17, zmm18, zmm19, zmm20, zmm21, zmm22, zmm23, zmm24, zmm25, zmm26, zmm27, zmm28, zmm29, zmm30,
    zmm31,
];

/// Why `code` has no AVX-512 kernel, if it has none: an operation this module does not write out
/// (`randn()`, which `Code` never holds: its draws arrive in slots), or more values than vector
/// registers.
fn unsupported(code: &Code, scalar: &[bool]) -> Option<String> {
    if let Some(i) = code.instructions.iter().find(|i| !exact(i.op)) {
        return Some(format!("{:?} is computed by the Cranelift kernels only", i.op));
    }
    let needed = Layout::new(code, scalar).registers;
    (needed > ZMM.len()).then(|| format!("{needed} vector registers needed, 32 exist"))
}

/// Whether `op` is computed by this module (exact in IEEE arithmetic, or `math.rs`'s sequence of
/// such operations).
fn exact(op: Op) -> bool {
    match op {
        Op::Binary(_) | Op::Neg | Op::Not | Op::Select => true,
        Op::Call(f) => match f {
            Func::Abs
            | Func::Sign
            | Func::Sqrt
            | Func::Relu
            | Func::Min
            | Func::Max
            | Func::Clamp
            | Func::Step
            | Func::Exp
            | Func::Tanh
            | Func::Sigmoid
            | Func::Ln => true,
            Func::Randn => false,
        },
    }
}

/// Which vector register holds each value for the whole kernel.
struct Layout {
    /// Per slot: its register, if the code reads it.
    slots: Vec<Option<usize>>,
    /// Distinct constants (by bits) and their registers.
    constants: Vec<(u32, usize)>,
    /// Per program register, its vector register (shared by values whose lives do not overlap).
    registers_of: Vec<usize>,
    /// Scratch registers: `clamp`'s intermediate, [`SCRATCH`] for `exp`, `tanh`, `sigmoid`, `ln`, and
    /// [`POW_SCRATCH`] for `**`.
    scratch: Vec<usize>,
    /// How many vector registers all that takes.
    registers: usize,
}

impl Layout {
    fn new(code: &Code, scalar: &[bool]) -> Layout {
        let mut next = 0;
        let mut take = || {
            next += 1;
            next - 1
        };
        let mut read = vec![false; scalar.len()];
        let mut bits: Vec<u32> = Vec::new();
        let mut constant = |x: f32| {
            if !bits.contains(&x.to_bits()) {
                bits.push(x.to_bits());
            }
        };
        let operands = code
            .instructions
            .iter()
            .flat_map(|i| i.args.iter().take(i.op.arity()))
            .chain(&code.outputs);
        for operand in operands {
            match *operand {
                Operand::Input(k) => read[k as usize] = true,
                Operand::Const(x) => constant(x),
                Operand::Reg(_) => {}
            }
        }
        // The constants the operations themselves use: 0 for truth, 1 for a true flag, −1 for
        // `sign`, the sign bit for `−`, all but it for `abs`.
        for i in &code.instructions {
            match i.op {
                Op::Neg => constant(-0.0),
                Op::Call(Func::Abs) => constant(f32::from_bits(0x7FFF_FFFF)),
                Op::Call(Func::Sign) => [0.0, 1.0, -1.0].into_iter().for_each(&mut constant),
                Op::Call(Func::Relu) | Op::Select => constant(0.0),
                Op::Binary(BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Pow) => {}
                Op::Binary(_) | Op::Not | Op::Call(Func::Step) => {
                    [0.0, 1.0].into_iter().for_each(&mut constant)
                }
                Op::Call(_) => {}
            }
        }
        let slots = read.iter().map(|&r| r.then(&mut take)).collect();
        let constants = bits.into_iter().map(|b| (b, take())).collect();
        // A program register holds its vector register from the instruction that writes it to its last
        // reader (an output, to the end); then the next value may take it. A destination is taken
        // before the operands that die at its instruction are given back, so it never shares their
        // register: every operation may write its destination before it has read all its operands.
        let mut last_read = vec![None; code.registers];
        for (at, i) in code.instructions.iter().enumerate() {
            for operand in i.args.iter().take(i.op.arity()) {
                if let Operand::Reg(r) = *operand {
                    last_read[r as usize] = Some(at);
                }
            }
        }
        for operand in &code.outputs {
            if let Operand::Reg(r) = *operand {
                last_read[r as usize] = Some(usize::MAX);
            }
        }
        let mut registers_of = vec![usize::MAX; code.registers];
        let mut free: Vec<usize> = Vec::new();
        for (at, i) in code.instructions.iter().enumerate() {
            let register = free.pop().unwrap_or_else(&mut take);
            registers_of[i.dst as usize] = register;
            let dead = |r: u16| last_read[r as usize].is_none_or(|last| last == at);
            if dead(i.dst) {
                free.push(register);
            }
            for operand in i.args.iter().take(i.op.arity()) {
                if let Operand::Reg(r) = *operand
                    && dead(r)
                    && !free.contains(&registers_of[r as usize])
                {
                    free.push(registers_of[r as usize]);
                }
            }
        }
        let needs = |ops: &dyn Fn(Op) -> bool| code.instructions.iter().any(|i| ops(i.op));
        let scratch = if needs(&|op| op == Op::Binary(BinOp::Pow)) {
            POW_SCRATCH
        } else if needs(&|op| matches!(op, Op::Call(Func::Exp | Func::Tanh | Func::Sigmoid | Func::Ln))) {
            SCRATCH
        } else {
            1
        };
        let scratch = (0..scratch).map(|_| take()).collect();
        Layout {
            slots,
            constants,
            registers_of,
            scratch,
            registers: next,
        }
    }

    fn constant(&self, x: f32) -> AsmRegisterZmm {
        let bits = x.to_bits();
        let (_, r) = self
            .constants
            .iter()
            .find(|(b, _)| *b == bits)
            .expect("every constant the code uses has a register");
        ZMM[*r]
    }

    fn operand(&self, operand: Operand) -> AsmRegisterZmm {
        match operand {
            Operand::Reg(r) => ZMM[self.registers_of[r as usize]],
            Operand::Input(k) => ZMM[self.slots[k as usize].expect("a slot read has a register")],
            Operand::Const(x) => self.constant(x),
        }
    }
}

/// The machine code of `code`'s kernel for slots laid out as `scalar` says, or why there is none.
pub fn assemble(code: &Code, scalar: &[bool]) -> Result<Vec<u8>, String> {
    if let Some(why) = unsupported(code, scalar) {
        return Err(why);
    }
    generate(code, scalar, &Layout::new(code, scalar)).map_err(|e| format!("AVX-512 encoding: {e}"))
}

fn generate(code: &Code, scalar: &[bool], layout: &Layout) -> Result<Vec<u8>, IcedError> {
    let mut a = CodeAssembler::new(64)?;
    // rdi: the slots' pointers, rsi: the outputs' pointers, rdx: n. rcx: the byte offset of the trip,
    // r8: where the elements end (bytes), r9: where the whole vectors end.
    for &(bits, r) in &layout.constants {
        a.mov(eax, bits)?;
        a.vpbroadcastd(ZMM[r], eax)?;
    }
    for (k, register) in layout.slots.iter().enumerate() {
        if let (Some(r), true) = (register, scalar[k]) {
            a.mov(rax, qword_ptr(rdi + 8 * k as i32))?;
            a.vbroadcastss(ZMM[*r], dword_ptr(rax))?;
        }
    }
    a.lea(r8, qword_ptr(rdx * 4))?;
    a.mov(r9, r8)?;
    a.and(r9, -(4 * LANES as i32))?;
    a.xor(ecx, ecx)?;
    let mut top = a.create_label();
    let mut tail = a.create_label();
    let mut done = a.create_label();
    a.set_label(&mut top)?;
    a.cmp(rcx, r9)?;
    a.jae(tail)?;
    trip(&mut a, code, scalar, layout, false)?;
    a.add(rcx, 4 * LANES as i32)?;
    a.jmp(top)?;
    a.set_label(&mut tail)?;
    a.cmp(rcx, r8)?;
    a.jae(done)?;
    // k7: the lanes left, (1 << (r8 − rcx) / 4) − 1 (the shift count goes in cl; rcx is kept in r11).
    a.mov(r11, rcx)?;
    a.mov(rcx, r8)?;
    a.sub(rcx, r11)?;
    a.shr(rcx, 2)?;
    a.mov(r10d, 1)?;
    a.shl(r10d, cl)?;
    a.sub(r10d, 1)?;
    a.kmovw(k7, r10d)?;
    a.mov(rcx, r11)?;
    trip(&mut a, code, scalar, layout, true)?;
    a.set_label(&mut done)?;
    a.vzeroupper()?;
    a.ret()?;
    a.assemble(0)
}

/// One trip through the loop: sixteen elements from byte offset rcx, the last ones under k7 when
/// `masked`.
fn trip(
    a: &mut CodeAssembler,
    code: &Code,
    scalar: &[bool],
    layout: &Layout,
    masked: bool,
) -> Result<(), IcedError> {
    for (k, register) in layout.slots.iter().enumerate() {
        if let (Some(r), false) = (register, scalar[k]) {
            a.mov(rax, qword_ptr(rdi + 8 * k as i32))?;
            let at = zmmword_ptr(rax + rcx);
            if masked {
                a.vmovups(ZMM[*r].k7().z(), at)?;
            } else {
                a.vmovups(ZMM[*r], at)?;
            }
        }
    }
    for instruction in &code.instructions {
        let d = ZMM[layout.registers_of[instruction.dst as usize]];
        let [x, y, z] = instruction.args;
        let arg = |o: Operand| layout.operand(o);
        let flag = |a: &mut CodeAssembler| a.vmovaps(d.k1().z(), layout.constant(1.0));
        let zero = || layout.constant(0.0);
        match instruction.op {
            Op::Binary(op) => {
                let (x, y) = (arg(x), arg(y));
                let compare = |a: &mut CodeAssembler, predicate: i32| -> Result<(), IcedError> {
                    a.vcmpps(k1, x, y, predicate)?;
                    flag(a)
                };
                match op {
                    BinOp::Add => a.vaddps(d, x, y)?,
                    BinOp::Sub => a.vsubps(d, x, y)?,
                    BinOp::Mul => a.vmulps(d, x, y)?,
                    BinOp::Div => a.vdivps(d, x, y)?,
                    BinOp::Lt => compare(a, LT_OQ)?,
                    BinOp::Le => compare(a, LE_OQ)?,
                    BinOp::Gt => compare(a, GT_OQ)?,
                    BinOp::Ge => compare(a, GE_OQ)?,
                    BinOp::Eq => compare(a, EQ_OQ)?,
                    BinOp::Ne => compare(a, NEQ_UQ)?,
                    BinOp::And | BinOp::Or => {
                        a.vcmpps(k1, x, zero(), NEQ_UQ)?;
                        a.vcmpps(k2, y, zero(), NEQ_UQ)?;
                        if op == BinOp::And {
                            a.kandw(k1, k1, k2)?;
                        } else {
                            a.korw(k1, k1, k2)?;
                        }
                        flag(a)?;
                    }
                    BinOp::Pow => {
                        let [_, exponent, _] = instruction.args;
                        let constant = match exponent {
                            Operand::Const(n) => Some(n),
                            _ => None,
                        };
                        pow(a, d, (x, y), constant, &layout.scratch)?
                    }
                }
            }
            Op::Neg => a.vpxord(d, arg(x), layout.constant(-0.0))?,
            Op::Not => {
                a.vcmpps(k1, arg(x), zero(), EQ_OQ)?;
                flag(a)?;
            }
            Op::Select => {
                a.vcmpps(k1, arg(x), zero(), NEQ_UQ)?;
                // Where k1: the second operand, else the third.
                a.vblendmps(d.k1(), arg(z), arg(y))?;
            }
            Op::Call(f) => match f {
                Func::Abs => a.vpandd(d, arg(x), layout.constant(f32::from_bits(0x7FFF_FFFF)))?,
                Func::Sqrt => a.vsqrtps(d, arg(x))?,
                Func::Sign => {
                    a.vcmpps(k1, arg(x), zero(), GT_OQ)?;
                    a.vcmpps(k2, arg(x), zero(), LT_OQ)?;
                    flag(a)?;
                    a.vmovaps(d.k2(), layout.constant(-1.0))?;
                }
                Func::Step => {
                    a.vcmpps(k1, arg(x), zero(), GT_OQ)?;
                    flag(a)?;
                }
                Func::Relu => pick(a, d, (arg(x), zero()), GT_OQ)?,
                Func::Max => pick(a, d, (arg(x), arg(y)), GT_OQ)?,
                Func::Min => pick(a, d, (arg(x), arg(y)), LT_OQ)?,
                Func::Clamp => {
                    let t = ZMM[layout.scratch[0]];
                    pick(a, t, (arg(x), arg(y)), GT_OQ)?;
                    pick(a, d, (t, arg(z)), LT_OQ)?;
                }
                Func::Exp | Func::Tanh | Func::Sigmoid | Func::Ln => {
                    transcendental(a, f, d, arg(x), &layout.scratch)?
                }
                Func::Randn => unreachable!("refused by `unsupported`"),
            },
        }
    }
    for (k, &operand) in code.outputs.iter().enumerate() {
        a.mov(rax, qword_ptr(rsi + 8 * k as i32))?;
        let at = zmmword_ptr(rax + rcx);
        if masked {
            a.vmovups(at.k7(), layout.operand(operand))?;
        } else {
            a.vmovups(at, layout.operand(operand))?;
        }
    }
    Ok(())
}

/// `ir::maximum` (`y_wins` = [`GT_OQ`]) or `ir::minimum` ([`LT_OQ`]) lane by lane into `d`: `y`
/// where `y` compares so against `x` or `x` is NaN, else `x`.
fn pick(
    a: &mut CodeAssembler,
    d: AsmRegisterZmm,
    (x, y): (AsmRegisterZmm, AsmRegisterZmm),
    y_wins: i32,
) -> Result<(), IcedError> {
    a.vcmpps(k1, y, x, y_wins)?;
    a.vcmpps(k2, x, x, UNORD_Q)?;
    a.korw(k1, k1, k2)?;
    a.vblendmps(d.k1(), x, y)
}

/// Scratch registers of `exp`, `tanh`, `sigmoid` and `ln`.
const SCRATCH: usize = 6;

/// The constants of `exp`, `tanh`, `sigmoid` and `ln` (`math.rs`), read by broadcast from memory rather
/// than held in registers, which the program's own values need: indices into [`TABLE`].
mod table {
    pub const LOG2_E: usize = 0;
    pub const ROUND_SHIFT: usize = 1;
    pub const LN2_HI: usize = 2;
    pub const LN2_LO: usize = 3;
    pub const ONE: usize = 4;
    /// The integer 127 (the exponent bias), as 32 bits.
    pub const BIAS: usize = 5;
    pub const EXP_LOW: usize = 6;
    pub const EXP_HIGH: usize = 7;
    pub const TANH_LIMIT: usize = 8;
    pub const ZERO: usize = 9;
    pub const TWO: usize = 10;
    /// All bits but the sign's.
    pub const ABS: usize = 11;
    /// The sign bit.
    pub const SIGN: usize = 12;
    /// `EXP_SERIES_32`, from its first coefficient.
    pub const SERIES: usize = 13;
    pub const MIN_POSITIVE: usize = 20;
    /// 2²³, which scales a subnormal into the normals.
    pub const TWO_23: usize = 21;
    /// The mantissa's bits.
    pub const MANTISSA: usize = 22;
    pub const SQRT_2: usize = 23;
    pub const HALF: usize = 24;
    /// The integers 1 and 23, as 32 bits.
    pub const INT_ONE: usize = 25;
    pub const INT_23: usize = 26;
    pub const INFINITY: usize = 27;
    pub const NEG_INFINITY: usize = 28;
    pub const NAN: usize = 29;
    /// `LN_SERIES_32`, from its first coefficient.
    pub const LN_SERIES: usize = 30;
    pub const POWI_LIMIT: usize = 35;
    /// Entries.
    pub const LEN: usize = 36;
}

/// [`table`]'s values, as bits.
static TABLE: [u32; table::LEN] = {
    let mut t = [0u32; table::LEN];
    t[table::LOG2_E] = math::LOG2_E_32.to_bits();
    t[table::ROUND_SHIFT] = math::ROUND_SHIFT_32.to_bits();
    t[table::LN2_HI] = math::LN2_HI_32.to_bits();
    t[table::LN2_LO] = math::LN2_LO_32.to_bits();
    t[table::ONE] = 1.0f32.to_bits();
    t[table::BIAS] = 127;
    t[table::EXP_LOW] = math::EXP_LOW_32.to_bits();
    t[table::EXP_HIGH] = math::EXP_HIGH_32.to_bits();
    t[table::TANH_LIMIT] = math::TANH_LIMIT_32.to_bits();
    t[table::ZERO] = 0.0f32.to_bits();
    t[table::TWO] = 2.0f32.to_bits();
    t[table::ABS] = 0x7FFF_FFFF;
    t[table::SIGN] = 0x8000_0000;
    let mut k = 0;
    while k < math::EXP_SERIES_32.len() {
        t[table::SERIES + k] = math::EXP_SERIES_32[k].to_bits();
        k += 1;
    }
    t[table::MIN_POSITIVE] = f32::MIN_POSITIVE.to_bits();
    t[table::TWO_23] = 8_388_608.0f32.to_bits();
    t[table::MANTISSA] = 0x007f_ffff;
    t[table::SQRT_2] = std::f32::consts::SQRT_2.to_bits();
    t[table::HALF] = 0.5f32.to_bits();
    t[table::INT_ONE] = 1;
    t[table::INT_23] = 23;
    t[table::INFINITY] = f32::INFINITY.to_bits();
    t[table::NEG_INFINITY] = f32::NEG_INFINITY.to_bits();
    t[table::NAN] = f32::NAN.to_bits();
    let mut k = 0;
    while k < math::LN_SERIES_32.len() {
        t[table::LN_SERIES + k] = math::LN_SERIES_32[k].to_bits();
        k += 1;
    }
    t[table::POWI_LIMIT] = math::POWI_LIMIT.to_bits();
    t
};

/// The f64 constants of `**` (`math::powi_f64`, `math::ln_f64`, `math::exp_f64`): indices into
/// [`TABLE64`], whose address r10 holds while `**` runs.
mod table64 {
    pub const ONE: usize = 0;
    pub const HALF: usize = 1;
    pub const ZERO: usize = 2;
    /// All bits but the sign's.
    pub const ABS: usize = 3;
    /// The fraction's bits.
    pub const FRACTION: usize = 4;
    pub const SQRT_2: usize = 5;
    /// The integers 1 and 1023, as 64 bits.
    pub const INT_ONE: usize = 6;
    pub const INT_BIAS: usize = 7;
    pub const TWO_52: usize = 8;
    /// `2⁵² + 1023`.
    pub const TWO_52_AND_BIAS: usize = 9;
    pub const LN_2: usize = 10;
    pub const EXP_LIMIT: usize = 11;
    pub const NEG_EXP_LIMIT: usize = 12;
    pub const LOG2_E: usize = 13;
    pub const ROUND_SHIFT: usize = 14;
    pub const LN2_HI: usize = 15;
    pub const LN2_LO: usize = 16;
    /// `LN_SERIES`, from its first coefficient.
    pub const LN_SERIES: usize = 17;
    /// `EXP_SERIES`, from its first coefficient.
    pub const EXP_SERIES: usize = 27;
    /// Entries.
    pub const LEN: usize = 37;
}

/// [`table64`]'s values, as bits.
static TABLE64: [u64; table64::LEN] = {
    let mut t = [0u64; table64::LEN];
    t[table64::ONE] = 1.0f64.to_bits();
    t[table64::HALF] = 0.5f64.to_bits();
    t[table64::ZERO] = 0.0f64.to_bits();
    t[table64::ABS] = 0x7FFF_FFFF_FFFF_FFFF;
    t[table64::FRACTION] = 0x000F_FFFF_FFFF_FFFF;
    t[table64::SQRT_2] = std::f64::consts::SQRT_2.to_bits();
    t[table64::INT_ONE] = 1;
    t[table64::INT_BIAS] = 1023;
    t[table64::TWO_52] = math::TWO_52.to_bits();
    t[table64::TWO_52_AND_BIAS] = (math::TWO_52 + 1023.0).to_bits();
    t[table64::LN_2] = std::f64::consts::LN_2.to_bits();
    t[table64::EXP_LIMIT] = math::EXP_LIMIT.to_bits();
    t[table64::NEG_EXP_LIMIT] = (-math::EXP_LIMIT).to_bits();
    t[table64::LOG2_E] = math::LOG2_E.to_bits();
    t[table64::ROUND_SHIFT] = math::ROUND_SHIFT.to_bits();
    t[table64::LN2_HI] = math::LN2_HI.to_bits();
    t[table64::LN2_LO] = math::LN2_LO.to_bits();
    let mut k = 0;
    while k < math::LN_SERIES.len() {
        t[table64::LN_SERIES + k] = math::LN_SERIES[k].to_bits();
        k += 1;
    }
    let mut k = 0;
    while k < math::EXP_SERIES.len() {
        t[table64::EXP_SERIES + k] = math::EXP_SERIES[k].to_bits();
        k += 1;
    }
    t
};

/// The table's entry `i`, broadcast to every lane (rax holds the table's address).
fn c(i: usize) -> AsmMemoryOperand {
    dword_bcst(rax + 4 * i as i32)
}

/// The table's entry `i`, as the one float `vbroadcastss` reads.
fn entry(i: usize) -> AsmMemoryOperand {
    dword_ptr(rax + 4 * i as i32)
}

/// `p = series[0]`, then `p = p·x + series[k]` for the `terms − 1` others (`math.rs`'s polynomials,
/// unfused), into `p`.
fn horner(
    a: &mut CodeAssembler,
    p: AsmRegisterZmm,
    x: AsmRegisterZmm,
    (series, terms): (usize, usize),
) -> Result<(), IcedError> {
    a.vbroadcastss(p, entry(series))?;
    for k in 1..terms {
        a.vmulps(p, p, x)?;
        a.vaddps(p, p, c(series + k))?;
    }
    Ok(())
}

/// `math::clamp_32` of `x` into `d` (not `x`'s register): `high` above, `low` below, NaN kept.
fn clamp_table(
    a: &mut CodeAssembler,
    d: AsmRegisterZmm,
    x: AsmRegisterZmm,
    (low, high): (usize, usize),
) -> Result<(), IcedError> {
    a.vcmpps(k1, x, c(high), GT_OQ)?;
    a.vcmpps(k2, x, c(low), LT_OQ)?;
    a.vmovaps(d, x)?;
    a.vbroadcastss(d.k1(), entry(high))?;
    a.vbroadcastss(d.k2(), entry(low))
}

/// `math::reduce_32` of `x` (`s[0]`'s register or another): `k` as 32-bit integers into `s[1]`, `r`
/// into `s[3]`; `s[2]` and `s[4]` are overwritten.
fn reduce(a: &mut CodeAssembler, x: AsmRegisterZmm, s: &[AsmRegisterZmm]) -> Result<(), IcedError> {
    a.vmulps(s[1], x, c(table::LOG2_E))?;
    a.vaddps(s[1], s[1], c(table::ROUND_SHIFT))?; // shifted
    a.vsubps(s[2], s[1], c(table::ROUND_SHIFT))?; // k
    a.vmulps(s[4], s[2], c(table::LN2_HI))?;
    a.vsubps(s[3], x, s[4])?;
    a.vmulps(s[4], s[2], c(table::LN2_LO))?;
    a.vsubps(s[3], s[3], s[4])?; // r
    a.vpsubd(s[1], s[1], c(table::ROUND_SHIFT)) // k's bits
}

/// `math::expm1_reduced_32` of `r` (`s[3]`) into `s[4]`; `s[2]` is overwritten.
fn expm1_reduced(a: &mut CodeAssembler, s: &[AsmRegisterZmm]) -> Result<(), IcedError> {
    horner(a, s[2], s[3], (table::SERIES, math::EXP_SERIES_32.len()))?;
    a.vmulps(s[4], s[3], s[3])?;
    a.vmulps(s[4], s[4], s[2])?;
    a.vaddps(s[4], s[4], s[3])
}

/// `math::power_of_two_32` of the integers in `k`, in place.
fn power_of_two(a: &mut CodeAssembler, k: AsmRegisterZmm) -> Result<(), IcedError> {
    a.vpaddd(k, k, c(table::BIAS))?;
    a.vpslld(k, k, 23)
}

/// `math::exp_clamped_32` of `x` (already clamped) into `s[5]`; `s[1..5]` are overwritten.
fn exp_clamped(a: &mut CodeAssembler, x: AsmRegisterZmm, s: &[AsmRegisterZmm]) -> Result<(), IcedError> {
    reduce(a, x, s)?;
    expm1_reduced(a, s)?;
    a.vpsrad(s[2], s[1], 1)?; // half
    a.vpsubd(s[1], s[1], s[2])?; // k − half
    power_of_two(a, s[2])?;
    power_of_two(a, s[1])?;
    a.vaddps(s[4], s[4], c(table::ONE))?;
    a.vmulps(s[4], s[4], s[2])?;
    a.vmulps(s[5], s[4], s[1])
}

fn registers(scratch: &[usize]) -> Vec<AsmRegisterZmm> {
    scratch.iter().map(|&r| ZMM[r]).collect()
}

/// `math::exp`, `math::tanh`, `math::sigmoid` or `math::ln` of `x` into `d`: `math.rs`'s operations
/// in its order, lane by lane, into `s[5]`; then `x` itself where it is NaN, as `math.rs` returns it
/// (`ln` answers its special values itself).
fn transcendental(
    a: &mut CodeAssembler,
    f: Func,
    d: AsmRegisterZmm,
    x: AsmRegisterZmm,
    scratch: &[usize],
) -> Result<(), IcedError> {
    let s = registers(scratch);
    // rax: the table, while the process lives.
    a.mov(rax, TABLE.as_ptr() as u64)?;
    a.vcmpps(k3, x, x, UNORD_Q)?;
    match f {
        Func::Exp => {
            clamp_table(a, s[0], x, (table::EXP_LOW, table::EXP_HIGH))?;
            exp_clamped(a, s[0], &s)?;
        }
        Func::Tanh => {
            a.vpandd(s[5], x, c(table::ABS))?;
            clamp_table(a, s[0], s[5], (table::ZERO, table::TANH_LIMIT))?;
            a.vmulps(s[0], s[0], c(table::TWO))?; // 2·a (commutative, so 2·a's bits)
            reduce(a, s[0], &s)?;
            expm1_reduced(a, &s)?;
            power_of_two(a, s[1])?; // s = 2ᵏ
            a.vmulps(s[4], s[1], s[4])?;
            a.vsubps(s[2], s[1], c(table::ONE))?;
            a.vaddps(s[4], s[4], s[2])?; // e^{2a} − 1
            a.vaddps(s[2], s[4], c(table::TWO))?;
            a.vdivps(s[5], s[4], s[2])?;
            // copysign: the quotient is ≥ 0, so the sign bit is x's.
            a.vpandd(s[2], x, c(table::SIGN))?;
            a.vpord(s[5], s[5], s[2])?;
        }
        Func::Sigmoid => {
            a.vpandd(s[5], x, c(table::ABS))?;
            a.vpxord(s[5], s[5], c(table::SIGN))?; // −|x|
            clamp_table(a, s[0], s[5], (table::EXP_LOW, table::EXP_HIGH))?;
            exp_clamped(a, s[0], &s)?; // e
            a.vcmpps(k1, x, c(table::ZERO), LT_OQ)?;
            a.vbroadcastss(s[0], entry(table::ONE))?;
            a.vmovaps(s[0].k1(), s[5])?; // the numerator: e below zero, else 1
            a.vaddps(s[1], s[5], c(table::ONE))?; // 1 + e (commutative)
            a.vdivps(s[5], s[0], s[1])?;
        }
        Func::Ln => {
            ln_positive(a, x, &s)?;
            // math::ln's special values, in its order: ∞, then ±0, then NaN and negatives.
            let special = |a: &mut CodeAssembler, (at, predicate), value: usize| {
                a.vcmpps(k1, x, c(at), predicate)?;
                a.vbroadcastss(s[5].k1(), entry(value))
            };
            special(a, (table::INFINITY, EQ_OQ), table::INFINITY)?;
            special(a, (table::ZERO, EQ_OQ), table::NEG_INFINITY)?;
            special(a, (table::ZERO, NGE_UQ), table::NAN)?;
            return a.vmovaps(d, s[5]);
        }
        other => unreachable!("{other:?} is not transcendental"),
    }
    a.vblendmps(d.k3(), s[5], x)
}

/// `math::ln_positive_32` of every lane of `x` into `s[5]` (lanes that are not positive, finite
/// and nonzero get some value, which `math::ln` replaces).
fn ln_positive(a: &mut CodeAssembler, x: AsmRegisterZmm, s: &[AsmRegisterZmm]) -> Result<(), IcedError> {
    // Subnormals (k1): scaled by 2²³ into the normals, 23 taken off the exponent.
    a.vcmpps(k1, x, c(table::MIN_POSITIVE), LT_OQ)?;
    a.vmovaps(s[0], x)?;
    a.vmulps(s[0].k1(), x, c(table::TWO_23))?; // y
    a.vpandd(s[1], s[0], c(table::MANTISSA))?;
    a.vpord(s[1], s[1], c(table::ONE))?; // the mantissa in [1, 2)
    a.vcmpps(k2, s[1], c(table::SQRT_2), GT_OQ)?; // above √2
    a.vmulps(s[1].k2(), s[1], c(table::HALF))?; // m
    a.vpsrad(s[2], s[0], 23)?;
    a.vpsubd(s[2], s[2], c(table::BIAS))?;
    a.vpaddd(s[2].k2(), s[2], c(table::INT_ONE))?;
    a.vpsubd(s[2].k1(), s[2], c(table::INT_23))?;
    a.vcvtdq2ps(s[2], s[2])?; // e
    a.vsubps(s[1], s[1], c(table::ONE))?; // f
    a.vaddps(s[3], s[1], c(table::TWO))?; // 2 + f (commutative)
    a.vdivps(s[3], s[1], s[3])?; // s
    a.vmulps(s[4], s[3], s[3])?; // w
    horner(a, s[0], s[4], (table::LN_SERIES, math::LN_SERIES_32.len()))?;
    a.vmulps(s[0], s[4], s[0])?; // r = w·p
    a.vsubps(s[4], s[1], s[0])?; // f − r
    a.vmulps(s[4], s[3], s[4])?; // s·(f − r)
    a.vmulps(s[0], s[2], c(table::LN2_LO))?;
    a.vsubps(s[4], s[4], s[0])?; // s·(f − r) − e·LN2_LO
    a.vsubps(s[4], s[1], s[4])?; // f − (…)
    a.vmulps(s[0], s[2], c(table::LN2_HI))?;
    a.vaddps(s[5], s[0], s[4])
}

/// Scratch registers of `**`.
const POW_SCRATCH: usize = 7;

/// `vrndscaleps`/`vrndscalepd`'s immediate for `trunc`: round toward zero, precision exception
/// suppressed.
const TRUNCATE: i32 = 0x0B;

/// [`TABLE64`]'s entry `i`, broadcast to every lane (r10 holds the table's address).
fn q(i: usize) -> AsmMemoryOperand {
    qword_bcst(r10 + 8 * i as i32)
}

/// [`TABLE64`]'s entry `i`, as the one double `vbroadcastsd` reads.
fn entry64(i: usize) -> AsmMemoryOperand {
    qword_ptr(r10 + 8 * i as i32)
}

/// The 256-bit register under each vector register, by number.
const YMM: [AsmRegisterYmm; 32] = [
    ymm0, ymm1, ymm2, ymm3, ymm4, ymm5, ymm6, ymm7, ymm8, ymm9, ymm10, ymm11, ymm12, ymm13, ymm14, ymm15,
    ymm16, ymm17, ymm18, ymm19, ymm20, ymm21, ymm22, ymm23, ymm24, ymm25, ymm26, ymm27, ymm28, ymm29, ymm30,
    ymm31,
];

/// How `**`'s magnitude `|x|ʸ` is computed, as `math::pow` chooses per lane.
enum Magnitude {
    /// A constant integer exponent up to `POWI_LIMIT`: its multiplications, read at compile time.
    Powi(f32),
    /// A constant exponent of another kind: through `ln` and `exp`.
    Exp,
    /// An exponent that varies: both, each lane taking the one `math::pow` takes.
    Either,
}

/// `math::pow` of `x` and `y` into `d`: the magnitude in f64, eight lanes at a time (the low then the
/// high half of the sixteen, rounded once to f32 as `math::pow` rounds), then `math::pow`'s sign and
/// special values over all sixteen.
fn pow(
    a: &mut CodeAssembler,
    d: AsmRegisterZmm,
    (x, y): (AsmRegisterZmm, AsmRegisterZmm),
    constant: Option<f32>,
    scratch: &[usize],
) -> Result<(), IcedError> {
    let s = registers(scratch);
    a.mov(rax, TABLE.as_ptr() as u64)?;
    a.mov(r10, TABLE64.as_ptr() as u64)?;
    let how = match constant {
        Some(n) if n == n.trunc() && n.abs() <= math::POWI_LIMIT => Magnitude::Powi(n),
        Some(_) => Magnitude::Exp,
        None => Magnitude::Either,
    };
    if let Magnitude::Either = how {
        // k4 (low half) and k5 (high): the lanes math::pow multiplies out, an integer exponent up
        // to POWI_LIMIT in magnitude.
        a.vrndscaleps(s[0], y, TRUNCATE)?;
        a.vcmpps(k4, y, s[0], EQ_OQ)?;
        a.vpandd(s[0], y, c(table::ABS))?;
        a.vcmpps(k4.k4(), s[0], c(table::POWI_LIMIT), LE_OQ)?;
        a.kshiftrw(k5, k4, 8)?;
    }
    for high in [false, true] {
        // s0: |x| in f64, s1: y in f64, for this half's eight lanes.
        widen(a, s[0], x, high)?;
        a.vpandq(s[0], s[0], q(table64::ABS))?;
        let magnitude = match how {
            Magnitude::Powi(n) => powi_constant(a, n, &s)?,
            Magnitude::Exp => {
                widen(a, s[1], y, high)?;
                exp_of_product(a, &s)?
            }
            Magnitude::Either => {
                widen(a, s[1], y, high)?;
                powi(a, &s)?;
                let by_exp = exp_of_product(a, &s)?;
                let small = if high { by_exp.k5() } else { by_exp.k4() };
                a.vmovapd(small, s[3])?;
                by_exp
            }
        };
        if high {
            a.vcvtpd2ps(ymm(magnitude), magnitude)?;
            a.vinsertf64x4(s[2], s[2], ymm(magnitude), 1)?;
        } else {
            a.vcvtpd2ps(ymm(s[2]), magnitude)?;
        }
    }
    match constant {
        Some(n) if n.is_finite() && n != 0.0 => pow_specials_constant(a, x, n, s[2], &s)?,
        _ => pow_specials(a, (x, y), s[2], &s)?,
    }
    a.vmovaps(d, s[2])
}

/// The low 256 bits of `z`.
fn ymm(z: AsmRegisterZmm) -> AsmRegisterYmm {
    YMM[ZMM
        .iter()
        .position(|&r| r == z)
        .expect("one of the 32 vector registers")]
}

/// The low or high eight floats of `v`, in f64, into `d`.
fn widen(a: &mut CodeAssembler, d: AsmRegisterZmm, v: AsmRegisterZmm, high: bool) -> Result<(), IcedError> {
    if high {
        a.vextractf64x4(ymm(d), v, 1)?;
        a.vcvtps2pd(d, ymm(d))
    } else {
        a.vcvtps2pd(d, ymm(v))
    }
}

/// `math::powi_f64` of `s[0]` to the power `n`, known here: the same multiplications in the same
/// order (`1·base` is `base` exactly, so the first needs none). Into `s[3]`, which it returns;
/// `s[0]` and `s[4]` are overwritten.
fn powi_constant(a: &mut CodeAssembler, n: f32, s: &[AsmRegisterZmm]) -> Result<AsmRegisterZmm, IcedError> {
    let mut bits = n.abs() as u32;
    let mut first = true;
    if bits == 0 {
        a.vbroadcastsd(s[3], entry64(table64::ONE))?;
    }
    while bits != 0 {
        if bits & 1 == 1 {
            if first {
                a.vmovapd(s[3], s[0])?;
            } else {
                a.vmulpd(s[3], s[3], s[0])?;
            }
            first = false;
        }
        bits >>= 1;
        if bits != 0 {
            a.vmulpd(s[0], s[0], s[0])?;
        }
    }
    if n < 0.0 {
        a.vbroadcastsd(s[4], entry64(table64::ONE))?;
        a.vdivpd(s[3], s[4], s[3])?;
    }
    Ok(s[3])
}

/// `math::powi_f64` of `s[0]` to the power `s[1]` (lanes without a small integer exponent get some
/// value) into `s[3]`; `s[4]`, `s[5]` and `s[6]` are overwritten.
fn powi(a: &mut CodeAssembler, s: &[AsmRegisterZmm]) -> Result<(), IcedError> {
    a.vpandq(s[4], s[1], q(table64::ABS))?; // bits
    a.vmovapd(s[5], s[0])?; // base
    a.vbroadcastsd(s[3], entry64(table64::ONE))?; // result
    for _ in 0..7 {
        a.vmulpd(s[6], s[4], q(table64::HALF))?;
        a.vrndscalepd(s[4], s[6], TRUNCATE)?;
        a.vcmppd(k1, s[6], s[4], NEQ_UQ)?;
        a.vmulpd(s[3].k1(), s[3], s[5])?;
        a.vmulpd(s[5], s[5], s[5])?;
    }
    a.vcmppd(k1, s[1], q(table64::ZERO), LT_OQ)?;
    a.vbroadcastsd(s[4], entry64(table64::ONE))?;
    a.vdivpd(s[3].k1(), s[4], s[3])
}

/// `math::exp_f64(clamp(y·math::ln_f64(x), EXP_LIMIT))` for `x` in `s[0]` and `y` in `s[1]`, into
/// `s[4]`, which it returns; `s[0]`, `s[1]`, `s[5]` and `s[6]` are overwritten.
fn exp_of_product(a: &mut CodeAssembler, s: &[AsmRegisterZmm]) -> Result<AsmRegisterZmm, IcedError> {
    // ln_f64: the mantissa in [1, 2), halved above √2 (k1), whose exponent then counts one more.
    a.vpandq(s[4], s[0], q(table64::FRACTION))?;
    a.vporq(s[4], s[4], q(table64::ONE))?;
    a.vcmppd(k1, s[4], q(table64::SQRT_2), GT_OQ)?;
    a.vmulpd(s[4].k1(), s[4], q(table64::HALF))?; // m
    a.vpsrlq(s[5], s[0], 52)?;
    a.vpaddq(s[5].k1(), s[5], q(table64::INT_ONE))?; // biased
    a.vporq(s[5], s[5], q(table64::TWO_52))?;
    a.vsubpd(s[5], s[5], q(table64::TWO_52_AND_BIAS))?; // e
    a.vsubpd(s[6], s[4], q(table64::ONE))?;
    a.vaddpd(s[4], s[4], q(table64::ONE))?;
    a.vdivpd(s[6], s[6], s[4])?; // s
    a.vmulpd(s[4], s[6], s[6])?; // w
    horner64(a, s[0], s[4], (table64::LN_SERIES, math::LN_SERIES.len()))?;
    a.vmulpd(s[0], s[6], s[0])?; // s·p
    a.vmulpd(s[5], s[5], q(table64::LN_2))?;
    a.vaddpd(s[5], s[5], s[0])?; // ln x (the sum commutes)
    a.vmulpd(s[5], s[1], s[5])?; // z = y·ln x
    // clamp: both tests on z before either writes.
    a.vcmppd(k1, s[5], q(table64::EXP_LIMIT), GT_OQ)?;
    a.vcmppd(k2, s[5], q(table64::NEG_EXP_LIMIT), LT_OQ)?;
    a.vbroadcastsd(s[5].k1(), entry64(table64::EXP_LIMIT))?;
    a.vbroadcastsd(s[5].k2(), entry64(table64::NEG_EXP_LIMIT))?;
    // exp_parts: z = k·ln 2 + r.
    a.vmulpd(s[0], s[5], q(table64::LOG2_E))?;
    a.vaddpd(s[0], s[0], q(table64::ROUND_SHIFT))?; // shifted
    a.vsubpd(s[4], s[0], q(table64::ROUND_SHIFT))?; // k
    a.vmulpd(s[6], s[4], q(table64::LN2_HI))?;
    a.vsubpd(s[1], s[5], s[6])?;
    a.vmulpd(s[6], s[4], q(table64::LN2_LO))?;
    a.vsubpd(s[1], s[1], s[6])?; // r
    horner64(a, s[4], s[1], (table64::EXP_SERIES, math::EXP_SERIES.len()))?;
    a.vmulpd(s[4], s[4], s[1])?;
    a.vmulpd(s[4], s[4], s[1])?;
    a.vaddpd(s[4], s[4], s[1])?; // q
    a.vpsubq(s[0], s[0], q(table64::ROUND_SHIFT))?;
    a.vpaddq(s[0], s[0], q(table64::INT_BIAS))?;
    a.vpsllq(s[0], s[0], 52)?; // 2ᵏ
    a.vmulpd(s[4], s[0], s[4])?;
    a.vaddpd(s[4], s[4], s[0])?; // s·q + s
    Ok(s[4])
}

/// [`horner`] in f64, from [`TABLE64`].
fn horner64(
    a: &mut CodeAssembler,
    p: AsmRegisterZmm,
    x: AsmRegisterZmm,
    (series, terms): (usize, usize),
) -> Result<(), IcedError> {
    a.vbroadcastsd(p, entry64(series))?;
    for k in 1..terms {
        a.vmulpd(p, p, x)?;
        a.vaddpd(p, p, q(series + k))?;
    }
    Ok(())
}

/// `math::pow`'s sign and special values over the magnitude in `r`: each case writes its lanes in
/// the reverse of `math::pow`'s order, so a lane ends with the first case that holds there.
/// `s[0]` and `s[1]` are overwritten, and k1 to k6.
fn pow_specials(
    a: &mut CodeAssembler,
    (x, y): (AsmRegisterZmm, AsmRegisterZmm),
    r: AsmRegisterZmm,
    s: &[AsmRegisterZmm],
) -> Result<(), IcedError> {
    a.vrndscaleps(s[0], y, TRUNCATE)?;
    a.vcmpps(k4, y, s[0], EQ_OQ)?; // y is an integer
    a.vmulps(s[1], y, c(table::HALF))?;
    a.vrndscaleps(s[0], s[1], TRUNCATE)?;
    a.vcmpps(k5.k4(), s[1], s[0], NEQ_UQ)?; // y is odd
    a.vcmpps(k6, x, c(table::ZERO), LT_OQ)?; // x < 0
    a.vcmpps(k2, y, c(table::ZERO), LT_OQ)?; // y < 0
    // A negative base to an odd power: negative.
    a.kandw(k1, k6, k5)?;
    a.vpxord(r.k1(), r, c(table::SIGN))?;
    // A negative base to a power that is no integer: NaN.
    a.kandnw(k1, k4, k6)?;
    a.vbroadcastss(r.k1(), entry(table::NAN))?;
    // An infinite base: ∞, or 0 to a negative power; negative if the base is and the power odd.
    a.vpandd(s[0], x, c(table::ABS))?; // |x|
    a.vcmpps(k1, s[0], c(table::INFINITY), EQ_OQ)?;
    a.vbroadcastss(r.k1(), entry(table::INFINITY))?;
    a.kandw(k3, k1, k2)?;
    a.vbroadcastss(r.k3(), entry(table::ZERO))?;
    a.kandw(k3, k1, k6)?;
    a.kandw(k3, k3, k5)?;
    a.vpxord(r.k3(), r, c(table::SIGN))?;
    // An infinite power: 1 for |x| = 1, ∞ when |x| < 1 and y < 0 agree, else 0.
    a.vpandd(s[1], y, c(table::ABS))?;
    a.vcmpps(k1, s[1], c(table::INFINITY), EQ_OQ)?;
    a.vbroadcastss(r.k1(), entry(table::ZERO))?;
    a.vcmpps(k3, s[0], c(table::ONE), LT_OQ)?;
    a.kxnorw(k3, k3, k2)?;
    a.kandw(k3, k3, k1)?;
    a.vbroadcastss(r.k3(), entry(table::INFINITY))?;
    a.vcmpps(k3.k1(), s[0], c(table::ONE), EQ_OQ)?;
    a.vbroadcastss(r.k3(), entry(table::ONE))?;
    // A zero base: ∞ to a negative power, else 0; with the base's sign to an odd power.
    a.vcmpps(k1, x, c(table::ZERO), EQ_OQ)?;
    a.vbroadcastss(r.k1(), entry(table::ZERO))?;
    a.kandw(k3, k1, k2)?;
    a.vbroadcastss(r.k3(), entry(table::INFINITY))?;
    a.kandw(k3, k1, k5)?;
    a.vpandd(s[1], x, c(table::SIGN))?;
    a.vpord(r.k3(), r, s[1])?;
    // A NaN operand: NaN.
    a.vcmpps(k1, x, x, UNORD_Q)?;
    a.vcmpps(k3, y, y, UNORD_Q)?;
    a.korw(k1, k1, k3)?;
    a.vbroadcastss(r.k1(), entry(table::NAN))?;
    // y = 0 or x = 1: 1, even for NaN.
    a.vcmpps(k1, y, c(table::ZERO), EQ_OQ)?;
    a.vcmpps(k3, x, c(table::ONE), EQ_OQ)?;
    a.korw(k1, k1, k3)?;
    a.vbroadcastss(r.k1(), entry(table::ONE))
}

/// [`pow_specials`] for a finite, nonzero exponent `n` known here: its tests on `n` are answered now,
/// so only those on `x` are emitted. `s[0]` and `s[1]` are overwritten, and k1, k3 and k6.
fn pow_specials_constant(
    a: &mut CodeAssembler,
    x: AsmRegisterZmm,
    n: f32,
    r: AsmRegisterZmm,
    s: &[AsmRegisterZmm],
) -> Result<(), IcedError> {
    let integer = n == n.trunc();
    let odd = integer && (n * 0.5) != (n * 0.5).trunc();
    let (zero_to_n, infinity_to_n) = if n < 0.0 {
        (table::INFINITY, table::ZERO)
    } else {
        (table::ZERO, table::INFINITY)
    };
    a.vcmpps(k6, x, c(table::ZERO), LT_OQ)?; // x < 0
    if odd {
        a.vpxord(r.k6(), r, c(table::SIGN))?;
    }
    if !integer {
        a.vbroadcastss(r.k6(), entry(table::NAN))?;
    }
    a.vpandd(s[0], x, c(table::ABS))?;
    a.vcmpps(k1, s[0], c(table::INFINITY), EQ_OQ)?;
    a.vbroadcastss(r.k1(), entry(infinity_to_n))?;
    if odd {
        a.kandw(k3, k1, k6)?;
        a.vpxord(r.k3(), r, c(table::SIGN))?;
    }
    a.vcmpps(k1, x, c(table::ZERO), EQ_OQ)?;
    a.vbroadcastss(r.k1(), entry(zero_to_n))?;
    if odd {
        a.vpandd(s[1], x, c(table::SIGN))?;
        a.vpord(r.k1(), r, s[1])?;
    }
    a.vcmpps(k1, x, x, UNORD_Q)?;
    a.vbroadcastss(r.k1(), entry(table::NAN))?;
    a.vcmpps(k1, x, c(table::ONE), EQ_OQ)?;
    a.vbroadcastss(r.k1(), entry(table::ONE))
}
