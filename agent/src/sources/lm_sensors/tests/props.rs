use super::*;

// --------------------------------------------------------- proptest --

const NOISE: &[&str] = &[
    "\n",
    "\n\n",
    "  ",
    "\t",
    ":",
    ": ",
    "(",
    ")",
    ",",
    "=",
    " = ",
    "+45.0°C",
    "-128.0",
    "+65261.8°C",
    "°",
    "Â",
    "\u{fffd}",
    " C",
    "N/A",
    "FAULT",
    "ALARM",
    " ALARM (CRIT)",
    "(high = ",
    "crit = +100.0°C)",
    "hyst = ",
    "crit low = ",
    "sensor = thermistor",
    "temp1",
    "temp4294967295",
    "temp99999999999",
    "Core 0",
    "1200 RPM",
    "+1.02 V",
    "coretemp-isa-0000",
    "x-isa-",
    "Adapter: ISA adapter",
    "ERROR: Can't",
    "{",
    "}",
    "[",
    "]",
    "\"",
    "\\",
    "\"temp1_input\"",
    "\"temp1_crit\"",
    "\"Adapter\"",
    "nan",
    "-nan",
    "inf",
    "1e999",
    "65261.850",
    "99999999999999999999",
    ",\n",
    "null",
    "true",
    "é",
    "\u{0}",
];

proptest! {
    #[test]
    fn parsers_never_panic_on_arbitrary_strings(s in any::<String>()) {
        let _ = parse_text(&s);
        let _ = parse_json(&s);
        let _ = parse(&s, Format::Auto);
    }

    #[test]
    fn parsers_never_panic_on_arbitrary_bytes(bytes in vec(any::<u8>(), 0..512)) {
        let s = String::from_utf8_lossy(&bytes);
        let _ = parse_text(&s);
        let _ = parse_json(&s);
    }

    #[test]
    fn parsers_never_panic_on_sensors_like_noise(parts in vec(prop::sample::select(NOISE), 0..80)) {
        let s = parts.concat();
        for r in parse_text(&s).into_iter().chain(parse_json(&s)).flatten() {
            prop_assert!(crate::thermal::plausible(r.celsius));
            prop_assert!(r.max_celsius.is_none_or(crate::thermal::plausible));
            prop_assert!(r.critical_celsius.is_none_or(crate::thermal::plausible));
        }
    }

    #[test]
    fn generated_output_round_trips(
        chips in vec(gen_chip(), 1..4),
        degree in prop::sample::select(&["°C", " C", "Â°C", "\u{fffd}C"][..]),
    ) {
        let (text_doc, json_doc, want) = render(&chips, degree);
        let from_text = parse_text(&text_doc);
        prop_assert_eq!(from_text.as_ref().ok(), Some(&want), "text:\n{}", text_doc);
        let from_json = parse_json(&json_doc);
        prop_assert_eq!(from_json.as_ref().ok(), Some(&want), "json:\n{}", json_doc);
    }
}

#[derive(Debug, Clone)]
struct GenTemp {
    label: Option<String>,
    tenths: i32,
    low: Option<i32>,
    high: Option<i32>,
    hyst: Option<i32>,
    crit: Option<i32>,
    alarm: bool,
    thermistor: bool,
}

#[derive(Debug, Clone)]
struct GenChip {
    prefix: &'static str,
    volts: Vec<i16>,
    fans: Vec<u16>,
    temps: Vec<GenTemp>,
}

fn gen_temp() -> impl Strategy<Value = GenTemp> {
    let t = -400i32..2000;
    (
        proptest::option::of("[A-Z][a-z]{0,6}( [0-9]{1,2})?"),
        t.clone(),
        proptest::option::of(t.clone()),
        proptest::option::of(t.clone()),
        proptest::option::of(t.clone()),
        proptest::option::of(t),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(label, tenths, low, high, hyst, crit, alarm, thermistor)| GenTemp {
                label,
                tenths,
                low,
                high,
                hyst,
                crit,
                alarm,
                thermistor,
            },
        )
}

fn gen_chip() -> impl Strategy<Value = GenChip> {
    (
        prop::sample::select(
            &[
                "coretemp",
                "nct6775",
                "k10temp",
                "it87",
                "acpitz",
                "w83627ehf",
            ][..],
        ),
        vec(-1500i16..1500, 0..3),
        vec(any::<u16>(), 0..3),
        vec(gen_temp(), 0..6),
    )
        .prop_map(|(prefix, volts, fans, temps)| GenChip {
            prefix,
            volts,
            fans,
            temps,
        })
}

