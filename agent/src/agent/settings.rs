//! The config turned into each part's runtime settings: the state
//! machine's timers, the cooling detector, the shutdown executor and the
//! cluster layer.

use crate::cluster;
use crate::config::Config;
use crate::fsm::FsmConfig;
use anyhow::Context;
use std::time::Duration;

/// The cluster layer's settings from the config.
pub fn cluster_config(cfg: &Config) -> anyhow::Result<cluster::ClusterConfig> {
    let c = &cfg.cluster;
    let parse = |key: &str, list: &[String]| -> anyhow::Result<Vec<libp2p::Multiaddr>> {
        list.iter()
            .map(|a| {
                a.parse()
                    .map_err(|e| anyhow::anyhow!("cluster.{key}: {a:?}: {e}"))
            })
            .collect()
    };
    if let Some(e) = crate::config::cluster_trust_error(cfg) {
        anyhow::bail!(e);
    }
    let psk = match &c.psk_file {
        Some(p) => Some(
            cluster::load_psk(p).with_context(|| format!("cluster.psk_file {} (create it once with `coolmesh keygen --psk --out FILE` and copy the same file to every server)", p.display()))?,
        ),
        None => None,
    };
    let allowlist = if c.allowlist.is_empty() {
        None
    } else {
        Some(
            c.allowlist
                .iter()
                .map(|p| {
                    p.parse()
                        .map_err(|e| anyhow::anyhow!("cluster.allowlist: {p:?}: {e}"))
                })
                .collect::<anyhow::Result<_>>()?,
        )
    };
    let out = cluster::ClusterConfig {
        name: c.name.clone(),
        listen: parse("listen", &c.listen)?,
        bootstrap: parse("peers", &c.peers)?,
        mdns: c.mdns,
        mdns_query_interval: c.mdns_interval,
        psk,
        allowlist,
        operator: match &c.operator_key {
            Some(k) => Some(
                cluster::roster::parse_operator_key(k)
                    .map_err(|e| anyhow::anyhow!("cluster.operator_key: {e}"))?,
            ),
            None => None,
        },
        room_commands: c.room_commands,
        swim: c.swim,
        roster_path: c
            .operator_key
            .as_ref()
            .map(|_| cfg.node.state_dir.join(cluster::roster::ROSTER_FILE)),
        sync_interval: c.sync_interval,
        anti_entropy_interval: c.anti_entropy_interval,
        fanout: c.fanout,
        suspect_after: c.suspect_after,
        dead_after: c.dead_after,
        retention: c.retention,
        limits: c.limits,
        ..cluster::ClusterConfig::default()
    };
    out.validate()
        .map_err(|e| anyhow::anyhow!("[cluster]: {e}"))?;
    // libp2p reports a failed bind only later, as an event; check the fixed
    // TCP ports now so that a port in use is a clear startup error.
    for a in &out.listen {
        if let Some(sa) = tcp_socket_addr(a) {
            if sa.port() != 0 {
                std::net::TcpListener::bind(sa).map_err(|e| {
                    anyhow::anyhow!("cluster.listen {a}: cannot listen on {sa}: {e} (another agent running? pick another port)")
                })?;
            }
        }
    }
    Ok(out)
}

/// `/ip4/A/tcp/P` or `/ip6/A/tcp/P` as a socket address.
pub(super) fn tcp_socket_addr(a: &libp2p::Multiaddr) -> Option<std::net::SocketAddr> {
    use libp2p::multiaddr::Protocol;
    let mut it = a.iter();
    let ip: std::net::IpAddr = match it.next()? {
        Protocol::Ip4(ip) => ip.into(),
        Protocol::Ip6(ip) => ip.into(),
        _ => return None,
    };
    match it.next()? {
        Protocol::Tcp(port) => Some((ip, port).into()),
        _ => None,
    }
}

