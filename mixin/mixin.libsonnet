// The coolmesh monitoring mixin (the monitoring-mixins layout):
//   _config             config.libsonnet: selectors, label names, severities,
//                       runbook links, thresholds, `for` durations
//   prometheusAlerts    alerts/alerts.libsonnet   -> alerts/coolmesh.rules.yml
//   prometheusRules     rules/rules.libsonnet     -> alerts/coolmesh.recording.yml
//   grafanaDashboards   dashboards/*.libsonnet    -> dashboards/*.json
(import 'config.libsonnet') +
(import 'alerts/alerts.libsonnet') +
(import 'rules/rules.libsonnet') +
(import 'dashboards/room.libsonnet') +
(import 'dashboards/node.libsonnet')
