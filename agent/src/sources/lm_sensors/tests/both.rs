use super::*;

// ------------------------------------------------ same machine, both --

/// Text prints one decimal where JSON prints three.
fn close_1dp(a: f64, b: f64) -> bool {
    (a - b).abs() <= 0.05 + 1e-9
}

fn close_1dp_opt(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => close_1dp(a, b),
        _ => false,
    }
}

#[track_caller]
fn assert_same_temperatures(t: &[Reading], j: &[Reading]) {
    assert_eq!(t.len(), j.len(), "text:\n{}\njson:\n{}", show(t), show(j));
    for (t, j) in t.iter().zip(j) {
        let same = t.chip == j.chip
            && t.label == j.label
            && close_1dp(t.celsius, j.celsius)
            && close_1dp_opt(t.max_celsius, j.max_celsius)
            && close_1dp_opt(t.critical_celsius, j.critical_celsius);
        assert!(same, "text {t:?}\njson {j:?}");
    }
}

#[test]
fn text_and_json_of_the_same_machine_agree() {
    let t = text(fixture!("workstation.txt"));
    let j = json(fixture!("workstation.json"));
    assert_eq!(j.len(), 21, "{}", show(&j));
    assert_same_temperatures(&t, &j);
    // No gaps in this machine's indices: the ids agree too.
    let ids = |rs: &[Reading]| {
        rs.iter()
            .map(|r| (r.chip.clone(), r.sensor.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&t), ids(&j));
    // Spot checks of the interesting ones.
    let find = |rs: &[Reading], chip: &str, sensor: &str| {
        rs.iter()
            .find(|r| r.chip == chip && r.sensor == sensor)
            .cloned()
    };
    assert!(
        find(&j, "nct6798-isa-0290", "temp3").is_none(),
        "AUXTIN0 -128 must be dropped"
    );
    let sensor1 = find(&j, "nvme-pci-0100", "temp2").expect("nvme Sensor 1");
    assert_eq!(
        (sensor1.max_celsius, sensor1.critical_celsius),
        (None, None)
    );
    let edge = find(&t, "amdgpu-pci-0300", "temp1").expect("amdgpu edge");
    assert_eq!(
        (edge.max_celsius, edge.critical_celsius),
        (None, Some(100.0))
    );
}

#[test]
fn text_ids_differ_from_json_after_an_index_gap() {
    let t = text(fixture!("epyc_server.txt"));
    let j = json(fixture!("epyc_server.json"));
    assert_same_temperatures(&t, &j);
    let ids = |rs: &[Reading]| {
        rs.iter()
            .filter(|r| r.chip == "k10temp-pci-00c3")
            .map(|r| r.sensor.clone())
            .collect::<Vec<_>>()
    };
    // k10temp has no temp2 on this CPU; text cannot know.
    assert_eq!(ids(&j), ["temp1", "temp3", "temp4", "temp5", "temp6"]);
    assert_eq!(ids(&t), ["temp1", "temp2", "temp3", "temp4", "temp5"]);
}
