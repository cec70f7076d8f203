//! The rule language's transcendental functions: `exp`, `ln`, `tanh`, `sigmoid` and `**`.
//!
//! Defined here, as exact sequences of IEEE operations, rather than by the platform's libm: libm
//! differs between C libraries, their versions and CPUs (glibc picks another `expf` on a CPU with
//! FMA), and a search must give the same bits wherever it runs. Each function widens its f32
//! arguments to f64, computes with additions, subtractions, multiplications, divisions, comparisons
//! and bit operations only (never a fused multiply-add, whose presence varies), and rounds once to
//! f32. The f64 work is accurate to about 2⁻⁴⁴ relative, so every result is within one unit in the
//! last place of the exact value (faithful rounding; `tests` check every f32 input of the unary
//! functions). The compiled kernels do the same operations lane by lane in vector registers, so they
//! agree with this code bit for bit.
//!
//! The method is the textbook one (Muller, *Elementary Functions*, 3rd ed., 2016, ch. 11):
//! `exp` reduces `z = k·ln 2 + r` with `|r| ≤ ln 2 / 2` (Cody and Waite's two-part ln 2) and sums the
//! Taylor series of `eʳ − 1`; `ln` splits `x = 2ᵉ·m` with `m ∈ [√½, √2)` and sums the series of
//! `ln m = 2·atanh((m − 1)/(m + 1))`.

/// `log₂ e`, to scale `z` into units of `ln 2`.
pub(super) const LOG2_E: f64 = std::f64::consts::LOG2_E;
/// `ln 2` with its low 11 bits cleared, so `k·LN2_HI` is exact for every `|k| < 2¹¹`.
pub(super) const LN2_HI: f64 = f64::from_bits(std::f64::consts::LN_2.to_bits() & !0x7ff);
/// The rest of `ln 2` (exact: `LN_2 − LN2_HI` has at most 11 significant bits).
pub(super) const LN2_LO: f64 = std::f64::consts::LN_2 - LN2_HI;
/// `1.5·2⁵²`: adding it rounds a number below `2⁵¹` in magnitude to an integer held in the low bits.
pub(super) const ROUND_SHIFT: f64 = 6_755_399_441_055_744.0;
/// `2⁵²`, whose bit pattern plus a small integer `n` is the f64 `2⁵² + n`.
pub(super) const TWO_52: f64 = 4_503_599_627_370_496.0;
/// Arguments of the exponential beyond ±110 give the same f32 results as ±110 (`e¹¹⁰` overflows and
/// `e⁻¹¹⁰` underflows f32), and f64 holds `e^±110` comfortably.
pub(super) const EXP_LIMIT: f64 = 110.0;
/// `tanh` of any f32 beyond 20 in magnitude rounds to ±1.
pub(super) const TANH_LIMIT: f64 = 20.0;
/// `1/n!` for n = 11 down to 2: the series of `(eʳ − 1 − r)/r` ends with `r¹⁰/11!`, the first term
/// left out is below `2⁻⁴⁴` relative for `|r| ≤ 0.35`.
pub(super) const EXP_SERIES: [f64; 10] = [
    1.0 / 39_916_800.0,
    1.0 / 3_628_800.0,
    1.0 / 362_880.0,
    1.0 / 40_320.0,
    1.0 / 5_040.0,
    1.0 / 720.0,
    1.0 / 120.0,
    1.0 / 24.0,
    1.0 / 6.0,
    1.0 / 2.0,
];
/// `2/(2n+1)` for n = 9 down to 0: `ln m = s·Σ 2·s²ⁿ/(2n+1)`, `s = (m−1)/(m+1)`, `|s| ≤ 0.172`; the
/// first term left out is below `2⁻⁴⁸` relative.
pub(super) const LN_SERIES: [f64; 10] = [
    2.0 / 19.0,
    2.0 / 17.0,
    2.0 / 15.0,
    2.0 / 13.0,
    2.0 / 11.0,
    2.0 / 9.0,
    2.0 / 7.0,
    2.0 / 5.0,
    2.0 / 3.0,
    2.0,
];

/// `eᶻ` as `(s, q)` with `eᶻ = s·(1 + q)`: `s = 2ᵏ` and `q = eʳ − 1`, for `|z| ≤ EXP_LIMIT`.
pub(crate) fn exp_parts(z: f64) -> (f64, f64) {
    let shifted = z * LOG2_E + ROUND_SHIFT;
    let k = shifted - ROUND_SHIFT;
    let r = (z - k * LN2_HI) - k * LN2_LO;
    let mut p = EXP_SERIES[0];
    for &c in &EXP_SERIES[1..] {
        p = p * r + c;
    }
    let q = (p * r) * r + r;
    // The low bits of `shifted` hold k; k + 1023 in the exponent field is 2ᵏ.
    let biased = shifted
        .to_bits()
        .wrapping_sub(ROUND_SHIFT.to_bits())
        .wrapping_add(1023);
    (f64::from_bits(biased << 52), q)
}

