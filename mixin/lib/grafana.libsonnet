// Small Grafana helpers (no grafonnet): a panel is one of the types below
// with its usual options, a unit, targets, and a JSON merge patch (RFC 7396:
// objects merge, arrays and values replace, null removes) for what differs.
local ds = { type: 'prometheus', uid: '${datasource}' };
{
  ds:: ds,

  // A PromQL query. Range queries unless instant.
  target(refId, expr, legend='__auto', instant=false, format='time_series'):: {
    datasource: ds,
    editorMode: 'code',
    expr: expr,
    legendFormat: legend,
    refId: refId,
    range: !instant,
    instant: instant,
    format: format,
  },

  // pos: [x, y, w, h] on the 24-column grid.
  panel(type, id, title, pos, unit, description, targets, patch={})::
    std.mergePatch(
      {
        type: type,
        title: title,
        description: description,
        datasource: ds,
        targets: targets,
        id: id,
        gridPos: { x: pos[0], y: pos[1], w: pos[2], h: pos[3] },
      } + $.panelDefaults[type] + { fieldConfig+: { defaults+: { unit: unit } } },
      patch
    ),

  row(id, title, y, collapsed=false, panels=[]):: {
    type: 'row',
    title: title,
    collapsed: collapsed,
    id: id,
    gridPos: { h: 1, w: 24, x: 0, y: y },
    panels: panels,
  },

  datasourceVariable:: {
    type: 'datasource',
    name: 'datasource',
    label: 'Data source',
    query: 'prometheus',
    current: {},
    options: [],
    refresh: 1,
    regex: '',
    hide: 0,
    includeAll: false,
    multi: false,
    skipUrlSync: false,
  },

  // A variable from a Prometheus query (label_values(...)); multi adds "All"
  // (.*) as well.
  queryVariable(name, label, query, multi=true):: {
    type: 'query',
    name: name,
    label: label,
    datasource: ds,
    definition: query,
    query: {
      qryType: 1,
      query: query,
      refId: 'PrometheusVariableQueryEditor-VariableQuery',
    },
    refresh: 2,
    regex: '',
    sort: 1,
    multi: multi,
    includeAll: multi,
    current: {},
    options: [],
    hide: 0,
    skipUrlSync: false,
  } + (if multi then { allValue: '.*' } else {}),

  // The options every panel of a type starts from.
  panelDefaults:: {
    stat: {
      fieldConfig: {
        defaults: {
          color: { mode: 'thresholds' },
          thresholds: { mode: 'absolute', steps: [{ color: 'green', value: null }, { color: 'red', value: 1 }] },
          mappings: [],
        },
        overrides: [],
      },
      options: {
        reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false },
        colorMode: 'background',
        graphMode: 'none',
        justifyMode: 'auto',
        orientation: 'auto',
        textMode: 'auto',
        wideLayout: true,
        showPercentChange: false,
      },
    },
    table: {
      fieldConfig: {
        defaults: {
          color: { mode: 'thresholds' },
          thresholds: { mode: 'absolute', steps: [{ color: 'green', value: null }] },
          mappings: [],
          custom: { align: 'auto', cellOptions: { type: 'auto' }, inspect: false },
        },
        overrides: [],
      },
      options: {
        showHeader: true,
        cellHeight: 'sm',
        footer: { show: false, reducer: ['sum'], countRows: false, fields: '' },
      },
    },
    bargauge: {
      fieldConfig: {
        defaults: {
          color: { mode: 'thresholds' },
          thresholds: {
            mode: 'absolute',
            steps: [
              { color: 'red', value: null },
              { color: 'orange', value: 5 },
              { color: 'yellow', value: 10 },
              { color: 'green', value: 20 },
            ],
          },
          mappings: [],
          min: 0,
        },
        overrides: [],
      },
      options: {
        reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false },
        orientation: 'horizontal',
        displayMode: 'gradient',
        valueMode: 'color',
        namePlacement: 'auto',
        showUnfilled: true,
        sizing: 'auto',
        minVizHeight: 16,
        minVizWidth: 8,
        maxVizHeight: 300,
      },
    },
    heatmap: {
      fieldConfig: {
        defaults: {
          color: { mode: 'palette-classic' },
          thresholds: { mode: 'absolute', steps: [{ color: 'green', value: null }] },
          mappings: [],
          custom: {
            hideFrom: { legend: false, tooltip: false, viz: false },
            scaleDistribution: { type: 'linear' },
          },
        },
        overrides: [],
      },
      options: {
        calculate: false,
        cellGap: 1,
        color: {
          mode: 'scheme',
          scheme: 'Oranges',
          steps: 64,
          exponent: 0.5,
          fill: 'dark-orange',
          reverse: false,
        },
        exemplars: { color: 'rgba(255,0,255,0.7)' },
        filterValues: { le: 1e-09 },
        legend: { show: true },
        rowsFrame: { layout: 'auto' },
        tooltip: { mode: 'single', yHistogram: true, showColorScale: false },
        yAxis: { axisPlacement: 'left', reverse: false, unit: 'celsius' },
      },
    },
    timeseries: {
      fieldConfig: {
        defaults: {
          color: { mode: 'palette-classic' },
          thresholds: { mode: 'absolute', steps: [{ color: 'green', value: null }] },
          mappings: [],
          custom: {
            drawStyle: 'line',
            lineWidth: 1,
            fillOpacity: 10,
            showPoints: 'never',
            spanNulls: false,
            axisPlacement: 'auto',
            stacking: { mode: 'none', group: 'A' },
            thresholdsStyle: { mode: 'off' },
          },
        },
        overrides: [],
      },
      options: {
        legend: { displayMode: 'list', placement: 'bottom', showLegend: true },
        tooltip: { mode: 'multi', sort: 'desc' },
      },
    },
    'state-timeline': {
      fieldConfig: {
        defaults: {
          color: { mode: 'thresholds' },
          thresholds: { mode: 'absolute', steps: [{ color: 'green', value: null }] },
          mappings: [
            {
              type: 'value',
              options: {
                '0': { text: 'down', color: 'red', index: 0 },
                '1': { text: 'up', color: 'green', index: 1 },
              },
            },
          ],
          custom: { lineWidth: 0, fillOpacity: 80 },
        },
        overrides: [],
      },
      options: {
        mergeValues: true,
        showValue: 'auto',
        alignValue: 'left',
        rowHeight: 0.9,
        legend: { displayMode: 'list', placement: 'bottom', showLegend: false },
        tooltip: { mode: 'single', sort: 'none' },
      },
    },
  },
}
