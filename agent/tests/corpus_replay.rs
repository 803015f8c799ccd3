//! Replays the fuzz corpus in the normal test suite, so that a parser that
//! once crashed under `cargo fuzz` (or a seed input) keeps being checked by
//! `cargo test`. The checks are the fuzz targets themselves
//! (`fuzz/src/lib.rs`, compiled in here), run on:
//!
//! - every file under `tests/fixtures/corpus/<target>/` (seeds, and
//!   minimised crash inputs named `crash-*`),
//! - the existing fixtures each parser already has (lm-sensors captures, the
//!   example config),
//! - and a fixed set of byte-level mutations of each of those inputs
//!   (deterministic, so a failure reproduces).
//!
//! See fuzz/README.md for running the fuzzers themselves.

#[path = "../../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod fuzz_targets;

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Files of a directory (not recursive), sorted.
fn files(dir: &Path, ext: Option<&str>) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_file())
        .filter(|p| ext.is_none_or(|x| p.extension().is_some_and(|e| e == x)))
        .collect();
    v.sort();
    v
}

/// xorshift64*, so mutations are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Deterministic mutations of `input`: bit flips, byte sets to boundary
/// values, truncations, duplicated and deleted ranges.
fn mutations(input: &[u8], seed: u64, count: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng(seed | 1);
    let interesting = [
        0x00, 0x01, 0x7f, 0x80, 0xff, b'{', b'}', b'"', b'\n', b':', 0xf9, 0xfb, 0x1b,
    ];
    (0..count)
        .map(|_| {
            let mut m = input.to_vec();
            for _ in 0..1 + rng.below(3) {
                let len = m.len();
                match rng.below(5) {
                    0 if len > 0 => {
                        let i = rng.below(len);
                        m[i] ^= 1 << rng.below(8);
                    }
                    1 if len > 0 => {
                        let i = rng.below(len);
                        m[i] = interesting[rng.below(interesting.len())];
                    }
                    2 => m.truncate(rng.below(len + 1)),
                    3 if len > 0 => {
                        let a = rng.below(len);
                        let b = (a + 1 + rng.below(16)).min(len);
                        let dup = m[a..b].to_vec();
                        let at = rng.below(len + 1);
                        m.splice(at..at, dup);
                    }
                    _ if len > 0 => {
                        let a = rng.below(len);
                        let b = (a + 1 + rng.below(16)).min(len);
                        m.drain(a..b);
                    }
                    _ => m.push(interesting[rng.below(interesting.len())]),
                }
            }
            m
        })
        .collect()
}

