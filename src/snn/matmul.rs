//! Dense f32 matrix products over row-major slices, through the `gemm` crate.
//!
//! One entry point, [`matmul`], with the storage of each operand stated explicitly, so call sites read
//! like the equations (`I = X·Wᵀ`, `∂W = ∂Iᵀ·X`) and no transpose is ever materialised. Always
//! single-threaded: synaptogen parallelises across evaluations, never inside one (the parallel search keeps every core busy; threads inside a GEMM would only contend).

/// How an operand is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// The matrix itself, row-major.
    RowMajor,
    /// Its transpose, row-major (so the matrix is read column-major).
    Transposed,
}

/// `dst (m×n) = a (m×k) · b (k×n)`, or `dst += …` when `accumulate`. All slices row-major; `a` and
/// `b` are read according to their [`Storage`].
///
/// Panics when a slice is shorter than its shape needs (a caller bug, never user input).
pub fn matmul(
    dst: &mut [f32],
    a: &[f32],
    a_storage: Storage,
    b: &[f32],
    b_storage: Storage,
    shape: (usize, usize, usize),
    accumulate: bool,
) {
    product(dst, a, a_storage, b, b_storage, shape, accumulate, 1.0);
}

/// `dst = scale · (a · b)`: the bits of [`matmul`] without `accumulate` followed by `*d *= scale`.
///
/// Where gemm sums each element as one chain and stores `scale · sum` (the shapes and CPUs of
/// [`super::sparse::sparse_rows_supported`], see `sparse.rs`), gemm scales as it stores, saving a pass
/// over `dst`; elsewhere its other paths apply the factor differently, so the scaling is a pass of
/// its own.
pub fn matmul_scaled(
    dst: &mut [f32],
    a: &[f32],
    a_storage: Storage,
    b: &[f32],
    b_storage: Storage,
    (m, k, n): (usize, usize, usize),
    scale: f32,
) {
    // Scale 1 is `matmul` itself (the weight gradients through `outer_products_skipping_zeros`,
    // online ones included, would otherwise pay a pass multiplying by 1).
    if scale == 1.0 || super::sparse::sparse_rows_supported((m, k, n)) {
        product(dst, a, a_storage, b, b_storage, (m, k, n), false, scale);
    } else {
        product(dst, a, a_storage, b, b_storage, (m, k, n), false, 1.0);
        dst[..m * n].iter_mut().for_each(|d| *d *= scale);
    }
}

/// `dst = (a · b) / divisor`: the bits of [`matmul`] without `accumulate` followed by `*d /= divisor`
/// (a mean over `divisor` rows). Dividing by a power of two is multiplying by its exact reciprocal,
/// so then gemm can scale as it stores ([`matmul_scaled`]); other divisors keep the division pass.
pub fn matmul_divided(
    dst: &mut [f32],
    a: &[f32],
    a_storage: Storage,
    b: &[f32],
    b_storage: Storage,
    (m, k, n): (usize, usize, usize),
    divisor: usize,
) {
    if divisor.is_power_of_two() {
        let scale = 1.0 / divisor as f32;
        matmul_scaled(dst, a, a_storage, b, b_storage, (m, k, n), scale);
    } else {
        product(dst, a, a_storage, b, b_storage, (m, k, n), false, 1.0);
        dst[..m * n].iter_mut().for_each(|d| *d /= divisor as f32);
    }
}

#[allow(clippy::too_many_arguments)]
fn product(
    dst: &mut [f32],
    a: &[f32],
    a_storage: Storage,
    b: &[f32],
    b_storage: Storage,
    (m, k, n): (usize, usize, usize),
    accumulate: bool,
    scale: f32,
) {
    if !accumulate && is_outer_product(a_storage, b_storage, (m, k, n)) {
        // An outer product (a weight gradient of one example, online learning): every element is
        // one product, written once. gemm does it with 4-lane SSE stores; this is its arithmetic on
        // AVX2 where the CPU has it.
        return outer_product(&mut dst[..m * n], &a[..m], &b[..n], scale);
    }
    if transposing_pays(b_storage, (m, k, n)) && (!accumulate || scale == 1.0) {
        return through_gemm_transposed(dst, (a, a_storage), (b, b_storage), (m, k, n), accumulate, scale);
    }
    through_gemm(dst, a, a_storage, b, b_storage, (m, k, n), accumulate, scale);
}

