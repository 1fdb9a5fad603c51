//! What the workloads measure: latency percentiles, arrivals (lost and
//! duplicated), and a process's CPU and memory from /proc.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::json;

/// Latencies in nanoseconds, to three significant digits, in a histogram:
/// a stream or soak of any length costs the same ~270 KB.
pub struct Latencies(Histogram<u64>);

impl Latencies {
    /// Up to an hour; longer ones count as an hour.
    pub fn new() -> Latencies {
        let hour = 3_600_000_000_000;
        Latencies(Histogram::new_with_bounds(1, hour, 3).expect("valid bounds"))
    }

    pub fn of(samples: &[Duration]) -> Latencies {
        let mut latencies = Latencies::new();
        for &sample in samples {
            latencies.record(sample);
        }
        latencies
    }

    pub fn record(&mut self, sample: Duration) {
        let nanos = u64::try_from(sample.as_nanos()).unwrap_or(u64::MAX);
        self.0.saturating_record(nanos);
    }

    pub fn add(&mut self, other: &Latencies) {
        // Same bounds on both sides, so every value fits.
        let _ = self.0.add(&other.0);
    }

    /// Percentiles in microseconds (all 0 when nothing was recorded).
    pub fn percentiles(&self) -> serde_json::Value {
        let micros = |nanos: u64| round(nanos as f64 / 1e3);
        json!({
            "p50_us": micros(self.0.value_at_quantile(0.50)),
            "p90_us": micros(self.0.value_at_quantile(0.90)),
            "p99_us": micros(self.0.value_at_quantile(0.99)),
            "max_us": micros(self.0.max()),
        })
    }
}

/// Which message numbers of one sender have arrived, one bit each: an hour
/// at 40 000 messages a second is 18 MB, where a set of numbers would take
/// gigabytes.
#[derive(Default)]
pub struct Arrivals {
    bits: Vec<u64>,
    pub count: u64,
}

impl Arrivals {
    /// Numbers past this are not ones a sender could have sent (a day at
    /// 46 000 a second is 4.0e9): refuse them rather than grow to 512 MiB.
    const LIMIT: u64 = 1 << 32;

    /// Records `n`; false when it had arrived before.
    pub fn insert(&mut self, n: u64) -> Result<bool, String> {
        if n >= Self::LIMIT {
            return Err(format!("message number {n} is out of range"));
        }
        let (word, bit) = ((n / 64) as usize, 1u64 << (n % 64));
        if word >= self.bits.len() {
            self.bits.resize(word + 1, 0);
        }
        let fresh = self.bits[word] & bit == 0;
        self.bits[word] |= bit;
        self.count += u64::from(fresh);
        Ok(fresh)
    }
}

pub fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// CPU time (user + system) of a process, in seconds, from /proc.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ is 100 on Linux
}

/// Resident memory of a process, in KiB, from /proc.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrivals_count_each_number_once() {
        let mut seen = Arrivals::default();
        for n in [0, 1, 63, 64, 1000] {
            assert_eq!(seen.insert(n), Ok(true));
        }
        assert_eq!(seen.insert(64), Ok(false), "a duplicate");
        assert_eq!(seen.insert(0), Ok(false), "a duplicate");
        assert_eq!(seen.count, 5);
        assert!(seen.insert(Arrivals::LIMIT).is_err());
    }

    #[test]
    fn latencies_keep_three_significant_digits() {
        let samples: Vec<Duration> = (1..=1000).map(Duration::from_micros).collect();
        let p = Latencies::of(&samples).percentiles();
        let close = |key: &str, want: f64| {
            let got = p[key].as_f64().unwrap();
            assert!(
                (got - want).abs() <= want * 0.001 + 0.1,
                "{key}: {got} vs {want}"
            );
        };
        close("p50_us", 500.0);
        close("p99_us", 990.0);
        close("max_us", 1000.0);
        let none = Latencies::new().percentiles();
        assert_eq!(none["p50_us"], 0.0);
        assert_eq!(none["max_us"], 0.0);
    }
}
