//! The rule language's transcendental functions: `exp`, `ln`, `tanh`, `sigmoid` and `**`.
//!
//! Defined here, as exact sequences of IEEE operations, rather than by the platform's libm: libm
//! differs between C libraries, their versions and CPUs (glibc picks another `expf` on a CPU with
//! FMA), and a search must give the same bits wherever it runs. Only additions, subtractions,
//! multiplications, divisions, comparisons, conversions and bit operations are used (never a fused
//! multiply-add, whose presence varies), so the compiled kernels (`jit.rs`) can do the same operations
//! lane by lane in vector registers and agree with this code bit for bit.
//!
//! `exp`, `ln`, `tanh` and `sigmoid` compute in f32, four lanes to a vector. Measured on every f32
//! input (`cargo test -- --ignored every_f32`): `exp` within 0.957 units in the last place of the
//! exact value, `ln` 0.954, `tanh` 2.424, `sigmoid` 2.402; the regular tests hold them to 3. `**` computes in f64 and rounds
//! once (faithful: within one unit): in f32, `y·ln x` would carry `ln x`'s rounding error, amplified
//! by `|y·ln x|`, into the result.
//!
//! The method is the textbook one (Muller, *Elementary Functions*, 3rd ed., 2016, ch. 11): `exp`
//! reduces `x = k·ln 2 + r` with `|r| ≤ ln 2 / 2` (Cody and Waite's two-part ln 2) and sums the Taylor
//! series of `eʳ − 1`; `ln` splits `x = 2ᵉ·m` with `m ∈ [√½, √2)` and sums the series of
//! `ln m = 2·atanh(s)`, `s = (m − 1)/(m + 1)`, written as `f − s·(f − R)` with `f = m − 1` exact
//! (Tang's and fdlibm's arrangement, which keeps the large part exact).

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
/// Exponents of `**` beyond ±110 give the same f32 results as ±110 (`e¹¹⁰` overflows and `e⁻¹¹⁰`
/// underflows f32), and f64 holds `e^±110` comfortably.
pub(super) const EXP_LIMIT: f64 = 110.0;
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

/// `log₂ e` in f32.
pub(super) const LOG2_E_32: f32 = std::f32::consts::LOG2_E;
/// `ln 2` with its low 12 bits cleared: `k·LN2_HI_32` is exact for every `|k| < 2¹²`.
pub(super) const LN2_HI_32: f32 = f32::from_bits(std::f32::consts::LN_2.to_bits() & !0xfff);
/// The rest of `ln 2`, from the f64 value so it carries 24 more bits.
pub(super) const LN2_LO_32: f32 = (std::f64::consts::LN_2 - LN2_HI_32 as f64) as f32;
/// `1.5·2²³`: adding it rounds an f32 below `2²²` in magnitude to an integer held in the low bits.
pub(super) const ROUND_SHIFT_32: f32 = 12_582_912.0;
/// `eˣ` of every f32 above 89 overflows, below −104 underflows to zero.
pub(super) const EXP_HIGH_32: f32 = 89.0;
pub(super) const EXP_LOW_32: f32 = -104.0;
/// `tanh` of every f32 beyond 10 in magnitude rounds to ±1.
pub(super) const TANH_LIMIT_32: f32 = 10.0;
/// `1/n!` for n = 8 down to 2: `eʳ − 1 = r + r²·P(r)`; the first term left out, `r⁹/9!`, is below
/// `2⁻³¹` for `|r| ≤ 0.35`.
pub(super) const EXP_SERIES_32: [f32; 7] = [
    1.0 / 40_320.0,
    1.0 / 5_040.0,
    1.0 / 720.0,
    1.0 / 120.0,
    1.0 / 24.0,
    1.0 / 6.0,
    1.0 / 2.0,
];
/// `2/(2n+1)` for n = 5 down to 1: `R = w·Σ 2wⁿ⁻¹/(2n+1)`, `w = s²`, `|s| ≤ 0.172`; the first term
/// left out is below `2⁻³⁰` relative.
pub(super) const LN_SERIES_32: [f32; 5] = [2.0 / 11.0, 2.0 / 9.0, 2.0 / 7.0, 2.0 / 5.0, 2.0 / 3.0];