/// Whether [`product`] has gemm write a row-major `dst` of this shape transposed (column-major),
/// then transposes it. gemm packs a transposed `b` (the weights of a training batch's first layer,
/// `I = x·Wᵀ`, 196 × 256, which change with every update) for every call when it writes a wide
/// row-major `dst` of few rows, and does not when it writes the column-major one.
/// `cargo bench --bench train -- first_layer/gemm/32`: 45 µs row-major, 35 µs transposed and
/// transposed back (on an AVX-512 core). The bits are the same where gemm sums each element as one
/// chain stored once, whichever way it is laid out (`sparse.rs`): the shapes and CPUs of
/// [`super::sparse::sparse_rows_supported`]. It is slower from 64 rows on, with a row-major `b` (the
/// backward pass's products: 10 × 32 × 256 and 32 × 10 × 256 took 2.2 and 2.3 µs row-major, 4.5 and
/// 5.2 µs transposed) and gains little below 64 columns; products of a few inputs were not measured.
fn transposing_pays(b_storage: Storage, (m, k, n): (usize, usize, usize)) -> bool {
    b_storage == Storage::Transposed
        && m <= 32
        && n >= 64
        && k >= 64
        && super::sparse::sparse_rows_supported((m, k, n))
}

thread_local! {
    /// The transposed product of [`through_gemm_transposed`], kept so that a warm call allocates nothing.
    static TRANSPOSED: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// [`through_gemm`] with gemm writing `dst`'s transpose into a scratch, then `dst = scratchᵀ` or, when
/// `accumulate` (with `scale` 1), `dst += scratchᵀ`: the one addition gemm makes of the chain to `dst`.
fn through_gemm_transposed(
    dst: &mut [f32],
    (a, a_storage): (&[f32], Storage),
    (b, b_storage): (&[f32], Storage),
    (m, k, n): (usize, usize, usize),
    accumulate: bool,
    scale: f32,
) {
    assert!(dst.len() >= m * n, "dst holds {} < {m}×{n}", dst.len());
    TRANSPOSED.with_borrow_mut(|transposed| {
        transposed.resize(m * n, 0.0);
        let (a, b) = ((a, a_storage), (b, b_storage));
        gemm_into((transposed, Storage::Transposed), a, b, (m, k, n), false, scale);
        store_transposed(&mut dst[..m * n], transposed, m, accumulate);
    });
}

/// `dst = tᵀ`, or `dst += tᵀ` when `accumulate`, for `dst` `m` rows and `t` its transpose (row-major
/// both): in 8 × 8 tiles transposed in registers where the CPU has AVX2, the edges element by element.
pub(super) fn store_transposed(dst: &mut [f32], t: &[f32], m: usize, accumulate: bool) {
    let n = dst.len() / m;
    assert!(t.len() >= m * n, "t holds {} < {m}×{n}", t.len());
    // The rows and columns of dst the tiles wrote.
    let mut tiled = (0, 0);
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2; dst holds m·n floats and t at least as many (asserted).
        unsafe { transpose_tiles(dst, t, (m, n), accumulate) };
        tiled = (m / 8 * 8, n / 8 * 8);
    }
    for (r, row) in dst.chunks_exact_mut(n).enumerate() {
        let from = if r < tiled.0 { tiled.1 } else { 0 };
        for (j, d) in row.iter_mut().enumerate().skip(from) {
            let value = t[j * m + r];
            *d = if accumulate { value + *d } else { value };
        }
    }
}

