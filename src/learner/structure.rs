//! The structure schedule: which synapses exist, and how a `prune()` score changes that.
//!
//! The seed idea is developmental: overproduce, let activity show which synapses carry load, prune the
//! rest under competition inside a window, consolidate. Per weight matrix that follows the rule:
//!
//! - at creation, a random `initial_density` of the synapses exists in each competition group (the
//!   width is overproduced in the spec's `network` section);
//! - at the start of every task after the first, a random `regrow` fraction of the absent synapses of
//!   each group comes back, at `w = w0 = 0` with fresh state (as RigL grows connections at zero);
//! - during the first `window` fraction of each task's updates, `prune_steps` pruning events remove the
//!   lowest-`score` synapses of each group. The density a group is pruned to at event k of K follows the
//!   cubic schedule of Zhu & Gupta (2017, "To prune, or not to prune"):
//!   `d_k = target + (d_start − target)·(1 − k/K)³`, from the group's density when the window opened;
//!   early events remove the most, later ones fine-tune. A group already at or below the target is
//!   left alone: pruning never grows anything;
//! - with `protect_tasks` > 0, the synapses that survive a window's last event are consolidated: no
//!   pruning removes them during the next `protect_tasks` windows, so regrown synapses compete among
//!   themselves for the room that is left.
//!
//! Competition is per postsynaptic neuron (each row of the matrix keeps its share of inputs) or per
//! layer (the whole matrix competes, so a neuron can lose every input). Absent synapses have `w = 0` and
//! take no update. Everything random is keyed by (seed, layer, task), so structure does not depend on
//! thread count.

use crate::rng::{Purpose, Rng};

/// Which synapses compete with each other for survival.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Competition {
    /// The incoming synapses of each postsynaptic neuron (a row of the matrix).
    PerNeuron,
    /// Every synapse of the weight matrix.
    PerLayer,
}

/// The schedule's settings (the spec's `learner.structure`, checked there).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    /// Fraction of synapses that exist at creation, in (0, 1].
    pub initial_density: f32,
    /// Density each task's window prunes toward, in (0, 1].
    pub target_density: f32,
    /// Fraction of a task's updates, from its start, during which pruning happens, in (0, 1].
    pub window: f32,
    /// Pruning events in the window, ≥ 1.
    pub prune_steps: usize,
    /// Who competes with whom.
    pub competition: Competition,
    /// Fraction of the absent synapses regrown at each task start after the first, in [0, 1].
    pub regrow: f32,
    /// Windows during which a window's survivors cannot be pruned (0: no protection).
    pub protect_tasks: usize,
}

impl Schedule {
    /// The pruning event (k in 1..=K) that follows update `step` of a task of `updates` updates, if
    /// any. Events are spread evenly over the window: event k follows update ⌈k·W/K⌉ (counting from
    /// 1); when the window is shorter than K updates, several events fall on one update and the last
    /// of them counts.
    pub fn event(&self, step: usize, updates: usize) -> Option<usize> {
        let updates = updates.max(1);
        let window = ((self.window as f64 * updates as f64).round() as usize).clamp(1, updates);
        let done = step + 1;
        if done > window {
            return None;
        }
        let k = done * self.prune_steps / window;
        (k >= 1 && (k * window).div_ceil(self.prune_steps) == done).then_some(k)
    }

    /// The density a group that held `start` when the window opened is pruned to at event `k`.
    pub fn density_at(&self, start: f64, k: usize) -> f64 {
        let target = self.target_density as f64;
        let left = 1.0 - k as f64 / self.prune_steps as f64;
        target + (start - target) * left.powi(3)
    }
}

/// Which synapses of one weight matrix (`rows` postsynaptic × `cols` presynaptic, row-major) exist.
#[derive(Clone, Debug)]
pub struct Connectivity {
    cols: usize,
    present: Vec<bool>,
    /// Pruning skips a synapse during task t when t < `protected_until`.
    protected_until: Vec<u32>,
    /// Present synapses per group when the current window opened.
    window_start: Vec<usize>,
    competition: Competition,
}

