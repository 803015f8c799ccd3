// The room dashboard (dashboards/coolmesh-room.json; what it shows:
// dashboards/README.md).
local g = import '../lib/grafana.libsonnet';

{
  grafanaDashboards+:: {
    'coolmesh-room.json':
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
              name: 'State transitions (all nodes)',
              expr: ('sum by (from, to, reason) (increase(coolmesh_fsm_transitions_total{job=~"$job", %(instance)s=~"$instance"}[2m]) * on (%(group)s, %(instance)s) group_left (%(room)s) coolmesh_node_info{job=~"$job", %(room)s=~"$cluster"}) > 0' % L),
              step: '2m',
              titleFormat: '{{from}} → {{to}}',
              textFormat: "reason: {{reason}} (nodes: the annotation's value)",
              tagKeys: 'reason',
              useValueForTime: false,
            },
          ],
        },
        description: 'A machine room during an incident, at any size: mains power and votes, nodes per state, the next shutdown and the firing alerts on top; lists of the nodes that are not normal and the hottest ones; distributions of the whole room; power, cluster, gossip and counters below.',
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
        title: 'coolmesh / Room overview',
        uid: 'coolmesh-room',
        version: 2,
        weekStart: '',
        templating: { list: [
          g.datasourceVariable,
          g.queryVariable('job', 'Job', 'label_values(coolmesh_node_info{%(selector)s}, job)' % L),
          g.queryVariable('cluster', 'Cluster', 'label_values(coolmesh_node_info{%(selector)s, job=~"$job"}, %(room)s)' % L),
          g.queryVariable('instance', 'Instance', 'label_values(coolmesh_node_info{%(selector)s, job=~"$job", %(room)s=~"$cluster"}, %(instance)s)' % L, multi=true),
        ] },
        panels: [
          g.row(1, 'Incident: mains power, nodes per state, next shutdown, firing alerts', y=0),
          g.panel('stat',
                  2,
                  'Mains power',
                  pos=[0, 1, 4, 5],
                  unit='none',
                  description='Agents whose own probes see mains power up, and down (their policy result, coolmesh_power_up). An agent whose probes all failed on the host itself reports neither.',
                  targets=[
                    g.target('A', ('count(instance:coolmesh_power_up:min{job=~"$job", %(room)s=~"$cluster", %(instance)s=~"$instance"} == 1) or vector(0)' % L), legend='up', instant=true),
                    g.target('B', ('count(instance:coolmesh_power_up:min{job=~"$job", %(room)s=~"$cluster", %(instance)s=~"$instance"} == 0) or vector(0)' % L), legend='down', instant=true),
                  ],
                  patch={
                    fieldConfig: {
                      defaults: { thresholds: { steps: [{ color: 'green', value: null }] }, decimals: 0 },
                      overrides: [
                        {
                          matcher: { id: 'byName', options: 'down' },
                          properties: [
                            {
                              id: 'thresholds',
                              value: {
                                mode: 'absolute',
                                steps: [{ color: 'green', value: null }, { color: 'red', value: 1 }],
                              },
                            },
                          ],
                        },
                        {
                          matcher: { id: 'byName', options: 'up' },
                          properties: [{ id: 'color', value: { mode: 'fixed', fixedColor: 'green' } }],
                        },
                      ],
                    },
                    options: { orientation: 'vertical', textMode: 'value_and_name' },
                  }),
          g.panel('table',
                  3,
                  'Power votes per target',
                  pos=[4, 1, 8, 5],
                  unit='none',
                  description="Per room and power target, the votes the agents' state machines count (highest any agent reports): up and down. An agent whose own probe fails takes power as lost unless the up votes are a strict majority, so \"lost at\" is the number of down votes that makes it so; \"paged at\" is the quorum at which CoolmeshPowerLost fires.",
                  targets=[
                    g.target('A', ('max by (%(room)s, target) (cluster:coolmesh_cluster_power_votes:max{vote="up", job=~"$job", %(room)s=~"$cluster"})' % L), instant=true, format='table'),
                    g.target('B', ('max by (%(room)s, target) (cluster:coolmesh_cluster_power_votes:max{vote="down", job=~"$job", %(room)s=~"$cluster"})' % L), instant=true, format='table'),
                    g.target('C', ('ceil(sum by (%(room)s, target) (cluster:coolmesh_cluster_power_votes:max{job=~"$job", %(room)s=~"$cluster"}) / 2)' % L), instant=true, format='table'),
                    g.target('D', ('max by (%(room)s, target) (0 * cluster:coolmesh_cluster_power_votes:max{vote="up", job=~"$job", %(room)s=~"$cluster"} + on (%(group)s, %(room)s) group_left cluster:coolmesh_cluster_quorum:max{job=~"$job", %(room)s=~"$cluster"})' % L), instant=true, format='table'),
                  ],
                  patch={
                    fieldConfig: {
                      overrides: [
                        {
                          matcher: { id: 'byName', options: 'down votes' },
                          properties: [
                            { id: 'custom.cellOptions', value: { type: 'color-background' } },
                            {
                              id: 'thresholds',
                              value: {
                                mode: 'absolute',
                                steps: [{ color: 'transparent', value: null }, { color: 'orange', value: 1 }],
                              },
                            },
                          ],
                        },
                        {
                          matcher: { id: 'byName', options: 'up votes' },
                          properties: [
                            { id: 'custom.cellOptions', value: { type: 'color-text' } },
                            { id: 'color', value: { mode: 'fixed', fixedColor: 'green' } },
                          ],
                        },
                      ],
                    },
                    transformations: [
                      { id: 'merge', options: {} },
                      {
                        id: 'organize',
                        options: {
                          excludeByName: { Time: true },
                          indexByName: {
                            [L.room]: 0,
                            target: 1,
                            'Value #A': 2,
                            'Value #B': 3,
                            'Value #C': 4,
                            'Value #D': 5,
                          },
                          renameByName: {
                            'Value #A': 'up votes',
                            'Value #B': 'down votes',
                            'Value #C': 'lost at (down)',
                            'Value #D': 'paged at (down)',
                          },
                        },
                      },
                    ],
                  }),
          g.panel('stat',
                  4,
                  'Nodes per state',
                  pos=[12, 1, 8, 5],
                  unit='none',
                  description='Agents in each state machine state in the selected rooms (cluster:coolmesh_fsm_state:count), and agents Prometheus cannot scrape (their state is unknown). The table below lists every node that is not normal.',
                  targets=[
                    g.target('A', ('sum by (state) (cluster:coolmesh_fsm_state:count{job=~"$job", %(room)s=~"$cluster"})' % L), legend='{{state}}', instant=true),
                    g.target('B', ('count(instance:coolmesh_up:max{job=~"$job", %(room)s=~"$cluster", %(instance)s=~"$instance"} == 0) or vector(0)' % L), legend='not scraped', instant=true),
                  ],
                  patch={
                    fieldConfig: {
                      defaults: { thresholds: { steps: [{ color: 'text', value: null }] }, decimals: 0 },
                      overrides: [
                        {
                          matcher: { id: 'byName', options: 'maintenance' },
                          properties: [
                            {
                              id: 'thresholds',
                              value: {
                                mode: 'absolute',
                                steps: [{ color: 'text', value: null }, { color: 'blue', value: 1 }],
                              },
                            },
                          ],
                        },
                        {
                          matcher: { id: 'byName', options: 'local_fault' },
                          properties: [
                            {
                              id: 'thresholds',
                              value: {
                                mode: 'absolute',
                                steps: [{ color: 'text', value: null }, { color: 'yellow', value: 1 }],
                              },
                            },
                          ],
                        },
                        {
                          matcher: { id: 'byName', options: 'pre_fail' },
                          properties: [
                            {
                              id: 'thresholds',
                              value: {
                                mode: 'absolute',
                                steps: [{ color: 'text', value: null }, { color: 'orange', value: 1 }],
                              },
                            },
                          ],
                        },
                        {
                          matcher: { id: 'byName', options: 'shutdown' },
                          properties: [
                            {
                              id: 'thresholds',
                              value: {
                                mode: 'absolute',
                                steps: [{ color: 'text', value: null }, { color: 'red', value: 1 }],
                              },
                            },
                          ],
                        },
                        {
                          matcher: { id: 'byName', options: 'not scraped' },
                          properties: [
                            {
                              id: 'thresholds',
                              value: {
                                mode: 'absolute',
                                steps: [{ color: 'text', value: null }, { color: 'purple', value: 1 }],
                              },
                            },
                          ],
                        },
                        {
                          matcher: { id: 'byName', options: 'normal' },
                          properties: [{ id: 'color', value: { mode: 'fixed', fixedColor: 'green' } }],
                        },
                      ],
                    },
                    options: { orientation: 'vertical', textMode: 'value_and_name' },
                  }),
          g.panel('stat',
                  5,
                  'Next shutdown',
                  pos=[20, 1, 4, 5],
                  unit='s',
                  description='The soonest pending shutdown deadline and the node it belongs to (click for its node dashboard), and how many shutdowns are pending. Negative: the deadline has passed (the command is running or ran).',
                  targets=[
                    g.target('A', ('bottomk(1, instance:coolmesh_shutdown_deadline_timestamp_seconds:min{job=~"$job", %(room)s=~"$cluster", %(instance)s=~"$instance"} - time())' % L), legend=('{{%(node)s}}' % L), instant=true),
                    g.target('B', ('count(instance:coolmesh_shutdown_deadline_timestamp_seconds:min{job=~"$job", %(room)s=~"$cluster", %(instance)s=~"$instance"}) or vector(0)' % L), legend='pending', instant=true),
                  ],
                  patch={
                    fieldConfig: {
                      defaults: {
                        thresholds: {
                          steps: [
                            { color: 'red', value: null },
                            { color: 'orange', value: 120 },
                            { color: 'yellow', value: 300 },
                          ],
                        },
                        noValue: 'none pending',
                        links: [
                          {
                            title: 'Open node dashboard',
                            targetBlank: false,
                            url: ('/d/coolmesh-node/coolmesh-node?var-datasource=${datasource}&var-job=${__field.labels.job}&var-cluster=${__field.labels.%(room)s}&var-instance=${__field.labels.%(instance)s}&${__url_time_range}' % L),
                          },
                        ],
                      },
                      overrides: [
                        {
                          matcher: { id: 'byName', options: 'pending' },
                          properties: [
                            { id: 'unit', value: 'none' },
                            { id: 'decimals', value: 0 },
                            {
                              id: 'thresholds',
                              value: {
                                mode: 'absolute',
                                steps: [{ color: 'green', value: null }, { color: 'orange', value: 1 }],
                              },
                            },
                          ],
                        },
                      ],
                    },
                    options: { orientation: 'vertical', textMode: 'value_and_name' },
                  }),
          g.panel('table',
                  6,
                  'Coolmesh alerts firing and pending',
                  pos=[0, 6, 8, 8],
                  unit='none',
                  description='Coolmesh alerts in Prometheus (ALERTS), by alert, severity and state, with the number of series (nodes, or rooms for the room-wide ones). The watchdog, which always fires, is left out. Critical first.',
                  targets=[
                    g.target('A', ('count by (alertname, severity, alertstate) (ALERTS{alertname=~"Coolmesh.*", alertname!="CoolmeshWatchdog", job=~"$job", %(room)s=~"$cluster"})' % L), instant=true, format='table'),
                  ],
                  patch={
                    fieldConfig: {
                      overrides: [
                        {
                          matcher: { id: 'byName', options: 'severity' },
                          properties: [
                            { id: 'custom.cellOptions', value: { type: 'color-text' } },
                            {
                              id: 'mappings',
                              value: [
                                {
                                  type: 'value',
                                  options: {
                                    [c.severities.critical]: { color: 'red', index: 0 },
                                    [c.severities.warning]: { color: 'orange', index: 1 },
                                    [c.severities.info]: { color: 'blue', index: 2 },
                                  },
                                },
                              ],
                            },
                          ],
                        },
                        {
                          matcher: { id: 'byName', options: 'alertstate' },
                          properties: [
                            { id: 'custom.cellOptions', value: { type: 'color-text' } },
                            {
                              id: 'mappings',
                              value: [
                                {
                                  type: 'value',
                                  options: {
                                    firing: { color: 'red', index: 0 },
                                    pending: { color: 'yellow', index: 1 },
                                  },
                                },
                              ],
                            },
                          ],
                        },
                        {
                          matcher: { id: 'byName', options: 'series' },
                          properties: [{ id: 'custom.width', value: 70 }],
                        },
                      ],
                    },
                    options: { sortBy: [{ displayName: 'severity', desc: false }] },
                    transformations: [
                      {
                        id: 'organize',
                        options: {
                          excludeByName: { Time: true },
                          indexByName: { alertname: 0, severity: 1, alertstate: 2, Value: 3 },
                          renameByName: { Value: 'series', alertstate: 'state' },
                        },
                      },
                    ],
                  }),
          g.panel('table',
                  7,
                  'Nodes not normal',
                  pos=[8, 6, 16, 8],
                  unit='none',
                  description='Every node whose state machine is not in normal, and every agent Prometheus cannot scrape: state, reason, time left before its shutdown command runs, end of its maintenance window. One row per node, most severe first; click a node for its dashboard.',
                  targets=[
                    g.target('A', ('(instance:coolmesh_fsm_state:code{job=~"$job", %(room)s=~"$cluster", %(instance)s=~"$instance"} > 0) or on (%(group)s, %(instance)s) ((instance:coolmesh_up:max{job=~"$job", %(room)s=~"$cluster", %(instance)s=~"$instance"} == 0) - 1)' % L), instant=true, format='table'),
                    g.target('B', ('instance:coolmesh_fsm_reason:code{job=~"$job", %(room)s=~"$cluster", %(instance)s=~"$instance"} and on (%(group)s, %(instance)s) (instance:coolmesh_fsm_state:code{job=~"$job", %(room)s=~"$cluster", %(instance)s=~"$instance"} > 0)' % L), instant=true, format='table'),
                    g.target('C', ('instance:coolmesh_shutdown_deadline_timestamp_seconds:min{job=~"$job", %(room)s=~"$cluster", %(instance)s=~"$instance"} - time()' % L), instant=true, format='table'),
                    g.target('D', ('(coolmesh_maintenance_until_timestamp_seconds{job=~"$job", %(instance)s=~"$instance"} - time()) * on (%(group)s, %(instance)s) group_left (%(room)s, %(node)s) coolmesh_node_info{job=~"$job", %(room)s=~"$cluster"}' % L), instant=true, format='table'),
                  ],
                  patch={
                    fieldConfig: {
                      overrides: [
                        {
                          matcher: { id: 'byName', options: L.node },
                          properties: [
                            {
                              id: 'links',
                              value: [
                                {
                                  title: 'Open node dashboard',
                                  targetBlank: false,
                                  url: ('/d/coolmesh-node/coolmesh-node?var-datasource=${datasource}&var-job=${__data.fields.job}&var-cluster=${__data.fields.%(room)s}&var-instance=${__data.fields.%(instance)s}&${__url_time_range}' % L),
                                },
                              ],
                            },
                          ],
                        },
                        {
                          matcher: { id: 'byName', options: 'job' },
                          properties: [{ id: 'custom.hidden', value: true }],
                        },
                        {
                          matcher: { id: 'byName', options: 'state' },
                          properties: [
                            {
                              id: 'mappings',
                              value: [
                                {
                                  type: 'value',
                                  options: {
                                    '-1': { text: 'not scraped', color: 'purple', index: 0 },
                                    '0': { text: 'normal', color: 'green', index: 1 },
                                    '1': { text: 'maintenance', color: 'blue', index: 2 },
                                    '2': { text: 'local_fault', color: 'yellow', index: 3 },
                                    '3': { text: 'pre_fail', color: 'orange', index: 4 },
                                    '4': { text: 'shutdown', color: 'red', index: 5 },
                                  },
                                },
                              ],
                            },
                            { id: 'custom.cellOptions', value: { type: 'color-background' } },
                          ],
                        },
                        {
                          matcher: { id: 'byName', options: 'reason' },
                          properties: [
                            {
                              id: 'mappings',
                              value: [
                                {
                                  type: 'value',
                                  options: {
                                    '0': { text: 'none', index: 0 },
                                    '1': { text: 'operator', index: 1 },
                                    '2': { text: 'prediction', index: 2 },
                                    '3': { text: 'overheat', index: 3 },
                                    '4': { text: 'cooling', index: 4 },
                                    '5': { text: 'power', index: 5 },
                                  },
                                },
                              ],
                            },
                          ],
                        },
                        {
                          matcher: { id: 'byName', options: 'shutdown in' },
                          properties: [
                            { id: 'unit', value: 's' },
                            { id: 'custom.cellOptions', value: { type: 'color-text' } },
                            {
                              id: 'thresholds',
                              value: {
                                mode: 'absolute',
                                steps: [
                                  { color: 'red', value: null },
                                  { color: 'orange', value: 120 },
                                  { color: 'yellow', value: 300 },
                                  { color: 'text', value: 900 },
                                ],
                              },
                            },
                          ],
                        },
                        {
                          matcher: { id: 'byName', options: 'maintenance ends in' },
                          properties: [{ id: 'unit', value: 's' }],
                        },
                      ],
                    },
                    options: { sortBy: [{ displayName: 'state', desc: true }] },
                    transformations: [
                      { id: 'merge', options: {} },
                      {
                        id: 'filterByValue',
                        options: {
                          type: 'include',
                          match: 'any',
                          filters: [{ fieldName: 'Value #A', config: { id: 'isNotNull', options: {} } }],
                        },
                      },
                      {
                        id: 'organize',
                        options: {
                          excludeByName: { Time: true },
                          indexByName: {
                            [L.node]: 0,
                            [L.instance]: 1,
                            [L.room]: 2,
                            'Value #A': 3,
                            'Value #B': 4,
                            'Value #C': 5,
                            'Value #D': 6,
                            job: 7,
                          },
                          renameByName: {
                            'Value #A': 'state',
                            'Value #B': 'reason',
                            'Value #C': 'shutdown in',
                            'Value #D': 'maintenance ends in',
                          },
                        },
                      },
                    ],
                  }),
          g.panel('table',
                  8,
                  'Least thermal headroom (10 nodes)',
                  pos=[0, 14, 12, 8],
                  unit='celsius',
                  description='The ten nodes closest to a critical threshold (headroom = critical - current, hardware independent), with their hottest sensor, trend and projected time to critical. Click a node for its dashboard; the distributions below show the whole room.',
                  targets=[
                    g.target('A', ('bottomk(10, instance:coolmesh_thermal_headroom_celsius:min{job=~"$job", %(room)s=~"$cluster", %(instance)s=~"$instance"})' % L), instant=true, format='table'),
                    g.target('B', ('instance:coolmesh_thermal_hottest_celsius:max{job=~"$job", %(room)s=~"$cluster", %(instance)s=~"$instance"} and on (%(group)s, %(instance)s) bottomk(10, instance:coolmesh_thermal_headroom_celsius:min{job=~"$job", %(room)s=~"$cluster", %(instance)s=~"$instance"})' % L), instant=true, format='table'),
                    g.target('C', ('instance:coolmesh_thermal_trend_celsius_per_minute:max{job=~"$job", %(room)s=~"$cluster", %(instance)s=~"$instance"} and on (%(group)s, %(instance)s) bottomk(10, instance:coolmesh_thermal_headroom_celsius:min{job=~"$job", %(room)s=~"$cluster", %(instance)s=~"$instance"})' % L), instant=true, format='table'),
                    g.target('D', ('instance:coolmesh_thermal_time_to_critical_seconds:min{job=~"$job", %(room)s=~"$cluster", %(instance)s=~"$instance"} and on (%(group)s, %(instance)s) bottomk(10, instance:coolmesh_thermal_headroom_celsius:min{job=~"$job", %(room)s=~"$cluster", %(instance)s=~"$instance"})' % L), instant=true, format='table'),
                  ],
                  patch={
                    fieldConfig: {
                      defaults: { decimals: 1 },
                      overrides: [
                        {
                          matcher: { id: 'byName', options: L.node },
                          properties: [
                            {
                              id: 'links',
                              value: [
                                {
                                  title: 'Open node dashboard',
                                  targetBlank: false,
                                  url: ('/d/coolmesh-node/coolmesh-node?var-datasource=${datasource}&var-job=${__data.fields.job}&var-cluster=${__data.fields.%(room)s}&var-instance=${__data.fields.%(instance)s}&${__url_time_range}' % L),
                                },
                              ],
                            },
                          ],
                        },
                        {
                          matcher: { id: 'byName', options: 'job' },
                          properties: [{ id: 'custom.hidden', value: true }],
                        },
                        {
                          matcher: { id: 'byName', options: 'headroom' },
                          properties: [
                            { id: 'custom.cellOptions', value: { type: 'color-background' } },
                            {
                              id: 'thresholds',
                              value: {
                                mode: 'absolute',
                                steps: [
                                  { color: 'red', value: null },
                                  { color: 'orange', value: 5 },
                                  { color: 'yellow', value: 10 },
                                  { color: 'green', value: 20 },
                                ],
                              },
                            },
                          ],
                        },
                        {
                          matcher: { id: 'byName', options: 'trend' },
                          properties: [{ id: 'unit', value: 'suffix:°C/min' }],
                        },
                        {
                          matcher: { id: 'byName', options: 'time to critical' },
                          properties: [{ id: 'unit', value: 's' }],
                        },
                      ],
                    },
                    options: { sortBy: [{ displayName: 'headroom', desc: false }] },
                    transformations: [
                      { id: 'merge', options: {} },
                      {
                        id: 'organize',
                        options: {
                          excludeByName: { Time: true },
                          indexByName: {
                            [L.node]: 0,
                            [L.instance]: 1,
                            [L.room]: 2,
                            'Value #A': 3,
                            'Value #B': 4,
                            'Value #C': 5,
                            'Value #D': 6,
                            job: 7,
                          },
                          renameByName: {
                            'Value #A': 'headroom',
                            'Value #B': 'hottest',
                            'Value #C': 'trend',
                            'Value #D': 'time to critical',
                          },
                        },
                      },
                    ],
                  }),
          g.panel('bargauge',
                  9,
                  'Hottest nodes (10)',
                  pos=[12, 14, 12, 8],
                  unit='celsius',
                  description='The ten nodes with the hottest plausible sensor. Absolute temperatures depend on the hardware: headroom (left) is the better guide. Click a bar for the node dashboard.',
                  targets=[
                    g.target('A', ('sort_desc(topk(10, instance:coolmesh_thermal_hottest_celsius:max{job=~"$job", %(room)s=~"$cluster", %(instance)s=~"$instance"}))' % L), legend=('{{%(node)s}}' % L), instant=true),
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
                        links: [
                          {
                            title: 'Open node dashboard',
                            targetBlank: false,
                            url: ('/d/coolmesh-node/coolmesh-node?var-datasource=${datasource}&var-job=${__field.labels.job}&var-cluster=${__field.labels.%(room)s}&var-instance=${__field.labels.%(instance)s}&${__url_time_range}' % L),
                          },
                        ],
                      },
                    },
                    options: { namePlacement: 'left', minVizHeight: 10 },
                  }),
          g.row(10, 'Thermal: the whole room', y=22),
          g.panel('heatmap',
                  11,
                  'Hottest temperature: nodes per band',
                  pos=[0, 23, 12, 8],
                  unit='celsius',
                  description='How many servers have their hottest sensor in each 10 °C band, over time (from the recorded histogram cluster:coolmesh_thermal_hottest_celsius:bucket: a handful of series per room, whatever its size).',
                  targets=[
                    g.target('A', ('sum by (le) (cluster:coolmesh_thermal_hottest_celsius:bucket{job=~"$job", %(room)s=~"$cluster"})' % L), legend='{{le}}', format='heatmap') + { interval: '1m' },
                  ]),
          g.panel('heatmap',
                  12,
                  'Thermal headroom: nodes per band',
                  pos=[12, 23, 12, 8],
                  unit='celsius',
                  description='How many servers are within 5, 10, 15, 20, 30, 40, 60 °C of a critical threshold, over time (cluster:coolmesh_thermal_headroom_celsius:bucket). A room losing cooling moves down.',
                  targets=[
                    g.target('A', ('sum by (le) (cluster:coolmesh_thermal_headroom_celsius:bucket{job=~"$job", %(room)s=~"$cluster"})' % L), legend='{{le}}', format='heatmap') + { interval: '1m' },
                  ],
                  patch={ options: { color: { scheme: 'Reds' } } }),
          g.panel('timeseries',
                  13,
                  'Thermal headroom: lowest, 10th percentile, median',
                  pos=[0, 31, 12, 8],
                  unit='celsius',
                  description='Per room: the lowest headroom of any node, and the headroom 10% and 50% of the nodes are below.',
                  targets=[
                    g.target('A', ('cluster:coolmesh_thermal_headroom_celsius:min{job=~"$job", %(room)s=~"$cluster"}' % L), legend=('{{%(room)s}} lowest' % L)),
                    g.target('B', ('quantile by (%(room)s) (0.1, instance:coolmesh_thermal_headroom_celsius:min{job=~"$job", %(room)s=~"$cluster", %(instance)s=~"$instance"})' % L), legend=('{{%(room)s}} p10' % L)),
                    g.target('C', ('quantile by (%(room)s) (0.5, instance:coolmesh_thermal_headroom_celsius:min{job=~"$job", %(room)s=~"$cluster", %(instance)s=~"$instance"})' % L), legend=('{{%(room)s}} median' % L)),
                  ],
                  patch={
                    fieldConfig: {
                      defaults: {
                        thresholds: {
                          steps: [
                            { color: 'red', value: null },
                            { color: 'orange', value: 5 },
                            { color: 'yellow', value: 10 },
                            { color: 'transparent', value: 20 },
                          ],
                        },
                        custom: { fillOpacity: 0, axisSoftMin: 0, thresholdsStyle: { mode: 'area' } },
                      },
                    },
                    options: { tooltip: { sort: 'asc' } },
                  }),
          g.panel('timeseries',
                  14,
                  'Temperature trend: steepest and 90th percentile; nodes projected critical',
                  pos=[12, 31, 12, 8],
                  unit='suffix:°C/min',
                  description="Per room: the steepest rise of any node's hottest sensor and the rise 90% of the nodes stay below (°C per minute, left axis), and how many nodes are projected to reach a critical threshold within 15 minutes at their current trend (right axis).",
                  targets=[
                    g.target('A', ('max by (%(room)s) (instance:coolmesh_thermal_trend_celsius_per_minute:max{job=~"$job", %(room)s=~"$cluster", %(instance)s=~"$instance"})' % L), legend=('{{%(room)s}} steepest' % L)),
                    g.target('B', ('quantile by (%(room)s) (0.9, instance:coolmesh_thermal_trend_celsius_per_minute:max{job=~"$job", %(room)s=~"$cluster", %(instance)s=~"$instance"})' % L), legend=('{{%(room)s}} p90' % L)),
                    g.target('C', ('count by (%(room)s) (instance:coolmesh_thermal_time_to_critical_seconds:min{job=~"$job", %(room)s=~"$cluster", %(instance)s=~"$instance"} < 900) or sum by (%(room)s) (0 * cluster:coolmesh_node_info:count{job=~"$job", %(room)s=~"$cluster"})' % L), legend=('{{%(room)s}} critical within 15 min' % L)),
                  ],
                  patch={
                    fieldConfig: {
                      defaults: { custom: { fillOpacity: 0 } },
                      overrides: [
                        {
                          matcher: { id: 'byRegexp', options: '.* critical within 15 min$' },
                          properties: [
                            { id: 'unit', value: 'none' },
                            { id: 'decimals', value: 0 },
                            { id: 'custom.axisPlacement', value: 'right' },
                            { id: 'custom.drawStyle', value: 'bars' },
                            { id: 'color', value: { mode: 'fixed', fixedColor: 'red' } },
                          ],
                        },
                      ],
                    },
                  }),
          g.row(15, 'State machine', y=39),
          g.panel('timeseries',
                  16,
                  'Nodes per state over time',
                  pos=[0, 40, 12, 8],
                  unit='none',
                  description="Agents in each state (cluster:coolmesh_fsm_state:count, stacked), normal hidden from the stack's bottom so the others stay readable: toggle it in the legend.",
                  targets=[
                    g.target('A', ('sum by (state) (cluster:coolmesh_fsm_state:count{state!="normal", job=~"$job", %(room)s=~"$cluster"})' % L), legend='{{state}}'),
                  ],
                  patch={
                    fieldConfig: {
                      defaults: {
                        decimals: 0,
                        custom: { fillOpacity: 60, axisSoftMin: 0, stacking: { mode: 'normal' } },
                      },
                      overrides: [
                        {
                          matcher: { id: 'byName', options: 'maintenance' },
                          properties: [{ id: 'color', value: { mode: 'fixed', fixedColor: 'blue' } }],
                        },
                        {
                          matcher: { id: 'byName', options: 'local_fault' },
                          properties: [{ id: 'color', value: { mode: 'fixed', fixedColor: 'yellow' } }],
                        },
                        {
                          matcher: { id: 'byName', options: 'pre_fail' },
                          properties: [{ id: 'color', value: { mode: 'fixed', fixedColor: 'orange' } }],
                        },
                        {
                          matcher: { id: 'byName', options: 'shutdown' },
                          properties: [{ id: 'color', value: { mode: 'fixed', fixedColor: 'red' } }],
                        },
                      ],
                    },
                  }),
          g.panel('timeseries',
                  19,
                  'Transitions',
                  pos=[12, 40, 12, 8],
                  unit='none',
                  description='State machine transitions per interval, by target state and reason.',
                  targets=[
                    g.target('A', ('sum by (to, reason) (increase(coolmesh_fsm_transitions_total{job=~"$job", %(instance)s=~"$instance"}[$__rate_interval]) * on (%(group)s, %(instance)s) group_left (%(room)s) coolmesh_node_info{job=~"$job", %(room)s=~"$cluster"})' % L), legend='→ {{to}} ({{reason}})'),
                  ],
                  patch={
                    fieldConfig: {
                      defaults: { custom: { drawStyle: 'bars', fillOpacity: 60, stacking: { mode: 'normal' } } },
                    },
                  }),
          g.panel('bargauge',
                  20,
                  'Soonest shutdowns (10)',
                  pos=[0, 48, 12, 8],
                  unit='s',
                  description='The ten pending shutdown deadlines that fire first; the table "Nodes not normal" lists all of them. Click a bar for the node dashboard.',
                  targets=[
                    g.target('A', ('sort(bottomk(10, instance:coolmesh_shutdown_deadline_timestamp_seconds:min{job=~"$job", %(room)s=~"$cluster", %(instance)s=~"$instance"} - time()))' % L), legend=('{{%(node)s}}' % L), instant=true),
                  ],
                  patch={
                    fieldConfig: {
                      defaults: {
                        thresholds: {
                          steps: [
                            { color: 'red', value: null },
                            { color: 'orange', value: 120 },
                            { color: 'yellow', value: 300 },
                          ],
                        },
                        links: [
                          {
                            title: 'Open node dashboard',
                            targetBlank: false,
                            url: ('/d/coolmesh-node/coolmesh-node?var-datasource=${datasource}&var-job=${__field.labels.job}&var-cluster=${__field.labels.%(room)s}&var-instance=${__field.labels.%(instance)s}&${__url_time_range}' % L),
                          },
                        ],
                      },
                    },
                  }),
          g.panel('bargauge',
                  23,
                  'Maintenance windows ending first (10)',
                  pos=[12, 48, 12, 8],
                  unit='s',
                  description='The ten maintenance windows that end first (automatic shutdown is held until then); the state counts above say how many nodes are in maintenance.',
                  targets=[
                    g.target('A', ('sort(bottomk(10, (coolmesh_maintenance_until_timestamp_seconds{job=~"$job", %(instance)s=~"$instance"} - time()) * on (%(group)s, %(instance)s) group_left (%(room)s, %(node)s) coolmesh_node_info{job=~"$job", %(room)s=~"$cluster"}))' % L), legend=('{{%(node)s}}' % L), instant=true),
                  ],
                  patch={
                    fieldConfig: {
                      defaults: {
                        thresholds: { steps: [{ color: 'blue', value: null }] },
                        links: [
                          {
                            title: 'Open node dashboard',
                            targetBlank: false,
                            url: ('/d/coolmesh-node/coolmesh-node?var-datasource=${datasource}&var-job=${__field.labels.job}&var-cluster=${__field.labels.%(room)s}&var-instance=${__field.labels.%(instance)s}&${__url_time_range}' % L),
                          },
                        ],
                      },
                    },
                  }),
          g.panel('stat',
                  21,
                  'Shutdowns executed',
                  pos=[0, 56, 8, 4],
                  unit='none',
                  description='Agents that have run their shutdown command (or would have, in dry run) and are still scraped.',
                  targets=[
                    g.target('A', ('sum(coolmesh_shutdown_executed{job=~"$job", %(instance)s=~"$instance"} * on (%(group)s, %(instance)s) group_left (%(room)s) coolmesh_node_info{job=~"$job", %(room)s=~"$cluster"}) or vector(0)' % L), instant=true),
                  ],
                  patch={ fieldConfig: { defaults: { decimals: 0 } }, options: { textMode: 'value' } }),
          g.panel('stat',
                  22,
                  'Shutdown command failures',
                  pos=[8, 56, 8, 4],
                  unit='none',
                  description='Failed runs of the shutdown command in the selected time range.',
                  targets=[
                    g.target('A', ('sum(increase(coolmesh_shutdown_command_failures_total{job=~"$job", %(instance)s=~"$instance"}[$__range]) * on (%(group)s, %(instance)s) group_left (%(room)s) coolmesh_node_info{job=~"$job", %(room)s=~"$cluster"}) or vector(0)' % L), instant=true),
                  ]),
          g.panel('stat',
                  24,
                  'Agents in dry run',
                  pos=[16, 56, 8, 4],
                  unit='none',
                  description='Agents that log their shutdown command instead of running it.',
                  targets=[
                    g.target('A', ('sum(coolmesh_shutdown_dry_run{job=~"$job", %(instance)s=~"$instance"} * on (%(group)s, %(instance)s) group_left (%(room)s) coolmesh_node_info{job=~"$job", %(room)s=~"$cluster"}) or vector(0)' % L)),
                  ],
                  patch={
                    fieldConfig: {
                      defaults: {
                        thresholds: { steps: [{ color: 'green', value: null }, { color: 'yellow', value: 1 }] },
                      },
                    },
                  }),
          g.row(25, 'Power', y=60),
          g.panel('timeseries',
                  26,
                  'Power votes per target',
                  pos=[0, 61, 12, 8],
                  unit='none',
                  description='Fresh observations of each power target (highest count any agent reports), against the quorum.',
                  targets=[
                    g.target('A', ('cluster:coolmesh_cluster_power_votes:max{job=~"$job", %(room)s=~"$cluster"}' % L), legend=('{{%(room)s}} {{target}} {{vote}}' % L)),
                    g.target('B', ('cluster:coolmesh_cluster_quorum:max{job=~"$job", %(room)s=~"$cluster"}' % L), legend=('{{%(room)s}} quorum' % L)),
                  ],
                  patch={
                    fieldConfig: {
                      defaults: { custom: { axisSoftMin: 0 } },
                      overrides: [
                        {
                          matcher: { id: 'byRegexp', options: '.* quorum$' },
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
                  27,
                  'Agents seeing mains power',
                  pos=[12, 61, 12, 8],
                  unit='none',
                  description='Per room, agents whose power policy sees mains up, and down (coolmesh_power_up), over time.',
                  targets=[
                    g.target('A', ('sum by (%(room)s) (instance:coolmesh_power_up:min{job=~"$job", %(room)s=~"$cluster", %(instance)s=~"$instance"})' % L), legend=('{{%(room)s}} up' % L)),
                    g.target('B', ('count by (%(room)s) (instance:coolmesh_power_up:min{job=~"$job", %(room)s=~"$cluster", %(instance)s=~"$instance"}) - sum by (%(room)s) (instance:coolmesh_power_up:min{job=~"$job", %(room)s=~"$cluster", %(instance)s=~"$instance"})' % L), legend=('{{%(room)s}} down' % L)),
                  ],
                  patch={
                    fieldConfig: {
                      defaults: { decimals: 0, custom: { axisSoftMin: 0 } },
                      overrides: [
                        {
                          matcher: { id: 'byRegexp', options: '.* down$' },
                          properties: [{ id: 'color', value: { mode: 'fixed', fixedColor: 'red' } }],
                        },
                        {
                          matcher: { id: 'byRegexp', options: '.* up$' },
                          properties: [{ id: 'color', value: { mode: 'fixed', fixedColor: 'green' } }],
                        },
                      ],
                    },
                  }),
          g.panel('timeseries',
                  28,
                  'Power probe failures',
                  pos=[0, 69, 12, 8],
                  unit='cps',
                  description='Failed probes per second, by target.',
                  targets=[
                    g.target('A', ('sum by (target) (rate(coolmesh_power_probe_failures_total{job=~"$job", %(instance)s=~"$instance"}[$__rate_interval]) * on (%(group)s, %(instance)s) group_left (%(room)s) coolmesh_node_info{job=~"$job", %(room)s=~"$cluster"})' % L), legend='{{target}}'),
                  ]),
          g.panel('timeseries',
                  29,
                  'Power probe latency (p99)',
                  pos=[12, 69, 12, 8],
                  unit='s',
                  description='99th percentile probe latency by target, over all selected agents.',
                  targets=[
                    g.target('A', ('histogram_quantile(0.99, sum by (target, le) (rate(coolmesh_power_probe_duration_seconds_bucket{job=~"$job", %(instance)s=~"$instance"}[$__rate_interval]) * on (%(group)s, %(instance)s) group_left (%(room)s) coolmesh_node_info{job=~"$job", %(room)s=~"$cluster"}))' % L), legend='{{target}}'),
                  ]),
          g.row(30, 'Cluster', y=77),
          g.panel('timeseries',
                  31,
                  'Live agents seen by the nodes',
                  pos=[0, 78, 12, 8],
                  unit='none',
                  description='Per room, the fewest, median and most live agents (itself included) any node sees, against the agents Prometheus scrapes: a partition shows as the fewest below the line; CoolmeshClusterPartitioned names the nodes.',
                  targets=[
                    g.target('A', ('min by (%(room)s) (instance:coolmesh_cluster_peers:max{state="alive", job=~"$job", %(room)s=~"$cluster", %(instance)s=~"$instance"}) + 1' % L), legend=('{{%(room)s}} fewest' % L)),
                    g.target('B', ('quantile by (%(room)s) (0.5, instance:coolmesh_cluster_peers:max{state="alive", job=~"$job", %(room)s=~"$cluster", %(instance)s=~"$instance"}) + 1' % L), legend=('{{%(room)s}} median' % L)),
                    g.target('C', ('max by (%(room)s) (instance:coolmesh_cluster_peers:max{state="alive", job=~"$job", %(room)s=~"$cluster", %(instance)s=~"$instance"}) + 1' % L), legend=('{{%(room)s}} most' % L)),
                    g.target('D', ('cluster:coolmesh_node_info:count{job=~"$job", %(room)s=~"$cluster"}' % L), legend=('{{%(room)s}} agents scraped' % L)),
                  ],
                  patch={
                    fieldConfig: {
                      defaults: { custom: { axisSoftMin: 0 } },
                      overrides: [
                        {
                          matcher: { id: 'byRegexp', options: '.* agents scraped$' },
                          properties: [
                            { id: 'custom.lineStyle', value: { dash: [10, 10], fill: 'dash' } },
                            { id: 'custom.fillOpacity', value: 0 },
                            { id: 'color', value: { mode: 'fixed', fixedColor: 'blue' } },
                          ],
                        },
                      ],
                    },
                  }),
          g.panel('timeseries',
                  32,
                  'Suspect and dead peers',
                  pos=[12, 78, 12, 8],
                  unit='none',
                  description='Highest number of suspect and dead peers any agent reports.',
                  targets=[
                    g.target('A', ('max by (%(room)s, state) (instance:coolmesh_cluster_peers:max{state=~"suspect|dead", job=~"$job", %(room)s=~"$cluster", %(instance)s=~"$instance"})' % L), legend=('{{%(room)s}} {{state}}' % L)),
                  ],
                  patch={ fieldConfig: { defaults: { custom: { axisSoftMin: 0 } } } }),
          g.panel('table',
                  33,
                  'Peers reported not alive',
                  pos=[0, 86, 12, 8],
                  unit='none',
                  description='Peers that at least one agent sees suspect or dead, with the number of agents reporting it (instance:coolmesh_peer_up:not_alive). A peer a majority reports and none sees alive raises CoolmeshPeerLost. Empty when every peer is alive.',
                  targets=[
                    g.target('A', ('sort_desc(sum by (%(room)s, peer) (instance:coolmesh_peer_up:not_alive{job=~"$job", %(room)s=~"$cluster", %(instance)s=~"$instance"}))' % L), instant=true, format='table'),
                  ],
                  patch={
                    fieldConfig: { defaults: { decimals: 0 } },
                    options: { sortBy: [{ displayName: 'agents reporting', desc: true }] },
                    transformations: [
                      {
                        id: 'organize',
                        options: { excludeByName: { Time: true }, renameByName: { Value: 'agents reporting' } },
                      },
                    ],
                  }),
          g.panel('timeseries',
                  34,
                  'Overheating peers vs quorum',
                  pos=[12, 86, 12, 8],
                  unit='none',
                  description='Fresh peers overheating or heating fast; at the quorum the room counts as lost cooling.',
                  targets=[
                    g.target('A', ('cluster:coolmesh_cluster_overheating_peers:max{job=~"$job", %(room)s=~"$cluster"}' % L), legend=('{{%(room)s}} overheating' % L)),
                    g.target('B', ('cluster:coolmesh_cluster_quorum:max{job=~"$job", %(room)s=~"$cluster"}' % L), legend=('{{%(room)s}} quorum' % L)),
                  ],
                  patch={
                    fieldConfig: {
                      defaults: { custom: { axisSoftMin: 0 } },
                      overrides: [
                        {
                          matcher: { id: 'byRegexp', options: '.* quorum$' },
                          properties: [
                            { id: 'custom.lineStyle', value: { dash: [10, 10], fill: 'dash' } },
                            { id: 'custom.fillOpacity', value: 0 },
                            { id: 'color', value: { mode: 'fixed', fixedColor: 'red' } },
                          ],
                        },
                      ],
                    },
                  }),
          g.row(35, 'Gossip', y=94),
          g.panel('timeseries',
                  36,
                  'Gossip messages',
                  pos=[0, 95, 8, 8],
                  unit='cps',
                  description='Messages per second over all selected agents, by direction and kind.',
                  targets=[
                    g.target('A', ('sum by (direction, kind) (rate(coolmesh_gossip_messages_total{job=~"$job", %(instance)s=~"$instance"}[$__rate_interval]) * on (%(group)s, %(instance)s) group_left (%(room)s) coolmesh_node_info{job=~"$job", %(room)s=~"$cluster"})' % L), legend='{{direction}} {{kind}}'),
                  ]),
          g.panel('timeseries',
                  37,
                  'Messages sent per agent',
                  pos=[8, 95, 8, 8],
                  unit='cps',
                  description='Outbound gossip messages per second per agent: the efficiency figure to keep flat as the room grows.',
                  targets=[
                    g.target('A', ('sum by (%(room)s) (rate(coolmesh_gossip_messages_total{direction="out", job=~"$job", %(instance)s=~"$instance"}[$__rate_interval]) * on (%(group)s, %(instance)s) group_left (%(room)s) coolmesh_node_info{job=~"$job", %(room)s=~"$cluster"}) / on (%(room)s) count by (%(room)s) (coolmesh_node_info{job=~"$job", %(room)s=~"$cluster", %(instance)s=~"$instance"})' % L), legend=('{{%(room)s}}' % L)),
                  ]),
          g.panel('timeseries',
                  38,
                  'Gossip bandwidth',
                  pos=[16, 95, 8, 8],
                  unit='Bps',
                  description='Gossip bytes per second, by direction.',
                  targets=[
                    g.target('A', ('sum by (direction) (rate(coolmesh_gossip_bytes_total{job=~"$job", %(instance)s=~"$instance"}[$__rate_interval]) * on (%(group)s, %(instance)s) group_left (%(room)s) coolmesh_node_info{job=~"$job", %(room)s=~"$cluster"})' % L), legend='{{direction}}'),
                  ]),
          g.panel('timeseries',
                  39,
                  'Rejected gossip by reason',
                  pos=[0, 103, 12, 8],
                  unit='cps',
                  description='Peer input rejected per second. bad_signature / unauthorized mean someone outside the cluster or a broken peer.',
                  targets=[
                    g.target('A', ('sum by (reason) (rate(coolmesh_gossip_rejected_total{job=~"$job", %(instance)s=~"$instance"}[$__rate_interval]) * on (%(group)s, %(instance)s) group_left (%(room)s) coolmesh_node_info{job=~"$job", %(room)s=~"$cluster"})' % L), legend='{{reason}}'),
                  ]),
          g.panel('timeseries',
                  40,
                  'Rejected gossip: top 10 nodes',
                  pos=[12, 103, 12, 8],
                  unit='cps',
                  description='The ten nodes rejecting the most peer input (all reasons), per second.',
                  targets=[
                    g.target('A', ('topk(10, sum by (%(node)s) (rate(coolmesh_gossip_rejected_total{job=~"$job", %(instance)s=~"$instance"}[$__rate_interval]) * on (%(group)s, %(instance)s) group_left (%(room)s, %(node)s) coolmesh_node_info{job=~"$job", %(room)s=~"$cluster"}))' % L), legend=('{{%(node)s}}' % L)),
                  ]),
          g.row(41, 'Counters and versions', y=111),
          g.panel('bargauge',
                  42,
                  'Cluster-wide counters',
                  pos=[0, 112, 12, 8],
                  unit='none',
                  description='CRDT counters, cluster-wide totals (highest value any agent reports).',
                  targets=[
                    g.target('A', ('max by (%(room)s, name) (coolmesh_crdt_value{job=~"$job", %(instance)s=~"$instance"} * on (%(group)s, %(instance)s) group_left (%(room)s) coolmesh_node_info{job=~"$job", %(room)s=~"$cluster"})' % L), legend=('{{%(room)s}} {{name}}' % L), instant=true),
                  ],
                  patch={
                    fieldConfig: { defaults: { min: null, thresholds: { steps: [{ color: 'green', value: null }] } } },
                  }),
          g.panel('timeseries',
                  43,
                  'Counter convergence',
                  pos=[12, 112, 12, 8],
                  unit='none',
                  description="Spread of each counter's cluster-wide value across agents (max - min). Stays near 0 when gossip converges.",
                  targets=[
                    g.target('A', ('max by (%(room)s, name) (coolmesh_crdt_value{job=~"$job", %(instance)s=~"$instance"} * on (%(group)s, %(instance)s) group_left (%(room)s) coolmesh_node_info{job=~"$job", %(room)s=~"$cluster"}) - min by (%(room)s, name) (coolmesh_crdt_value{job=~"$job", %(instance)s=~"$instance"} * on (%(group)s, %(instance)s) group_left (%(room)s) coolmesh_node_info{job=~"$job", %(room)s=~"$cluster"})' % L), legend=('{{%(room)s}} {{name}}' % L)),
                  ],
                  patch={ fieldConfig: { defaults: { custom: { axisSoftMin: 0 } } } }),
          g.panel('table',
                  44,
                  'Agent versions',
                  pos=[0, 120, 24, 6],
                  unit='none',
                  description='Agents by build.',
                  targets=[
                    g.target('A', ('count by (version, revision, rustc) (coolmesh_build_info{job=~"$job", %(instance)s=~"$instance"} * on (%(group)s, %(instance)s) group_left (%(room)s) coolmesh_node_info{job=~"$job", %(room)s=~"$cluster"})' % L), instant=true, format='table'),
                  ],
                  patch={
                    fieldConfig: { defaults: { color: { mode: 'palette-classic' } } },
                    transformations: [
                      {
                        id: 'organize',
                        options: { excludeByName: { Time: true }, renameByName: { Value: 'agents' } },
                      },
                    ],
                  }),
        ],
      },
  },
}