/// The whole 8 × 8 tiles of [`store_transposed`]: eight rows of `t` loaded, transposed with the
/// AVX2 shuffles, stored as eight rows of `dst` (for each band of eight rows of `t`, the tiles
/// along it, so each line of `t` is read once).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn transpose_tiles(dst: &mut [f32], t: &[f32], (m, n): (usize, usize), accumulate: bool) {
    use std::arch::x86_64::*;
    debug_assert!(dst.len() >= m * n && t.len() >= m * n);
    for j in (0..n / 8 * 8).step_by(8) {
        for r in (0..m / 8 * 8).step_by(8) {
            // SAFETY: rows j..j + 8 of t (m floats each) and rows r..r + 8 of dst (n floats each)
            // exist, and columns r..r + 8 and j..j + 8 are inside them.
            unsafe {
                let load = |q: usize| _mm256_loadu_ps(t.as_ptr().add((j + q) * m + r));
                let (a0, a1, a2, a3) = (load(0), load(1), load(2), load(3));
                let (a4, a5, a6, a7) = (load(4), load(5), load(6), load(7));
                let (b0, b1) = (_mm256_unpacklo_ps(a0, a1), _mm256_unpackhi_ps(a0, a1));
                let (b2, b3) = (_mm256_unpacklo_ps(a2, a3), _mm256_unpackhi_ps(a2, a3));
                let (b4, b5) = (_mm256_unpacklo_ps(a4, a5), _mm256_unpackhi_ps(a4, a5));
                let (b6, b7) = (_mm256_unpacklo_ps(a6, a7), _mm256_unpackhi_ps(a6, a7));
                let c0 = _mm256_shuffle_ps::<0x44>(b0, b2);
                let c1 = _mm256_shuffle_ps::<0xEE>(b0, b2);
                let c2 = _mm256_shuffle_ps::<0x44>(b1, b3);
                let c3 = _mm256_shuffle_ps::<0xEE>(b1, b3);
                let c4 = _mm256_shuffle_ps::<0x44>(b4, b6);
                let c5 = _mm256_shuffle_ps::<0xEE>(b4, b6);
                let c6 = _mm256_shuffle_ps::<0x44>(b5, b7);
                let c7 = _mm256_shuffle_ps::<0xEE>(b5, b7);
                let rows = [
                    _mm256_permute2f128_ps::<0x20>(c0, c4),
                    _mm256_permute2f128_ps::<0x20>(c1, c5),
                    _mm256_permute2f128_ps::<0x20>(c2, c6),
                    _mm256_permute2f128_ps::<0x20>(c3, c7),
                    _mm256_permute2f128_ps::<0x31>(c0, c4),
                    _mm256_permute2f128_ps::<0x31>(c1, c5),
                    _mm256_permute2f128_ps::<0x31>(c2, c6),
                    _mm256_permute2f128_ps::<0x31>(c3, c7),
                ];
                for (q, row) in rows.into_iter().enumerate() {
                    let d = dst.as_mut_ptr().add((r + q) * n + j);
                    // value + d, as the element-by-element loop adds.
                    let row = if accumulate {
                        _mm256_add_ps(row, _mm256_loadu_ps(d))
                    } else {
                        row
                    };
                    _mm256_storeu_ps(d, row);
                }
            }
        }
    }
}

/// Whether [`matmul`] (not accumulating) of this shape and storage writes each element of `dst` as
/// the single product `a[i]·b[j]`, zero signs included. Then a caller may keep the two factors
/// instead of the product and multiply where it reads an element, with the same bits (the rule
/// learner does so for online learning's first-layer weight gradient).
pub fn is_outer_product(a_storage: Storage, b_storage: Storage, (m, k, n): (usize, usize, usize)) -> bool {
    let ((_, a_cs), (b_rs, _)) = strides(a_storage, b_storage, (m, k, n));
    // With k = 1, gemm (gemm-common 0.19, `gemm.rs`, `gevv.rs`) stores each element of a row-major
    // dst as (scale·a[i])·b[j], the exact product's sign kept on zeros, except on its "horizontal"
    // path (k contiguous in both operands, m·n ≤ 256), which sums through an FMA chain from +0 and
    // so turns a −0 product into +0, and for a single row or column, which it orients otherwise.
    let horizontal = a_cs == 1 && b_rs == 1 && m * n <= 256;
    k == 1 && !horizontal && m > 1 && n > 1
}

