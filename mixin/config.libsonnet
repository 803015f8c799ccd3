// The mixin's settings. Override any of them in your own file (see
// mixin/README.md), e.g.
//
//   (import 'mixin.libsonnet') + { _config+:: { coolmeshSelector: 'job="coolmesh-dc2"' } }
//
// The defaults generate the files committed under alerts/ and dashboards/.
{
  _config+:: {
    // Selects the agents' series in every rule (and the dashboards' variable
    // queries). Prometheus regex matchers are anchored: this matches the jobs
    // "coolmesh", "coolmesh-room1", ... and keeps coolmesh_* series that a
    // node_exporter textfile collector may carry out of the rules.
    coolmeshSelector: 'job=~"coolmesh.*"',

    // Label names. groupLabels and instanceLabel identify one agent's series
    // (the rules join on them); add a label your Prometheus sets per
    // Kubernetes cluster or per Prometheus (e.g. ['cluster', 'job'] behind
    // Thanos or Mimir) when the same job and instance can exist twice.
    groupLabels: ['job'],
    instanceLabel: 'instance',
    // The labels of coolmesh_node_info that name the agent's coolmesh cluster
    // (the room: [cluster] name) and node (node.name). Rules, alerts and
    // dashboards carry them under these names. Set them to what your
    // metric_relabel_configs rename them to, if you do.
    roomLabel: 'coolmesh_cluster',
    nodeLabel: 'coolmesh_node',

    // The severity label of the alerts. critical: servers are about to power
    // off, did, or failed to (page someone). warning: protection is degraded
    // (fix during working hours). info: worth knowing, no action needed
    // (CoolmeshShutdownDryRun). none: CoolmeshWatchdog, always firing, for a
    // dead man's switch.
    severities: {
      critical: 'critical',
      warning: 'warning',
      info: 'info',
      none: 'none',
    },

    // runbook_url of every alert: %s is the alert's name in lower case (the
    // anchor of its section in alerts/README.md). Point it at your copy of
    // the repository or your wiki.
    runbookURLPattern: 'https://example.invalid/coolmesh/blob/main/alerts/README.md#%s',

    thresholds: {
      // CoolmeshAgentsDown: at least this many agents of a room, and at
      // least this fraction of them.
      agentsDownMin: 2,
      agentsDownFraction: 0.1,
      // CoolmeshTemperatureCritical (trigger="prediction"): projected time to
      // a critical threshold below this many seconds.
      timeToCriticalSeconds: 300,
    },

    // `for` of every alert. The room pages (CoolmeshPowerLost,
    // CoolmeshCoolingFailure) keep the `for` of CoolmeshShutdownPending, so
    // that they reach Alertmanager before the per-server pages they inhibit.
    alertFor: {
      CoolmeshAgentDown: '5m',
      CoolmeshAgentsDown: '1m',
      CoolmeshSensorSourceDown: '5m',
      CoolmeshBmcNotAnswering: '3m',
      CoolmeshNoTemperatureReadings: '10m',
      CoolmeshWatchdog: '0s',
      CoolmeshConfigReloadFailed: '10m',
      CoolmeshTemperatureHigh: '5m',
      CoolmeshTemperatureCritical: '1m',
      CoolmeshPowerLost: '30s',
      CoolmeshCoolingFailure: '30s',
      CoolmeshShutdownPending: '30s',
      CoolmeshShutdownExecuted: '0s',
      CoolmeshShutdownUnconfirmed: '1m',
      CoolmeshPowerProbeLocalFault: '5m',
      CoolmeshShutdownDryRun: '1m',
      CoolmeshShutdownCommandFailed: '1m',
      CoolmeshShutdownOutcomeUnknown: '1m',
      CoolmeshPowerOnGaveUp: '0s',
      CoolmeshMaintenanceMode: '1h',
      CoolmeshPeerLost: '5m',
      CoolmeshClusterPartitioned: '5m',
      CoolmeshGossipRejecting: '10m',
    },

    dashboards: {
      tags: ['coolmesh'],
      refresh: '30s',
      time: { from: 'now-6h', to: 'now' },
    },

    // Derived: the strings the rules and dashboards are formatted with.
    L:: {
      selector: $._config.coolmeshSelector,
      group: std.join(', ', $._config.groupLabels),
      instance: $._config.instanceLabel,
      room: $._config.roomLabel,
      node: $._config.nodeLabel,
    },
  },
}