/// `eᶻ` in f64, `|z| ≤ EXP_LIMIT`.
pub(crate) fn exp_f64(z: f64) -> f64 {
    let (s, q) = exp_parts(z);
    s * q + s
}

/// `ln x` in f64 for a positive, finite f32 `x` (subnormals included: they are normal in f64).
pub(crate) fn ln_f64(x: f64) -> f64 {
    let bits = x.to_bits();
    let mantissa = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 1f64.to_bits());
    let above = mantissa > std::f64::consts::SQRT_2;
    let m = if above { mantissa * 0.5 } else { mantissa };
    let biased = (bits >> 52) + u64::from(above);
    let e = f64::from_bits(TWO_52.to_bits() | biased) - (TWO_52 + 1023.0);
    let s = (m - 1.0) / (m + 1.0);
    let w = s * s;
    let mut p = LN_SERIES[0];
    for &c in &LN_SERIES[1..] {
        p = p * w + c;
    }
    e * std::f64::consts::LN_2 + s * p
}

/// Clamps to `[-limit, limit]`; NaN passes through (the callers answer NaN themselves).
fn clamp(z: f64, limit: f64) -> f64 {
    if z > limit {
        limit
    } else if z < -limit {
        -limit
    } else {
        z
    }
}

/// `eˣ`.
pub fn exp(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    exp_f64(clamp(f64::from(x), EXP_LIMIT)) as f32
}

/// `ln x`: NaN below zero, `-∞` at zero.
pub fn ln(x: f32) -> f32 {
    if x.is_nan() || x < 0.0 {
        return f32::NAN;
    }
    if x == 0.0 {
        return f32::NEG_INFINITY;
    }
    if x == f32::INFINITY {
        return x;
    }
    ln_f64(f64::from(x)) as f32
}

/// `tanh x = (e²ˣ − 1)/(e²ˣ + 1)`, from `e^{2|x|} − 1` so small arguments keep their precision.
pub fn tanh(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    let z = 2.0 * clamp(f64::from(x.abs()), TANH_LIMIT);
    let (s, q) = exp_parts(z);
    let em1 = s * q + (s - 1.0);
    let t = (em1 / (em1 + 2.0)) as f32;
    t.copysign(x)
}

/// `1/(1 + e⁻ˣ)`, rounded once.
pub fn sigmoid(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    (1.0 / (1.0 + exp_f64(clamp(-f64::from(x), EXP_LIMIT)))) as f32
}

