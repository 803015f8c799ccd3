// The node dashboard (dashboards/coolmesh-node.json; what it shows:
// dashboards/README.md).
local g = import '../lib/grafana.libsonnet';

{
  grafanaDashboards+:: {
    'coolmesh-node.json':
      local c = $._config;
      local L = c.L;
      {
        annotations: {
          list: [
            {
              datasource: { type: 'prometheus', uid: '${datasource}' },
              enable: true,
              hide: false,
              iconColor: 'orange',
              name: 'State transitions',
              expr: ('sum by (from, to, reason) (increase(coolmesh_fsm_transitions_total{job=~"$job", %(instance)s=~"$instance"}[2m])) > 0' % L),
              step: '2m',
              titleFormat: '{{from}} → {{to}}',
              textFormat: 'reason: {{reason}}',
              tagKeys: 'reason',
              useValueForTime: false,
            },
          ],
        },
        description: 'One coolmesh agent: sensors and thresholds, sources, power probes, state machine, cluster view, gossip and counters.',
        editable: true,
        fiscalYearStartMonth: 0,
        graphTooltip: 1,
        id: null,
        links: [
          {
            title: 'coolmesh dashboards',
            type: 'dashboards',
            tags: c.dashboards.tags,
            asDropdown: true,
            includeVars: true,
            keepTime: true,
            icon: 'external link',
            targetBlank: false,
            tooltip: '',
            url: '',
          },
        ],
        liveNow: false,
        refresh: c.dashboards.refresh,
        schemaVersion: 39,
        tags: c.dashboards.tags,
        time: c.dashboards.time,
        timepicker: {},
        timezone: '',
        title: 'coolmesh / Node',
        uid: 'coolmesh-node',
        version: 2,
        weekStart: '',
        templating: { list: [
          g.datasourceVariable,
          g.queryVariable('job', 'Job', 'label_values(coolmesh_node_info{%(selector)s}, job)' % L),
          g.queryVariable('cluster', 'Cluster', 'label_values(coolmesh_node_info{%(selector)s, job=~"$job"}, %(room)s)' % L),
          g.queryVariable('instance', 'Instance', 'label_values(coolmesh_node_info{%(selector)s, job=~"$job", %(room)s=~"$cluster"}, %(instance)s)' % L, multi=false),
        ] },
        panels: [
          g.row(1, 'Summary', y=0),
          g.panel('stat',
                  2,
                  'State',
                  pos=[0, 1, 3, 4],
                  unit='none',
                  description='Current state of the shutdown state machine.',
                  targets=[
                    g.target('A', ('instance:coolmesh_fsm_state:code{job=~"$job", %(room)s=~"$cluster", %(instance)s=~"$instance"}' % L)),
                  ],
                  patch={
                    fieldConfig: {
                      defaults: {
                        thresholds: {
                          steps: [
                            { color: 'green', value: null },
                            { color: 'blue', value: 1 },
                            { color: 'yellow', value: 2 },
                            { color: 'orange', value: 3 },
                            { color: 'red', value: 4 },
                          ],
                        },
                        mappings: [
                          {
                            type: 'value',
                            options: {
                              '0': { text: 'normal', color: 'green', index: 0 },
                              '1': { text: 'maintenance', color: 'blue', index: 1 },
                              '2': { text: 'local_fault', color: 'yellow', index: 2 },
                              '3': { text: 'pre_fail', color: 'orange', index: 3 },
                              '4': { text: 'shutdown', color: 'red', index: 4 },
                            },
                          },
                        ],
                      },
                    },
                  }),
          g.panel('stat',
                  3,
                  'Reason',
                  pos=[3, 1, 3, 4],
                  unit='none',
                  description='Reason of the current state.',
                  targets=[
                    g.target('A', ('instance:coolmesh_fsm_reason:code{job=~"$job", %(room)s=~"$cluster", %(instance)s=~"$instance"}' % L)),
                  ],
                  patch={
                    fieldConfig: {
                      defaults: {
                        thresholds: { steps: [{ color: 'green', value: null }, { color: 'blue', value: 1 }] },
                        mappings: [
                          {
                            type: 'value',
                            options: {
                              '0': { text: 'none', color: 'green', index: 0 },
                              '1': { text: 'operator', color: 'blue', index: 1 },
                              '2': { text: 'prediction', color: 'purple', index: 2 },
                              '3': { text: 'overheat', color: 'red', index: 3 },
                              '4': { text: 'cooling', color: 'orange', index: 4 },
                              '5': { text: 'power', color: 'dark-red', index: 5 },
                            },
                          },
                        ],
                      },
                    },
                  }),
          g.panel('stat',
                  4,
                  'Hottest sensor',
                  pos=[6, 1, 3, 4],
                  unit='celsius',
                  description='Hottest plausible sensor.',
                  targets=[
                    g.target('A', ('coolmesh_thermal_hottest_celsius{job=~"$job", %(instance)s=~"$instance"}' % L)),
                  ],
                  patch={
                    fieldConfig: {
                      defaults: {
                        thresholds: {
                          steps: [
                            { color: 'green', value: null },
                            { color: 'yellow', value: 65 },
                            { color: 'orange', value: 80 },
                            { color: 'red', value: 90 },
                          ],
                        },
                        decimals: 1,
                      },
                    },
                    options: { graphMode: 'area' },
                  }),
          g.panel('stat',
                  5,
                  'Headroom',
                  pos=[9, 1, 3, 4],
                  unit='celsius',
                  description='min over sensors of (critical - current).',
                  targets=[
                    g.target('A', ('coolmesh_thermal_headroom_celsius{job=~"$job", %(instance)s=~"$instance"}' % L)),
                  ],
                  patch={
                    fieldConfig: {
                      defaults: {
                        thresholds: {
                          steps: [
                            { color: 'red', value: null },
                            { color: 'orange', value: 5 },
                            { color: 'yellow', value: 10 },
                            { color: 'green', value: 20 },
                          ],
                        },
                        decimals: 1,
                      },
                    },
                    options: { graphMode: 'area' },
                  }),
          g.panel('stat',
                  6,
                  'Trend',
                  pos=[12, 1, 3, 4],
                  unit='suffix:°C/min',
                  description='Slope of the hottest sensor.',
                  targets=[
                    g.target('A', ('coolmesh_thermal_trend_celsius_per_minute{job=~"$job", %(instance)s=~"$instance"}' % L)),
                  ],
                  patch={
                    fieldConfig: {
                      defaults: {
                        thresholds: {
                          steps: [
                            { color: 'green', value: null },
                            { color: 'yellow', value: 0.5 },
                            { color: 'red', value: 2 },
                          ],
                        },
                        decimals: 2,
                      },
                    },
                  }),
          g.panel('stat',
                  7,
                  'Time to critical',
                  pos=[15, 1, 3, 4],
                  unit='s',
                  description='Projected time to critical; empty unless rising.',
                  targets=[
                    g.target('A', ('coolmesh_thermal_time_to_critical_seconds{job=~"$job", %(instance)s=~"$instance"}' % L)),
                  ],
                  patch={
                    fieldConfig: {
                      defaults: {
                        thresholds: {
                          steps: [
                            { color: 'red', value: null },
                            { color: 'orange', value: 300 },
                            { color: 'green', value: 900 },
                          ],
                        },
                        noValue: 'not rising',
                      },
                    },
                  }),
          g.panel('stat',
                  8,
                  'Mains power',
                  pos=[18, 1, 3, 4],
                  unit='none',
                  description='Policy result over all power targets.',
                  targets=[
                    g.target('A', ('coolmesh_power_up{job=~"$job", %(instance)s=~"$instance"}' % L)),
                  ],
                  patch={
                    fieldConfig: {
                      defaults: {
                        thresholds: { steps: [{ color: 'red', value: null }, { color: 'green', value: 1 }] },
                        mappings: [
                          {
                            type: 'value',
                            options: {
                              '0': { text: 'down', color: 'red', index: 0 },
                              '1': { text: 'up', color: 'green', index: 1 },
                            },
                          },
                        ],
                      },
                    },
                  }),
          g.panel('stat',
                  9,
                  'Shutdown in',
                  pos=[21, 1, 3, 4],
                  unit='s',
                  description='Time until the pending shutdown fires.',
                  targets=[
                    g.target('A', ('coolmesh_shutdown_deadline_timestamp_seconds{job=~"$job", %(instance)s=~"$instance"} - time()' % L)),
                  ],
                  patch={
                    fieldConfig: {
                      defaults: {
                        thresholds: { steps: [{ color: 'red', value: null }, { color: 'orange', value: 300 }] },
                        noValue: 'none pending',
                      },
                    },
                  }),
          g.row(10, 'Sensors', y=5),
          g.panel('timeseries',
                  11,
                  'Temperatures',
                  pos=[0, 6, 24, 10],
                  unit='celsius',
                  description='Every sensor, with its high (max, dashed) and critical (dotted red) thresholds where known.',
                  targets=[
                    g.target('A', ('coolmesh_temperature_celsius{job=~"$job", %(instance)s=~"$instance"}' % L), legend='{{chip}} {{sensor}}'),
                    g.target('B', ('coolmesh_temperature_max_celsius{job=~"$job", %(instance)s=~"$instance"}' % L), legend='{{chip}} {{sensor}} max'),
                    g.target('C', ('coolmesh_temperature_critical_celsius{job=~"$job", %(instance)s=~"$instance"}' % L), legend='{{chip}} {{sensor}} critical'),
                  ],
                  patch={
                    fieldConfig: {
                      overrides: [
                        {
                          matcher: { id: 'byRegexp', options: '.* max$' },
                          properties: [
                            { id: 'custom.lineStyle', value: { dash: [10, 10], fill: 'dash' } },
                            { id: 'custom.fillOpacity', value: 0 },
                            { id: 'color', value: { mode: 'fixed', fixedColor: 'orange' } },
                          ],
                        },
                        {
                          matcher: { id: 'byRegexp', options: '.* critical$' },
                          properties: [
                            { id: 'custom.lineStyle', value: { dash: [0, 10], fill: 'dot' } },
                            { id: 'custom.fillOpacity', value: 0 },
                            { id: 'custom.lineWidth', value: 2 },
                            { id: 'color', value: { mode: 'fixed', fixedColor: 'red' } },
                          ],
                        },
                      ],
                    },
                  }),
          g.panel('bargauge',
                  12,
                  'Headroom per sensor',
                  pos=[0, 16, 12, 9],
                  unit='celsius',
                  description='critical - current for every sensor with a known critical threshold.',
                  targets=[
                    g.target('A', ('sort(coolmesh_temperature_critical_celsius{job=~"$job", %(instance)s=~"$instance"} - coolmesh_temperature_celsius{job=~"$job", %(instance)s=~"$instance"})' % L), legend='{{chip}} {{sensor}}'),
                  ]),
          g.panel('table',
                  13,
                  'Readings and thresholds',
                  pos=[12, 16, 12, 9],
                  unit='celsius',
                  description='Current value, high (max) and critical threshold of every sensor.',
                  targets=[
                    g.target('A', ('max by (chip, sensor) (coolmesh_temperature_celsius{job=~"$job", %(instance)s=~"$instance"})' % L), instant=true, format='table'),
                    g.target('B', ('max by (chip, sensor) (coolmesh_temperature_max_celsius{job=~"$job", %(instance)s=~"$instance"})' % L), instant=true, format='table'),
                    g.target('C', ('max by (chip, sensor) (coolmesh_temperature_critical_celsius{job=~"$job", %(instance)s=~"$instance"})' % L), instant=true, format='table'),
                  ],
                  patch={
                    fieldConfig: { defaults: { color: { mode: 'palette-classic' } } },
                    transformations: [
                      { id: 'merge', options: {} },
                      {
                        id: 'organize',
                        options: {
                          excludeByName: { Time: true },
                          indexByName: { chip: 0, sensor: 1, 'Value #A': 2, 'Value #B': 3, 'Value #C': 4 },
                          renameByName: { 'Value #A': 'current', 'Value #B': 'max', 'Value #C': 'critical' },
                        },
                      },
                    ],
                  }),
          g.panel('timeseries',
                  14,
                  'Hottest sensor and headroom',
                  pos=[0, 25, 12, 8],
                  unit='celsius',
                  description='Hottest plausible sensor and headroom to critical.',
                  targets=[
                    g.target('A', ('coolmesh_thermal_hottest_celsius{job=~"$job", %(instance)s=~"$instance"}' % L), legend='hottest'),
                    g.target('B', ('coolmesh_thermal_headroom_celsius{job=~"$job", %(instance)s=~"$instance"}' % L), legend='headroom'),
                  ]),
          g.panel('timeseries',
                  15,
                  'Trend',
                  pos=[12, 25, 6, 8],
                  unit='suffix:°C/min',
                  description='Slope of the hottest sensor over the trend window.',
                  targets=[
                    g.target('A', ('coolmesh_thermal_trend_celsius_per_minute{job=~"$job", %(instance)s=~"$instance"}' % L), legend='trend'),
                  ]),
          g.panel('timeseries',
                  16,
                  'Projected time to critical',
                  pos=[18, 25, 6, 8],
                  unit='s',
                  description='Absent unless rising. Below 5 minutes pages.',
                  targets=[
                    g.target('A', ('coolmesh_thermal_time_to_critical_seconds{job=~"$job", %(instance)s=~"$instance"}' % L), legend='time to critical'),
                  ],
                  patch={
                    fieldConfig: {
                      defaults: {
                        thresholds: { steps: [{ color: 'red', value: null }, { color: 'transparent', value: 300 }] },
                        custom: { axisSoftMin: 0, thresholdsStyle: { mode: 'line' } },
                      },
                    },
                  }),
          g.row(17, 'Sources', y=33),
          g.panel('state-timeline',
                  18,
                  'Source health',
                  pos=[0, 34, 8, 7],
                  unit='none',
                  description='1 if the last read of the source succeeded.',
                  targets=[
                    g.target('A', ('coolmesh_source_up{job=~"$job", %(instance)s=~"$instance"}' % L), legend='{{source}}'),
                  ]),
          g.panel('timeseries',
                  19,
                  'Source read duration',
                  pos=[8, 34, 8, 7],
                  unit='s',
                  description='Duration of the last read of each source.',
                  targets=[
                    g.target('A', ('coolmesh_source_duration_seconds{job=~"$job", %(instance)s=~"$instance"}' % L), legend='{{source}}'),
                  ]),
          g.panel('timeseries',
                  20,
                  'Readings per source',
                  pos=[16, 34, 8, 7],
                  unit='none',
                  description='Readings the last read of each source produced.',
                  targets=[
                    g.target('A', ('coolmesh_source_readings{job=~"$job", %(instance)s=~"$instance"}' % L), legend='{{source}}'),
                  ],
                  patch={ fieldConfig: { defaults: { custom: { axisSoftMin: 0 } } } }),
          g.row(21, 'Power', y=41),
          g.panel('state-timeline',
                  22,
                  'Power targets',
                  pos=[0, 42, 12, 7],
                  unit='none',
                  description='Last probe result per target, and the policy result over all targets.',
                  targets=[
                    g.target('A', ('coolmesh_power_target_up{job=~"$job", %(instance)s=~"$instance"}' % L), legend='{{target}}'),
                    g.target('B', ('coolmesh_power_up{job=~"$job", %(instance)s=~"$instance"}' % L), legend='policy result'),
                  ]),
          g.panel('timeseries',
                  23,
                  'Cluster power votes',
                  pos=[12, 42, 12, 7],
                  unit='none',
                  description='Fresh observations of each target, this node included, against the quorum.',
                  targets=[
                    g.target('A', ('coolmesh_cluster_power_votes{job=~"$job", %(instance)s=~"$instance"}' % L), legend='{{target}} {{vote}}'),
                    g.target('B', ('coolmesh_cluster_quorum{job=~"$job", %(instance)s=~"$instance"}' % L), legend='quorum'),
                  ],
                  patch={
                    fieldConfig: {
                      defaults: { custom: { axisSoftMin: 0 } },
                      overrides: [
                        {
                          matcher: { id: 'byRegexp', options: '^quorum$' },
                          properties: [
                            { id: 'custom.lineStyle', value: { dash: [10, 10], fill: 'dash' } },
                            { id: 'custom.fillOpacity', value: 0 },
                            { id: 'color', value: { mode: 'fixed', fixedColor: 'red' } },
                          ],
                        },
                      ],
                    },
                  }),
          g.panel('timeseries',
                  24,
                  'Probe latency',
                  pos=[0, 49, 12, 8],
                  unit='s',
                  description='Quantiles from the probe latency histogram, and the mean, per target.',
                  targets=[
                    g.target('A', ('histogram_quantile(0.5, sum by (target, le) (rate(coolmesh_power_probe_duration_seconds_bucket{job=~"$job", %(instance)s=~"$instance"}[$__rate_interval])))' % L), legend='{{target}} p50'),
                    g.target('B', ('histogram_quantile(0.9, sum by (target, le) (rate(coolmesh_power_probe_duration_seconds_bucket{job=~"$job", %(instance)s=~"$instance"}[$__rate_interval])))' % L), legend='{{target}} p90'),
                    g.target('C', ('histogram_quantile(0.99, sum by (target, le) (rate(coolmesh_power_probe_duration_seconds_bucket{job=~"$job", %(instance)s=~"$instance"}[$__rate_interval])))' % L), legend='{{target}} p99'),
                    g.target('D', ('sum by (target) (rate(coolmesh_power_probe_duration_seconds_sum{job=~"$job", %(instance)s=~"$instance"}[$__rate_interval])) / sum by (target) (rate(coolmesh_power_probe_duration_seconds_count{job=~"$job", %(instance)s=~"$instance"}[$__rate_interval]))' % L), legend='{{target}} mean'),
                  ]),
          g.panel('heatmap',
                  25,
                  'Probe latency distribution',
                  pos=[12, 49, 12, 8],
                  unit='short',
                  description='Probes per latency bucket, all targets.',
                  targets=[
                    g.target('A', ('sum by (le) (increase(coolmesh_power_probe_duration_seconds_bucket{job=~"$job", %(instance)s=~"$instance"}[$__rate_interval]))' % L), legend='{{le}}', format='heatmap'),
                  ],
                  patch={ options: { tooltip: { yHistogram: false }, yAxis: { unit: 's' } } }),
          g.panel('timeseries',
                  26,
                  'Probe failures',
                  pos=[0, 57, 24, 6],
                  unit='cps',
                  description='Failed probes per second, by target.',
                  targets=[
                    g.target('A', ('sum by (target) (rate(coolmesh_power_probe_failures_total{job=~"$job", %(instance)s=~"$instance"}[$__rate_interval]))' % L), legend='{{target}}'),
                  ]),
          g.row(27, 'State machine', y=63),
          g.panel('state-timeline',
                  28,
                  'State',
                  pos=[0, 64, 12, 5],
                  unit='none',
                  description='normal, maintenance, local_fault, pre_fail, shutdown.',
                  targets=[
                    g.target('A', ('instance:coolmesh_fsm_state:code{job=~"$job", %(room)s=~"$cluster", %(instance)s=~"$instance"}' % L), legend='state'),
                  ],
                  patch={
                    fieldConfig: {
                      defaults: {
                        mappings: [
                          {
                            type: 'value',
                            options: {
                              '0': { text: 'normal', color: 'green', index: 0 },
                              '1': { text: 'maintenance', color: 'blue', index: 1 },
                              '2': { text: 'local_fault', color: 'yellow', index: 2 },
                              '3': { text: 'pre_fail', color: 'orange', index: 3 },
                              '4': { text: 'shutdown', color: 'red', index: 4 },
                            },
                          },
                        ],
                      },
                    },
                  }),
          g.panel('state-timeline',
                  29,
                  'Reason',
                  pos=[12, 64, 12, 5],
                  unit='none',
                  description='Reason of the current state.',
                  targets=[
                    g.target('A', ('instance:coolmesh_fsm_reason:code{job=~"$job", %(room)s=~"$cluster", %(instance)s=~"$instance"}' % L), legend='reason'),
                  ],
                  patch={
                    fieldConfig: {
                      defaults: {
                        mappings: [
                          {
                            type: 'value',
                            options: {
                              '0': { text: 'none', color: 'green', index: 0 },
                              '1': { text: 'operator', color: 'blue', index: 1 },
                              '2': { text: 'prediction', color: 'purple', index: 2 },
                              '3': { text: 'overheat', color: 'red', index: 3 },
                              '4': { text: 'cooling', color: 'orange', index: 4 },
                              '5': { text: 'power', color: 'dark-red', index: 5 },
                            },
                          },
                        ],
                      },
                    },
                  }),
          g.panel('timeseries',
                  30,
                  'Transitions',
                  pos=[0, 69, 12, 8],
                  unit='none',
                  description='State machine transitions per interval.',
                  targets=[
                    g.target('A', ('sum by (from, to, reason) (increase(coolmesh_fsm_transitions_total{job=~"$job", %(instance)s=~"$instance"}[$__rate_interval]))' % L), legend='{{from}} → {{to}} ({{reason}})'),
                  ],
                  patch={
                    fieldConfig: {
                      defaults: { custom: { drawStyle: 'bars', fillOpacity: 60, stacking: { mode: 'normal' } } },
                    },
                  }),
          g.panel('table',
                  31,
                  'Transitions in range',
                  pos=[12, 69, 12, 8],
                  unit='none',
                  description='Transitions in the selected time range.',
                  targets=[
                    g.target('A', ('sum by (from, to, reason) (increase(coolmesh_fsm_transitions_total{job=~"$job", %(instance)s=~"$instance"}[$__range])) > 0' % L), instant=true, format='table'),
                  ],
                  patch={
                    fieldConfig: { defaults: { color: { mode: 'palette-classic' } } },
                    transformations: [
                      {
                        id: 'organize',
                        options: {
                          excludeByName: { Time: true },
                          indexByName: { from: 0, to: 1, reason: 2, Value: 3 },
                          renameByName: { Value: 'count' },
                        },
                      },
                    ],
                  }),
          g.panel('stat',
                  32,
                  'Shutdown executed',
                  pos=[0, 77, 4, 4],
                  unit='none',
                  description='1 once the shutdown command has been run (or would have been, in dry-run).',
                  targets=[
                    g.target('A', ('coolmesh_shutdown_executed{job=~"$job", %(instance)s=~"$instance"}' % L)),
                  ],
                  patch={
                    fieldConfig: {
                      defaults: {
                        mappings: [
                          {
                            type: 'value',
                            options: {
                              '0': { text: 'not run', color: 'green', index: 0 },
                              '1': { text: 'executed', color: 'red', index: 1 },
                            },
                          },
                        ],
                      },
                    },
                  }),
          g.panel('stat',
                  33,
                  'Dry run',
                  pos=[4, 77, 4, 4],
                  unit='none',
                  description='In dry-run the agent logs its shutdown command instead of running it.',
                  targets=[
                    g.target('A', ('coolmesh_shutdown_dry_run{job=~"$job", %(instance)s=~"$instance"}' % L)),
                  ],
                  patch={
                    fieldConfig: {
                      defaults: {
                        thresholds: { steps: [{ color: 'green', value: null }, { color: 'yellow', value: 1 }] },
                        mappings: [
                          {
                            type: 'value',
                            options: {
                              '0': { text: 'off', color: 'green', index: 0 },
                              '1': { text: 'dry run', color: 'yellow', index: 1 },
                            },
                          },
                        ],
                      },
                    },
                  }),
          g.panel('stat',
                  34,
                  'Shutdown command failures',
                  pos=[8, 77, 4, 4],
                  unit='none',
                  description='Failed runs of the shutdown command since the agent started.',
                  targets=[
                    g.target('A', ('coolmesh_shutdown_command_failures_total{job=~"$job", %(instance)s=~"$instance"}' % L)),
                  ]),
          g.panel('stat',
                  35,
                  'Maintenance ends in',
                  pos=[12, 77, 6, 4],
                  unit='s',
                  description='Automatic shutdowns are held until the maintenance window ends.',
                  targets=[
                    g.target('A', ('coolmesh_maintenance_until_timestamp_seconds{job=~"$job", %(instance)s=~"$instance"} - time()' % L)),
                  ],
                  patch={
                    fieldConfig: {
                      defaults: {
                        thresholds: { steps: [{ color: 'blue', value: null }] },
                        noValue: 'not in maintenance',
                      },
                    },
                  }),
          g.panel('stat',
                  36,
                  'Agent version',
                  pos=[18, 77, 6, 4],
                  unit='none',
                  description='Build of the running agent.',
                  targets=[
                    g.target('A', ('coolmesh_build_info{job=~"$job", %(instance)s=~"$instance"}' % L), legend='{{version}} ({{revision}})'),
                  ],
                  patch={
                    fieldConfig: { defaults: { thresholds: { steps: [{ color: 'green', value: null }] } } },
                    options: { colorMode: 'none', textMode: 'name' },
                  }),
          g.row(37, 'Cluster', y=81),
          g.panel('timeseries',
                  38,
                  'Peers by state',
                  pos=[0, 82, 8, 8],
                  unit='none',
                  description='Peers by liveness as this agent sees them.',
                  targets=[
                    g.target('A', ('coolmesh_cluster_peers{job=~"$job", %(instance)s=~"$instance"}' % L), legend='{{state}}'),
                  ],
                  patch={ fieldConfig: { defaults: { custom: { axisSoftMin: 0 } } } }),
          g.panel('state-timeline',
                  39,
                  'Peers this node sees suspect or dead',
                  pos=[8, 82, 16, 8],
                  unit='none',
                  description='The peers this agent does not see alive, over time (a peer appears while it is suspect or dead). Empty while every peer is alive; with hundreds of peers, a row per alive peer would hide the few that matter. "Peers by state" counts them all.',
                  targets=[
                    g.target('A', ('coolmesh_peer_up{job=~"$job", %(instance)s=~"$instance"} == 0' % L), legend='{{peer}}'),
                  ],
                  patch={
                    fieldConfig: {
                      defaults: {
                        mappings: [
                          {
                            type: 'value',
                            options: {
                              '0': { text: 'suspect/dead', color: 'red', index: 0 },
                              '1': { text: 'alive', color: 'green', index: 1 },
                            },
                          },
                        ],
                        noValue: 'every peer alive',
                      },
                    },
                  }),
          g.panel('bargauge',
                  40,
                  'Peer headroom, top 10 (offload ranking)',
                  pos=[0, 90, 12, 8],
                  unit='celsius',
                  description='The ten peers with the most thermal headroom: they can take load from hot servers.',
                  targets=[
                    g.target('A', ('sort_desc(topk(10, coolmesh_peer_headroom_celsius{job=~"$job", %(instance)s=~"$instance"}))' % L), legend='{{peer}}', instant=true),
                  ]),
          g.panel('timeseries',
                  41,
                  'Overheating peers vs quorum',
                  pos=[12, 90, 12, 8],
                  unit='none',
                  description='Fresh peers (self included) overheating or heating fast, against the quorum.',
                  targets=[
                    g.target('A', ('coolmesh_cluster_overheating_peers{job=~"$job", %(instance)s=~"$instance"}' % L), legend='overheating'),
                    g.target('B', ('coolmesh_cluster_quorum{job=~"$job", %(instance)s=~"$instance"}' % L), legend='quorum'),
                  ],
                  patch={
                    fieldConfig: {
                      defaults: { custom: { axisSoftMin: 0 } },
                      overrides: [
                        {
                          matcher: { id: 'byRegexp', options: '^quorum$' },
                          properties: [
                            { id: 'custom.lineStyle', value: { dash: [10, 10], fill: 'dash' } },
                            { id: 'custom.fillOpacity', value: 0 },
                            { id: 'color', value: { mode: 'fixed', fixedColor: 'red' } },
                          ],
                        },
                      ],
                    },
                  }),
          g.row(42, 'Gossip and counters', y=98),
          g.panel('timeseries',
                  43,
                  'Gossip messages',
                  pos=[0, 99, 8, 8],
                  unit='cps',
                  description='Messages per second by direction and kind.',
                  targets=[
                    g.target('A', ('sum by (direction, kind) (rate(coolmesh_gossip_messages_total{job=~"$job", %(instance)s=~"$instance"}[$__rate_interval]))' % L), legend='{{direction}} {{kind}}'),
                  ]),
          g.panel('timeseries',
                  44,
                  'Gossip bandwidth',
                  pos=[8, 99, 8, 8],
                  unit='Bps',
                  description='Bytes per second by direction.',
                  targets=[
                    g.target('A', ('sum by (direction) (rate(coolmesh_gossip_bytes_total{job=~"$job", %(instance)s=~"$instance"}[$__rate_interval]))' % L), legend='{{direction}}'),
                  ]),
          g.panel('timeseries',
                  45,
                  'Rejected gossip',
                  pos=[16, 99, 8, 8],
                  unit='cps',
                  description='Rejected peer input per second, by reason.',
                  targets=[
                    g.target('A', ('sum by (reason) (rate(coolmesh_gossip_rejected_total{job=~"$job", %(instance)s=~"$instance"}[$__rate_interval]))' % L), legend='{{reason}}'),
                  ]),
          g.panel('table',
                  46,
                  'Counters',
                  pos=[0, 107, 24, 7],
                  unit='none',
                  description="CRDT counters: cluster-wide total and this node's own slot.",
                  targets=[
                    g.target('A', ('max by (name) (coolmesh_crdt_value{job=~"$job", %(instance)s=~"$instance"})' % L), instant=true, format='table'),
                    g.target('B', ('max by (name) (coolmesh_crdt_local{job=~"$job", %(instance)s=~"$instance"})' % L), instant=true, format='table'),
                  ],
                  patch={
                    fieldConfig: { defaults: { color: { mode: 'palette-classic' } } },
                    transformations: [
                      { id: 'merge', options: {} },
                      {
                        id: 'organize',
                        options: {
                          excludeByName: { Time: true },
                          indexByName: { name: 0, 'Value #A': 1, 'Value #B': 2 },
                          renameByName: { 'Value #A': 'cluster-wide', 'Value #B': 'this node' },
                        },
                      },
                    ],
                  }),
        ],
      },
  },
}
