// The Grafana dashboards of dashboards/, as a multi-file output:
//   jsonnet -J mixin -S -m dashboards mixin/dashboards.jsonnet
// With your own settings (a file holding an object of _config fields):
//   jsonnet -J mixin -S -m OUT --tla-code-file config=myroom.libsonnet mixin/dashboards.jsonnet
function(config={})
  local mixin = (import 'mixin.libsonnet') + { _config+:: config };
  {
    [name]: std.manifestJsonEx(mixin.grafanaDashboards[name], '  ') + '\n'
    for name in std.objectFields(mixin.grafanaDashboards)
  }
