//! Restarts: the persisted deadline, the command's record across a
//! restart, a corrupt state file.

use super::*;

#[tokio::test(start_paused = true)]
async fn restart_in_pre_fail_keeps_the_deadline() {
    let w = World::new();
    let a = w.start().await;
    let mut rng = StdRng::seed_from_u64(11);
    let down = |t: f64| power(t < 60.0);
    let trace = drive(&w, &a, &mut rng, 200.0, down).await;
    let first_fail = trace.first(State::PreFail).expect("pre_fail");
    let before = a.stop().await;
    assert_eq!(before.state, State::PreFail);
    let deadline = before.deadline.expect("deadline");
    assert!((secs(deadline) - (first_fail + 300.0)).abs() < 0.002);
    // The agent is down for 30 s, then comes back.
    wait(30.0).await;
    let a = w.start().await;
    let m = a.machine();
    assert_eq!(
        (m.state, m.deadline, m.reason),
        (State::PreFail, Some(deadline), Reason::Power)
    );
    drive(&w, &a, &mut rng, 900.0, down).await;
    let m = a.stop().await;
    assert_eq!(m.state, State::Shutdown);
    assert_eq!(
        m.since, deadline,
        "shut down at the original deadline, not a fresh grace"
    );
    assert_eq!(w.marker_lines(), 1);
}

#[tokio::test(start_paused = true)]
async fn restart_with_an_expired_pre_fail_deadline_waits_one_probe_round() {
    // Same boot (an agent restart), the deadline passed while the agent was
    // down. Without any observation it shuts down after restore_wait, never
    // at once; a good observation in that round starts a recovery instead.
    let w = World::new();
    let a = w.start().await;
    a.send(Event::Observe(power(false))).await;
    let deadline = a.machine().deadline.expect("deadline");
    a.stop().await;
    wait(400.0).await; // the agent was down past the deadline
    let a = w.start().await;
    let m = a.machine();
    assert_eq!(m.state, State::PreFail, "not at once: {}", m.detail);
    assert!(m.unconfirmed);
    assert_eq!(w.marker_lines(), 0);
    let restarted = w.elapsed();
    wait(w.fsm.restore_wait.as_secs_f64() + 1.0).await;
    let m = a.machine();
    assert_eq!(m.state, State::Shutdown);
    assert_eq!(m.deadline, Some(deadline));
    assert!(secs(m.since) - restarted <= w.fsm.restore_wait.as_secs_f64() + 1.0);
    assert_eq!(w.marker_lines(), 1);
    a.stop().await;

    // The same, but mains came back while the agent was down: the first
    // probe round sees it, and the recovery completes.
    let w = World::new();
    let a = w.start().await;
    a.send(Event::Observe(power(false))).await;
    a.stop().await;
    wait(400.0).await;
    let a = w.start().await;
    a.send(Event::Observe(power(true))).await;
    wait(4.0).await;
    a.send(Event::Observe(power(true))).await;
    wait(600.0).await;
    let m = a.stop().await;
    assert_eq!(m.state, State::Normal, "{}", m.detail);
    assert_eq!(w.marker_lines(), 0);
}

#[tokio::test(start_paused = true)]
async fn restart_after_the_command_ran_never_runs_it_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runs = dir.path().join("runs");
    let mut w = counting_runs(&runs);
    let count = || std::fs::read_to_string(&runs).map_or(0, |s| s.lines().count());
    let a = w.start().await;
    let mut rng = StdRng::seed_from_u64(12);
    drive(&w, &a, &mut rng, 400.0, |t| power(t < 10.0)).await;
    a.stop().await;
    assert_eq!(count(), 1);
    // Same boot (the agent crashed or was restarted by the watchdog).
    for _ in 0..3 {
        let a = w.start().await;
        drive(&w, &a, &mut rng, w.elapsed() + 600.0, |_| power(false)).await;
        let m = a.stop().await;
        assert_eq!((m.state, m.exec.attempts), (State::Shutdown, 1));
        assert_eq!(count(), 1, "never twice");
    }
    // Another boot: the machine was powered off and came back.
    w.boot = "boot-2".into();
    let a = w.start().await;
    let m = a.machine();
    assert_eq!(m.state, State::Normal);
    assert!(
        m.detail.contains("booted again after the shutdown"),
        "{}",
        m.detail
    );
    assert!(!m.exec.issued);
    // And it guards the machine again.
    drive(&w, &a, &mut rng, w.elapsed() + 400.0, |_| power(false)).await;
    assert_eq!(a.stop().await.state, State::Shutdown);
    assert_eq!(count(), 2);
}

fn persisted_shutdown(exec: ExecRecord) -> Persisted {
    let m = Machine {
        state: State::Shutdown,
        reason: Reason::Power,
        since: Millis(T0),
        deadline: Some(Millis(T0)),
        exec,
        ..Machine::default()
    };
    Persisted::new(m, Some(BOOT.into()), Millis(T0))
}

#[tokio::test(start_paused = true)]
async fn restart_between_the_decision_and_the_command_runs_it_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runs = dir.path().join("runs");
    let w = counting_runs(&runs);
    persist::store(&w.state_dir(), &persisted_shutdown(ExecRecord::default())).expect("store");
    for _ in 0..2 {
        let a = w.start().await;
        wait(60.0).await;
        let m = a.stop().await;
        assert!(m.exec.done);
        assert_eq!(runs_in(&runs), 1);
    }
}