/// The (row, column) strides of `a` (m×k) and `b` (k×n) stored as stated.
fn strides(
    a_storage: Storage,
    b_storage: Storage,
    (m, k, n): (usize, usize, usize),
) -> ((isize, isize), (isize, isize)) {
    let a = match a_storage {
        Storage::RowMajor => (k as isize, 1),
        Storage::Transposed => (1, m as isize),
    };
    let b = match b_storage {
        Storage::RowMajor => (n as isize, 1),
        Storage::Transposed => (1, k as isize),
    };
    (a, b)
}

/// [`product`] computed by gemm on every shape.
#[allow(clippy::too_many_arguments)]
fn through_gemm(
    dst: &mut [f32],
    a: &[f32],
    a_storage: Storage,
    b: &[f32],
    b_storage: Storage,
    shape: (usize, usize, usize),
    accumulate: bool,
    scale: f32,
) {
    gemm_into(
        (dst, Storage::RowMajor),
        (a, a_storage),
        (b, b_storage),
        shape,
        accumulate,
        scale,
    );
}

/// [`through_gemm`] into a `dst` stored as stated (transposed: column-major).
fn gemm_into(
    (dst, dst_storage): (&mut [f32], Storage),
    (a, a_storage): (&[f32], Storage),
    (b, b_storage): (&[f32], Storage),
    (m, k, n): (usize, usize, usize),
    accumulate: bool,
    scale: f32,
) {
    assert!(dst.len() >= m * n, "dst holds {} < {m}×{n}", dst.len());
    assert!(a.len() >= m * k, "a holds {} < {m}×{k}", a.len());
    assert!(b.len() >= k * n, "b holds {} < {k}×{n}", b.len());
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(0.0);
        }
        return;
    }
    let ((a_rs, a_cs), (b_rs, b_cs)) = strides(a_storage, b_storage, (m, k, n));
    let (dst_rs, dst_cs) = match dst_storage {
        Storage::RowMajor => (n as isize, 1),
        Storage::Transposed => (1, m as isize),
    };
    // SAFETY: the asserts above guarantee every element the strides address lies inside its slice
    // (m×n dst, a and b are read at most at index m·n−1, m·k−1 and k·n−1 under either storage), dst
    // is uniquely borrowed and does not alias a or b (distinct borrows), and Parallelism::None keeps
    // the call on this thread.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_cs,
            dst_rs,
            accumulate,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            1.0,
            scale,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