/// `x = k·ln 2 + r`: returns `(k, r)`, for `|x| < 2²¹`.
pub(crate) fn reduce_32(x: f32) -> (i32, f32) {
    let shifted = x * LOG2_E_32 + ROUND_SHIFT_32;
    let k = shifted - ROUND_SHIFT_32;
    let r = (x - k * LN2_HI_32) - k * LN2_LO_32;
    // The low bits of `shifted` hold k.
    let k_int = (shifted.to_bits() as i32).wrapping_sub(ROUND_SHIFT_32.to_bits() as i32);
    (k_int, r)
}

/// `eʳ − 1` for `|r| ≤ 0.35`.
pub(crate) fn expm1_reduced_32(r: f32) -> f32 {
    let mut p = EXP_SERIES_32[0];
    for &c in &EXP_SERIES_32[1..] {
        p = p * r + c;
    }
    (r * r) * p + r
}

/// `2ᵏ` for `-126 ≤ k ≤ 127`.
pub(crate) fn power_of_two_32(k: i32) -> f32 {
    f32::from_bits((k.wrapping_add(127) as u32) << 23)
}

/// `eˣ` for `x` in `[EXP_LOW_32, EXP_HIGH_32]`: `(1 + q)·2^⌊k/2⌋·2^(k−⌊k/2⌋)`, two scalings so both
/// factors are normal; the second rounds once, into the subnormals where the result lies there.
pub(crate) fn exp_clamped_32(x: f32) -> f32 {
    let (k, r) = reduce_32(x);
    let q = expm1_reduced_32(r);
    let half = k >> 1;
    ((1.0 + q) * power_of_two_32(half)) * power_of_two_32(k - half)
}

