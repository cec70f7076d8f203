//! Per-time-step neuron kernels over whole layer slices (batch × width, contiguous).
//!
//! The LIF step order (the model of `src/snn/mod.rs`) is pinned by tests below:
//! `v ← β·v + I`; `s = H(v − θ)`; `v ← v − s·θ` (reset by subtraction in the same step). The snnTorch
//! timing (`reset_delay=True`; Eshraghian et al. 2023, snnTorch) instead subtracts the *previous* step's spike:
//! `v ← β·v + I − s[t−1]·θ`; `s = H(v − θ)`.
//!
//! The surrogate derivative is the fast sigmoid `ψ = 1 / (1 + k·|v − θ|)²` (SuperSpike, Zenke & Ganguli 2018),
//! evaluated on the membrane *before* the reset. The reset is detached from the gradient, as in snnTorch,
//! so BPTT through one neuron is the recurrence `∂v[t] = ∂s[t]·ψ[t] + β·∂v[t+1]`.
//!
//! Each kernel is one loop over slices with no branches the compiler cannot turn into selects, so it
//! vectorises.

/// Parameters of a LIF layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Lif {
    /// Membrane decay per step, in [0, 1].
    pub beta: f32,
    /// Firing threshold θ > 0.
    pub threshold: f32,
    /// Surrogate slope k > 0.
    pub slope: f32,
    /// When the reset by subtraction is applied.
    pub reset: Reset,
}

/// When a spike's reset is subtracted from the membrane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reset {
    /// In the same step as the spike (the default).
    SameStep,
    /// At the next step, as snnTorch does with `reset_delay=True`.
    NextStep,
}

impl Lif {
    /// One step for a whole layer: `v`, `current`, `prev_spikes` and `spikes` are `batch × width`
    /// row-major, `theta` holds each neuron's threshold (`width` of them; every one is
    /// [`Lif::threshold`] unless a rule adapts them). `prev_spikes` is the previous step's output
    /// (zeros at t = 0), used only by [`Reset::NextStep`]. `psi` receives the surrogate derivative
    /// when given (training).
    pub fn step(
        &self,
        v: &mut [f32],
        current: &[f32],
        prev_spikes: &[f32],
        spikes: &mut [f32],
        psi: Option<&mut [f32]>,
        theta: &[f32],
    ) {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            unsafe { self.step_avx2(v, current, prev_spikes, spikes, psi, theta) };
            return;
        }
        self.step_portable(v, current, prev_spikes, spikes, psi, theta);
    }

    /// [`Lif::step`] compiled for AVX2: eight lanes per instruction instead of SSE's four. The same
    /// IEEE operations in the same order (Rust never fuses a product into a sum unasked), so the
    /// same bits; measured on `searches/pmnist-200.ron`, where the neuron loops cost about as much
    /// as the GEMMs. Not AVX-512: the step is bound by its division (the surrogate), which sixteen
    /// lanes do not speed up, and a 50-task run spent 11% more time in it compiled for them.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn step_avx2(
        &self,
        v: &mut [f32],
        current: &[f32],
        prev_spikes: &[f32],
        spikes: &mut [f32],
        psi: Option<&mut [f32]>,
        theta: &[f32],
    ) {
        self.step_portable(v, current, prev_spikes, spikes, psi, theta);
    }

    #[inline(always)]
    fn step_portable(
        &self,
        v: &mut [f32],
        current: &[f32],
        prev_spikes: &[f32],
        spikes: &mut [f32],
        mut psi: Option<&mut [f32]>,
        theta: &[f32],
    ) {
        let (beta, k) = (self.beta, self.slope);
        let width = theta.len();
        let n = v.len();
        for start in (0..n).step_by(width.max(1)) {
            let row = start..start + width;
            let (v, current, prev_spikes, spikes) = (
                &mut v[row.clone()],
                &current[row.clone()],
                &prev_spikes[row.clone()],
                &mut spikes[row.clone()],
            );
            match (self.reset, psi.as_deref_mut()) {
                (Reset::SameStep, Some(psi)) => {
                    let psi = &mut psi[row];
                    for i in 0..width {
                        let u = beta * v[i] + current[i];
                        let over = u - theta[i];
                        let s = if over > 0.0 { 1.0 } else { 0.0 };
                        let d = 1.0 + k * over.abs();
                        psi[i] = 1.0 / (d * d);
                        spikes[i] = s;
                        v[i] = u - s * theta[i];
                    }
                }
                (Reset::SameStep, None) => {
                    for i in 0..width {
                        let u = beta * v[i] + current[i];
                        let s = if u > theta[i] { 1.0 } else { 0.0 };
                        spikes[i] = s;
                        v[i] = u - s * theta[i];
                    }
                }
                (Reset::NextStep, Some(psi)) => {
                    let psi = &mut psi[row];
                    for i in 0..width {
                        let u = beta * v[i] + current[i] - prev_spikes[i] * theta[i];
                        let over = u - theta[i];
                        let d = 1.0 + k * over.abs();
                        psi[i] = 1.0 / (d * d);
                        spikes[i] = if over > 0.0 { 1.0 } else { 0.0 };
                        v[i] = u;
                    }
                }
                (Reset::NextStep, None) => {
                    for i in 0..width {
                        let u = beta * v[i] + current[i] - prev_spikes[i] * theta[i];
                        spikes[i] = if u > theta[i] { 1.0 } else { 0.0 };
                        v[i] = u;
                    }
                }
            }
        }
    }
}

