use super::*;

// ------------------------------------------------------ JSON quirks --

#[test]
fn json_quirks() {
    assert_rows(
        &json(fixture!("quirks.json")),
        &[
            (
                "nvme-pci-0100",
                "temp1",
                Some("Composite"),
                38.85,
                Some(81.85),
                Some(84.85),
            ),
            // temp2_max 65261.850 dropped, the reading kept.
            (
                "nvme-pci-0100",
                "temp2",
                Some("Sensor 1"),
                41.85,
                None,
                None,
            ),
            // No Adapter key (`sensors -A -j`); `Core 0` has no input.
            (
                "coretemp-isa-0000",
                "temp1",
                Some("Package id 0"),
                52.0,
                Some(84.0),
                Some(100.0),
            ),
            (
                "coretemp-isa-0000",
                "temp3",
                Some("Core 1"),
                50.0,
                None,
                None,
            ),
            // in0/fan1/intrusion0/beep_enable skipped; hyst, min, lcrit ignored.
            (
                "nct6775-isa-0290",
                "temp1",
                Some("SYSTIN"),
                31.0,
                Some(80.0),
                None,
            ),
            (
                "nct6775-isa-0290",
                "temp2",
                Some("CPUTIN"),
                33.5,
                Some(80.0),
                Some(100.0),
            ),
            // AUXTIN at -128.0 is implausible.
            ("acpitz-acpi-0", "temp1", None, 27.8, None, Some(119.0)),
        ],
    );
}

#[test]
fn json_from_lm_sensors_3_5_with_stray_commas_and_nan() {
    assert_rows(
        &json(fixture!("sensors_3.5_stray_comma.json")),
        &[
            // Package id 0: input unreadable. Core 1: nan.
            (
                "coretemp-isa-0000",
                "temp2",
                Some("Core 0"),
                41.0,
                Some(80.0),
                None,
            ),
            (
                "coretemp-isa-0000",
                "temp4",
                Some("Core 2"),
                43.0,
                Some(80.0),
                Some(100.0),
            ),
        ],
    );
}

#[test]
fn json_keeps_repeated_labels_and_empty_features() {
    let want = DELL_SMM;
    assert_rows(&json(fixture!("dell_smm.json")), want);
    // The text of the same laptop (errors.txt) numbers it the same way.
    let from_text: Vec<Reading> = text(fixture!("errors.txt"))
        .into_iter()
        .filter(|r| r.chip == "dell_smm-virtual-0")
        .collect();
    assert_rows(&from_text, want);
}

#[test]
fn json_leaves_of_the_wrong_type_are_missing_values() {
    let doc = r#"{"coretemp-isa-0000": {"Adapter": "ISA adapter",
            "Core 0": {"temp2_input": "45.0", "temp2_max": 80.0},
            "Core 1": {"temp3_input": 46.0, "temp3_crit": "100"},
            "Core 2": {"temp4_input": null},
            "Core 3": [1, 2],
            "Core 4": {"temp6_input": true, "temp6_crit": 100.0},
            "Core 5": {"temp7_input": 47.0, "temp7_max": {"nested": 1}},
            "Core 6": 48.0}}"#;
    assert_rows(
        &json(doc),
        &[
            (
                "coretemp-isa-0000",
                "temp3",
                Some("Core 1"),
                46.0,
                None,
                None,
            ),
            (
                "coretemp-isa-0000",
                "temp7",
                Some("Core 5"),
                47.0,
                None,
                None,
            ),
        ],
    );
}

#[test]
fn json_garbage_is_a_clear_parse_error() {
    let full = fixture!("workstation.json");
    let truncated = &full[..full.len() / 2];
    let deep = format!(
        "{{\"c\": {{\"f\": {}{}}}}}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let cases: Vec<(&str, &str)> = vec![
        ("", "EOF while parsing"),
        ("   \n", "EOF while parsing"),
        ("[1, 2, 3]", "expected a JSON object"),
        ("\"coretemp-isa-0000\"", "expected a JSON object"),
        ("{\"coretemp-isa-0000\": [45.0]}", "expected a JSON object"),
        ("{\"coretemp-isa-0000\": 45}", "expected a JSON object"),
        (truncated, "EOF while parsing"),
        (
            "{\"c\": {\"f\": {\"temp1_input\": 1e999}}}",
            "number out of range",
        ),
        (&deep, "recursion limit exceeded"),
        ("{\"c\": {}} trailing", "trailing characters"),
    ];
    for (input, needle) in cases {
        match parse_json(input) {
            Err(SourceError::Parse(m)) => {
                assert!(
                    m.starts_with("lm-sensors JSON: ") && m.contains(needle),
                    "{m}"
                )
            }
            other => panic!("{:?}: {other:?}", &input[..input.len().min(40)]),
        }
    }
    // Many indices in one feature stay linear.
    let many: Vec<String> = (1..=100_000)
        .map(|i| format!("\"temp{i}_max\": 1.0"))
        .collect();
    let doc = format!("{{\"c-isa-0000\": {{\"f\": {{{}}}}}}}", many.join(","));
    let started = std::time::Instant::now();
    assert!(json(&doc).is_empty());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // Absurd but finite numbers are read and then dropped.
    assert!(json(r#"{"c": {"f": {"temp1_input": 1e300, "temp1_crit": -1e300}}}"#).is_empty());
    // No chips at all is not an error.
    assert!(json("{}").is_empty());
}

#[test]
fn json_repair_table() {
    for (input, want) in [
        (
            "{\"a\": nan, \"b\": -nan, \"c\": +inf}",
            "{\"a\": null, \"b\": null, \"c\": null}",
        ),
        ("{\n,\n\"a\": 1}", "{\n\n\"a\": 1}"),
        ("{\"a\": 1,\n,\n\"b\": 2,\n}", "{\"a\": 1,\n\n\"b\": 2\n}"),
        ("{\"nan, inf\": \"a,}\"}", "{\"nan, inf\": \"a,}\"}"),
        (
            "{\"esc\\\"aped, nan\": null}",
            "{\"esc\\\"aped, nan\": null}",
        ),
        ("{\"x\": -1.5, \"y\": info}", "{\"x\": -1.5, \"y\": info}"),
    ] {
        assert_eq!(repair_json(input), want, "{input:?}");
    }
}

#[test]
fn format_names() {
    for (s, f) in [
        ("json", Format::Json),
        ("text", Format::Text),
        ("auto", Format::Auto),
        (" JSON ", Format::Json),
    ] {
        assert_eq!(s.parse::<Format>(), Ok(f));
    }
    assert_eq!(Format::Auto.to_string(), "auto");
    assert!("xml".parse::<Format>().is_err_and(|e| e.contains("xml")));
    assert_eq!(Format::default(), Format::Auto);
}

#[test]
fn auto_detects_json_by_first_character() {
    let from_json = parse(fixture!("workstation.json"), Format::Auto).expect("json");
    assert_eq!(from_json, json(fixture!("workstation.json")));
    let from_text = parse(fixture!("workstation.txt"), Format::Auto).expect("text");
    assert_eq!(from_text, text(fixture!("workstation.txt")));
    // A byte-order mark does not hide the brace.
    let bom = format!("\u{feff}{}", fixture!("dell_smm.json"));
    assert_eq!(parse(&bom, Format::Auto).expect("bom").len(), 4);
}