/// `ln x` for a positive, finite, nonzero f32.
pub(crate) fn ln_positive_32(x: f32) -> f32 {
    // Subnormals: scale into the normals by 2²³ and take 23 off the exponent.
    let subnormal = x < f32::MIN_POSITIVE;
    let y = if subnormal { x * 8_388_608.0 } else { x };
    let bits = y.to_bits() as i32;
    let mantissa = f32::from_bits(((bits & 0x007f_ffff) | 0x3f80_0000) as u32);
    let above = mantissa > std::f32::consts::SQRT_2;
    let m = if above { mantissa * 0.5 } else { mantissa };
    let exponent = (bits >> 23) - 127 + i32::from(above) - if subnormal { 23 } else { 0 };
    let e = exponent as f32;
    let f = m - 1.0;
    let s = f / (2.0 + f);
    let w = s * s;
    let mut p = LN_SERIES_32[0];
    for &c in &LN_SERIES_32[1..] {
        p = p * w + c;
    }
    let r = w * p;
    e * LN2_HI_32 + (f - (s * (f - r) - e * LN2_LO_32))
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

/// Clamps to `[low, high]`; NaN passes through.
fn clamp_32(x: f32, low: f32, high: f32) -> f32 {
    if x > high {
        high
    } else if x < low {
        low
    } else {
        x
    }
}

/// `eˣ`.
pub fn exp(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    exp_clamped_32(clamp_32(x, EXP_LOW_32, EXP_HIGH_32))
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
    ln_positive_32(x)
}

/// `tanh x = (e²ˣ − 1)/(e²ˣ + 1)`, from `e^{2|x|} − 1` so small arguments keep their precision.
pub fn tanh(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    let a = clamp_32(x.abs(), 0.0, TANH_LIMIT_32);
    let (k, r) = reduce_32(2.0 * a);
    let s = power_of_two_32(k);
    let em1 = s * expm1_reduced_32(r) + (s - 1.0);
    (em1 / (em1 + 2.0)).copysign(x)
}

/// `1/(1 + e⁻ˣ)`, as `eˣ/(1 + eˣ)` below zero, so `e^|x|` never overflows.
pub fn sigmoid(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    let e = exp_clamped_32(clamp_32(-x.abs(), EXP_LOW_32, EXP_HIGH_32));
    let numerator = if x < 0.0 { e } else { 1.0 };
    numerator / (1.0 + e)
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
    let magnitude = if y_integer && y.abs() <= POWI_LIMIT {
        powi_f64(f64::from(x.abs()), f64::from(y))
    } else {
        exp_f64(clamp(f64::from(y) * ln_f64(f64::from(x.abs())), EXP_LIMIT))
    } as f32;
    if x < 0.0 && y_odd { -magnitude } else { magnitude }
}

/// Integer exponents up to this magnitude are computed by multiplication ([`powi_f64`]).
pub(super) const POWI_LIMIT: f32 = 64.0;

/// `xⁿ` for an integer `n`, `|n| ≤ 64`, by binary powering in f64: seven fixed rounds, each
/// multiplying in the base where `n`'s next bit is set (at most 12 roundings of 2⁻⁵³: faithful after
/// the final rounding to f32, and far cheaper than `ln` and `exp`).
pub(crate) fn powi_f64(x: f64, n: f64) -> f64 {
    let mut bits = n.abs();
    let mut base = x;
    let mut result = 1.0;
    for _ in 0..7 {
        let half = bits * 0.5;
        let whole = half.trunc();
        if half != whole {
            result *= base;
        }
        base *= base;
        bits = whole;
    }
    if n < 0.0 { 1.0 / result } else { result }
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
        let other = if exact > f64::from(nearest) {
            nearest.next_up()
        } else {
            nearest.next_down()
        };
        got == other
    }

    /// How many units in the last place `got` lies from `exact` (0 where both are NaN, or both round
    /// to the same infinity; infinite where only one is NaN or infinite).
    fn ulp_error(got: f32, exact: f64) -> f64 {
        if got.is_nan() || exact.is_nan() {
            return if got.is_nan() && exact.is_nan() {
                0.0
            } else {
                f64::INFINITY
            };
        }
        let nearest = exact as f32;
        if got.is_infinite() || nearest.is_infinite() {
            let near_limit = got.abs() == f32::MAX && nearest.is_infinite();
            return if got == nearest || near_limit {
                0.0
            } else {
                f64::INFINITY
            };
        }
        let magnitude = exact.abs().max(f64::from(f32::MIN_POSITIVE));
        let unit = 2f64.powi(magnitude.log2().floor() as i32 - 23);
        (f64::from(got) - exact).abs() / unit
    }

    /// The largest error of `f` in units in the last place over every `stride`-th f32.
    fn worst_unary(f: fn(f32) -> f32, exact: fn(f64) -> f64, stride: usize) -> (f64, f32) {
        let mut worst = (0.0, 0.0);
        for bits in (0..=u32::MAX).step_by(stride) {
            let x = f32::from_bits(bits);
            let error = ulp_error(f(x), exact(f64::from(x)));
            if error > worst.0 {
                worst = (error, x);
            }
        }
        worst
    }

    fn check_unary(name: &str, f: fn(f32) -> f32, exact: fn(f64) -> f64, stride: usize) {
        let (error, at) = worst_unary(f, exact, stride);
        assert!(error <= 3.0, "{name}: {error:.3} ulp at {at:e}");
    }

    type Unary = fn(f32) -> f32;
    type Exact = fn(f64) -> f64;

    fn tanh_exact(x: f64) -> f64 {
        x.tanh()
    }
    fn sigmoid_exact(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    /// Within 3 ulp on every 1009th f32 (4.3 million inputs: all exponents, signs and specials),
    /// against f64 libm, whose results are far more accurate than an f32 ulp.
    /// `cargo test -- --ignored every_f32` checks all 2³² and prints the worst error of each.
    #[test]
    fn unary_functions_are_within_three_ulp_on_a_spread_of_inputs() {
        check_unary("exp", exp, f64::exp, 1009);
        check_unary("ln", ln, f64::ln, 1009);
        check_unary("tanh", tanh, tanh_exact, 1009);
        check_unary("sigmoid", sigmoid, sigmoid_exact, 1009);
    }

    #[test]
    #[ignore = "4×2³² evaluations against f64 libm, about half an hour"]
    fn every_f32() {
        let functions: [(&str, Unary, Exact); 4] = [
            ("exp", exp, f64::exp),
            ("ln", ln, f64::ln),
            ("tanh", tanh, tanh_exact),
            ("sigmoid", sigmoid, sigmoid_exact),
        ];
        for (name, f, exact) in functions {
            let (error, at) = worst_unary(f, exact, 1);
            eprintln!("{name}: at most {error:.3} ulp (at {at:e})");
            assert!(error <= 3.0, "{name}: {error:.3} ulp at {at:e}");
        }
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
                assert!(
                    faithful(got, exact),
                    "pow({x:e}, {y:e}) = {got:e}, exact {exact:e}"
                );
            }
        }
    }
}