impl Lif {
    /// All `steps` of a layer whose spikes only feed the readout's sum (`Pass::Predict`): for each
    /// row of `v` (`batch × width`), the steps run from `v = 0` over the row while it sits in L1,
    /// and `sum[row] = 0 + c_0·s[0] + c_1·s[1] + …` (`step_weights`) is summed instead of storing the
    /// spikes. `v` and `sum` are written, never read (a caller need not zero them).
    /// `currents` holds one `batch × width` slice per step, or one for every step when
    /// `per_step_current` is false. Each element sees the operations of [`Lif::step`] in the same
    /// order, and the sum the additions of the unfused readout, so the bits are the same.
    /// `prev` is `width` floats of scratch.
    #[allow(clippy::too_many_arguments)]
    pub fn summed(
        &self,
        v: &mut [f32],
        currents: &[f32],
        (steps, per_step_current): (usize, bool),
        step_weights: &[f32],
        theta: &[f32],
        sum: &mut [f32],
        prev: &mut [f32],
    ) {
        let shape = (steps, per_step_current);
        self.summed_with(Simd::detect(), v, currents, shape, step_weights, theta, sum, prev);
    }

    /// [`Lif::summed`] at a given vector width (`simd` must be this CPU's level or a narrower one):
    /// tests run every width the CPU has.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn summed_with(
        &self,
        simd: Simd,
        v: &mut [f32],
        currents: &[f32],
        shape: (usize, bool),
        step_weights: &[f32],
        theta: &[f32],
        sum: &mut [f32],
        prev: &mut [f32],
    ) {
        #[cfg(target_arch = "x86_64")]
        match simd {
            Simd::Avx512 if std::is_x86_feature_detected!("avx512f") => {
                // SAFETY: the CPU has AVX-512, checked above.
                return unsafe { self.summed_avx512(v, currents, shape, step_weights, theta, sum, prev) };
            }
            Simd::Avx512 | Simd::Avx2 if std::is_x86_feature_detected!("avx2") => {
                // SAFETY: the CPU has AVX2, checked above.
                return unsafe { self.summed_avx2(v, currents, shape, step_weights, theta, sum, prev) };
            }
            _ => {}
        }
        let _ = simd;
        self.summed_portable::<32, 32>(v, currents, shape, step_weights, theta, sum, prev);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn summed_avx2(
        &self,
        v: &mut [f32],
        currents: &[f32],
        shape: (usize, bool),
        step_weights: &[f32],
        theta: &[f32],
        sum: &mut [f32],
        prev: &mut [f32],
    ) {
        self.summed_portable::<32, 32>(v, currents, shape, step_weights, theta, sum, prev);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn summed_avx512(
        &self,
        v: &mut [f32],
        currents: &[f32],
        shape: (usize, bool),
        step_weights: &[f32],
        theta: &[f32],
        sum: &mut [f32],
        prev: &mut [f32],
    ) {
        self.summed_portable::<64, 128>(v, currents, shape, step_weights, theta, sum, prev);
    }

    /// Lanes of a row at a time (`WIDE`, then 32, 8, then one by one), each lane's membrane, spike and
    /// sum held in registers through all the steps: per step only its current is read, and nothing is
    /// written until the last (a step at a time over the whole row read and wrote v, s and the sum
    /// every step: 15% of a 200-task run's time). `WIDE` lanes are four registers, four independent
    /// chains: a step's operations depend on each other, so one chain alone waits on their latency
    /// (`cargo bench --bench train -- test/`). So `WIDE` is 32 for AVX2's 8 lanes, 64 for AVX-512's 16.
    /// `SELECTING` is the same for [`Lanes::run_selecting`], which holds no spikes: eight AVX-512
    /// registers of lanes measured 8% faster on that benchmark than four (sixteen spill); AVX2's
    /// sixteen registers hold four lanes' worth of membranes, sums and thresholds.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn summed_portable<const WIDE: usize, const SELECTING: usize>(
        &self,
        v: &mut [f32],
        currents: &[f32],
        (steps, per_step_current): (usize, bool),
        step_weights: &[f32],
        theta: &[f32],
        sum: &mut [f32],
        prev: &mut [f32],
    ) {
        let width = theta.len();
        let per_step = v.len();
        // Where step t's current starts, relative to step 0's.
        let stride = if per_step_current { per_step } else { 0 };
        let steps = steps.min(step_weights.len());
        let step_weights = &step_weights[..steps];
        let lanes = Lanes {
            beta: self.beta,
            stride,
            step_weights,
        };
        let next_step = self.reset == Reset::NextStep;
        // `v − s·θ` and `sum + c·s` with s ∈ {0, 1} are `v − θ` and `sum + c` where the neuron fires;
        // where it does not they are `v − 0·θ` and `sum + 0·c`, which leave `v` and `sum` as they
        // are when θ and c are finite and not negative (`0·θ = +0`, and `x − (+0) = x` for every x;
        // `x + (+0) = x` for every x but −0, which a sum from +0 of such terms never is). So the step
        // can select instead of multiplying (a masked subtraction and addition with AVX-512: five
        // operations per step instead of eight), with the same bits.
        let plain = |x: &f32| x.is_finite() && x.is_sign_positive();
        let selecting = !next_step && theta.iter().all(plain) && step_weights.iter().all(plain);
        for (row, (v, sum)) in v
            .chunks_exact_mut(width)
            .zip(sum.chunks_exact_mut(width))
            .enumerate()
        {
            let currents = &currents[row * width..];
            let mut j = 0;
            while j < width {
                let at = j..width;
                let args = (
                    &mut v[at.clone()],
                    &currents[j..],
                    &theta[j..],
                    &mut sum[at.clone()],
                    &mut prev[at],
                );
                if selecting {
                    j += match width - j {
                        n if n >= SELECTING => lanes.run_selecting::<SELECTING>(args),
                        n if n >= WIDE => lanes.run_selecting::<WIDE>(args),
                        32.. => lanes.run_selecting::<32>(args),
                        8.. => lanes.run_selecting::<8>(args),
                        _ => lanes.run_selecting::<1>(args),
                    };
                    continue;
                }
                j += match (width - j, next_step) {
                    (n, false) if n >= WIDE => lanes.run::<WIDE, false>(args),
                    (n, true) if n >= WIDE => lanes.run::<WIDE, true>(args),
                    (32.., false) => lanes.run::<32, false>(args),
                    (32.., true) => lanes.run::<32, true>(args),
                    (8.., false) => lanes.run::<8, false>(args),
                    (8.., true) => lanes.run::<8, true>(args),
                    (_, false) => lanes.run::<1, false>(args),
                    (_, true) => lanes.run::<1, true>(args),
                };
            }
        }
    }
}