#[tokio::test(start_paused = true)]
async fn restart_with_an_attempt_in_flight_retries_after_the_command_timeout() {
    // Same boot: the machine is still up, so the attempt that was in flight
    // (killed with the agent) did not power it off. The restarted agent
    // gives a surviving attempt its timeout, then retries once.
    let dir = tempfile::tempdir().expect("tempdir");
    let runs = dir.path().join("runs");
    let w = counting_runs(&runs);
    let mut exec = ExecRecord::default();
    exec.begin_attempt(Millis(T0));
    persist::store(&w.state_dir(), &persisted_shutdown(exec)).expect("store");
    let timeout = w.shutdown.command_timeout.as_secs_f64();
    let a = w.start().await;
    wait(timeout - 10.0).await;
    assert!(!runs.exists(), "not while the old attempt may still run");
    // The unknown outcome is counted (coolmesh_shutdown_command_outcome_unknown_total),
    // and it is not a failure of the command.
    assert_eq!(a.exec.outcome_unknown.load(Ordering::Relaxed), 1);
    assert_eq!(a.exec.command_failures.load(Ordering::Relaxed), 0);
    wait(20.0).await;
    let m = a.stop().await;
    assert_eq!(m.state, State::Shutdown);
    assert!(m.exec.done && !m.exec.in_flight, "{:?}", m.exec);
    assert_eq!(m.exec.attempts, 2);
    assert_eq!(runs_in(&runs), 1);
    // Done: another restart runs nothing, and knows every outcome.
    let a = w.start().await;
    wait(600.0).await;
    assert_eq!(a.exec.outcome_unknown.load(Ordering::Relaxed), 0);
    a.stop().await;
    assert_eq!(runs_in(&runs), 1);
}

#[tokio::test(start_paused = true)]
async fn stop_while_the_command_runs_leaves_it_in_flight_and_a_restart_retries_only_after_its_timeout(
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let runs = dir.path().join("runs");
    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    // The command blocks until the test releases it.
    // (Only the first run blocks: a retry must not hang on the fifo.)
    let script = format!(
        "echo x >> '{r}'; [ \"$(wc -l < '{r}')\" -gt 1 ] || read line < '{f}'",
        r = runs.display(),
        f = fifo.display()
    );
    let w = World::new().with_command(sh(&script));
    persist::store(&w.state_dir(), &persisted_shutdown(ExecRecord::default())).expect("store");
    let a = w.start().await;
    // Real time, bounded: wait for the command to be running.
    for _ in 0..400 {
        if runs.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(runs.exists(), "command started");
    // The agent dies while the command runs (watchdog restart, OOM kill...).
    let m = a.stop().await;
    assert!(m.exec.in_flight);
    let rec = persist::load(&w.state_dir()).expect("load").expect("some");
    assert!(
        rec.machine.exec.in_flight && rec.machine.exec.issued,
        "persisted before spawning"
    );
    // Let the command finish, then restart the agent.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"go\n"))
        .expect("release the command");
    let count = || runs_in(&runs);
    let a = w.start().await;
    // Within the command timeout of that attempt: nothing new runs (it may
    // still be powering the machine off).
    let timeout = w.shutdown.command_timeout.as_secs_f64();
    wait(timeout - w.elapsed().min(timeout) - 5.0).await;
    assert_eq!(count(), 1, "not while the old attempt may still be at work");
    // The machine is still up well past it: the attempt did not take
    // effect, and the restarted agent runs the command once more.
    wait(600.0).await;
    let m = a.stop().await;
    assert_eq!((m.state, m.exec.attempts), (State::Shutdown, 2));
    assert!(m.exec.done);
    assert_eq!(count(), 2);
}

#[tokio::test(start_paused = true)]
async fn restart_after_a_recorded_failure_keeps_retrying() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runs = dir.path().join("runs");
    let w = counting_runs(&runs);
    let mut exec = ExecRecord::default();
    exec.begin_attempt(Millis(T0));
    exec.finish_attempt(Err("exit status: 1".into()));
    persist::store(&w.state_dir(), &persisted_shutdown(exec)).expect("store");
    let a = w.start().await;
    wait(4.0).await;
    assert!(!runs.exists(), "waits for the backoff");
    wait(2.0).await;
    let m = a.stop().await;
    assert_eq!(
        (m.exec.attempts, m.exec.failures, m.exec.done),
        (2, 1, true)
    );
    assert_eq!(runs_in(&runs), 1);
}

#[tokio::test(start_paused = true)]
async fn corrupt_state_file_starts_in_normal_and_keeps_the_evidence() {
    let w = World::new();
    std::fs::create_dir_all(w.state_dir()).expect("mkdir");
    std::fs::write(persist::state_path(&w.state_dir()), b"{not json").expect("write");
    let a = w.start().await;
    assert_eq!(a.machine().state, State::Normal);
    assert!(w.state_dir().join("fsm.json.corrupt").exists());
    // And it works: a transition writes a good file.
    a.send(Event::Observe(power(false))).await;
    let rec = persist::load(&w.state_dir()).expect("load").expect("some");
    assert_eq!(rec.machine.state, State::PreFail);
    assert_eq!(rec.boot_id.as_deref(), Some(BOOT));
    a.stop().await;
}