crate::snn::neuron::simd_or_portable! {
    /// `dst[i][j] = (scale·a[i])·b[j]`, `dst` `a.len() × b.len()` row-major.
    fn outer_product(dst: &mut [f32], a: &[f32], b: &[f32], scale: f32) {
        for (row, &factor) in dst.chunks_exact_mut(b.len()).zip(a) {
            let factor = factor * scale;
            for (out, &x) in row.iter_mut().zip(b) {
                *out = factor * x;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], at: bool, b: &[f32], bt: bool, m: usize, k: usize, n: usize) -> Vec<f32> {
        let ga = |i: usize, p: usize| if at { a[p * m + i] } else { a[i * k + p] };
        let gb = |p: usize, j: usize| if bt { b[j * k + p] } else { b[p * n + j] };
        (0..m * n)
            .map(|ij| (0..k).map(|p| ga(ij / n, p) * gb(p, ij % n)).sum())
            .collect()
    }

    /// Asserts that `fused` (a product written with its pass folded in) has, element for element, the
    /// bits of a plain product of the same operands followed by `pass` over its elements.
    fn assert_bits_of_product_then(
        (m, k, n): (usize, usize, usize),
        pass: impl Fn(f32) -> f32,
        fused: impl Fn(&mut [f32], &[f32], &[f32]),
    ) {
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos() * 3.0).collect();
        let mut want = vec![f32::NAN; m * n];
        let shape = (m, k, n);
        matmul(
            &mut want,
            &a,
            Storage::Transposed,
            &b,
            Storage::RowMajor,
            shape,
            false,
        );
        want.iter_mut().for_each(|w| *w = pass(*w));
        let mut got = vec![f32::NAN; m * n];
        fused(&mut got, &a, &b);
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.to_bits(), w.to_bits(), "{m}×{k}×{n}: {g} vs {w}");
        }
    }

    #[test]
    fn scaled_products_have_the_bits_of_a_product_then_a_scaling_pass() {
        // gemm's paths differ by shape (small, one row or column, k ≤ 2, k > 512): cover each.
        for shape in [
            (5, 7, 3),
            (256, 32, 196),
            (10, 32, 256),
            (1, 40, 9),
            (17, 600, 20),
            (3, 2, 2),
            (40, 1, 30),
            (9, 40, 1),
            (64, 800, 48),
            (256, 512, 196),
            (256, 513, 196),
            (2, 32, 2),
            (20, 20, 20),
        ] {
            let scale = 1.0 / 96.0;
            assert_bits_of_product_then(
                shape,
                |x| x * scale,
                |dst, a, b| matmul_scaled(dst, a, Storage::Transposed, b, Storage::RowMajor, shape, scale),
            );
        }
    }

    #[test]
    fn divided_products_have_the_bits_of_a_product_then_a_division_pass() {
        for (shape, divisor) in [
            ((256, 32, 196), 32),
            ((10, 32, 256), 32),
            ((10, 20, 256), 20),
            ((100, 1, 196), 1),
        ] {
            assert_bits_of_product_then(
                shape,
                |x| x / divisor as f32,
                |dst, a, b| {
                    let (at, bt) = (Storage::Transposed, Storage::RowMajor);
                    matmul_divided(dst, a, at, b, bt, shape, divisor)
                },
            );
        }
    }

    /// xorshift64*: uniform in [0, 1).
    fn uniform(state: &mut u64) -> f32 {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) as f32 / (1u64 << 24) as f32
    }

    #[test]
    fn outer_products_have_gemms_bits_zero_signs_included() {
        let mut state = 0x0123_4567_89ab_cdefu64;
        // Values of every magnitude and sign, and both zeros.
        let value = |state: &mut u64| match uniform(state) {
            u if u < 0.2 => 0.0,
            u if u < 0.4 => -0.0,
            _ => (uniform(state) * 2.0 - 1.0) * 2f32.powi((uniform(state) * 40.0) as i32 - 20),
        };
        let mut compared = 0;
        for &(m, n) in &[
            (100, 196),
            (256, 196),
            (10, 100),
            (10, 256),
            (16, 16),
            (1, 196),
            (196, 1),
            (3, 5),
            (1, 1),
        ] {
            for a_storage in [Storage::RowMajor, Storage::Transposed] {
                for b_storage in [Storage::RowMajor, Storage::Transposed] {
                    for scale in [1.0, 1.0 / 96.0, -0.3] {
                        let a: Vec<f32> = (0..m).map(|_| value(&mut state)).collect();
                        let b: Vec<f32> = (0..n).map(|_| value(&mut state)).collect();
                        let mut got = vec![f32::NAN; m * n];
                        product(&mut got, &a, a_storage, &b, b_storage, (m, 1, n), false, scale);
                        let mut want = vec![f32::NAN; m * n];
                        let shape = (m, 1, n);
                        through_gemm(&mut want, &a, a_storage, &b, b_storage, shape, false, scale);
                        for (e, (g, w)) in got.iter().zip(&want).enumerate() {
                            assert_eq!(
                                g.to_bits(),
                                w.to_bits(),
                                "{m}×1×{n} {a_storage:?}·{b_storage:?}, scale {scale}, element {e}: {g} vs {w}"
                            );
                        }
                        compared += 1;
                    }
                }
            }
        }
        assert_eq!(compared, 9 * 4 * 3);
    }

    #[test]
    fn store_transposed_transposes_every_shape() {
        for m in [1, 7, 8, 9, 16, 23, 256] {
            for n in [1, 5, 8, 15, 16, 196] {
                let t: Vec<f32> = (0..m * n).map(|e| e as f32 * 0.5 - 3.0).collect();
                let before: Vec<f32> = (0..m * n).map(|e| (e % 7) as f32 + 0.25).collect();
                for accumulate in [false, true] {
                    let mut dst = before.clone();
                    store_transposed(&mut dst, &t, m, accumulate);
                    for r in 0..m {
                        for j in 0..n {
                            let want = t[j * m + r] + if accumulate { before[r * n + j] } else { 0.0 };
                            assert_eq!(
                                dst[r * n + j],
                                want,
                                "{m}×{n}, accumulate {accumulate}, ({r}, {j})"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn products_written_transposed_have_gemms_bits() {
        let mut state = 0x0bad_cafe_f00d_1234u64;
        // Mostly ordinary values, with both zeros (x's are mostly zeros), infinities and NaN.
        let value = |state: &mut u64| match uniform(state) {
            u if u < 0.3 => 0.0,
            u if u < 0.35 => -0.0,
            u if u < 0.355 => f32::INFINITY,
            u if u < 0.36 => f32::NAN,
            _ => (uniform(state) * 2.0 - 1.0) * 2f32.powi((uniform(state) * 20.0) as i32 - 10),
        };
        let mut transposed = 0;
        for shape in [
            (32, 196, 256),
            (10, 64, 256),
            (2, 64, 200),
            (32, 512, 64),
            (17, 100, 333),
        ] {
            let (m, k, n) = shape;
            transposed += usize::from(transposing_pays(Storage::Transposed, shape));
            for a_storage in [Storage::RowMajor, Storage::Transposed] {
                for b_storage in [Storage::RowMajor, Storage::Transposed] {
                    for (accumulate, scale) in [(true, 1.0), (false, 1.0), (false, 1.0 / 32.0)] {
                        let a: Vec<f32> = (0..m * k).map(|_| value(&mut state)).collect();
                        let b: Vec<f32> = (0..k * n).map(|_| value(&mut state)).collect();
                        let start: Vec<f32> = (0..m * n).map(|_| value(&mut state)).collect();
                        let mut got = start.clone();
                        product(&mut got, &a, a_storage, &b, b_storage, shape, accumulate, scale);
                        let mut want = start;
                        through_gemm(&mut want, &a, a_storage, &b, b_storage, shape, accumulate, scale);
                        for (e, (g, w)) in got.iter().zip(&want).enumerate() {
                            assert_eq!(
                                g.to_bits(),
                                w.to_bits(),
                                "{m}×{k}×{n} {a_storage:?}·{b_storage:?}, accumulate {accumulate}, \
                                 scale {scale}, element {e}: {g} vs {w}"
                            );
                        }
                    }
                }
            }
        }
        // Every shape above is one gemm sums as chains, on a CPU where it does (see `sparse.rs`).
        let chains = super::super::sparse::sparse_rows_supported((32, 196, 256));
        assert_eq!(
            transposed,
            if chains { 5 } else { 0 },
            "every shape above takes the transposed path"
        );
    }

    #[test]
    fn agrees_with_the_definition_for_every_storage() {
        let (m, k, n) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
        for at in [false, true] {
            for bt in [false, true] {
                let st = |t| if t { Storage::Transposed } else { Storage::RowMajor };
                let mut dst = vec![1.0; m * n];
                matmul(&mut dst, &a, st(at), &b, st(bt), (m, k, n), true);
                let want = naive(&a, at, &b, bt, m, k, n);
                for (d, w) in dst.iter().zip(&want) {
                    assert!((d - 1.0 - w).abs() < 1e-5, "at={at} bt={bt}: {d} vs 1+{w}");
                }
            }
        }
    }
}