/// `xʸ`, with the special values of C99's `pow` (Annex F.9.4.4): `x⁰ = 1` and `1ʸ = 1` even for NaN,
/// a negative `x` only to an integer power, and the usual zeros and infinities.
pub fn pow(x: f32, y: f32) -> f32 {
    if y == 0.0 || x == 1.0 {
        return 1.0;
    }
    if x.is_nan() || y.is_nan() {
        return f32::NAN;
    }
    let y_integer = y == y.trunc();
    let y_odd = y_integer && (y * 0.5) != (y * 0.5).trunc();
    if x == 0.0 {
        let magnitude = if y < 0.0 { f32::INFINITY } else { 0.0 };
        return if y_odd { magnitude.copysign(x) } else { magnitude };
    }
    if y.is_infinite() {
        let a = x.abs();
        return if a == 1.0 {
            1.0
        } else if (a < 1.0) == (y < 0.0) {
            f32::INFINITY
        } else {
            0.0
        };
    }
    if x.is_infinite() {
        let magnitude = if y < 0.0 { 0.0 } else { f32::INFINITY };
        return if x < 0.0 && y_odd { -magnitude } else { magnitude };
    }
    if x < 0.0 && !y_integer {
        return f32::NAN;
    }
    let z = f64::from(y) * ln_f64(f64::from(x.abs()));
    let magnitude = exp_f64(clamp(z, EXP_LIMIT)) as f32;
    if x < 0.0 && y_odd { -magnitude } else { magnitude }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `got` is one of the two f32 around `exact` (`exact` itself when it is representable; at the
    /// ends of the range, the largest finite f32 and infinity, zero and the smallest subnormal).
    fn faithful(got: f32, exact: f64) -> bool {
        let nearest = exact as f32;
        if got.is_nan() || nearest.is_nan() {
            return got.is_nan() && nearest.is_nan();
        }
        if got == nearest || f64::from(nearest) == exact {
            return got == nearest;
        }
        let other = if exact > f64::from(nearest) { nearest.next_up() } else { nearest.next_down() };
        got == other
    }

    fn check_unary(name: &str, f: fn(f32) -> f32, exact: fn(f64) -> f64, stride: usize) {
        for bits in (0..=u32::MAX).step_by(stride) {
            let x = f32::from_bits(bits);
            let (got, want) = (f(x), exact(f64::from(x)));
            assert!(faithful(got, want), "{name}({x:e}) = {got:e}, exact {want:e}");
        }
    }

    fn tanh_exact(x: f64) -> f64 {
        x.tanh()
    }
    fn sigmoid_exact(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    /// Every 1009th f32 (4.3 million inputs: all exponents, signs and specials) against f64 libm, whose
    /// results are far more accurate than an f32 ulp. `cargo test -- --ignored every_f32` checks all 2³².
    #[test]
    fn unary_functions_are_faithful_on_a_spread_of_inputs() {
        check_unary("exp", exp, f64::exp, 1009);
        check_unary("ln", ln, f64::ln, 1009);
        check_unary("tanh", tanh, tanh_exact, 1009);
        check_unary("sigmoid", sigmoid, sigmoid_exact, 1009);
    }

    #[test]
    #[ignore = "4×2³² evaluations, about a minute"]
    fn every_f32() {
        check_unary("exp", exp, f64::exp, 1);
        check_unary("ln", ln, f64::ln, 1);
        check_unary("tanh", tanh, tanh_exact, 1);
        check_unary("sigmoid", sigmoid, sigmoid_exact, 1);
    }

    #[test]
    fn special_values() {
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(89.0), f32::INFINITY);
        assert_eq!(ln(1.0), 0.0);
        assert_eq!(ln(0.0), f32::NEG_INFINITY);
        assert!(ln(-1.0).is_nan());
        assert_eq!(tanh(-0.0).to_bits(), (-0.0f32).to_bits());
        assert_eq!(tanh(f32::NEG_INFINITY), -1.0);
        assert_eq!(sigmoid(0.0), 0.5);
        assert_eq!(sigmoid(f32::NEG_INFINITY), 0.0);
        assert_eq!(sigmoid(f32::INFINITY), 1.0);
        for f in [exp, ln, tanh, sigmoid] {
            assert!(f(f32::NAN).is_nan());
        }
    }

    #[test]
    fn pow_follows_c99_special_values() {
        let nan = f32::NAN;
        let inf = f32::INFINITY;
        assert_eq!(pow(nan, 0.0), 1.0);
        assert_eq!(pow(1.0, nan), 1.0);
        assert!(pow(nan, 1.0).is_nan());
        assert!(pow(-2.0, 0.5).is_nan());
        assert_eq!(pow(-2.0, 3.0), -8.0);
        assert_eq!(pow(-2.0, 2.0), 4.0);
        assert_eq!(pow(-0.0, -3.0), -inf);
        assert_eq!(pow(0.0, -2.0), inf);
        assert_eq!(pow(-0.0, 3.0).to_bits(), (-0.0f32).to_bits());
        assert_eq!(pow(-1.0, inf), 1.0);
        assert_eq!(pow(0.5, -inf), inf);
        assert_eq!(pow(2.0, -inf), 0.0);
        assert_eq!(pow(-inf, -3.0).to_bits(), (-0.0f32).to_bits());
        assert_eq!(pow(-inf, 3.0), -inf);
        assert_eq!(pow(inf, -1.0), 0.0);
        assert_eq!(pow(10.0, 39.0), inf);
    }

    /// `xʸ` is faithful against f64 libm over random arguments whose results span f32's range.
    #[test]
    fn pow_is_faithful() {
        let mut rng = crate::rng::Rng::stream(0, crate::rng::Purpose::Init, &[]);
        for _ in 0..200_000 {
            let x = 2f32.powi((rng.next_u64() % 280) as i32 - 150) * (1.0 + rng.uniform());
            let y = (rng.uniform() * 2.0 - 1.0) * 2f32.powi((rng.next_u64() % 16) as i32 - 8);
            let y = if rng.uniform() < 0.3 { y.trunc() } else { y };
            for (x, y) in [(x, y), (-x, y.trunc())] {
                if !x.is_finite() || x == 0.0 {
                    continue;
                }
                let exact = f64::from(x.abs()).powf(f64::from(y));
                let odd = y * 0.5 != (y * 0.5).trunc();
                let exact = if x < 0.0 && odd { -exact } else { exact };
                let got = pow(x, y);
                assert!(faithful(got, exact), "pow({x:e}, {y:e}) = {got:e}, exact {exact:e}");
            }
        }
    }
}
