//! What the demo simulates: each node's temperature (ambient, heating
//! without cooling, relaxing back) and the power node (a TCP listener).

use super::*;

/// Simulated temperatures of every node.
#[derive(Debug, Clone)]
pub struct Sim {
    pub(super) ambient: Vec<f64>,
    pub(super) temp: Vec<f64>,
    pub(super) heated: Vec<bool>,
    pub(super) cooling_failed: bool,
    /// Simulated seconds since the start.
    pub(super) t: f64,
}

impl Sim {
    /// `n` nodes at their ambient temperature (35-45 C).
    pub fn new(n: usize) -> Sim {
        let ambient: Vec<f64> = (0..n).map(|i| 36.0 + ((i * 7) % 9) as f64).collect();
        Sim {
            temp: ambient.clone(),
            heated: vec![false; n],
            ambient,
            cooling_failed: false,
            t: 0.0,
        }
    }

    /// Is node `i` (0-based) heating?
    pub fn heating(&self, i: usize) -> bool {
        self.cooling_failed || self.heated.get(i).copied().unwrap_or(false)
    }

    /// Cooling has failed for the whole room.
    pub fn cooling_failed(&self) -> bool {
        self.cooling_failed
    }

    /// Nodes heated on their own (0-based).
    pub fn heated(&self) -> Vec<usize> {
        (0..self.heated.len()).filter(|&i| self.heated[i]).collect()
    }

    /// Fail the room's cooling: every node heats.
    pub fn fail_cooling(&mut self) {
        self.cooling_failed = true;
    }

    /// Restore cooling for every node (also ends single-node heating).
    pub fn restore_cooling(&mut self) {
        self.cooling_failed = false;
        self.heated.iter_mut().for_each(|h| *h = false);
    }

    /// Heat node `i` (0-based) alone.
    pub fn heat(&mut self, i: usize) {
        if let Some(h) = self.heated.get_mut(i) {
            *h = true;
        }
    }

    /// Back to ambient, nothing failed.
    pub fn reset(&mut self) {
        self.restore_cooling();
        self.temp.clone_from(&self.ambient);
    }

    /// Nothing heats and every node is within 2 C of its ambient.
    pub fn settled(&self) -> bool {
        !self.cooling_failed
            && !self.heated.iter().any(|h| *h)
            && self
                .temp
                .iter()
                .zip(&self.ambient)
                .all(|(t, a)| (t - a).abs() < 2.0)
    }

    /// Advance by `dt` seconds.
    pub fn step(&mut self, dt: f64) {
        self.t += dt;
        for i in 0..self.temp.len() {
            if self.heating(i) {
                self.temp[i] = (self.temp[i] + HEAT_RATE_C_PER_MIN / 60.0 * dt).min(CAP_C);
            } else {
                let a = self.ambient[i];
                self.temp[i] += (a - self.temp[i]) * (1.0 - (-dt / COOL_TAU_S).exp());
            }
        }
    }

    /// Seconds until node `i` (0-based) reaches critical at the heating rate.
    pub fn seconds_to_critical(&self, i: usize) -> f64 {
        ((CRITICAL_C - self.temp(i)) / HEAT_RATE_C_PER_MIN * 60.0).max(0.0)
    }

    /// True temperature of node `i` (0-based).
    pub fn temp(&self, i: usize) -> f64 {
        self.temp.get(i).copied().unwrap_or(f64::NAN)
    }

    /// What node `i`'s sensor reports: the temperature plus the wobble.
    pub fn reported(&self, i: usize) -> f64 {
        let phase = std::f64::consts::TAU * self.t / WOBBLE_PERIOD_S + 2.1 * i as f64;
        self.temp(i) + WOBBLE_C * phase.sin()
    }

    /// The readings document of node `i`, in the `file` source's schema.
    pub fn readings_json(&self, i: usize) -> String {
        // Hundredths: rounding to tenths would add steps of 6 C/min between
        // two samples a second apart.
        let c = (self.reported(i) * 100.0).round() / 100.0;
        serde_json::json!([{
            "chip": "demo",
            "sensor": "temp1",
            "label": "CPU",
            "celsius": c,
            "max_celsius": MAX_C,
            "critical_celsius": CRITICAL_C,
        }])
        .to_string()
    }
}

pub(super) fn lock(sim: &Mutex<Sim>) -> std::sync::MutexGuard<'_, Sim> {
    sim.lock().unwrap_or_else(|e| e.into_inner())
}

/// Write every node's readings once.
pub(super) fn write_readings(
    sim: &Mutex<Sim>,
    nodes: &[NodeSpec],
) -> Vec<(PathBuf, std::io::Error)> {
    let docs: Vec<String> = {
        let s = lock(sim);
        (0..nodes.len()).map(|i| s.readings_json(i)).collect()
    };
    let mut errors = Vec::new();
    for (n, d) in nodes.iter().zip(docs) {
        if let Err(e) = write_replace(&n.readings(), d.as_bytes()) {
            errors.push((n.readings(), e));
        }
    }
    errors
}

/// Step the simulation and rewrite the readings every second.
pub(super) fn spawn_sim(sim: Arc<Mutex<Sim>>, nodes: Vec<NodeSpec>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = Instant::now();
        let mut reported = false;
        loop {
            tick.tick().await;
            let dt = last.elapsed().as_secs_f64();
            last = Instant::now();
            lock(&sim).step(dt);
            let errors = write_readings(&sim, &nodes);
            if let Some((p, e)) = errors.first() {
                if !reported {
                    out(&format!(
                        "cannot write the simulated readings {} ({e}); that agent will report its file source down. Is the disk full?",
                        p.display()
                    ));
                    reported = true;
                }
            } else {
                reported = false;
            }
        }
    })
}

/// The simulated power target: a TCP listener that accepts and drops
/// connections while power is up.
pub(super) struct PowerNode {
    pub(super) port: u16,
    pub(super) task: Option<tokio::task::JoinHandle<()>>,
    pub(super) down_since: Option<Instant>,
}

impl PowerNode {
    pub(super) fn new(port: u16) -> Self {
        PowerNode {
            port,
            task: None,
            down_since: Some(Instant::now()),
        }
    }

    pub(super) fn target(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    pub(super) async fn up(&mut self) -> std::io::Result<()> {
        if self.task.is_some() {
            return Ok(());
        }
        let l = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, self.port)).await?;
        self.task = Some(tokio::spawn(async move {
            loop {
                match l.accept().await {
                    Ok((s, _)) => drop(s),
                    // Out of descriptors and the like: do not spin.
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }));
        self.down_since = None;
        Ok(())
    }

    pub(super) async fn down(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            // The listener is closed once the task is gone.
            let _ = t.await;
            self.down_since = Some(Instant::now());
        }
    }
}

// ---------------------------------------------------------------------------
// Agents
// ---------------------------------------------------------------------------
