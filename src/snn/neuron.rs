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
    #[inline]
    pub fn step(
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

/// BPTT through a layer of neurons with membrane decay `beta`, over `steps` slices of `width` values:
/// `grad[t] = grad_out[t]·ψ[t] + β·grad[t+1]`, written in place over `grad_out` (which then holds
/// ∂L/∂I for every step). `beta = 0` gives the memoryless (ReLU) case.
pub fn backward_through_time(grad_out: &mut [f32], psi: &[f32], width: usize, beta: f32) {
    let steps = grad_out.len() / width;
    let mut next = steps;
    for t in (0..steps).rev() {
        let (head, tail) = grad_out.split_at_mut((t + 1) * width);
        let cur = &mut head[t * width..];
        let psi_t = &psi[t * width..(t + 1) * width];
        if next < steps {
            let later = &tail[..width];
            for i in 0..width {
                cur[i] = cur[i] * psi_t[i] + beta * later[i];
            }
        } else {
            for i in 0..width {
                cur[i] *= psi_t[i];
            }
        }
        next = t;
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
}