/// A row's (v, currents, θ, sum, prev) from the first lane [`Lanes::run`] takes on.
type LaneSlices<'a> = (&'a mut [f32], &'a [f32], &'a [f32], &'a mut [f32], &'a mut [f32]);

/// What every lane of [`Lif::summed`] shares.
struct Lanes<'a> {
    beta: f32,
    /// Floats from one step's currents to the next's (0: the same current every step).
    stride: usize,
    step_weights: &'a [f32],
}

impl Lanes<'_> {
    /// All steps of the first `N` lanes of (v, currents, θ, sum, prev); returns `N`. `NEXT_STEP`:
    /// [`Reset::NextStep`], else [`Reset::SameStep`]. The operations of [`Lif::step`], in its order.
    #[inline(always)]
    fn run<const N: usize, const NEXT_STEP: bool>(
        &self,
        (v, currents, theta, sum, prev): LaneSlices,
    ) -> usize {
        let beta = self.beta;
        let th: [f32; N] = theta[..N].try_into().expect("N lanes");
        let mut vv = [0.0f32; N];
        let mut acc = [0.0f32; N];
        let mut s = [0.0f32; N];
        for (t, &c) in self.step_weights.iter().enumerate() {
            let current: &[f32; N] = currents[t * self.stride..][..N].try_into().expect("N lanes");
            for l in 0..N {
                let u = if NEXT_STEP {
                    beta * vv[l] + current[l] - s[l] * th[l]
                } else {
                    beta * vv[l] + current[l]
                };
                let spike = if u > th[l] { 1.0 } else { 0.0 };
                vv[l] = if NEXT_STEP { u } else { u - spike * th[l] };
                s[l] = spike;
                acc[l] += c * spike;
            }
        }
        v[..N].copy_from_slice(&vv);
        sum[..N].copy_from_slice(&acc);
        prev[..N].copy_from_slice(&s);
        N
    }

    /// [`Lanes::run`] for [`Reset::SameStep`] with selections in place of the products by the spike
    /// (the caller checked that θ and the step weights allow it, see [`Lif::summed`]).
    #[inline(always)]
    fn run_selecting<const N: usize>(&self, (v, currents, theta, sum, _): LaneSlices) -> usize {
        let beta = self.beta;
        let th: [f32; N] = theta[..N].try_into().expect("N lanes");
        let mut vv = [0.0f32; N];
        let mut acc = [0.0f32; N];
        for (t, &c) in self.step_weights.iter().enumerate() {
            let current: &[f32; N] = currents[t * self.stride..][..N].try_into().expect("N lanes");
            for l in 0..N {
                let u = beta * vv[l] + current[l];
                let fires = u > th[l];
                vv[l] = if fires { u - th[l] } else { u };
                acc[l] = if fires { acc[l] + c } else { acc[l] };
            }
        }
        sum[..N].copy_from_slice(&acc);
        v[..N].copy_from_slice(&vv);
        N
    }
}

/// The widest vector instructions of this CPU that the element-wise kernels are compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Simd {
    /// 16 lanes of f32 (AVX-512 Foundation).
    Avx512,
    /// 8 lanes of f32.
    Avx2,
    /// What the build targets (SSE2 on x86-64: 4 lanes).
    None,
}