/// The state machine's timers from the config.
pub fn fsm_config(cfg: &Config) -> FsmConfig {
    let s = &cfg.shutdown;
    FsmConfig {
        power_grace: s.grace,
        cooling_grace: s.cooling_grace,
        overheat_sustain: s.overheat_sustain,
        overheat_grace: s.overheat_grace,
        shutdown_duration: s.duration,
        recovery_probes: s.recovery_probes,
        cancel_hold: s.cancel_hold,
        heating_fast_c_per_min: s.heating_rate,
        observe_interval: if cfg.power.targets.is_empty() {
            cfg.sensors.interval
        } else {
            cfg.power.interval
        },
        prediction_floor: FsmConfig::default().prediction_floor.min(s.grace),
        // The first probe round starts at once; its answer comes within the
        // probe timeout.
        restore_wait: cfg.power.timeout + Duration::from_secs(2),
        stage_timeout: s.stage_timeout,
        ..FsmConfig::default()
    }
}

/// The cooling detector's settings from the config.
pub fn heat_config(cfg: &Config) -> crate::heating::HeatConfig {
    let s = &cfg.shutdown;
    crate::heating::HeatConfig {
        heating_rate: s.heating_rate,
        horizon: s.cooling_horizon,
        window: cfg.sensors.trend_window,
        load_step: s.load_step,
        load_settle: s.load_settle,
        ..crate::heating::HeatConfig::default()
    }
}

/// The executor's settings from the config.
pub fn shutdown_config(cfg: &Config) -> crate::shutdown::ShutdownConfig {
    let s = &cfg.shutdown;
    crate::shutdown::ShutdownConfig {
        command: s.command.clone(),
        pre_command: (!s.pre_command.is_empty()).then(|| s.pre_command.clone()),
        pre_command_timeout: s.pre_command_timeout,
        command_timeout: s.command_timeout,
        dry_run: s.dry_run,
        dry_run_marker: s.dry_run_marker.clone(),
        ..crate::shutdown::ShutdownConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The executor's defaults and the config's defaults are one set: an
    /// agent built from an empty config runs with these.
    #[test]
    fn defaults_agree_with_the_config() {
        let from_config = shutdown_config(&crate::config::Config::default());
        let d = crate::shutdown::ShutdownConfig::default();
        assert_eq!(from_config.command, d.command);
        assert_eq!(from_config.pre_command, d.pre_command);
        assert_eq!(from_config.pre_command_timeout, d.pre_command_timeout);
        assert_eq!(from_config.command_timeout, d.command_timeout);
        assert_eq!(from_config.dry_run, d.dry_run);
    }

    /// An empty config runs every part with that part's own defaults: the
    /// config defines none of its own (the derived timers aside: the
    /// observe interval, the prediction floor and the restore wait follow
    /// other settings).
    #[test]
    fn an_empty_config_gives_each_part_its_own_defaults() {
        let c = Config::default();
        let f = fsm_config(&c);
        assert_eq!(
            FsmConfig {
                observe_interval: FsmConfig::default().observe_interval,
                prediction_floor: FsmConfig::default().prediction_floor,
                restore_wait: FsmConfig::default().restore_wait,
                ..f
            },
            FsmConfig::default()
        );
        assert_eq!(heat_config(&c), crate::heating::HeatConfig::default());
        let cl = cluster_config(&Config {
            cluster: crate::config::ClusterSection {
                insecure_no_psk: true,
                listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
                ..c.cluster.clone()
            },
            ..c.clone()
        })
        .expect("the default cluster settings are valid");
        let d = cluster::ClusterConfig::default();
        assert_eq!(
            (
                cl.name,
                cl.mdns,
                cl.mdns_query_interval,
                cl.room_commands,
                cl.swim
            ),
            (
                d.name,
                d.mdns,
                d.mdns_query_interval,
                d.room_commands,
                d.swim
            )
        );
        assert_eq!(
            (cl.sync_interval, cl.anti_entropy_interval, cl.fanout),
            (d.sync_interval, d.anti_entropy_interval, d.fanout)
        );
        assert_eq!(
            (cl.suspect_after, cl.dead_after, cl.retention),
            (d.suspect_after, d.dead_after, d.retention)
        );
        assert_eq!(
            c.cluster.listen,
            d.listen.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "the cluster listens on loopback unless told otherwise"
        );
    }
}
