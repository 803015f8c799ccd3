// The rule files of alerts/, as a multi-file output:
//   jsonnet -J mixin -S -m alerts mixin/alerts.jsonnet
// With your own settings (a file holding an object of _config fields):
//   jsonnet -J mixin -S -m OUT --tla-code-file config=myroom.libsonnet mixin/alerts.jsonnet
function(config={})
  local mixin = (import 'mixin.libsonnet') + { _config+:: config };
  local header(what) =
    '# %s for coolmesh.\n' % what +
    '# GENERATED from mixin/ by mixin/generate.sh: do not edit; change mixin/ and\n' +
    '# regenerate. Runbooks: alerts/README.md. Metrics: docs/metrics.md.\n';
  local yaml(x) = std.manifestYamlDoc(x, indent_array_in_object=true, quote_keys=false) + '\n';
  {
    'coolmesh.rules.yml': header('Alerting rules, and the recording rules they read,') + yaml(mixin.prometheusAlerts),
    'coolmesh.recording.yml': header('Recording rules of the dashboards') + yaml(mixin.prometheusRules),
  }
