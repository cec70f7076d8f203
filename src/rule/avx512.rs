//! Native kernels with sixteen lanes, for the parts of rule programs whose every operation is exact in
//! IEEE arithmetic: `+ − × /`, `sqrt`, comparisons and logic, `select`, `abs`, `sign`, `step`,
//! `relu`, `min`, `max`, `clamp`.
//!
//! Why: Cranelift (0.135) lowers only 128-bit vectors on x86-64, so its kernels (`jit.rs`) run four
//! synapses per instruction where an AVX-512 core runs sixteen (`cargo bench --bench rule_vm`:
//! `compiled` against `compiled_cranelift`). Those operations are single AVX-512 instructions (or a
//! compare and a masked move) that round exactly as the interpreter's scalar ones, so this code needs
//! no function of `math.rs` written out and gives the interpreter's bits by construction; a part with
//! `exp`, `ln`, `tanh`, `sigmoid` or `**` stays with Cranelift. The machine code is encoded with
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

/// The vector registers, by number.
const ZMM: [AsmRegisterZmm; 32] = [
    zmm0, zmm1, zmm2, zmm3, zmm4, zmm5, zmm6, zmm7, zmm8, zmm9, zmm10, zmm11, zmm12, zmm13, zmm14, zmm15,
    zmm16, zmm17, zmm18, zmm19, zmm20, zmm21, zmm22, zmm23, zmm24, zmm25, zmm26, zmm27, zmm28, zmm29, zmm30,
    zmm31,
];

/// Why `code` has no AVX-512 kernel, if it has none: an operation that is not exact in IEEE
/// arithmetic (those are `math.rs`'s functions, which only the Cranelift kernels write out), or more
/// values than vector registers.
fn unsupported(code: &Code, scalar: &[bool]) -> Option<String> {
    if let Some(i) = code.instructions.iter().find(|i| !exact(i.op)) {
        return Some(format!("{:?} is not exact in IEEE arithmetic", i.op));
    }
    let needed = Layout::new(code, scalar).registers;
    (needed > ZMM.len()).then(|| format!("{needed} vector registers needed, 32 exist"))
}

/// Whether `op` is computed by this module (exact in IEEE arithmetic).
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
            | Func::Step => true,
            Func::Exp | Func::Ln | Func::Tanh | Func::Sigmoid | Func::Randn => false,
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
    /// A scratch register (`clamp`'s intermediate).
    scratch: usize,
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
        let scratch = take();
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
                    let t = ZMM[layout.scratch];
                    pick(a, t, (arg(x), arg(y)), GT_OQ)?;
                    pick(a, d, (t, arg(z)), LT_OQ)?;
                }
                Func::Exp | Func::Ln | Func::Tanh | Func::Sigmoid | Func::Randn => {
                    unreachable!("refused by `unsupported`")
                }
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