impl Connectivity {
    /// The matrix's initial connectivity: `initial_density` of each group, chosen at random.
    pub fn new(rows: usize, cols: usize, schedule: &Schedule, rng: &mut Rng) -> Connectivity {
        let mut connectivity = Connectivity {
            cols,
            present: vec![true; rows * cols],
            protected_until: vec![0; rows * cols],
            window_start: Vec::new(),
            competition: schedule.competition,
        };
        if schedule.initial_density < 1.0 {
            let size = connectivity.group_size();
            let keep = (schedule.initial_density as f64 * size as f64).round() as usize;
            for group in connectivity.present.chunks_mut(size) {
                group.fill(false);
                for i in rng.permutation(size).into_iter().take(keep) {
                    group[i as usize] = true;
                }
            }
        }
        connectivity
    }

    fn group_size(&self) -> usize {
        match self.competition {
            Competition::PerNeuron => self.cols,
            Competition::PerLayer => self.present.len(),
        }
        .max(1)
    }

    /// Which synapses exist, row-major.
    pub fn present(&self) -> &[bool] {
        &self.present
    }

    /// Synapses that exist.
    pub fn count(&self) -> usize {
        self.present.iter().filter(|&&p| p).count()
    }

    /// Brings back a random `fraction` of each group's absent synapses; returns their indices so the
    /// learner can reset their weight and state.
    pub fn regrow(&mut self, fraction: f32, rng: &mut Rng) -> Vec<usize> {
        let size = self.group_size();
        let mut regrown = Vec::new();
        for (g, group) in self.present.chunks_mut(size).enumerate() {
            let mut absent: Vec<usize> = (0..group.len()).filter(|&i| !group[i]).collect();
            let count = (fraction as f64 * absent.len() as f64).round() as usize;
            rng.shuffle(&mut absent);
            for &i in &absent[..count] {
                group[i] = true;
                regrown.push(g * size + i);
            }
        }
        regrown.sort_unstable();
        regrown
    }

    /// Opens a task's window: remembers each group's present count, the start of its schedule.
    pub fn open_window(&mut self) {
        let size = self.group_size();
        self.window_start = self
            .present
            .chunks(size)
            .map(|g| g.iter().filter(|&&p| p).count())
            .collect();
    }

    /// Pruning event `k` of `task`: in each group, removes the lowest-`score` unprotected synapses until
    /// the group is down to its scheduled density. A NaN score counts as the lowest. Returns the removed
    /// indices (the learner zeroes their weights).
    pub fn prune(&mut self, scores: &[f32], k: usize, task: usize, schedule: &Schedule) -> Vec<usize> {
        debug_assert_eq!(scores.len(), self.present.len());
        let size = self.group_size();
        let task = task as u32;
        let key = |s: f32| if s.is_nan() { f32::NEG_INFINITY } else { s };
        let mut removed = Vec::new();
        let mut candidates: Vec<usize> = Vec::new();
        for (g, &start) in self.window_start.iter().enumerate() {
            let range = g * size..((g + 1) * size).min(self.present.len());
            let start_density = start as f64 / range.len() as f64;
            if start_density <= schedule.target_density as f64 {
                continue;
            }
            let keep = (schedule.density_at(start_density, k) * range.len() as f64).round() as usize;
            let present = self.present[range.clone()].iter().filter(|&&p| p).count();
            candidates.clear();
            candidates.extend(range.filter(|&i| self.present[i] && self.protected_until[i] <= task));
            let remove = present.saturating_sub(keep).min(candidates.len());
            if remove == 0 {
                continue;
            }
            let order = |a: &usize, b: &usize| key(scores[*a]).total_cmp(&key(scores[*b])).then(a.cmp(b));
            if remove < candidates.len() {
                candidates.select_nth_unstable_by(remove, order);
            }
            for &i in &candidates[..remove] {
                self.present[i] = false;
                removed.push(i);
            }
        }
        removed.sort_unstable();
        removed
    }

    /// Consolidates the survivors of `task`'s window: pruning skips them for the next `tasks` windows.
    pub fn protect(&mut self, task: usize, tasks: usize) {
        let until = (task + 1 + tasks) as u32;
        for (p, present) in self.protected_until.iter_mut().zip(&self.present) {
            if *present {
                *p = until;
            }
        }
    }
}