/// Run `target` on every input and its mutations; report every panic with
/// the file it came from.
fn replay(name: &str, target: fn(&[u8]), inputs: &[PathBuf], mutate: usize) -> usize {
    assert!(!inputs.is_empty(), "{name}: no corpus files found");
    let mut runs = 0;
    let mut failures = Vec::new();
    for (i, path) in inputs.iter().enumerate() {
        let bytes = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut cases = vec![bytes.clone()];
        cases.extend(mutations(&bytes, 0x9e37_79b9_7f4a_7c15 ^ i as u64, mutate));
        for (k, case) in cases.iter().enumerate() {
            runs += 1;
            if catch_unwind(AssertUnwindSafe(|| target(case))).is_err() {
                failures.push(format!("{} (mutation {k})", path.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{name}: panicked on {failures:#?}");
    runs
}

fn corpus(target: &str) -> Vec<PathBuf> {
    files(&root().join("tests/fixtures/corpus").join(target), None)
}

#[test]
fn corpus_is_small() {
    // Keep the checked-in corpus small (seeds and minimised crashes only).
    let total: u64 = [
        "wire_decode",
        "lm_sensors_json",
        "lm_sensors_text",
        "config_parse",
    ]
    .iter()
    .flat_map(|t| corpus(t))
    .map(|p| fs::metadata(p).expect("metadata").len())
    .sum();
    assert!(
        total < 100 * 1024,
        "tests/fixtures/corpus holds {total} bytes"
    );
}

#[test]
fn wire_decode_corpus() {
    let n = replay(
        "wire_decode",
        fuzz_targets::wire_decode,
        &corpus("wire_decode"),
        256,
    );
    eprintln!("wire_decode: {n} inputs");
}

#[test]
fn lm_sensors_json_corpus() {
    let mut inputs = corpus("lm_sensors_json");
    inputs.extend(files(
        &root().join("tests/fixtures/lm_sensors"),
        Some("json"),
    ));
    let n = replay(
        "lm_sensors_json",
        fuzz_targets::lm_sensors_json,
        &inputs,
        64,
    );
    eprintln!("lm_sensors_json: {n} inputs");
}

#[test]
fn lm_sensors_text_corpus() {
    let mut inputs = corpus("lm_sensors_text");
    inputs.extend(files(
        &root().join("tests/fixtures/lm_sensors"),
        Some("txt"),
    ));
    let n = replay(
        "lm_sensors_text",
        fuzz_targets::lm_sensors_text,
        &inputs,
        64,
    );
    eprintln!("lm_sensors_text: {n} inputs");
}

#[test]
fn config_parse_corpus() {
    let mut inputs = corpus("config_parse");
    inputs.push(root().join("../deploy/coolmesh.example.toml"));
    let n = replay("config_parse", fuzz_targets::config_parse, &inputs, 64);
    eprintln!("config_parse: {n} inputs");
}

/// The hex block under `label (` in section 13 of docs/protocol.md.
fn doc_hex(section: &str, label: &str) -> Vec<u8> {
    let start = section
        .find(&format!("\n{label} ("))
        .unwrap_or_else(|| panic!("no {label:?} in the test vector section"));
    let hex: String = section[start + 1..]
        .lines()
        .skip(1)
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| l.starts_with("    "))
        .map(str::trim)
        .collect();
    assert!(
        hex.len().is_multiple_of(2) && !hex.is_empty(),
        "{label}: {hex}"
    );
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

/// docs/protocol.md section 13 (made by the independent JS codec,
/// interop/vector.js): the reference implementation verifies and decodes
/// it, and encodes the same record and request to the same bytes.
#[test]
fn protocol_doc_test_vector() {
    use coolmesh_agent::cluster::wire::RecordPayload;
    use coolmesh_agent::cluster::wire::SignedRecord;
    use coolmesh_agent::cluster::wire::{read_frame, RequestKind, SyncRequest};
    use coolmesh_agent::cluster::CounterKind;
    use libp2p::identity::Keypair;

    let doc = fs::read_to_string(root().join("../docs/protocol.md")).expect("protocol.md");
    let section = &doc[doc.find("## 13. Test vector").expect("section 13")..];
    let seed = doc_hex(section, "seed");
    let payload = doc_hex(section, "payload");
    let signature = doc_hex(section, "signature");
    let frame = doc_hex(section, "request frame");

    let signed = SignedRecord {
        payload: payload.clone(),
        signature: signature.clone(),
    };
    let r = signed.verify("room-1").expect("the vector verifies");
    assert!(section.contains(&format!("peer_id: `{}`", r.peer_id)));
    assert_eq!(r.version, 1_700_000_000_123);
    assert_eq!(r.updated_ms, 1_700_000_000_123);
    assert_eq!(r.state.node, "rack3-srv12");
    assert_eq!(r.state.thermal.hottest, Some(71.5));
    assert_eq!(r.state.thermal.time_to_critical, Some(4275.5));
    assert_eq!(r.state.power[0].target, "icmp://10.0.0.254");
    assert_eq!(r.state.power_up, Some(true));
    assert_eq!(r.state.fsm.state, "normal");
    let jobs = r.state.counters["jobs"];
    assert_eq!((jobs.kind, jobs.p, jobs.n), (CounterKind::PN, 10, 4));
    assert_eq!(r.addrs[0].to_string(), "/ip4/127.0.0.1/tcp/9877");

    // The seed is the key; signatures are deterministic.
    let mut seed: [u8; 32] = seed.try_into().expect("32-byte seed");
    let key = Keypair::ed25519_from_bytes(&mut seed).expect("seed");
    assert_eq!(key.public().to_peer_id(), r.peer_id);
    assert_eq!(SignedRecord::sign(&r, &key).expect("sign"), signed);
    assert_eq!(
        RecordPayload::from_record(&r).encode().expect("encode"),
        payload,
        "the reference writes the canonical form of section 4.2"
    );

    let (body, n) = futures::executor::block_on(read_frame(
        &mut futures::io::Cursor::new(frame.clone()),
        1 << 20,
    ))
    .expect("frame");
    assert_eq!(n, frame.len());
    let req = SyncRequest::from_bytes(&body).expect("request");
    assert_eq!(req.kind(), RequestKind::Push);
    assert_eq!(req.cluster, "room-1");
    assert_eq!(
        req.parsed_digest().expect("digest"),
        vec![(r.peer_id, r.version)]
    );
    assert_eq!(req.signed_records().collect::<Vec<_>>(), vec![signed]);
    assert_eq!(
        req.to_bytes(),
        body,
        "the reference encodes the same request"
    );
}