impl Simd {
    /// The level of this CPU (`is_x86_feature_detected!` caches what it finds, so this is a load or two).
    #[inline]
    pub(crate) fn detect() -> Simd {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx512f") {
            return Simd::Avx512;
        } else if std::is_x86_feature_detected!("avx2") {
            return Simd::Avx2;
        }
        Simd::None
    }
}

/// Defines an element-wise slice function once, compiled three times: for AVX-512, for AVX2 (each
/// taken where the CPU has it) and portably. The body is the same Rust every time and Rust never fuses
/// a product into a sum unasked, so all give the same bits; only the vector width differs.
macro_rules! simd_or_portable {
    ($(#[$doc:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$doc])*
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn portable($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2")]
            unsafe fn avx2($($arg: $ty),*) {
                portable($($arg),*);
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f")]
            unsafe fn avx512($($arg: $ty),*) {
                portable($($arg),*);
            }
            #[cfg(target_arch = "x86_64")]
            match $crate::snn::neuron::Simd::detect() {
                // SAFETY: the CPU has the features of the level detected.
                $crate::snn::neuron::Simd::Avx512 => unsafe { avx512($($arg),*) },
                // SAFETY: as above.
                $crate::snn::neuron::Simd::Avx2 => unsafe { avx2($($arg),*) },
                $crate::snn::neuron::Simd::None => portable($($arg),*),
            }
            #[cfg(not(target_arch = "x86_64"))]
            portable($($arg),*);
        }
    };
}

pub(crate) use simd_or_portable;

simd_or_portable! {
    /// `acc += c · x`, element by element (as [`Lif::step`]: the same bits on every CPU).
    pub fn accumulate_scaled(acc: &mut [f32], x: &[f32], c: f32) {
        for (a, &s) in acc.iter_mut().zip(x) {
            *a += c * s;
        }
    }
}

simd_or_portable! {
    /// `acc = β·acc + x`, element by element (a product then a sum).
    pub fn decay_and_add(acc: &mut [f32], beta: f32, x: &[f32]) {
        for (a, &s) in acc.iter_mut().zip(x) {
            *a = beta * *a + s;
        }
    }
}

/// Calls `$block::<L>(args…, start)` for the columns `start..start + L` of `0..$width`: blocks of 64
/// columns, then of 16, then single columns. A block's sums, `[f32; L]`, stay in registers while
/// the block runs down every row, where a loop over whole rows stores and reloads them row after row.
macro_rules! by_column_blocks {
    ($width:expr, $block:ident($($arg:expr),*)) => {{
        let width = $width;
        let mut start = 0;
        while start + 64 <= width {
            $block::<64>($($arg,)* start);
            start += 64;
        }
        while start + 16 <= width {
            $block::<16>($($arg,)* start);
            start += 16;
        }
        while start < width {
            $block::<1>($($arg,)* start);
            start += 1;
        }
    }};
}

simd_or_portable! {
    /// The trace `acc[t] = β·acc[t−1] + x[t]`, `acc[0] = x[0]`, over `steps` steps of `x` (each
    /// `acc.len()` floats, rows of `sum.len()`; `x` one step long is the input of every step, a
    /// constant input read in place), every step's rows added to `sum` in step then row order: the
    /// bits of copying the first step, then `decay_and_add` and `add_rows` step by step.
    ///
    /// It runs 64 columns at a time through all the steps and rows, their sums held in four
    /// registers rather than stored and reloaded for every row (which made the sums, not the trace,
    /// the cost: 16 µs for a `pmnist-quick` batch, `add_rows` alone 5 µs). Each element still sees
    /// the same operations in the same order, and each sum the same rows.
    pub fn sum_trace_over_steps(x: &[f32], steps: usize, beta: f32, acc: &mut [f32], sum: &mut [f32]) {
        /// Columns `start..start + L`.
        #[inline(always)]
        fn columns<const L: usize>(
            x: &[f32],
            steps: usize,
            beta: f32,
            acc: &mut [f32],
            sum: &mut [f32],
            start: usize,
        ) {
            let width = sum.len();
            let mut sums: [f32; L] = sum[start..start + L].try_into().expect("L columns");
            let per_step = acc.len();
            let stride = if x.len() == per_step { 0 } else { per_step };
            for t in 0..steps {
                let step = &x[t * stride..t * stride + per_step];
                for (row, x) in acc.chunks_exact_mut(width).zip(step.chunks_exact(width)) {
                    let trace: &mut [f32; L] = (&mut row[start..start + L]).try_into().expect("L columns");
                    let x: &[f32; L] = x[start..start + L].try_into().expect("L columns");
                    if t == 0 {
                        for ((a, &xi), s) in trace.iter_mut().zip(x).zip(&mut sums) {
                            *a = xi;
                            *s += xi;
                        }
                    } else {
                        for ((a, &xi), s) in trace.iter_mut().zip(x).zip(&mut sums) {
                            *a = beta * *a + xi;
                            *s += *a;
                        }
                    }
                }
            }
            sum[start..start + L].copy_from_slice(&sums);
        }
        if sum.is_empty() || acc.is_empty() {
            return;
        }
        assert!(x.len() == acc.len() || x.len() >= steps * acc.len(), "one step of x or every step");
        by_column_blocks!(sum.len(), columns(x, steps, beta, acc, sum));
    }
}

simd_or_portable! {
    /// `out[i] = 0 + w[0]·x[0][i] + w[1]·x[1][i] + …` over the steps of `x` (`w.len() × out.len()`),
    /// in step order: the bits of `accumulate_scaled` step by step into zeros, in one pass over `x`.
    pub fn weighted_sum_over_steps(x: &[f32], w: &[f32], out: &mut [f32]) {
        sum_steps_in_blocks(&x[..w.len() * out.len()], |t| w[t], 1.0, out);
    }
}

simd_or_portable! {
    /// `dst = c · src`, element by element.
    pub fn scaled_copy(dst: &mut [f32], src: &[f32], c: f32) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = c * s;
        }
    }
}

