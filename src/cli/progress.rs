//! Progress on stderr: a live bar on a terminal, one line per finished task otherwise (logs, CI),
//! nothing with `--quiet`.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::metrics::TaskRecord;

/// The progress display of one run.
pub struct Progress {
    bar: Option<ProgressBar>,
    quiet: bool,
    tasks: usize,
    samples_per_task: usize,
    started: Instant,
    task_started: Instant,
}

impl Progress {
    /// A display for `tasks` tasks of `samples_per_task` training examples each.
    pub fn new(quiet: bool, tasks: usize, samples_per_task: usize) -> Progress {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(
                Some((tasks * samples_per_task) as u64),
                ProgressDrawTarget::stderr_with_hz(4),
            );
            bar.set_style(
                ProgressStyle::with_template("{bar:30} {msg} │ {elapsed_precise} ETA {eta}")
                    .expect("the template is a constant"),
            );
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        });
        Progress {
            bar,
            quiet,
            tasks,
            samples_per_task,
            started: Instant::now(),
            task_started: Instant::now(),
        }
    }

    /// A line above the bar (or on stderr).
    pub fn announce(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None if !self.quiet => eprintln!("{line}"),
            None => {}
        }
    }

    /// A task begins.
    pub fn task_started(&mut self, _task: usize) {
        self.task_started = Instant::now();
    }

    /// Training progress within task `task` (from 0).
    pub fn update(&self, task: usize, samples_done: usize, online_accuracy: f32) {
        if let Some(bar) = &self.bar {
            let rate = samples_done as f64 / self.task_started.elapsed().as_secs_f64().max(1e-9);
            bar.set_position((task * self.samples_per_task + samples_done) as u64);
            bar.set_message(format!(
                "task {}/{} │ online {:5.1}% │ {:>7.0} samples/s",
                task + 1,
                self.tasks,
                100.0 * online_accuracy,
                rate
            ));
        }
    }

    /// A task finished: one line with its headline numbers.
    pub fn task_finished(&self, record: &TaskRecord) {
        let retention = record
            .retention
            .map_or("     —".to_string(), |r| format!("{:5.1}%", 100.0 * r));
        let line = format!(
            "task {:>3}/{}: plasticity {:5.1}%  retention {retention}  online {:5.1}%  {:>7.0} samples/s  [{:.0?}]",
            record.task,
            self.tasks,
            100.0 * record.plasticity,
            100.0 * record.online_accuracy,
            record.samples_per_second,
            self.started.elapsed(),
        );
        self.announce(&line);
    }

    /// Clears the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
