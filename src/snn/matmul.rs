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
    (m, k, n): (usize, usize, usize),
    accumulate: bool,
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
    let (a_rs, a_cs) = match a_storage {
        Storage::RowMajor => (k as isize, 1),
        Storage::Transposed => (1, m as isize),
    };
    let (b_rs, b_cs) = match b_storage {
        Storage::RowMajor => (n as isize, 1),
        Storage::Transposed => (1, k as isize),
    };
    // SAFETY: the asserts above guarantee every element the strides address lies inside its slice
    // (row-major m×n dst; a and b are read at most at index m·k−1 and k·n−1 under either storage), dst
    // is uniquely borrowed and does not alias a or b (distinct borrows), and Parallelism::None keeps
    // the call on this thread.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
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