simd_or_portable! {
    /// `x *= c`, element by element.
    pub fn scale(x: &mut [f32], c: f32) {
        for v in x.iter_mut() {
            *v *= c;
        }
    }
}

simd_or_portable! {
    /// `sum += row` for each row of `rows` (`k × sum.len()`), in row order: by column blocks (each
    /// sum still adds the rows in order, so the bits are a row-by-row loop's), since storing and
    /// reloading the sums for every row made it the cost (5 µs for the 256 rows of a `pmnist-quick`
    /// batch's bias gradient).
    pub fn add_rows(sum: &mut [f32], rows: &[f32]) {
        /// Columns `start..start + L`.
        #[inline(always)]
        fn columns<const L: usize>(sum: &mut [f32], rows: &[f32], start: usize) {
            let mut sums: [f32; L] = sum[start..start + L].try_into().expect("L columns");
            for row in rows.chunks_exact(sum.len()) {
                let row: &[f32; L] = row[start..start + L].try_into().expect("L columns");
                for (s, &v) in sums.iter_mut().zip(row) {
                    *s += v;
                }
            }
            sum[start..start + L].copy_from_slice(&sums);
        }
        by_column_blocks!(sum.len(), columns(sum, rows));
    }
}

simd_or_portable! {
    /// `out[i] = scale · (0 + x[0][i] + x[1][i] + …)` over the steps of `x` (`steps × out.len()`),
    /// summed in step order, in one pass over `x`.
    pub fn mean_over_steps(x: &[f32], scale: f32, out: &mut [f32]) {
        sum_steps_in_blocks(x, |_| 1.0, scale, out);
    }
}

/// `out[i] = scale · (0 + weight(0)·x[0][i] + weight(1)·x[1][i] + …)` over the steps of `x`
/// (`steps × out.len()`), in step order, 64 outputs at a time summed in registers, so `x` is read
/// once and `out` written once. A weight of 1 multiplies exactly, as does a scale of 1.
#[inline(always)]
fn sum_steps_in_blocks(x: &[f32], weight: impl Fn(usize) -> f32, scale: f32, out: &mut [f32]) {
    const BLOCK: usize = 64;
    let per_step = out.len();
    if per_step == 0 {
        return;
    }
    for (start, block) in (0..per_step).step_by(BLOCK).zip(out.chunks_mut(BLOCK)) {
        let width = block.len();
        let mut sums = [0.0f32; BLOCK];
        for (t, step) in x.chunks_exact(per_step).enumerate() {
            let c = weight(t);
            if width == BLOCK {
                let step: &[f32; BLOCK] = step[start..start + BLOCK].try_into().expect("a full block");
                for (sum, s) in sums.iter_mut().zip(step) {
                    *sum += c * s;
                }
            } else {
                for (sum, s) in sums.iter_mut().zip(&step[start..start + width]) {
                    *sum += c * s;
                }
            }
        }
        for (o, sum) in block.iter_mut().zip(sums) {
            *o = sum * scale;
        }
    }
}

/// ReLU for the ANN mode: `h = max(0, I)`, with derivative `1[I > 0]` into `psi` when given.
#[inline]
pub fn relu(current: &[f32], out: &mut [f32], psi: Option<&mut [f32]>) {
    let n = out.len();
    let current = &current[..n];
    match psi {
        Some(psi) => {
            let psi = &mut psi[..n];
            for i in 0..n {
                let pos = current[i] > 0.0;
                out[i] = if pos { current[i] } else { 0.0 };
                psi[i] = if pos { 1.0 } else { 0.0 };
            }
        }
        None => {
            for i in 0..n {
                out[i] = current[i].max(0.0);
            }
        }
    }
}

simd_or_portable! {
    /// [`backward_through_time`] of `grad_out` whose step t would be `c_t · grad_out[0]`
    /// (`step_weights`: the readout's error spread over the steps), reading step 0 instead of the
    /// spread steps: the bits of `scaled_copy` into steps 1.., `scale` of step 0, then
    /// [`backward_through_time`], with one pass over the steps instead of two.
    pub fn spread_backward_through_time(
        grad_out: &mut [f32],
        step_weights: &[f32],
        psi: &[f32],
        width: usize,
        beta: f32,
    ) {
        bptt(grad_out, Some(step_weights), psi, width, beta);
    }
}

