//! Benchmarks (not tests): each binary under `src/bin/` starts what it measures, runs a bounded
//! load on loopback, and writes its figures to `bench/results/`.

use std::path::PathBuf;
use std::time::Duration;

pub mod dns_query;

/// `median [min–max]` of per-round figures, with `digits` decimals.
pub fn median_range(v: &[f64], digits: usize) -> String {
    let mut sorted = v.to_vec();
    sorted.sort_by(f64::total_cmp);
    match (sorted.first(), sorted.last()) {
        (Some(lo), Some(hi)) => {
            let mid = sorted[sorted.len() / 2];
            format!("{mid:.digits$} [{lo:.digits$}–{hi:.digits$}]")
        }
        _ => "–".into(),
    }
}

/// Latency summary of a set of samples.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub count: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

/// Percentiles of `samples` (sorted in place).
pub fn summarize(samples: &mut [Duration]) -> Summary {
    samples.sort();
    let pick = |q: f64| {
        if samples.is_empty() {
            Duration::ZERO
        } else {
            samples[((samples.len() - 1) as f64 * q).round() as usize]
        }
    };
    Summary {
        count: samples.len(),
        p50: pick(0.5),
        p99: pick(0.99),
        max: pick(1.0),
    }
}

/// `VmRSS` and `VmHWM` (peak) of a process in KiB, from /proc.
pub fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// CPU time (user + system) a process has used so far, from /proc/<pid>/stat.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the command name (field 2) may hold spaces: fields are counted after its ')'
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // utime and stime are fields 14 and 15, i.e. the 12th and 13th after the name
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // SAFETY: sysconf has no preconditions
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = u64::try_from(ticks).ok().filter(|t| *t > 0)?;
    Some(Duration::from_secs_f64(
        (utime + stime) as f64 / ticks as f64,
    ))
}

/// `bench/results/<name>`.
pub fn results_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("results")
        .join(name)
}

/// The build this benchmark runs as, for its results file.
pub fn build_profile() -> &'static str {
    if cfg!(debug_assertions) {
        "an unoptimized (debug) build"
    } else {
        "a release build"
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A benchmark's command line: it takes no arguments (its settings are environment variables,
/// which `help` names). `-h`/`--help` prints `help` and exits 0; anything else is named in one
/// line and exits 2, before anything is started.
pub fn no_arguments(name: &str, help: &str) {
    match std::env::args().nth(1).as_deref() {
        None => {}
        Some("-h" | "--help") => {
            print!("{help}");
            std::process::exit(0);
        }
        Some(other) => {
            eprintln!(
                "{name}: error: unknown argument {other:?}: it takes none (see {name} --help)"
            );
            std::process::exit(2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut s: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let sum = summarize(&mut s);
        assert_eq!(sum.count, 100);
        assert_eq!(sum.p50, Duration::from_millis(51));
        assert_eq!(sum.p99, Duration::from_millis(99));
        assert_eq!(sum.max, Duration::from_millis(100));
    }

    #[test]
    fn cpu_time_of_this_process_grows_with_work() {
        let pid = std::process::id();
        let before = cpu_time(pid).expect("own /proc stat");
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(200) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let after = cpu_time(pid).expect("own /proc stat");
        assert!(
            after - before >= Duration::from_millis(100),
            "{before:?} -> {after:?}"
        );
    }
}
