//! What the consumer benchmarks share: per-round rates with their spread, and the CPU a run
//! costs in the bench process and in the servers it talks to.
//!
//! On a machine whose cores the bench and its servers share, a side's rate can exceed the
//! other's by at most the inverse ratio of their CPU per message: [`cpu_ceiling`] is that
//! bound, printed beside the measured ratio.

use std::path::Path;
use std::time::Duration;

/// An environment variable, or `default`.
pub fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.into())
}

/// A count from the environment, or `default`.
pub fn count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Per-round msgs/s of one side.
#[derive(Debug, Clone, Default)]
pub struct Rates(pub Vec<f64>);

impl Rates {
    /// Records a round of `n` messages in `took`; returns its rate.
    pub fn push(&mut self, n: usize, took: Duration) -> f64 {
        let rate = n as f64 / took.as_secs_f64();
        self.0.push(rate);
        rate
    }

    /// Min, median, max.
    pub fn spread(&self) -> [f64; 3] {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        [v[0], v[v.len() / 2], v[v.len() - 1]]
    }

    /// Each round's rate over `raw`'s in the same round.
    pub fn ratios(&self, raw: &Rates) -> Rates {
        Rates(self.0.iter().zip(&raw.0).map(|(i, r)| i / r).collect())
    }
}

/// Prints a line of min, median and max rates.
pub fn line(name: &str, rates: &Rates) {
    let [min, med, max] = rates.spread();
    println!("  {name:<46} {min:>8.0} {med:>8.0} {max:>8.0}");
}

/// Prints the per-round ratios of `idem` over `raw`: min, median, max.
pub fn ratio_line(name: &str, idem: &Rates, raw: &Rates) {
    let [min, med, max] = idem.ratios(raw).spread();
    println!("  {name:<46} {min:>8.2} {med:>8.2} {max:>8.2}");
}

/// A server to meter: its label, and the start of its process name (`/proc/PID/comm`, at
/// most 15 bytes).
pub type Server = (&'static str, &'static str);

/// CPU seconds used so far: this process first, then each server in order.
#[derive(Debug, Clone, Default)]
pub struct Cpu(Vec<f64>);

impl Cpu {
    /// The CPU used so far by this process and by every process of each server.
    pub fn now(servers: &[Server]) -> Self {
        let mut cpu = vec![ticks(Path::new("/proc/self/stat"))];
        cpu.resize(servers.len() + 1, 0.0);
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let dir = entry.path();
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            if let Some(i) = servers.iter().position(|(_, p)| comm.trim().starts_with(p)) {
                cpu[i + 1] += ticks(&dir.join("stat"));
            }
        }
        Self(cpu)
    }

    /// What was used between `before` and this reading.
    pub fn since(&self, before: &Cpu) -> Cpu {
        Cpu(self.0.iter().zip(&before.0).map(|(a, b)| a - b).collect())
    }

    /// Adds another measurement.
    pub fn add(&mut self, other: &Cpu) {
        if self.0.is_empty() {
            self.0 = vec![0.0; other.0.len()];
        }
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a += b;
        }
    }

    /// All processes together.
    pub fn total(&self) -> f64 {
        self.0.iter().sum()
    }
}

/// utime + stime of a `/proc/PID/stat`, in seconds (Linux counts ticks of 1/100 s there).
fn ticks(path: &Path) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / 100.0
}

/// Prints the CPU table's header: `bench`, each server, `total`.
pub fn cpu_header(title: &str, servers: &[Server]) {
    let mut row = format!("  {title:<46} {:>8}", "bench");
    for (label, _) in servers {
        row += &format!(" {label:>8}");
    }
    println!("{row} {:>8}", "total");
}

/// Prints one side's CPU in µs per message.
pub fn cpu_line(name: &str, cpu: &Cpu, msgs: usize) {
    let per = 1e6 / msgs as f64;
    let mut row = format!("  {name:<46}");
    for c in &cpu.0 {
        row += &format!(" {:>8.1}", c * per);
    }
    println!("{row} {:>8.1}", cpu.total() * per);
}

/// The highest ratio the machine allows when both sides are CPU-bound: raw CPU per message
/// over idempotent CPU per message (same message counts).
pub fn cpu_ceiling(raw: &Cpu, idem: &Cpu) -> f64 {
    raw.total() / idem.total()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_and_ratios_are_per_round() {
        let raw = Rates(vec![100.0, 200.0, 300.0]);
        let idem = Rates(vec![50.0, 180.0, 150.0]);
        assert_eq!(raw.spread(), [100.0, 200.0, 300.0]);
        assert_eq!(idem.ratios(&raw).spread(), [0.5, 0.5, 0.9]);
    }

    #[test]
    fn this_process_uses_cpu() {
        let before = Cpu::now(&[]);
        let mut x = 0u64;
        for i in 0..50_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        let used = Cpu::now(&[]).since(&before);
        assert!(used.total() > 0.0, "{used:?}");
    }
}
