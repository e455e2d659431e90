//! The documentation stays true: every example event in docs/events.md and README.md is
//! valid against docs/events.schema.json (the same schema every real event is checked
//! against).

use claude_monitor_tests::{assert_valid, schema};

#[test]
fn every_documented_example_matches_the_schema() {
    let doc = include_str!("../../docs/events.md");
    let validator = schema();
    let mut checked = 0;
    let mut kinds = std::collections::BTreeSet::new();
    for line in doc.lines().filter(|l| l.starts_with("{\"v\":")) {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert_valid(&validator, &event);
        kinds.insert(event["kind"].as_str().unwrap_or_default().to_owned());
        checked += 1;
    }
    let expected = [
        "agent_start",
        "agent_stop",
        "alert",
        "exec",
        "exit",
        "fork",
        "lost",
        "oom",
        "signal",
        "signal_deliver",
    ];
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        expected,
        "a kind without an example"
    );
    assert!(checked >= expected.len());
}

#[test]
fn readme_examples_match_the_schema() {
    let validator = schema();
    let lines: Vec<&str> = include_str!("../../README.md")
        .lines()
        .filter(|l| l.starts_with("{\"v\":"))
        .collect();
    assert!(lines.len() >= 6, "README lost its sample output");
    for line in lines {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert_valid(&validator, &event);
    }
}
