//! The shutdown command: failures, backoff and retries, the pre-command,
//! dry run.

use super::*;

/// Record every distinct `last_attempt_at` the agent publishes.
fn watch_attempts(a: &Agent) -> Arc<Mutex<Vec<Millis>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let out = Arc::clone(&seen);
    let mut rx = a.state.clone();
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let at = rx.borrow_and_update().exec.last_attempt_at;
            if let Some(at) = at {
                let mut v = out.lock().expect("lock");
                if v.last() != Some(&at) {
                    v.push(at);
                }
            }
        }
    });
    seen
}

#[tokio::test(start_paused = true)]
async fn failing_command_is_logged_counted_and_retried_with_backoff() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runs = dir.path().join("runs");
    let w = World::new().with_command(sh(&format!("echo x >> '{}'; exit 1", runs.display())));
    let a = w.start().await;
    let attempts = watch_attempts(&a);
    let mut rng = StdRng::seed_from_u64(8);
    drive(&w, &a, &mut rng, 320.0, |t| power(t < 10.0)).await;
    assert_eq!(a.machine().state, State::Shutdown);
    let decided = secs(a.machine().since);
    // Ten more minutes: retries at +5, +10, +20, +40, +80, +160 s.
    wait(decided + 600.0 - w.elapsed()).await;
    let m = a.machine();
    let n = runs_in(&runs) as u32;
    assert_eq!(n, 7, "1 + 6 retries in 10 minutes");
    assert_eq!((m.exec.attempts, m.exec.failures), (n, n));
    assert!(m.exec.issued && !m.exec.done && !m.exec.in_flight);
    assert!(
        m.exec
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("exit status: 1")),
        "{:?}",
        m.exec.last_error
    );
    assert_eq!(a.exec.command_runs.load(Ordering::Relaxed), u64::from(n));
    assert_eq!(
        a.exec.command_failures.load(Ordering::Relaxed),
        u64::from(n)
    );
    // Backoff: 5 s doubling.
    let times: Vec<f64> = attempts
        .lock()
        .expect("lock")
        .iter()
        .map(|t| secs(*t))
        .collect();
    assert_eq!(times.len(), n as usize);
    assert!(
        (times[0] - decided).abs() < 0.002,
        "first attempt at the decision"
    );
    let gaps: Vec<f64> = times.windows(2).map(|p| p[1] - p[0]).collect();
    for (gap, want) in gaps.iter().zip([5.0, 10.0, 20.0, 40.0, 80.0, 160.0]) {
        assert!((gap - want).abs() < 0.002, "gaps {gaps:?}");
    }
    a.stop().await;
}

#[tokio::test(start_paused = true)]
async fn command_that_starts_working_is_not_run_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runs = dir.path().join("runs");
    let r = runs.display();
    // Fails twice, then succeeds.
    let w = World::new().with_command(sh(&format!(
        "echo x >> '{r}'; [ \"$(wc -l < '{r}')\" -ge 3 ]"
    )));
    let a = w.start().await;
    let mut rng = StdRng::seed_from_u64(9);
    drive(&w, &a, &mut rng, 2000.0, |t| power(t < 10.0)).await;
    let m = a.stop().await;
    assert_eq!(runs_in(&runs), 3);
    assert_eq!(
        (m.exec.attempts, m.exec.failures, m.exec.done),
        (3, 2, true)
    );
}

#[tokio::test(start_paused = true)]
async fn pre_command_runs_first_and_its_failure_does_not_block_the_shutdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log");
    let l = log.display();
    let mut w = World::new().with_command(sh(&format!("echo \"cmd $COOLMESH_REASON\" >> '{l}'")));
    w.shutdown.pre_command = Some(sh(&format!("echo pre >> '{l}'; exit 4")));
    let a = w.start().await;
    let mut rng = StdRng::seed_from_u64(10);
    drive(&w, &a, &mut rng, 400.0, |t| power(t < 10.0)).await;
    let m = a.stop().await;
    assert_eq!(
        std::fs::read_to_string(&log).expect("log"),
        "pre\ncmd power\n"
    );
    assert!(m.exec.pre_command_done && m.exec.done);
    assert_eq!(m.exec.attempts, 1);
}

#[tokio::test(start_paused = true)]
async fn dry_run_runs_nothing_but_records_the_decision() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ran = dir.path().join("ran");
    let mut w = World::new();
    w.shutdown.command = sh(&format!("touch '{}'", ran.display()));
    w.shutdown.pre_command = Some(sh(&format!("touch '{}'", ran.display())));
    let a = w.start().await;
    a.send(Event::Observe(power(false))).await;
    wait(301.0).await;
    let m = a.stop().await;
    assert_eq!(m.state, State::Shutdown);
    assert!(
        m.exec.issued,
        "coolmesh_shutdown_executed is 1 in dry-run too"
    );
    assert!(!ran.exists());
    let marker = std::fs::read_to_string(w.file("marker")).expect("marker");
    assert_eq!(marker.lines().count(), 1);
    assert!(marker.contains("reason=power"), "{marker}");
}