simd_or_portable! {
    /// BPTT through a layer of neurons with membrane decay `beta`, over `steps` slices of `width`
    /// values: `grad[t] = grad_out[t]·ψ[t] + β·grad[t+1]`, written in place over `grad_out` (which
    /// then holds ∂L/∂I for every step). `beta = 0` gives the memoryless (ReLU) case.
    pub fn backward_through_time(grad_out: &mut [f32], psi: &[f32], width: usize, beta: f32) {
        bptt(grad_out, None, psi, width, beta);
    }
}

/// Both BPTT passes: step t's error is `grad_out[t]`, or with `spread` weights `c_t · grad_out[0]`,
/// read from step 0 before step 0, the last, is written.
#[inline(always)]
fn bptt(grad_out: &mut [f32], spread: Option<&[f32]>, psi: &[f32], width: usize, beta: f32) {
    let steps = grad_out.len() / width;
    if steps == 0 {
        return;
    }
    let (first, rest) = grad_out.split_at_mut(width);
    // Steps steps−1 … 1, which are rest's steps−2 … 0.
    for t in (1..steps).rev() {
        let (head, tail) = rest.split_at_mut(t * width);
        let source = spread.map(|weights| (weights[t], &*first));
        let psi_t = &psi[t * width..(t + 1) * width];
        bptt_step(
            &mut head[(t - 1) * width..],
            source,
            psi_t,
            tail.get(..width),
            beta,
        );
    }
    if let Some(weights) = spread {
        first.iter_mut().for_each(|g| *g *= weights[0]);
    }
    bptt_step(first, None, &psi[..width], rest.get(..width), beta);
}