/// Render generated chips the way `sensors` and `sensors -j` would, and
/// the readings both must parse to.
fn render(chips: &[GenChip], degree: &str) -> (String, String, Vec<Reading>) {
    let mut text = String::new();
    let mut json_chips = Vec::new();
    let mut want = Vec::new();
    for (n, chip) in chips.iter().enumerate() {
        let name = format!("{}-isa-{n:04x}", chip.prefix);
        text.push_str(&format!("{name}\nAdapter: ISA adapter\n"));
        let temp_labels: Vec<String> = chip
            .temps
            .iter()
            .enumerate()
            .map(|(i, t)| t.label.clone().unwrap_or_else(|| format!("temp{}", i + 1)))
            .collect();
        let width = temp_labels
            .iter()
            .map(String::len)
            .chain([11])
            .max()
            .unwrap_or(11)
            + 2;
        let pad = |label: &str| format!("{label}:{}", " ".repeat(width - label.len() - 1));
        let mut features = vec![r#""Adapter": "ISA adapter""#.to_string()];
        for (i, v) in chip.volts.iter().enumerate() {
            let v = f64::from(*v) / 100.0;
            text.push_str(&format!(
                "{}{v:+6.2} V  (min =  +0.00 V, max = +15.00 V)\n",
                pad(&format!("in{i}"))
            ));
            features.push(format!(
                r#""in{i}": {{"in{i}_input": {v:.3}, "in{i}_min": 0.000}}"#
            ));
        }
        for (i, rpm) in chip.fans.iter().enumerate() {
            let label = format!("fan{}", i + 1);
            text.push_str(&format!("{}{rpm:4} RPM  (min =    0 RPM)\n", pad(&label)));
            features.push(format!(r#""{label}": {{"{label}_input": {rpm}.000}}"#));
        }
        for (i, (t, label)) in chip.temps.iter().zip(&temp_labels).enumerate() {
            let k = i + 1;
            let c = |tenths: i32| f64::from(tenths) / 10.0;
            let mut line = format!("{}{:+6.1}{degree}  ", pad(label), c(t.tenths));
            let mut limits = Vec::new();
            let mut subs = vec![format!(r#""temp{k}_input": {:.3}"#, c(t.tenths))];
            if let Some(v) = t.low {
                limits.push(format!("low  = {:+5.1}{degree}", c(v)));
                subs.push(format!(r#""temp{k}_min": {:.3}"#, c(v)));
            }
            if let Some(v) = t.high {
                limits.push(format!("high = {:+5.1}{degree}", c(v)));
                subs.push(format!(r#""temp{k}_max": {:.3}"#, c(v)));
                if let Some(h) = t.hyst {
                    limits.push(format!("hyst = {:+5.1}{degree}", c(h)));
                    subs.push(format!(r#""temp{k}_max_hyst": {:.3}"#, c(h)));
                }
            }
            if let Some(v) = t.crit {
                limits.push(format!("crit = {:+5.1}{degree}", c(v)));
                subs.push(format!(r#""temp{k}_crit": {:.3}"#, c(v)));
            }
            for (g, group) in limits.chunks(2).enumerate() {
                if g > 0 {
                    line.push('\n');
                    line.push_str(&" ".repeat(width + 10));
                }
                line.push_str(&format!("({})", group.join(", ")));
                if g == 0 && t.alarm {
                    line.push_str("  ALARM (CRIT)");
                }
            }
            if limits.is_empty() && t.alarm {
                line.push_str(&format!("{:>39}", "ALARM"));
            }
            if t.thermistor {
                line.push_str("  sensor = thermistor");
                subs.push(format!(r#""temp{k}_type": 4.000"#));
            }
            text.push_str(&line);
            text.push('\n');
            features.push(format!(r#""{label}": {{{}}}"#, subs.join(",\n ")));
            want.push(Reading {
                chip: name.clone(),
                sensor: format!("temp{k}"),
                label: t.label.clone(),
                celsius: c(t.tenths),
                max_celsius: t.high.map(c),
                critical_celsius: t.crit.map(c),
                source: SOURCE_NAME.to_string(),
                role: Default::default(),
            });
        }
        text.push('\n');
        json_chips.push(format!("\"{name}\": {{\n{}\n}}", features.join(",\n")));
    }
    (text, format!("{{\n{}\n}}\n", json_chips.join(",\n")), want)
}
