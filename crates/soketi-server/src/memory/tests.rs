use std::path::{Path, PathBuf};

use super::*;

const MEMINFO: &str = "\
MemTotal:       24684084 kB
MemFree:        20012345 kB
MemAvailable:   23548420 kB
Buffers:          123456 kB
SwapTotal:             0 kB
HugePages_Total:       0
";

const STATUS: &str = "\
Name:\tsoketi-server
Umask:\t0022
State:\tS (sleeping)
VmPeak:\t  123456 kB
VmRSS:\t    2192 kB
RssAnon:\t     256 kB
Threads:\t3
";

fn check<T: PartialEq + std::fmt::Debug>(actual: T, expected: T) {
    assert_eq!(actual, expected);
}

#[test]
fn kb_fields() {
    check(kb_field(MEMINFO, "MemTotal"), Some(24_684_084 * 1024));
    check(kb_field(MEMINFO, "MemAvailable"), Some(23_548_420 * 1024));
    check(kb_field(MEMINFO, "HugePages_Total"), Some(0));
    check(kb_field(STATUS, "VmRSS"), Some(2192 * 1024));
    // A key is matched whole: `Rss` is not `RssAnon`, and `VmRSS` is not `VmRSSx`.
    check(kb_field(STATUS, "Rss"), None);
    check(kb_field("VmRSSx:\t1 kB\n", "VmRSS"), None);
    check(kb_field(STATUS, "Missing"), None);
    check(kb_field("VmRSS:\tlots kB\n", "VmRSS"), None);
    check(kb_field("VmRSS:\t1 MB\n", "VmRSS"), None);
    check(kb_field("", "VmRSS"), None);
}

#[test]
fn meminfo() {
    let memory = parse_meminfo(MEMINFO).expect("the sample has both fields");
    check(
        memory,
        MachineMemory {
            total: 24_684_084 * 1024,
            available: 23_548_420 * 1024,
        },
    );
    check(memory.used(), (24_684_084 - 23_548_420) * 1024);
    check(format!("{:.3}", memory.percent_used()), "4.601".to_owned());
    check(parse_meminfo("MemTotal: 1 kB\n"), None);
}

#[test]
fn percents() {
    let process = |used, total| ProcessMemory { used, total }.percent_used();
    check(process(50, 200), 25.0);
    check(process(300, 200), 150.0);
    check(process(1, 0), 0.0);
}

#[test]
fn cgroup_paths() {
    check(
        cgroup_v2_path("0::/system.slice/soketi.service\n"),
        Some("/system.slice/soketi.service"),
    );
    // cgroup v1 lines are skipped; a hybrid host still lists the v2 one.
    check(
        cgroup_v2_path("4:memory:/docker/abc\n1:cpu:/\n0::/\n"),
        Some("/"),
    );
    check(cgroup_v2_path("4:memory:/docker/abc\n"), None);
    check(cgroup_v2_path(""), None);
}

#[test]
fn limit_files() {
    let files = |path| cgroup_limit_files(Path::new("/cg"), path);
    let paths = |list: &[&str]| list.iter().map(PathBuf::from).collect::<Vec<_>>();
    check(
        files(Some("/system.slice/soketi.service")),
        paths(&[
            "/cg/memory/memory.limit_in_bytes",
            "/cg/memory.max",
            "/cg/system.slice/memory.max",
            "/cg/system.slice/soketi.service/memory.max",
        ]),
    );
    check(
        files(Some("/")),
        paths(&["/cg/memory/memory.limit_in_bytes", "/cg/memory.max"]),
    );
    // A path that tries to leave the hierarchy stays inside it.
    check(
        files(Some("/../x")),
        paths(&[
            "/cg/memory/memory.limit_in_bytes",
            "/cg/memory.max",
            "/cg/x/memory.max",
        ]),
    );
    check(
        files(None),
        paths(&["/cg/memory/memory.limit_in_bytes", "/cg/memory.max"]),
    );
}

#[test]
fn memory_max() {
    check(parse_memory_max("1073741824\n"), Some(1_073_741_824));
    check(parse_memory_max("max\n"), None);
    check(
        parse_memory_max("9223372036854771712\n"),
        Some(9_223_372_036_854_771_712),
    );
    check(parse_memory_max(""), None);
}

#[test]
fn this_process_reads_its_memory() {
    // Linux is the platform this server is built for; elsewhere there is nothing to read.
    if !Path::new("/proc/self/status").exists() {
        eprintln!("skipped: no /proc on this system");
        assert!(
            std::env::var_os("SOKETI_TEST_REQUIRE_ALL").is_none(),
            "/proc is required under SOKETI_TEST_REQUIRE_ALL"
        );
        return;
    }
    let process = process().expect("/proc/self/status and /proc/meminfo are readable");
    assert!(
        process.used > 0 && process.used < process.total,
        "{process:?}"
    );
    let machine = machine().expect("/proc/meminfo is readable");
    assert!(process.total <= machine.total);
    assert!(machine.available <= machine.total, "{machine:?}");
}
