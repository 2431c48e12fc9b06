use std::time::Duration;

use super::{cpu_of_stat, own_cpu, rss_of_status, sample};

#[test]
fn reads_cpu_after_a_name_with_spaces_and_parentheses() {
    let ticks = rustix::param::clock_ticks_per_second();
    let stat = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 150 50 0 0 20 0 3 0";
    let expected = Duration::from_nanos(200 * 1_000_000_000 / ticks);
    assert_eq!(cpu_of_stat(stat), Some(expected));
    assert_eq!(cpu_of_stat("4242 (short) S 1"), None);
}

#[test]
fn reads_resident_memory() {
    let status = "Name:\tsoketi\nVmPeak:\t  9000 kB\nVmRSS:\t  1234 kB\nThreads:\t3\n";
    assert_eq!(rss_of_status(status), Some(1234));
    assert_eq!(rss_of_status("Name:\tx\n"), None);
}

#[test]
fn samples_this_process() {
    let me = sample(&[std::process::id()]).expect("this process is readable");
    assert!(me.rss_kib > 0, "{me:?}");
    assert_eq!(sample(&[]).expect("nothing to read"), Default::default());
    // Burn a little CPU so that the clock has something to show, whatever the tick length.
    let started = std::time::Instant::now();
    let mut spin = 0u64;
    while started.elapsed() < Duration::from_millis(30) {
        spin = spin.wrapping_add(1);
    }
    assert!(spin > 0 && own_cpu() > Duration::ZERO);
}
