#![cfg(unix)]
// ----------------------------------------------------- source modes --

use super::*;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

/// Write an executable `sensors` stand-in into `dir`.
fn script(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("sensors");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

/// Read once, bounded in time. A script written a moment ago can be
/// briefly "busy" (ETXTBSY) while another test thread forks: retry.
async fn read(src: &Arc<LmSensors>) -> Result<Vec<Reading>, SourceError> {
    for _ in 0..50 {
        let res = tokio::time::timeout(Duration::from_secs(30), Arc::clone(src).read())
            .await
            .expect("read finished in time");
        match res {
            Err(SourceError::Command(m)) if m.contains("Text file busy") => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            other => return other,
        }
    }
    panic!("script stayed busy");
}

fn fixtures_in(dir: &Path) {
    std::fs::write(dir.join("ws.txt"), fixture!("workstation.txt")).expect("write");
    std::fs::write(dir.join("ws.json"), fixture!("workstation.json")).expect("write");
}

#[tokio::test]
async fn command_prints_fixture() {
    let dir = tempfile::tempdir().expect("tempdir");
    fixtures_in(dir.path());
    let d = dir.path().display();
    let program = script(
        dir.path(),
        &format!(
            "echo \"$LC_ALL $*\" >> '{d}/calls'\n\
                     if [ \"$1\" = \"-j\" ]; then cat '{d}/ws.json'; else cat '{d}/ws.txt'; fi"
        ),
    );
    let want_json = json(fixture!("workstation.json"));
    let want_text = text(fixture!("workstation.txt"));
    for (format, want) in [
        (Format::Json, &want_json),
        (Format::Text, &want_text),
        (Format::Auto, &want_json),
    ] {
        let src = Arc::new(LmSensors::command(&program, format));
        assert_eq!(src.name(), "lm_sensors");
        assert_eq!(&read(&src).await.expect("read"), want, "{format}");
    }
    let calls = std::fs::read_to_string(dir.path().join("calls")).expect("calls");
    assert_eq!(calls, "C -j\nC \nC -j\n");
}

#[tokio::test]
async fn command_extra_args_come_before_json_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    fixtures_in(dir.path());
    let d = dir.path().display();
    let program = script(
        dir.path(),
        &format!("echo \"$*\" > '{d}/calls'\ncat '{d}/ws.json'"),
    );
    let src = Arc::new(LmSensors::command_with_args(
        &program,
        ["-c", "/etc/sensors3.conf", "coretemp-*"],
        Format::Auto,
    ));
    assert_eq!(read(&src).await.expect("read").len(), 21);
    let calls = std::fs::read_to_string(dir.path().join("calls")).expect("calls");
    assert_eq!(calls, "-c /etc/sensors3.conf coretemp-* -j\n");
}