/// One step of [`bptt`]: `cur = e·ψ + β·later` (no `later` after the last step), where the error `e`
/// is `cur` itself or, from `source` (c, g), `c·g`.
#[inline(always)]
fn bptt_step(cur: &mut [f32], source: Option<(f32, &[f32])>, psi: &[f32], later: Option<&[f32]>, beta: f32) {
    match (source, later) {
        (Some((c, g)), Some(later)) => {
            for (((d, &g), &p), &l) in cur.iter_mut().zip(g).zip(psi).zip(later) {
                *d = (c * g) * p + beta * l;
            }
        }
        (Some((c, g)), None) => {
            for ((d, &g), &p) in cur.iter_mut().zip(g).zip(psi) {
                *d = (c * g) * p;
            }
        }
        (None, Some(later)) => {
            for ((d, &p), &l) in cur.iter_mut().zip(psi).zip(later) {
                *d = *d * p + beta * l;
            }
        }
        (None, None) => {
            for (d, &p) in cur.iter_mut().zip(psi) {
                *d *= p;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIF: Lif = Lif {
        beta: 0.5,
        threshold: 1.0,
        slope: 25.0,
        reset: Reset::SameStep,
    };

    /// Runs one neuron for the given input currents; returns (spikes, membranes after each step).
    fn check(lif: Lif, currents: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let (mut v, mut s, mut prev) = ([0.0f32], [0.0f32], [0.0f32]);
        let mut out = (vec![], vec![]);
        for &c in currents {
            lif.step(&mut v, &[c], &prev, &mut s, None, &[lif.threshold]);
            prev = s;
            out.0.push(s[0]);
            out.1.push(v[0]);
        }
        out
    }

    #[test]
    fn lif_order_is_decay_integrate_fire_then_reset_in_the_same_step() {
        // t0: v = 0.5·0 + 1.2 = 1.2 > 1 → spike, v = 0.2.
        // t1: v = 0.5·0.2 + 0.6 = 0.7 → no spike.
        // t2: v = 0.35 + 1.0 = 1.35 → spike, v = 0.35.
        let (s, v) = check(LIF, &[1.2, 0.6, 1.0]);
        assert_eq!(s, vec![1.0, 0.0, 1.0]);
        for (got, want) in v.iter().zip([0.2, 0.7, 0.35]) {
            assert!((got - want).abs() < 1e-6, "{v:?}");
        }
    }

    #[test]
    fn threshold_crossing_is_strict() {
        let (s, v) = check(LIF, &[1.0]);
        assert_eq!((s[0], v[0]), (0.0, 1.0));
    }

    #[test]
    fn snntorch_timing_subtracts_the_reset_one_step_later() {
        let lif = Lif {
            reset: Reset::NextStep,
            ..LIF
        };
        // t0: v = 1.2 → spike, no reset yet. t1: v = 0.6 + 0.6 − 1 = 0.2. t2: v = 0.1 + 1.0 = 1.1 → spike.
        let (s, v) = check(lif, &[1.2, 0.6, 1.0]);
        assert_eq!(s, vec![1.0, 0.0, 1.0]);
        for (got, want) in v.iter().zip([1.2, 0.2, 1.1]) {
            assert!((got - want).abs() < 1e-6, "{v:?}");
        }
    }

    #[test]
    fn surrogate_is_the_fast_sigmoid_of_the_pre_reset_membrane() {
        let (mut v, mut s, mut psi) = ([0.0f32], [0.0f32], [0.0f32]);
        LIF.step(&mut v, &[1.2], &[0.0], &mut s, Some(&mut psi), &[LIF.threshold]);
        let want = 1.0 / (1.0f32 + 25.0 * 0.2).powi(2);
        assert!((psi[0] - want).abs() < 1e-7);
    }

    #[test]
    fn backward_through_time_is_the_leaky_recurrence() {
        // Two steps, width 1: grad[1] = g1·ψ1; grad[0] = g0·ψ0 + β·grad[1].
        let mut g = vec![2.0, 3.0];
        backward_through_time(&mut g, &[0.5, 0.25], 1, 0.9);
        assert_eq!(g, vec![2.0 * 0.5 + 0.9 * 0.75, 0.75]);
    }

    #[test]
    fn mean_over_steps_sums_in_step_order_for_every_width() {
        // Widths below, at and across the block of 64; values whose sum depends on the order.
        for (width, steps) in [(1, 3), (63, 8), (64, 8), (65, 5), (200, 8), (0, 4)] {
            let x: Vec<f32> = (0..width * steps)
                .map(|i| ((i * 7919) % 1000) as f32 * 1e-3 + if i % 3 == 0 { 1e7 } else { -0.0 })
                .collect();
            let scale = 1.0 / steps as f32;
            let mut out = vec![f32::NAN; width];
            mean_over_steps(&x, scale, &mut out);
            for (i, got) in out.iter().enumerate() {
                let want = (0..steps).fold(0.0f32, |sum, t| sum + x[t * width + i]) * scale;
                assert_eq!(got.to_bits(), want.to_bits(), "width {width}, unit {i}");
            }
        }
    }

    #[test]
    fn vector_helpers_have_the_bits_of_their_scalar_definitions() {
        let x: Vec<f32> = (0..3 * 37)
            .map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.3)
            .collect();
        let mut acc: Vec<f32> = x[..37].iter().map(|v| v * 7.0).collect();
        let want: Vec<f32> = acc.iter().zip(&x[37..74]).map(|(a, s)| 0.9 * a + s).collect();
        decay_and_add(&mut acc, 0.9, &x[37..74]);
        assert_eq!(
            acc.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            want.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        let mut sum = vec![0.5f32; 37];
        let want: Vec<f32> = (0..37).map(|j| ((0.5 + x[j]) + x[37 + j]) + x[74 + j]).collect();
        add_rows(&mut sum, &x);
        assert_eq!(
            sum.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            want.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn add_rows_has_the_bits_of_a_row_by_row_loop() {
        for (width, rows) in [
            (1usize, 5usize),
            (7, 3),
            (16, 4),
            (64, 2),
            (70, 9),
            (150, 3),
            (256, 32),
        ] {
            let x: Vec<f32> = (0..rows * width)
                .map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.3)
                .collect();
            let mut want: Vec<f32> = (0..width).map(|i| i as f32 * 0.01 - 0.2).collect();
            let mut got = want.clone();
            for row in x.chunks_exact(width) {
                for (s, &v) in want.iter_mut().zip(row) {
                    *s += v;
                }
            }
            add_rows(&mut got, &x);
            assert_eq!(bits(&got), bits(&want), "{width} × {rows}");
        }
        add_rows(&mut [], &[1.0, 2.0]);
    }

    #[test]
    fn fused_helpers_have_the_bits_of_the_steps_they_fuse() {
        let x: Vec<f32> = (0..8 * 70)
            .map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.3)
            .collect();
        let w: Vec<f32> = (0..8).map(|t| 1.0 + 0.9 * t as f32 / 7.0).collect();
        // weighted_sum_over_steps = accumulate_scaled step by step into zeros.
        let mut want = vec![0.0f32; 70];
        for (t, step) in x.chunks_exact(70).enumerate() {
            accumulate_scaled(&mut want, step, w[t]);
        }
        let mut got = vec![f32::NAN; 70];
        weighted_sum_over_steps(&x, &w, &mut got);
        assert_eq!(bits(&got), bits(&want));
        // sum_trace_over_steps = the first step copied, then decay_and_add and add_rows step by
        // step, for widths below, at and across the column block.
        for (width, rows, steps) in [(7usize, 3usize, 4usize), (64, 2, 3), (70, 2, 4), (150, 1, 2)] {
            let per_step = rows * width;
            let x: Vec<f32> = (0..steps * per_step)
                .map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.3)
                .collect();
            let (mut acc, mut sum) = (x[..per_step].to_vec(), vec![0.25f32; width]);
            add_rows(&mut sum, &acc);
            for step in x.chunks_exact(per_step).skip(1) {
                decay_and_add(&mut acc, 0.9, step);
                add_rows(&mut sum, &acc);
            }
            let (mut got_acc, mut got_sum) = (vec![f32::NAN; per_step], vec![0.25f32; width]);
            sum_trace_over_steps(&x, steps, 0.9, &mut got_acc, &mut got_sum);
            assert_eq!(
                (bits(&got_acc), bits(&got_sum)),
                (bits(&acc), bits(&sum)),
                "{width}"
            );
            // One step of x stands for every step: the same as that step repeated.
            let first = &x[..per_step];
            let (mut want_acc, mut want_sum) = (vec![f32::NAN; per_step], vec![0.25f32; width]);
            sum_trace_over_steps(&first.repeat(steps), steps, 0.9, &mut want_acc, &mut want_sum);
            let mut got_sum = vec![0.25f32; width];
            sum_trace_over_steps(first, steps, 0.9, &mut got_acc, &mut got_sum);
            assert_eq!(
                (bits(&got_acc), bits(&got_sum)),
                (bits(&want_acc), bits(&want_sum)),
                "{width}, constant input"
            );
        }
    }

    #[test]
    fn spreading_in_bptt_has_the_bits_of_spreading_then_bptt() {
        let value = |i: usize| match i % 53 {
            7 => f32::NAN,
            11 => f32::INFINITY,
            19 => -0.0,
            23 => 0.0,
            _ => ((i * 7919) % 1000) as f32 * 2e-3 - 1.0,
        };
        for (steps, width) in [(8usize, 40usize), (1, 17), (2, 9), (5, 64)] {
            let weights: Vec<f32> = (0..steps).map(|t| 0.9f32.powi((steps - 1 - t) as i32)).collect();
            let psi: Vec<f32> = (0..steps * width).map(|i| value(i * 3 + 1).abs()).collect();
            let first: Vec<f32> = (0..width).map(value).collect();
            let mut want = vec![0.0; steps * width];
            for (t, chunk) in want.chunks_exact_mut(width).enumerate() {
                scaled_copy(chunk, &first, weights[t]);
            }
            backward_through_time(&mut want, &psi, width, 0.9);
            // Steps after the first hold what the caller left there, which is neither read nor kept.
            let mut got: Vec<f32> = (0..steps * width)
                .map(|i| if i < width { first[i] } else { 5.0 })
                .collect();
            spread_backward_through_time(&mut got, &weights, &psi, width, 0.9);
            assert_eq!(bits(&got), bits(&want), "{steps} steps of {width}");
        }
    }

    /// Every vector width this CPU has, widest first.
    fn simd_levels() -> Vec<Simd> {
        [Simd::Avx512, Simd::Avx2, Simd::None]
            .into_iter()
            .skip_while(|&level| level != Simd::detect())
            .collect()
    }

    #[test]
    fn summed_steps_have_the_bits_of_step_then_accumulate() {
        let value = |i: usize| match i % 97 {
            13 => f32::NAN,
            29 => f32::INFINITY,
            41 => -0.0,
            _ => ((i * 7919) % 1000) as f32 * 3e-3 - 0.9,
        };
        // Thresholds and step weights that allow selecting in place of the spike's products
        // (finite, not negative; +0 included) and, in turn, each kind that does not.
        let plain_weights: Vec<f32> = (0..8).map(|t| 0.4 + 0.1 * t as f32).collect();
        let odd = [-0.5, -0.0, f32::INFINITY, f32::NAN];
        let cases = std::iter::once((None, None))
            .chain(odd.iter().map(|&x| (Some(x), None)))
            .chain(odd.iter().map(|&x| (None, Some(x))));
        for ((odd_theta, odd_weight), (width, batch)) in
            cases.zip([(13usize, 3usize), (256, 2), (8, 1), (21, 4)].iter().cycle())
        {
            let (width, batch) = (*width, *batch);
            let per_step = batch * width;
            let mut theta: Vec<f32> = (0..width).map(|j| 0.5 + 0.05 * j as f32).collect();
            theta[width / 2] = 0.0;
            if let Some(x) = odd_theta {
                theta[width - 1] = x;
            }
            let mut c = plain_weights.clone();
            if let Some(x) = odd_weight {
                c[3] = x;
            }
            // What a caller leaves in the membranes and sums, which `summed` neither reads nor keeps.
            let left: Vec<f32> = (0..per_step).map(|i| [-0.0, 7.0, f32::NAN][i % 3]).collect();
            for reset in [Reset::SameStep, Reset::NextStep] {
                for per_step_current in [false, true] {
                    let lif = Lif {
                        beta: 0.9,
                        threshold: 1.0,
                        slope: 25.0,
                        reset,
                    };
                    let steps = 8;
                    let n = if per_step_current {
                        steps * per_step
                    } else {
                        per_step
                    };
                    let currents: Vec<f32> = (0..n).map(value).collect();
                    let (mut v, mut prev, mut want) =
                        (vec![0.0; per_step], vec![0.0; per_step], vec![0.0; per_step]);
                    for (t, &c) in c.iter().enumerate() {
                        let at = if per_step_current { t * per_step } else { 0 };
                        let mut now = vec![0.0; per_step];
                        lif.step(
                            &mut v,
                            &currents[at..at + per_step],
                            &prev,
                            &mut now,
                            None,
                            &theta,
                        );
                        accumulate_scaled(&mut want, &now, c);
                        prev = now;
                    }
                    for simd in simd_levels() {
                        let (mut v2, mut sum, mut prev) = (left.clone(), left.clone(), vec![0.0; width]);
                        let shape = (steps, per_step_current);
                        lif.summed_with(simd, &mut v2, &currents, shape, &c, &theta, &mut sum, &mut prev);
                        let label = format!(
                            "width {width}, {reset:?}, per-step current {per_step_current}, {simd:?}, \
                             threshold {odd_theta:?}, step weight {odd_weight:?}"
                        );
                        assert_eq!(bits(&sum), bits(&want), "sums: {label}");
                        assert_eq!(bits(&v2), bits(&v), "membranes: {label}");
                    }
                }
            }
        }
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }
}
