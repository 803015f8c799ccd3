use super::*;

// ------------------------------------------------------ text quirks --

#[test]
fn text_thresholds_on_continuation_lines() {
    assert_rows(
        &text(fixture!("wrapped.txt")),
        &[
            (
                "nvme-pci-0400",
                "temp1",
                Some("Composite"),
                44.9,
                Some(83.8),
                Some(87.8),
            ),
            // high = +65261.8 is implausible: dropped, the reading stays.
            ("nvme-pci-0400", "temp2", Some("Sensor 1"), 44.9, None, None),
            ("nvme-pci-0400", "temp3", Some("Sensor 2"), 47.9, None, None),
            // high and crit on the second and third line, after `low`.
            ("jc42-i2c-0-18", "temp1", None, 36.2, Some(85.0), Some(95.0)),
        ],
    );
}

#[test]
fn text_alarm_flags_are_ignored() {
    assert_rows(
        &text(fixture!("alarm.txt")),
        &[
            (
                "coretemp-isa-0000",
                "temp1",
                Some("Package id 0"),
                101.0,
                Some(80.0),
                Some(100.0),
            ),
            (
                "coretemp-isa-0000",
                "temp2",
                Some("Core 0"),
                99.0,
                Some(80.0),
                Some(100.0),
            ),
            // `ALARM (CRIT)`
            (
                "coretemp-isa-0000",
                "temp3",
                Some("Core 1"),
                101.0,
                Some(80.0),
                Some(100.0),
            ),
            (
                "nct6776-isa-0290",
                "temp1",
                Some("SYSTIN"),
                41.0,
                Some(80.0),
                None,
            ),
            // `ALARM  sensor = thermistor`
            (
                "nct6776-isa-0290",
                "temp2",
                Some("CPUTIN"),
                85.5,
                Some(80.0),
                None,
            ),
            // `ALARM (HIGH)` between the first and the wrapped limit groups.
            ("jc42-i2c-0-1a", "temp1", None, 91.2, Some(85.0), Some(95.0)),
            ("it8721-isa-0290", "temp1", None, 33.0, Some(70.0), None),
            // A bare `ALARM` far right; the label `temp3` gives the id.
            ("it8721-isa-0290", "temp3", None, 95.0, None, None),
        ],
    );
}

#[test]
fn text_sensor_type_annotations_are_ignored() {
    assert_rows(
        &text(fixture!("sensor_type.txt")),
        &[
            ("it8728-isa-0a30", "temp1", None, 35.0, Some(127.0), None),
            ("it8728-isa-0a30", "temp2", None, 38.0, Some(127.0), None),
            // temp3 (`sensor = disabled`, -128.0) is implausible.
            (
                "w83627ehf-isa-0290",
                "temp1",
                Some("SYSTIN"),
                30.0,
                Some(0.0),
                None,
            ),
            (
                "w83627ehf-isa-0290",
                "temp2",
                Some("CPUTIN"),
                36.5,
                Some(80.0),
                None,
            ),
            (
                "w83627ehf-isa-0290",
                "temp3",
                Some("AUXTIN"),
                34.0,
                Some(80.0),
                None,
            ),
        ],
    );
}

#[test]
fn text_not_available_and_fault_keep_their_ids() {
    assert_rows(
        &text(fixture!("not_available.txt")),
        &[
            ("thinkpad-isa-0000", "temp1", Some("CPU"), 52.0, None, None),
            // `GPU: N/A` sits between two temperatures: it is temp2.
            ("thinkpad-isa-0000", "temp3", None, 49.0, None, None),
            ("thinkpad-isa-0000", "temp4", None, 0.0, None, None),
            ("thinkpad-isa-0000", "temp5", None, 43.0, None, None),
            ("thinkpad-isa-0000", "temp6", None, 50.0, None, None),
            ("thinkpad-isa-0000", "temp7", None, 50.0, None, None),
            // iwlwifi `temp1: N/A`: nothing.
            (
                "lm90-i2c-2-4c",
                "temp1",
                Some("local"),
                38.0,
                Some(70.0),
                Some(85.0),
            ),
            // `remote: FAULT` with °C limits is temp2.
            (
                "lm90-i2c-2-4c",
                "temp3",
                Some("remote 2"),
                44.0,
                Some(85.0),
                Some(100.0),
            ),
            (
                "nct6775-isa-0290",
                "temp1",
                Some("SYSTIN"),
                29.0,
                Some(80.0),
                None,
            ),
        ],
    );
}