/// The random stream of layer `layer`'s structure at `task` (initial draw: task 0).
pub fn stream(seed: u64, layer: usize, task: usize) -> Rng {
    Rng::stream(seed, Purpose::Structure, &[layer as u64, task as u64])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(competition: Competition) -> Schedule {
        Schedule {
            initial_density: 1.0,
            target_density: 0.25,
            window: 0.5,
            prune_steps: 4,
            competition,
            regrow: 0.5,
            protect_tasks: 0,
        }
    }

    #[test]
    fn events_spread_over_the_window_and_end_at_its_last_update() {
        let s = schedule(Competition::PerNeuron);
        // 100 updates, window 50, 4 events after updates 13, 25, 38, 50.
        let events: Vec<(usize, usize)> = (0..100)
            .filter_map(|t| s.event(t, 100).map(|k| (t + 1, k)))
            .collect();
        assert_eq!(events, vec![(13, 1), (25, 2), (38, 3), (50, 4)]);
        // A window shorter than the event count: events share updates, the last one counts.
        let short: Vec<(usize, usize)> = (0..4).filter_map(|t| s.event(t, 4).map(|k| (t + 1, k))).collect();
        assert_eq!(short, vec![(1, 2), (2, 4)]);
    }

    #[test]
    fn the_schedule_is_cubic_and_reaches_the_target_at_the_last_event() {
        let s = schedule(Competition::PerNeuron);
        assert_eq!(s.density_at(1.0, 0), 1.0);
        assert!((s.density_at(1.0, 2) - (0.25 + 0.75 * 0.125)).abs() < 1e-12);
        assert_eq!(s.density_at(1.0, 4), 0.25);
    }

    #[test]
    fn per_neuron_pruning_removes_the_lowest_scores_of_each_row() {
        let s = schedule(Competition::PerNeuron);
        let mut rng = stream(1, 0, 0);
        let mut c = Connectivity::new(2, 4, &s, &mut rng);
        c.open_window();
        let scores = [4.0, 1.0, f32::NAN, 3.0, 0.5, 0.1, 0.2, 0.3];
        let removed = c.prune(&scores, 4, 0, &s);
        // Each row keeps one synapse (25% of 4): its highest score; NaN goes first.
        assert_eq!(removed, vec![1, 2, 3, 5, 6, 7]);
        assert_eq!(
            c.present(),
            &[true, false, false, false, true, false, false, false]
        );
    }

    #[test]
    fn per_layer_pruning_lets_a_neuron_lose_every_input() {
        let s = schedule(Competition::PerLayer);
        let mut c = Connectivity::new(2, 4, &s, &mut stream(1, 0, 0));
        c.open_window();
        let scores = [4.0, 1.0, 2.0, 3.0, 0.5, 0.1, 0.2, 0.3];
        c.prune(&scores, 4, 0, &s);
        assert_eq!(
            c.present(),
            &[true, false, false, true, false, false, false, false]
        );
    }

    #[test]
    fn initial_density_and_regrowth_are_exact_per_group_and_protection_holds() {
        let s = Schedule {
            initial_density: 0.5,
            protect_tasks: 1,
            ..schedule(Competition::PerNeuron)
        };
        let mut c = Connectivity::new(3, 10, &s, &mut stream(7, 0, 0));
        for row in c.present().chunks(10) {
            assert_eq!(row.iter().filter(|&&p| p).count(), 5);
        }
        let regrown = c.regrow(0.4, &mut stream(7, 0, 1));
        assert_eq!(regrown.len(), 3 * 2);
        assert_eq!(c.count(), 21);
        // Protect task 1's survivors; task 2 may not remove them, task 3 may.
        c.protect(1, 1);
        c.open_window();
        let scores = vec![0.0; 30];
        assert!(c.prune(&scores, 4, 2, &s).is_empty());
        assert_eq!(c.prune(&scores, 4, 3, &s).len(), 21 - 3 * 3);
    }

    #[test]
    fn a_group_at_or_below_the_target_is_left_alone() {
        let s = Schedule {
            initial_density: 0.2,
            ..schedule(Competition::PerNeuron)
        };
        let mut c = Connectivity::new(1, 10, &s, &mut stream(3, 0, 0));
        c.open_window();
        assert!(c.prune(&[0.0; 10], 4, 0, &s).is_empty());
        assert_eq!(c.count(), 2);
    }
}
