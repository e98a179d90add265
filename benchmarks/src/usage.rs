//! What the operating system says a run cost: CPU time and memory, of this process and of
//! the `raft-bench node` processes it started, plus the machine's load.
//!
//! Everything here reads Linux's `/proc` or calls `getrusage`; on another system the
//! figures come out as zero rather than failing the benchmark.

use std::time::Duration;

/// CPU time (user plus system) this process has used, all threads included.
pub fn self_cpu() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` is valid for writes of one `rusage`; getrusage fills it or fails,
    // and on failure the zeroed value is a valid `rusage` too.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1_000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// CPU time (user plus system) process `pid` has used so far, from `/proc/<pid>/stat`.
pub fn process_cpu(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // The command name (field 2) is in parentheses and may contain spaces: count fields
    // from the last ')'. utime and stime are fields 14 and 15, in clock ticks.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // Field 3 (the state) is index 0 here, so field n is index n - 3.
    let total = ticks(14 - 3) + ticks(15 - 3);
    Duration::from_nanos(total * 1_000_000_000 / clock_ticks_per_second())
}

/// Resident memory of a process, in bytes: now, and the peak since it started (or since
/// [`reset_peak`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    /// Resident set size now (`VmRSS`).
    pub rss: u64,
    /// The peak resident set size (`VmHWM`).
    pub peak: u64,
}

impl std::ops::Add for Memory {
    type Output = Memory;

    fn add(self, other: Memory) -> Memory {
        Memory {
            rss: self.rss + other.rss,
            peak: self.peak + other.peak,
        }
    }
}

/// The memory of process `pid`, or of this process for `None`.
pub fn memory(pid: Option<u32>) -> Memory {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_string(),
    };
    let Ok(status) = std::fs::read_to_string(path) else {
        return Memory::default();
    };
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |k| k * 1024)
    };
    Memory {
        rss: kib("VmRSS:"),
        peak: kib("VmHWM:"),
    }
}

/// Resets this process's peak resident size to its current size, so that each run's peak
/// is its own (Linux `clear_refs`, value 5). First hands the memory that the allocator
/// kept from earlier runs back to the system (glibc's `malloc_trim`), since the peak can
/// only be as low as the resident size at the reset.
pub fn reset_peak() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator; it has no
    // preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// CPU time the whole machine has spent busy (every process and the kernel), from the
/// first line of `/proc/stat`. Less this benchmark's own CPU time over a run, it tells how
/// much else the machine was doing meanwhile.
pub fn machine_busy() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return Duration::ZERO;
    };
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return Duration::ZERO;
    };
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal ...: busy is all but idle and iowait.
    let busy: u64 = ticks
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != 3 && i != 4 && i < 8)
        .map(|(_, t)| t)
        .sum();
    Duration::from_nanos(busy * 1_000_000_000 / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if per_second > 0 { per_second as u64 } else { 100 }
}

/// The 1, 5 and 15 minute load averages.
pub fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut fields = text.split_whitespace().map(|f| f.parse::<f64>().ok());
    Some([fields.next()??, fields.next()??, fields.next()??])
}

/// Raises this process's open-file limit to its hard limit: 4096 clients over HTTP need
/// 4096 connections, and the `raft-bench node` processes inherit the limit.
pub fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid `rlimit` for both calls.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// Available parallelism (the number of CPUs this process may use).
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_uses_cpu_and_memory() {
        let start = self_cpu();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(self_cpu() > start);
        let m = memory(None);
        assert!(m.rss > 0 && m.peak >= m.rss, "{m:?}");
        assert!(process_cpu(std::process::id()) <= self_cpu() + Duration::from_millis(20));
        assert!(load_average().is_some());
        assert!(machine_busy() > Duration::ZERO);
    }
}