#[test]
fn text_hysteresis_is_not_a_threshold() {
    assert_rows(
        &text(fixture!("hysteresis.txt")),
        &[
            ("lm75-i2c-1-48", "temp1", None, 24.5, Some(80.0), None),
            ("jc42-i2c-0-18", "temp1", None, 33.8, Some(85.0), Some(95.0)),
            // `hyst = +104.0`, `crit hyst = +115.0` (older lm-sensors).
            (
                "w83795g-i2c-0-2f",
                "temp1",
                Some("CPU"),
                40.0,
                Some(109.0),
                Some(110.0),
            ),
            // `hyst = -273.1`, `emerg = +105.0`.
            (
                "amdgpu-pci-0a00",
                "temp1",
                Some("edge"),
                38.0,
                None,
                Some(100.0),
            ),
        ],
    );
}

#[test]
fn text_low_and_crit_low_are_not_crit() {
    assert_rows(
        &text(fixture!("drivetemp.txt")),
        &[
            (
                "drivetemp-scsi-0-0",
                "temp1",
                None,
                29.0,
                Some(55.0),
                Some(60.0),
            ),
            (
                "drivetemp-scsi-1-0",
                "temp1",
                None,
                33.0,
                Some(60.0),
                Some(65.0),
            ),
        ],
    );
}

const PLAIN_COMPUTER: &[Row] = &[
    (
        "coretemp-isa-0000",
        "temp1",
        Some("Package id 0"),
        41.0,
        Some(80.0),
        Some(100.0),
    ),
    (
        "coretemp-isa-0000",
        "temp2",
        Some("Core 0"),
        39.0,
        Some(80.0),
        Some(100.0),
    ),
    (
        "coretemp-isa-0000",
        "temp3",
        Some("Core 1"),
        40.0,
        Some(80.0),
        Some(100.0),
    ),
    ("acpitz-acpi-0", "temp1", None, 25.0, None, Some(107.0)),
    ("acpitz-acpi-0", "temp2", None, 27.8, None, Some(105.0)),
];

#[test]
fn text_without_degree_sign() {
    assert_rows(&text(fixture!("c_locale.txt")), PLAIN_COMPUTER);
}

#[test]
fn text_with_mangled_degree_sign() {
    assert_rows(&text(fixture!("mojibake.txt")), PLAIN_COMPUTER);
    assert_rows(&text(fixture!("latin1_lossy.txt")), &PLAIN_COMPUTER[..3]);
    // Also with a space before the mangled sign.
    assert_rows(
            &text("acpitz-acpi-0\nAdapter: ACPI interface\ntemp1:        +28.0 Â°C  (crit = +105.0 Â°C)\n"),
            &[("acpitz-acpi-0", "temp1", None, 28.0, None, Some(105.0))],
        );
}

#[test]
fn text_negative_temperatures() {
    assert_rows(
        &text(fixture!("negative.txt")),
        &[
            ("w1_slave_temp-virtual-0", "temp1", None, -5.0, None, None),
            ("lm75-i2c-1-49", "temp1", None, -0.5, Some(80.0), None),
            // -55.0 is below the plausible range: dropped.
        ],
    );
}

#[test]
fn text_fans_voltages_power_current_intrusion_are_skipped() {
    assert_rows(
        &text(fixture!("non_thermal.txt")),
        &[
            ("it8686-isa-0a40", "temp1", None, 36.0, Some(127.0), None),
            ("it8686-isa-0a40", "temp2", None, 41.0, Some(127.0), None),
            // The ucsi chip name contains a colon and is still a header:
            // its lines do not leak into it8686.
            ("amdgpu-pci-0800", "temp1", Some("edge"), 43.0, None, None),
        ],
    );
}

#[test]
fn text_error_lines_are_ignored() {
    // The first `Other` is N/A (the ERROR line at the top).
    let want: Vec<Row> = DELL_SMM
        .iter()
        .copied()
        .chain([
            (
                "coretemp-isa-0000",
                "temp1",
                Some("Package id 0"),
                58.0,
                Some(100.0),
                Some(100.0),
            ),
            (
                "coretemp-isa-0000",
                "temp2",
                Some("Core 0"),
                55.0,
                Some(100.0),
                Some(100.0),
            ),
            (
                "coretemp-isa-0000",
                "temp3",
                Some("Core 1"),
                57.0,
                Some(100.0),
                Some(100.0),
            ),
            // An ERROR line between the value and its continuation line.
            (
                "nvme-pci-0200",
                "temp1",
                Some("Composite"),
                36.9,
                Some(80.8),
                Some(84.8),
            ),
        ])
        .collect();
    assert_rows(&text(fixture!("errors.txt")), &want);
}