#[tokio::test]
async fn command_exit_status_is_an_error_with_stderr() {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = script(
        dir.path(),
        "echo 'No sensors found!' >&2\n\
                 echo 'Make sure you loaded all the kernel drivers you need.' >&2\n\
                 exit 1",
    );
    let src = Arc::new(LmSensors::command(&program, Format::Auto));
    match read(&src).await {
        Err(SourceError::Command(m)) => {
            assert!(m.contains("exit status: 1"), "{m}");
            assert!(m.contains("No sensors found! Make sure you loaded"), "{m}");
            assert!(m.contains(&program.display().to_string()), "{m}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn command_garbage_is_a_parse_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = script(dir.path(), "printf '\\377\\376 garbage {{{\\n'");
    for (format, needle) in [
        (Format::Json, "lm-sensors JSON"),
        (Format::Auto, "lm-sensors JSON"),
        (Format::Text, "no chip header"),
    ] {
        let src = Arc::new(LmSensors::command(&program, format));
        match read(&src).await {
            Err(SourceError::Parse(m)) => {
                assert!(m.contains(needle) && m.contains("sensors"), "{m}")
            }
            other => panic!("{format}: {other:?}"),
        }
    }
}

/// A `sensors` stand-in that appends its arguments to `calls` and prints
/// the text fixture, except with `-j`, where it runs the shell lines
/// `on_json` instead.
fn sensors_without_json(dir: &Path, on_json: &str) -> PathBuf {
    fixtures_in(dir);
    let d = dir.display();
    script(
        dir,
        &format!(
            "echo \"$*\" >> '{d}/calls'\n\
             if [ \"$1\" = \"-j\" ]; then\n\
             {on_json}\n\
             fi\n\
             cat '{d}/ws.txt'"
        ),
    )
}

/// In auto mode the stand-in's text fixture is read twice, `-j` tried once.
async fn assert_auto_falls_back_to_text(dir: &Path, program: &Path) {
    let src = Arc::new(LmSensors::command(program, Format::Auto));
    let want = text(fixture!("workstation.txt"));
    assert_eq!(read(&src).await.expect("first"), want);
    assert_eq!(read(&src).await.expect("second"), want);
    // -j is tried once, then remembered.
    let calls = std::fs::read_to_string(dir.join("calls")).expect("calls");
    assert_eq!(calls, "-j\n\n\n");
}

#[tokio::test]
async fn command_auto_falls_back_to_text_without_json_support() {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = sensors_without_json(
        dir.path(),
        "echo \"sensors: invalid option -- 'j'\" >&2\n\
         echo \"Try \\`sensors -h' for more information\"\n\
         exit 1",
    );
    assert_auto_falls_back_to_text(dir.path(), &program).await;
    // An explicit JSON source reports the failure instead.
    let strict = Arc::new(LmSensors::command(&program, Format::Json));
    assert!(
        matches!(read(&strict).await, Err(SourceError::Command(m)) if m.contains("invalid option"))
    );
}

#[tokio::test]
async fn command_auto_falls_back_to_text_on_broken_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    // sensors prints labels unescaped: a `"` in a label breaks the JSON.
    let program = sensors_without_json(
        dir.path(),
        "printf '{\"it87-isa-0290\":{\"CPU \"big\" core\":{\"temp1_input\": 40.000}}}\\n'\n\
         exit 0",
    );
    assert_auto_falls_back_to_text(dir.path(), &program).await;
}

#[tokio::test]
async fn command_output_is_capped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = script(dir.path(), "exec yes coretemp-isa-0000");
    let src = Arc::new(LmSensors::command(&program, Format::Text));
    match read(&src).await {
        Err(SourceError::Parse(m)) => {
            assert!(m.contains("larger than 4194304 bytes"), "{m}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn command_large_stderr_is_drained_and_excerpted() {
    let dir = tempfile::tempdir().expect("tempdir");
    // ~150 KB of stderr: more than a pipe buffer.
    let program = script(
                dir.path(),
                "i=0\n\
                 while [ $i -lt 2000 ]; do\n\
                   echo \"ERROR: Can't get value of subfeature temp${i}_input: Kernel interface error\" >&2\n\
                   i=$((i+1))\n\
                 done\n\
                 exit 2",
            );
    let src = Arc::new(LmSensors::command(&program, Format::Json));
    match read(&src).await {
        Err(SourceError::Command(m)) => {
            assert!(
                m.contains("exit status: 2") && m.contains("temp0_input"),
                "{m}"
            );
            assert!(m.len() < 600, "{} bytes", m.len());
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn command_missing_program() {
    let src = Arc::new(LmSensors::command(
        "/nonexistent/coolmesh-test/sensors",
        Format::Auto,
    ));
    match read(&src).await {
        Err(SourceError::Command(m)) => assert!(
            m.contains("cannot run") && m.contains("/nonexistent"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn file_is_reread_every_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sensors.out");
    let src = Arc::new(LmSensors::file(&path, Format::Auto));
    std::fs::write(&path, fixture!("workstation.txt")).expect("write");
    assert_eq!(
        read(&src).await.expect("text"),
        text(fixture!("workstation.txt"))
    );
    std::fs::write(&path, fixture!("dell_smm.json")).expect("write");
    assert_eq!(read(&src).await.expect("json").len(), 4);
    // Garbage names the file.
    std::fs::write(&path, "{\"truncated\": {").expect("write");
    match read(&src).await {
        Err(SourceError::Parse(m)) => {
            assert!(m.contains("sensors.out") && m.contains("EOF"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    // A forced format is honoured.
    let as_text = Arc::new(LmSensors::file(&path, Format::Text));
    assert!(
        matches!(read(&as_text).await, Err(SourceError::Parse(m)) if m.contains("no chip header"))
    );
    std::fs::remove_file(&path).expect("rm");
    match read(&src).await {
        Err(e @ SourceError::Io { .. }) => {
            assert!(e.to_string().contains("sensors.out"), "{e}")
        }
        other => panic!("{other:?}"),
    }
}
