//! Native kernels with sixteen lanes, for the parts of rule programs whose every operation is exact in
//! IEEE arithmetic: `+ − × /`, `sqrt`, comparisons and logic, `select`, `abs`, `sign`, `step`,
//! `relu`, `min`, `max`, `clamp`; and `exp`, `tanh`, `sigmoid` and `ln`, which `math.rs` defines as
//! sequences of such operations (and integer ones on the bits).
//!
//! Why: Cranelift (0.135) lowers only 128-bit vectors on x86-64, so its kernels (`jit.rs`) run four
//! synapses per instruction where an AVX-512 core runs sixteen (`cargo bench --bench rule_vm`:
//! `compiled` against `compiled_cranelift`). Those operations are single AVX-512 instructions (or a
//! compare and a masked move) that round exactly as the interpreter's scalar ones, so they give the
//! interpreter's bits by construction; `exp`, `tanh`, `sigmoid` and `ln` are `math.rs`'s operations
//! in its order, lane by lane, their constants read by broadcast from a table rather than kept in
//! registers. A per-synapse `exp` left to Cranelift cost a rule half its speed (a `pmnist-quick`
//! update's 50,176 synapses at four lanes: 0.47× native SGD instead of 0.73×). A part with `**`
//! (computed in f64) stays with Cranelift. The machine code is encoded with
//! `iced-x86`'s assembler, from AVX-512 Foundation alone (the bitwise `abs` and `−` as the integer
//! `vpandd`/`vpxord`: `vandps`/`vxorps` on 512 bits need AVX-512DQ).
//!
//! The generated function has `jit.rs`'s signature and contract (`Entry`): `(inputs, outputs, n)`, a
//! pointer per slot (one float for a scalar slot, `n` for the others) and per output (`n` floats), with
//! `n` a multiple of four. It runs sixteen elements per trip, then the last `n mod 16` under a mask
//! (masked-off lanes are neither loaded nor stored). Every value lives in a register of its own for the
//! whole loop: constants and scalar slots are broadcast once, per-element slots loaded at the top of
//! each trip, and each of the program's registers has one; a program needing more than the 32 vector
//! registers is refused (and stays with Cranelift).

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
/// (`**`, `randn()`: only the Cranelift kernels do), or more values than vector registers.
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
        Op::Binary(BinOp::Pow) => false,
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
    /// Per program register, its vector register.
    registers_of: Vec<usize>,
    /// Scratch registers: `clamp`'s intermediate, and [`SCRATCH`] for `exp`, `tanh`, `sigmoid`, `ln`.
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
        let registers_of = (0..code.registers).map(|_| take()).collect();
        let transcendental = code
            .instructions
            .iter()
            .any(|i| matches!(i.op, Op::Call(Func::Exp | Func::Tanh | Func::Sigmoid | Func::Ln)));
        let scratch = (0..if transcendental { SCRATCH } else { 1 })
            .map(|_| take())
            .collect();
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
                    BinOp::Pow => unreachable!("refused by `unsupported`"),
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
    /// Entries.
    pub const LEN: usize = 35;
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
