use super::report::{count, number, ratio};
use super::servers::{Kind, is_loopback_hex, listeners};
use super::{Options, Run, SCENARIOS};

fn check(args: &[&str], expected: Result<Options, &str>) {
    crate::cmd::check_parse(Options::parse, args, expected);
}

#[test]
fn options() {
    let all = SCENARIOS.to_vec();
    check(
        &[],
        Ok(Options {
            against: vec![],
            nodes: 1,
            scenarios: all.clone(),
            quick: false,
        }),
    );
    check(
        &["--against", "soketi,sockudo", "--nodes=3", "--quick"],
        Ok(Options {
            against: vec![Kind::Soketi, Kind::Sockudo],
            nodes: 3,
            scenarios: all,
            quick: true,
        }),
    );
    check(
        &["--scenario", "fan-out", "--scenario=idle-memory,fan-out"],
        Ok(Options {
            against: vec![],
            nodes: 1,
            scenarios: vec!["fan-out", "idle-memory"],
            quick: false,
        }),
    );
    check(
        &["--scenario=console", "--quick"],
        Ok(Options {
            against: vec![],
            nodes: 1,
            scenarios: vec!["console"],
            quick: true,
        }),
    );
    check(
        &["--against", "pusher"],
        Err("unknown peer `pusher`; known: soketi, sockudo"),
    );
    check(&["--nodes", "0"], Err("`--nodes 0`: expected 1 to 8"));
    check(&["--nodes"], Err("`--nodes` needs a value"));
    check(&["--fast"], Err("unknown option `--fast` for `bench`"));
}

#[test]
fn idle_memory_and_connect_storm_share_a_run() {
    assert_eq!(
        Run::for_scenarios(&["connect-storm", "fan-out", "idle-memory"]),
        vec![Run::FanOut, Run::Storm]
    );
    assert_eq!(Run::for_scenarios(SCENARIOS).len(), 15);
    assert_eq!(
        Run::for_scenarios(&["hostile"]),
        vec![Run::ManyChannels, Run::Hostile]
    );
    assert_eq!(
        Run::for_scenarios(&["sequential-publisher", "subscription-count"]),
        vec![
            Run::CountOff,
            Run::CountOn,
            Run::SequentialOneChannel,
            Run::SequentialManyChannels
        ]
    );
}

#[test]
fn subscription_count_runs_on_our_server_only() {
    let ours = Kind::Ours { nodes: 1 };
    let fleet = Kind::Ours { nodes: 3 };
    for run in [Run::CountOff, Run::CountOn] {
        assert_eq!(run.unsupported(ours), None);
        assert_eq!(run.unsupported(fleet), None);
        assert!(run.unsupported(Kind::Soketi).is_some());
        assert!(run.unsupported(Kind::Sockudo).is_some());
    }
    for kind in [ours, Kind::Soketi, Kind::Sockudo] {
        assert!(Run::Cluster.unsupported(kind).is_some());
        assert_eq!(Run::SequentialOneChannel.unsupported(kind), None);
    }
    assert_eq!(Run::Cluster.unsupported(fleet), None);
}

#[test]
fn finds_listeners_off_loopback() {
    let table = "  sl  local_address rem_address   st tx_queue\n\
        0: 0100007F:6591 00000000:0000 0A 00000000:00000000\n\
        1: 00000000:6689 00000000:0000 0A 00000000:00000000\n\
        2: 0100007F:6591 0200007F:9C40 01 00000000:00000000\n";
    assert_eq!(
        listeners(table),
        vec![
            ("0100007F".to_owned(), 26001),
            ("00000000".to_owned(), 26249)
        ]
    );
    assert!(is_loopback_hex("0100007F"));
    assert!(is_loopback_hex("0500007F"));
    assert!(!is_loopback_hex("00000000"));
    assert!(is_loopback_hex("00000000000000000000000001000000"));
    assert!(is_loopback_hex("0000000000000000FFFF00000100007F"));
    assert!(!is_loopback_hex("00000000000000000000000000000000"));
}

#[test]
fn numbers_and_ratios() {
    assert_eq!(number(412_345.6), "412,346");
    assert_eq!(number(1000.0), "1,000");
    assert_eq!(number(123.4), "123");
    assert_eq!(number(23.45), "23.4");
    assert_eq!(number(2.345), "2.35");
    assert_eq!(number(0.4123), "0.412");
    assert_eq!(count(0.0), "0");
    assert_eq!(count(2.0), "2");
    assert_eq!(count(19_000.0), "19,000");
    use super::report::Better;
    assert_eq!(ratio(Better::Higher, 200.0, 100.0), Some(2.0));
    assert_eq!(ratio(Better::Lower, 1.0, 4.0), Some(4.0));
    assert_eq!(ratio(Better::Lower, 0.0, 4.0), None);
    assert_eq!(ratio(Better::Neither, 1.0, 4.0), None);
}

#[test]
fn the_console_runs_each_load_without_and_with_a_console_in_alternating_order() {
    let runs = Run::for_scenarios(&["console", "fan-out"]);
    assert_eq!(
        runs,
        vec![
            Run::FanOut,
            Run::ConsoleFanOutNone,
            Run::ConsoleFanOutOpen,
            Run::ConsoleManyChannelsOpen,
            Run::ConsoleManyChannelsNone
        ]
    );
    for run in &runs[1..] {
        let args = run.generator_args(true);
        let open = run.console() == Some(true);
        // The generator's own option, before the mode.
        assert_eq!(args[0] == "--console", open, "{args:?}");
        assert_eq!(
            args.iter().filter(|arg| *arg == "--console").count(),
            usize::from(open)
        );
        let load = match run {
            Run::ConsoleFanOutNone | Run::ConsoleFanOutOpen => Run::FanOut,
            _ => Run::ManyChannels,
        };
        assert_eq!(
            args[usize::from(open)..],
            load.generator_args(true),
            "{run:?}"
        );
    }
    let ours = Kind::Ours { nodes: 1 };
    for run in &runs[1..] {
        assert_eq!(run.unsupported(ours), None);
        assert!(!run.left_out(ours));
        for kind in [Kind::Soketi, Kind::Sockudo, Kind::Ours { nodes: 3 }] {
            assert!(run.unsupported(kind).is_some(), "{run:?} on {kind:?}");
            assert!(run.left_out(kind), "{run:?} on {kind:?}");
        }
    }
    assert_eq!(Run::FanOut.console(), None);
    assert!(!Run::FanOut.left_out(Kind::Soketi));
}