#[test]
fn text_fahrenheit_is_converted() {
    assert_rows(
        &text(fixture!("fahrenheit.txt")),
        &[(
            "coretemp-isa-0000",
            "temp1",
            Some("Package id 0"),
            45.0,
            Some(80.0),
            Some(100.0),
        )],
    );
}

#[test]
fn text_adapter_lines_optional_and_chips_need_no_blank_line() {
    // `sensors -A` (no Adapter lines), CRLF, and a chip glued to the previous one.
    let input =
        "coretemp-isa-0000\r\nPackage id 0:  +48.0°C  (high = +80.0°C, crit = +100.0°C)\r\n\
                     acpitz-acpi-0\r\ntemp1:        +27.8°C  (crit = +119.0°C)\r\n";
    assert_rows(
        &text(input),
        &[
            (
                "coretemp-isa-0000",
                "temp1",
                Some("Package id 0"),
                48.0,
                Some(80.0),
                Some(100.0),
            ),
            ("acpitz-acpi-0", "temp1", None, 27.8, None, Some(119.0)),
        ],
    );
    // An unknown bus type is still a chip when an Adapter line follows.
    assert_rows(
        &text("foo-platform-0\nAdapter: Platform\ntemp1: +30.0°C\n"),
        &[("foo-platform-0", "temp1", None, 30.0, None, None)],
    );
}

#[test]
fn text_ids_continue_after_a_literal_temp_label() {
    // Labels `temp3` then two labelled sensors: ids never go back.
    let input = "it87-isa-0290\ntemp3: +30.0°C\nCPU: +31.0°C\nGPU: +32.0°C\ntemp2: +33.0°C\n";
    assert_rows(
        &text(input),
        &[
            ("it87-isa-0290", "temp3", None, 30.0, None, None),
            ("it87-isa-0290", "temp4", Some("CPU"), 31.0, None, None),
            ("it87-isa-0290", "temp5", Some("GPU"), 32.0, None, None),
            ("it87-isa-0290", "temp6", Some("temp2"), 33.0, None, None),
        ],
    );
}

#[test]
fn text_unrecognisable_not_available_takes_no_id() {
    // Documented limit: nothing says `CPU: N/A` is a temperature (it
    // follows a fan), so `GPU` becomes temp1 where JSON would say temp2.
    assert_rows(
        &text("it87-isa-0290\nfan1: 1200 RPM\nCPU: N/A\nGPU: +40.0°C\n"),
        &[("it87-isa-0290", "temp1", Some("GPU"), 40.0, None, None)],
    );
}

// ----------------------------------------------------- text helpers --

#[test]
fn unit_table() {
    for (token, want) in [
        ("°C", Some(Unit::Celsius)),
        ("C", Some(Unit::Celsius)),
        ("Â°C", Some(Unit::Celsius)),
        ("\u{fffd}C", Some(Unit::Celsius)),
        ("?C", Some(Unit::Celsius)),
        ("°F", Some(Unit::Fahrenheit)),
        ("V", Some(Unit::Other)),
        ("mV", Some(Unit::Other)),
        ("RPM", Some(Unit::Other)),
        ("W", Some(Unit::Other)),
        ("kJ", Some(Unit::Other)),
        ("A", Some(Unit::Other)),
        ("", None),
        ("°", None),
        ("-isa-0000", None),
        ("°CC", None),
    ] {
        assert_eq!(classify_unit(token), want, "{token:?}");
    }
}

#[test]
fn number_table() {
    for (input, want) in [
        ("+45.0°C", Some((45.0, 5))),
        ("-5.0 C", Some((-5.0, 4))),
        ("  1200 RPM", None),
        ("1200 RPM", Some((1200.0, 4))),
        (".5", Some((0.5, 2))),
        ("5.", Some((5.0, 2))),
        ("+", None),
        (".", None),
        ("N/A", None),
        ("nano", None),
    ] {
        assert_eq!(number(input), want, "{input:?}");
    }
    assert!(number("-nan°C").is_some_and(|(v, n)| v.is_nan() && n == 4));
    assert!(number("+inf").is_some_and(|(v, _)| v == f64::INFINITY));
}

#[test]
fn chip_name_table() {
    for (name, want) in [
        ("coretemp-isa-0000", true),
        ("nvme-pci-0100", true),
        ("jc42-i2c-0-18", true),
        ("drivetemp-scsi-0-0", true),
        ("iwlwifi_1-virtual-0", true),
        ("acpitz-acpi-0", true),
        ("hidpp_battery_0-hid-3-5", true),
        ("ucsi_source_psy_USBC000:001-isa-0000", true),
        ("-isa-0000", false),
        ("coretemp-isa-", false),
        ("coretemp-isa-zz", false),
        ("coretemp-bus-0000", false),
        ("core temp-isa-0000", false),
        ("Adapter: ISA adapter", false),
        ("coretemp", false),
    ] {
        assert_eq!(is_chip_name(name), want, "{name:?}");
    }
}

#[test]
fn feature_line_table() {
    for (line, want) in [
        (
            "Core 0:        +45.0°C  (high",
            Some(("Core 0", Head::Temp(45.0), "  (high")),
        ),
        ("fan1:        2426 RPM", Some(("fan1", Head::Other, ""))),
        (
            "GPU:              N/A  ",
            Some(("GPU", Head::Missing, "  ")),
        ),
        (
            "remote:         FAULT  (low",
            Some(("remote", Head::Missing, "  (low")),
        ),
        ("intrusion0:  ALARM", Some(("intrusion0", Head::Other, ""))),
        (
            "beep_enable: disabled",
            Some(("beep_enable", Head::Other, "")),
        ),
        ("CPU:1:  +40.0°C", Some(("CPU:1", Head::Temp(40.0), ""))),
        ("Adapter: ISA adapter", None),
        ("ucsi_source_psy_USBC000:001-isa-0000", None),
        ("Package id 0:", None),
    ] {
        assert_eq!(split_feature(line), want, "{line:?}");
    }
}

#[test]
fn limits_table() {
    // (body, high, crit)
    for (body, high, crit) in [
        (
            "  (high = +80.0°C, crit = +100.0°C)",
            Some(80.0),
            Some(100.0),
        ),
        (
            "  (crit = +100.0°C, hyst = -273.1°C) (emerg = +105.0°C)",
            None,
            Some(100.0),
        ),
        (
            "  (low  =  +0.0°C, high = +60.0°C) (crit low =  -5.0°C, crit = +65.0°C)",
            Some(60.0),
            Some(65.0),
        ),
        ("  (crit low = -5.0°C)", None, None),
        (
            "  (high = +80.0°C, hyst = +75.0°C)  ALARM (HIGH, CRIT)  sensor = thermistor",
            Some(80.0),
            None,
        ),
        (
            "  (crit = +110.0°C, crit hyst = +115.0°C)",
            None,
            Some(110.0),
        ),
        ("  (high = +176.0°F", Some(80.0), None),
        ("  (min =    0 RPM)", None, None),
        ("  (high = junk, crit = )", None, None),
    ] {
        let l = parse_limits(body);
        assert!(
            close_opt(l.high, high) && close_opt(l.crit, crit),
            "{body:?}: {:?} {:?}",
            l.high,
            l.crit
        );
    }
}

#[test]
fn text_garbage_is_an_error_or_skipped() {
    for input in [
        "",
        "\n\n   \n",
        "hello world\nthis is not sensors output\n",
        "{\"truncated\": ",
    ] {
        match parse_text(input) {
            Err(SourceError::Parse(m)) => assert!(m.contains("no chip header"), "{m}"),
            other => panic!("{input:?}: {other:?}"),
        }
    }
    // 1 MB lines: an absurd value, an endless limit group, a colon storm.
    let huge = format!(
        "coretemp-isa-0000\nCore 0: +{}°C\nCore 1: +40.0°C {}\nCore 2: {}\nCore 3: +41.0°C\n",
        "9".repeat(1 << 20),
        "(".repeat(1 << 20),
        ": ".repeat(1 << 19),
    );
    assert_rows(
        &text(&huge),
        &[
            (
                "coretemp-isa-0000",
                "temp2",
                Some("Core 1"),
                40.0,
                None,
                None,
            ),
            (
                "coretemp-isa-0000",
                "temp3",
                Some("Core 3"),
                41.0,
                None,
                None,
            ),
        ],
    );
    // Many colons on one long line stay linear.
    let colons = format!(
        "coretemp-isa-0000\nx{}\nCore 1: +40.0°C\n",
        ":1x".repeat(400_000)
    );
    let started = std::time::Instant::now();
    assert_eq!(text(&colons).len(), 1);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // nan in text takes an id and gives no reading.
    assert_rows(
        &text("k10temp-pci-00c3\nTctl:  -nan°C\nTdie:  +40.0°C\n"),
        &[("k10temp-pci-00c3", "temp2", Some("Tdie"), 40.0, None, None)],
    );
}
