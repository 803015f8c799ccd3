// prometheusAlerts: alerts/coolmesh.rules.yml. The alerts and, in the same
// file, the recording rules they read (group coolmesh.state, and
// instance:coolmesh_peer_up:not_alive next to CoolmeshPeerLost so that it is
// evaluated just before it), so that this file needs no other rule file.
//
// Conventions (alerts/README.md, "Conventions", has them in full):
// - Agents are selected with _config.coolmeshSelector.
// - Per-node alerts carry the group labels (job), instance, and the room and
//   node labels of coolmesh_node_info (coolmesh_cluster, coolmesh_node),
//   joined on (job, instance). When the agent itself is gone, its last
//   identity within a day is used.
// - Room-wide alerts (CoolmeshCoolingFailure, CoolmeshPowerLost,
//   CoolmeshAgentsDown, CoolmeshPeerLost) are aggregated by (job, room): one
//   alert per room, not one per agent, so they have no instance label.
// - Agents that power off take their series with them. The pages of a room
//   event must not resolve because of that, so the group coolmesh.state keeps
//   the last word of agents that stopped answering (for a day) and of the
//   room (power lost, cooling failed: until an agent reports it is over).
local u = import '../lib/util.libsonnet';

{
  prometheusAlerts+:: {
    local c = $._config,
    local L = c.L,
    local oneLine = u.oneLine,
    local T = c.thresholds,
    local runbook(name) = c.runbookURLPattern % std.asciiLower(name),
    groups+: [
      // Recording rules the alerts below rely on (evaluated first). Each keeps a
      // value through the agents' disappearance: an instance's rule carries its
      // last value forward while the agent is not scraped (for at most a day,
      // also after its target left service discovery); a room's rule is read with
      // last_over_time, 0 meaning "agents report it is over", absent meaning
      // "nobody reports", so the last verdict holds. Both are cheap: a carried
      // value is an instant lookup, and the room rules have one series per
      // cluster (and target).
      {
        name: 'coolmesh.state',
        rules: [
          // Unix time of the agent's last successful scrape, with its identity.
          // Carried forward for a day after it stops answering.
          {
            record: 'instance:coolmesh_node_info:last_seen',
            expr: |||
              max by (%(group)s, %(instance)s, %(room)s, %(node)s) (timestamp(coolmesh_node_info{%(selector)s}))
              or
              (instance:coolmesh_node_info:last_seen > time() - 86400)
            ||| % L,
          },
          // Where the agent's shutdown stood at its last scrape: 0 none, 1 pending
          // (a deadline) or started (state shutdown), 2 the command was run. Dry-run
          // agents are 0 (they never power off). Carried forward like last_seen.
          {
            record: 'instance:coolmesh_fsm_state:shutdown_phase',
            expr: |||
              (
                max by (%(group)s, %(instance)s) (
                    2 * (coolmesh_shutdown_executed{%(selector)s} == 1)
                  or on (%(group)s, %(instance)s)
                    (coolmesh_fsm_state{%(selector)s, state="shutdown"} == 1)
                  or on (%(group)s, %(instance)s)
                    (0 * coolmesh_shutdown_deadline_timestamp_seconds{%(selector)s} + 1)
                  or on (%(group)s, %(instance)s)
                    (0 * coolmesh_shutdown_executed{%(selector)s})
                )
                * on (%(group)s, %(instance)s)
                (coolmesh_shutdown_dry_run{%(selector)s} == bool 0)
              )
              or on (%(group)s, %(instance)s)
              (
                instance:coolmesh_fsm_state:shutdown_phase
                and on (%(group)s, %(instance)s)
                instance:coolmesh_node_info:last_seen
              )
            ||| % L,
          },
          // Power lost per room and target: the down votes when a quorum of them
          // is reported (the CoolmeshPowerLost condition), 0 when an agent reports
          // more up than down votes (power is back), absent when neither (the
          // agents have shut down, or too few are left to make a quorum).
          {
            record: 'cluster:coolmesh_cluster_power_votes:lost',
            expr: |||
              max by (%(group)s, %(room)s, target) (
                (
                  coolmesh_cluster_power_votes{%(selector)s, vote="down"}
                  >= on (%(group)s, %(instance)s) group_left ()
                  (coolmesh_cluster_quorum{%(selector)s} > 0)
                )
                * on (%(group)s, %(instance)s) group_left (%(room)s)
                  coolmesh_node_info{%(selector)s}
              )
              or on (%(group)s, %(room)s, target)
              0 * max by (%(group)s, %(room)s, target) (
                (
                  coolmesh_cluster_power_votes{%(selector)s, vote="up"}
                  > ignoring (vote)
                  coolmesh_cluster_power_votes{%(selector)s, vote="down"}
                )
                * on (%(group)s, %(instance)s) group_left (%(room)s)
                  coolmesh_node_info{%(selector)s}
              )
            ||| % L,
          },
          // Cooling failed per room: the servers affected (the CoolmeshCoolingFailure
          // condition), 0 when the agents report no node overheating or heating
          // steadily at all, absent when neither.
          {
            record: 'cluster:coolmesh_cluster_overheating_peers:failing',
            expr: |||
              (
                max by (%(group)s, %(room)s) (
                  (
                    coolmesh_cluster_overheating_peers{%(selector)s}
                    >= on (%(group)s, %(instance)s)
                    (coolmesh_cluster_quorum{%(selector)s} > 0)
                  )
                  * on (%(group)s, %(instance)s) group_left (%(room)s)
                    coolmesh_node_info{%(selector)s}
                )
                or on (%(group)s, %(room)s)
                count by (%(group)s, %(room)s) (
                  (
                    (coolmesh_fsm_reason{%(selector)s, reason="cooling"} == 1)
                    and on (%(group)s, %(instance)s)
                    (coolmesh_fsm_state{%(selector)s, state=~"pre_fail|shutdown"} == 1)
                  )
                  * on (%(group)s, %(instance)s) group_left (%(room)s)
                    coolmesh_node_info{%(selector)s}
                )
              )
              or on (%(group)s, %(room)s)
              0 * (
                max by (%(group)s, %(room)s) (
                  coolmesh_cluster_overheating_peers{%(selector)s}
                  * on (%(group)s, %(instance)s) group_left (%(room)s)
                    coolmesh_node_info{%(selector)s}
                ) == 0
              )
            ||| % L,
          },
        ],
      },
      {
        name: 'coolmesh.agent',
        rules: [
          // A server that shut itself down (or went away with its shutdown
          // pending) is expected to be off: CoolmeshShutdownExecuted or
          // CoolmeshShutdownUnconfirmed page for it. This waits 55 minutes more
          // for it (so it fires an hour after its last scrape) instead of being
          // inhibited by those pages for the day they may last: a server powered
          // back on whose agent does not start is reported within the hour.
          {
            alert: 'CoolmeshAgentDown',
            expr: |||
              (
                (time() - topk by (%(group)s, %(instance)s) (1, instance:coolmesh_node_info:last_seen))
                or on (%(group)s, %(instance)s)
                (up{%(selector)s} == 0)
              )
              unless on (%(group)s, %(instance)s)
              (up{%(selector)s} == 1)
              unless on (%(group)s, %(instance)s)
              (
                (instance:coolmesh_fsm_state:shutdown_phase > 0)
                and on (%(group)s, %(instance)s)
                (time() - max by (%(group)s, %(instance)s) (instance:coolmesh_node_info:last_seen) < 3300)
              )
            ||| % L,
            'for': c.alertFor.CoolmeshAgentDown,
            labels: {
              severity: c.severities.warning,
            },
            annotations: {
              summary: 'coolmesh agent is not being scraped.',
              description: oneLine(|||
                Prometheus has not scraped the coolmesh agent on
                {{ $labels.%(instance)s }}{{ with $labels.%(node)s }} (node
                {{ . }}){{ end }} for %(for)s ({{ if gt $value 0.0 }}last
                scraped {{ $value | humanizeDuration }} ago{{ else }}never
                scraped successfully{{ end }}; an agent that left service
                discovery is still reported for a day, one that shut its
                server down after an hour). While the agent is down this
                server neither gossips nor protects itself: it will not shut
                down on a cooling or power failure.
              ||| % (L { 'for': u.words(c.alertFor.CoolmeshAgentDown) })),
              runbook_url: runbook('CoolmeshAgentDown'),
            },
          },
          {
            alert: 'CoolmeshAgentsDown',
            expr: |||
              (
                count by (%(group)s, %(room)s) (
                  topk by (%(group)s, %(instance)s) (1, instance:coolmesh_node_info:last_seen)
                  unless on (%(group)s, %(instance)s) (up{%(selector)s} == 1)
                  unless on (%(group)s, %(instance)s) (instance:coolmesh_fsm_state:shutdown_phase > 0)
                ) >= %(min)d
              )
              and on (%(group)s, %(room)s)
              (
                count by (%(group)s, %(room)s) (
                  topk by (%(group)s, %(instance)s) (1, instance:coolmesh_node_info:last_seen)
                  unless on (%(group)s, %(instance)s) (up{%(selector)s} == 1)
                  unless on (%(group)s, %(instance)s) (instance:coolmesh_fsm_state:shutdown_phase > 0)
                )
                >= on (%(group)s, %(room)s)
                %(fraction)s * count by (%(group)s, %(room)s) (topk by (%(group)s, %(instance)s) (1, instance:coolmesh_node_info:last_seen))
              )
            ||| % (L { min: T.agentsDownMin, fraction: '%g' % T.agentsDownFraction }),
            'for': c.alertFor.CoolmeshAgentsDown,
            labels: {
              severity: c.severities.critical,
            },
            annotations: {
              summary: 'Many coolmesh agents of a room stopped answering without shutting down.',
              description: oneLine(|||
                In cluster {{ $labels.%(room)s }}, {{ $value }} agents seen
                in the last day (at least %(percent)d%% of them) have not
                been scraped for %(for)s, and none of them had a shutdown
                pending or running: the servers lost power or network
                without deciding to (UPS exhausted, a PDU, a switch), or
                Prometheus lost its way to the room. Those servers are not
                protected.
              ||| % (L {
                       'for': u.words(c.alertFor.CoolmeshAgentsDown),
                       percent: std.floor(T.agentsDownFraction * 100 + 0.5),
                     })),
              runbook_url: runbook('CoolmeshAgentsDown'),
            },
          },
          {
            alert: 'CoolmeshSensorSourceDown',
            expr: |||
              (coolmesh_source_up{%(selector)s,source!="ipmi"} == 0)
              * on (%(group)s, %(instance)s) group_left (%(room)s, %(node)s)
                coolmesh_node_info{%(selector)s}
            ||| % L,
            'for': c.alertFor.CoolmeshSensorSourceDown,
            labels: {
              severity: c.severities.warning,
            },
            annotations: {
              summary: 'A coolmesh sensor source keeps failing.',
              description: oneLine(|||
                Sensor source {{ $labels.source }} on
                {{ $labels.%(instance)s }} (node {{ $labels.%(node)s }}) has
                failed every read for %(for)s (coolmesh_source_up =
                {{ $value }}). Temperatures from this source are missing, so
                overheating may go unnoticed.
              ||| % (L { 'for': u.words(c.alertFor.CoolmeshSensorSourceDown) })),
              runbook_url: runbook('CoolmeshSensorSourceDown'),
            },
          },
          {
            // A silent BMC is this alert, not CoolmeshSensorSourceDown too.
            alert: 'CoolmeshBmcNotAnswering',
            expr: |||
              (coolmesh_source_up{%(selector)s,source="ipmi"} == 0)
              * on (%(group)s, %(instance)s) group_left (%(room)s, %(node)s)
                coolmesh_node_info{%(selector)s}
            ||| % L,
            'for': c.alertFor.CoolmeshBmcNotAnswering,
            labels: {
              severity: c.severities.warning,
            },
            annotations: {
              summary: "A server's BMC stopped answering coolmesh's IPMI reads.",
              description: oneLine(|||
                The ipmi sensor source on {{ $labels.%(instance)s }} (node
                {{ $labels.%(node)s }}) has failed every read for %(for)s
                (coolmesh_source_up = {{ $value }}): the BMC hangs, answers
                garbage or no temperature at all, or ipmitool cannot reach it.
                Its inlet and exhaust sensors are missing, so this server votes
                on cooling by its CPU sensors alone (slower to tell a cooling
                failure from a job).
              ||| % (L { 'for': u.words(c.alertFor.CoolmeshBmcNotAnswering) })),
              runbook_url: runbook('CoolmeshBmcNotAnswering'),
            },
          },
          {
            alert: 'CoolmeshNoTemperatureReadings',
            expr: |||
              (
                (
                  sum by (%(group)s, %(instance)s) (coolmesh_source_readings{%(selector)s})
                  or on (%(group)s, %(instance)s)
                  0 * group by (%(group)s, %(instance)s) (coolmesh_node_info{%(selector)s})
                )
                unless on (%(group)s, %(instance)s)
                coolmesh_thermal_hottest_celsius{%(selector)s}
              )
              * on (%(group)s, %(instance)s) group_left (%(room)s, %(node)s)
                coolmesh_node_info{%(selector)s}
            ||| % L,
            'for': c.alertFor.CoolmeshNoTemperatureReadings,
            labels: {
              severity: c.severities.warning,
            },
            annotations: {
              summary: 'A coolmesh agent has no plausible temperature reading.',
              description: oneLine(|||
                The agent on {{ $labels.%(instance)s }} (node
                {{ $labels.%(node)s }}) has reported no plausible
                temperature for %(for)s; its sources produced {{ $value }}
                readings in their last read. Thermal protection of this
                server is blind.
              ||| % (L { 'for': u.words(c.alertFor.CoolmeshNoTemperatureReadings) })),
              runbook_url: runbook('CoolmeshNoTemperatureReadings'),
            },
          },
          {
            alert: 'CoolmeshWatchdog',
            expr: |||
              group by (%(group)s) (up{%(selector)s})
            ||| % L,
            'for': c.alertFor.CoolmeshWatchdog,
            labels: {
              severity: c.severities.none,
            },
            annotations: {
              summary: 'Always firing while the alerting pipeline works.',
              description: oneLine(|||
                This alert fires all the time while Prometheus evaluates the
                coolmesh rules and has targets in job {{ $labels.job }}
                (value {{ $value }}). Route it to a dead man's switch: when
                it stops arriving, Prometheus, its rules, its coolmesh
                targets or Alertmanager are broken, and no other coolmesh
                alert would reach anyone.
              ||| % L),
              runbook_url: runbook('CoolmeshWatchdog'),
            },
          },
          {
            alert: 'CoolmeshConfigReloadFailed',
            expr: |||
              max_over_time(coolmesh_config_last_reload_successful{%(selector)s}[5m])
              * on (%(group)s, %(instance)s) group_left (%(room)s, %(node)s)
                coolmesh_node_info{%(selector)s}
              == 0
            ||| % L,
            'for': c.alertFor.CoolmeshConfigReloadFailed,
            labels: {
              severity: c.severities.warning,
            },
            annotations: {
              summary: 'A coolmesh agent could not reload its config file.',
              description: oneLine(|||
                The agent on {{ $labels.%(instance)s }} (node
                {{ $labels.%(node)s }}) refused its config file at the last
                reload (SIGHUP or POST /-/reload) and still runs the
                previous one: the change is not in force, and the next
                restart would fail on the same file (last reload successful:
                {{ $value }}). Its log names the key and the line.
              ||| % L),
              runbook_url: runbook('CoolmeshConfigReloadFailed'),
            },
          },
        ],
      },
      {
        name: 'coolmesh.thermal',
        rules: [
          {
            alert: 'CoolmeshTemperatureHigh',
            expr: |||
              (
                coolmesh_temperature_celsius{%(selector)s}
                >= on (%(group)s, %(instance)s, chip, sensor)
                coolmesh_temperature_max_celsius{%(selector)s}
              )
              * on (%(group)s, %(instance)s) group_left (%(room)s, %(node)s)
                coolmesh_node_info{%(selector)s}
            ||| % L,
            'for': c.alertFor.CoolmeshTemperatureHigh,
            labels: {
              severity: c.severities.warning,
            },
            annotations: {
              summary: 'A sensor is at or above its high threshold.',
              description: oneLine(|||
                Sensor {{ $labels.chip }}/{{ $labels.sensor }} on
                {{ $labels.%(instance)s }} (node {{ $labels.%(node)s }}) has
                been at or above its high (max) threshold for %(for)s; it
                reads {{ $value | humanize }} °C.
              ||| % (L { 'for': u.words(c.alertFor.CoolmeshTemperatureHigh) })),
              runbook_url: runbook('CoolmeshTemperatureHigh'),
            },
          },
          {
            alert: 'CoolmeshTemperatureCritical',
            expr: |||
              (
                coolmesh_temperature_celsius{%(selector)s}
                >= on (%(group)s, %(instance)s, chip, sensor)
                coolmesh_temperature_critical_celsius{%(selector)s}
              )
              * on (%(group)s, %(instance)s) group_left (%(room)s, %(node)s)
                coolmesh_node_info{%(selector)s}
            ||| % L,
            'for': c.alertFor.CoolmeshTemperatureCritical,
            labels: {
              severity: c.severities.critical,
              trigger: 'threshold',
            },
            annotations: {
              summary: 'A sensor is at or above its critical threshold.',
              description: oneLine(|||
                Sensor {{ $labels.chip }}/{{ $labels.sensor }} on
                {{ $labels.%(instance)s }} (node {{ $labels.%(node)s }}) has
                been at or above its critical threshold for %(for)s; it
                reads {{ $value | humanize }} °C. Hardware protection or the
                coolmesh state machine will shut this server down soon.
              ||| % (L { 'for': u.words(c.alertFor.CoolmeshTemperatureCritical) })),
              runbook_url: runbook('CoolmeshTemperatureCritical'),
            },
          },
          {
            alert: 'CoolmeshTemperatureCritical',
            expr: |||
              (coolmesh_thermal_time_to_critical_seconds{%(selector)s} < %(ttc)d)
              * on (%(group)s, %(instance)s) group_left (%(room)s, %(node)s)
                coolmesh_node_info{%(selector)s}
            ||| % (L { ttc: T.timeToCriticalSeconds }),
            'for': c.alertFor.CoolmeshTemperatureCritical,
            labels: {
              severity: c.severities.critical,
              trigger: 'prediction',
            },
            annotations: {
              summary: 'A server is projected to reach its critical temperature within %s.' % u.secondsWords(T.timeToCriticalSeconds),
              description: oneLine(|||
                At the current trend the hottest sensor on
                {{ $labels.%(instance)s }} (node {{ $labels.%(node)s }})
                reaches its critical threshold in
                {{ $value | humanizeDuration }}.
              ||| % L),
              runbook_url: runbook('CoolmeshTemperatureCritical'),
            },
          },
        ],
      },
      // The room-wide pages, and the per-server pages they inhibit in
      // Alertmanager, in one group: evaluated at the same instant and sent
      // together, so that a room page is in Alertmanager before the group_wait of
      // a per-server page of the same event ends (groups are evaluated at
      // independent offsets). The agents' deadlines and their quorum of down
      // votes (or their cooling pre_fail) appear in the same scrape, and the room
      // pages have the same `for` as CoolmeshShutdownPending.
      {
        name: 'coolmesh.room',
        rules: [
          {
            alert: 'CoolmeshPowerLost',
            expr: |||
              max by (%(group)s, %(room)s, target) (
                (
                  coolmesh_cluster_power_votes{%(selector)s, vote="down"}
                  >= on (%(group)s, %(instance)s) group_left ()
                  (coolmesh_cluster_quorum{%(selector)s} > 0)
                )
                * on (%(group)s, %(instance)s) group_left (%(room)s)
                  coolmesh_node_info{%(selector)s}
              )
              or on (%(group)s, %(room)s, target)
              (
                max by (%(group)s, %(room)s, target) (
                  last_over_time(cluster:coolmesh_cluster_power_votes:lost{%(selector)s}[1d])
                ) > 0
              )
            ||| % L,
            'for': c.alertFor.CoolmeshPowerLost,
            labels: {
              severity: c.severities.critical,
            },
            annotations: {
              summary: 'A quorum of coolmesh agents sees mains power down.',
              description: oneLine(|||
                In cluster {{ $labels.%(room)s }}, a quorum of agents sees
                power target {{ $labels.target }} down ({{ $value }} down
                votes; once the agents have shut down, the last count they
                reported). Cooling is probably off; servers shut down when
                the grace period ends unless power returns. The alert stays
                until an agent of the room sees the target up again (at most
                a day).
              ||| % L),
              runbook_url: runbook('CoolmeshPowerLost'),
            },
          },
          {
            alert: 'CoolmeshCoolingFailure',
            expr: |||
              (
                max by (%(group)s, %(room)s) (
                  (
                    coolmesh_cluster_overheating_peers{%(selector)s}
                    >= on (%(group)s, %(instance)s)
                    (coolmesh_cluster_quorum{%(selector)s} > 0)
                  )
                  * on (%(group)s, %(instance)s) group_left (%(room)s)
                    coolmesh_node_info{%(selector)s}
                )
                or on (%(group)s, %(room)s)
                count by (%(group)s, %(room)s) (
                  (
                    (coolmesh_fsm_reason{%(selector)s, reason="cooling"} == 1)
                    and on (%(group)s, %(instance)s)
                    (coolmesh_fsm_state{%(selector)s, state=~"pre_fail|shutdown"} == 1)
                  )
                  * on (%(group)s, %(instance)s) group_left (%(room)s)
                    coolmesh_node_info{%(selector)s}
                )
              )
              or on (%(group)s, %(room)s)
              (
                max by (%(group)s, %(room)s) (
                  last_over_time(cluster:coolmesh_cluster_overheating_peers:failing{%(selector)s}[1d])
                ) > 0
              )
            ||| % L,
            'for': c.alertFor.CoolmeshCoolingFailure,
            labels: {
              severity: c.severities.critical,
            },
            annotations: {
              summary: 'Room cooling has failed.',
              description: oneLine(|||
                Cluster {{ $labels.%(room)s }} reports a cooling failure: a
                quorum of servers is overheating or heating steadily, or
                servers are in a cooling-triggered pre_fail or shutdown
                (servers affected: {{ $value }}; once they have shut down,
                the last count). Servers shut themselves down when their
                grace period ends. The alert stays until an agent of the
                room reports no node overheating (at most a day).
              ||| % L),
              runbook_url: runbook('CoolmeshCoolingFailure'),
            },
          },
          {
            alert: 'CoolmeshShutdownPending',
            expr: |||
              (
                clamp_min(coolmesh_shutdown_deadline_timestamp_seconds{%(selector)s} - time(), 1)
                * on (%(group)s, %(instance)s) group_left (%(room)s, %(node)s)
                  coolmesh_node_info{%(selector)s}
              )
              or on (%(group)s, %(instance)s)
              (
                0 * topk by (%(group)s, %(instance)s) (1, instance:coolmesh_node_info:last_seen)
                and on (%(group)s, %(instance)s)
                (instance:coolmesh_fsm_state:shutdown_phase == 1)
              )
            ||| % L,
            'for': c.alertFor.CoolmeshShutdownPending,
            labels: {
              severity: c.severities.critical,
            },
            annotations: {
              summary: 'A coolmesh agent will shut its server down.',
              description: oneLine(|||
                The agent on {{ $labels.%(instance)s }} (node
                {{ $labels.%(node)s }}) {{ if gt $value 0.0 }}will run its
                shutdown command in {{ $value | humanizeDuration }} unless
                the cause clears or an operator cancels it{{ else }}is past
                its deadline: its shutdown has started, or it stopped
                answering with the shutdown pending (value
                {{ $value }}){{ end }}.
              ||| % L),
              runbook_url: runbook('CoolmeshShutdownPending'),
            },
          },
          {
            alert: 'CoolmeshShutdownExecuted',
            expr: |||
              (time() - topk by (%(group)s, %(instance)s) (1, instance:coolmesh_node_info:last_seen))
              and on (%(group)s, %(instance)s)
              (instance:coolmesh_fsm_state:shutdown_phase == 2)
            ||| % L,
            'for': c.alertFor.CoolmeshShutdownExecuted,
            labels: {
              severity: c.severities.critical,
            },
            annotations: {
              summary: 'A coolmesh agent has run its shutdown command.',
              description: oneLine(|||
                The agent on {{ $labels.%(instance)s }} (node
                {{ $labels.%(node)s }}) ran its shutdown command (not in
                dry-run); the server is powering off or is off (last scraped
                {{ $value | humanizeDuration }} ago). The alert stays while
                the server is off, for at most a day, and pages once.
              ||| % L),
              runbook_url: runbook('CoolmeshShutdownExecuted'),
            },
          },
          {
            alert: 'CoolmeshShutdownUnconfirmed',
            expr: |||
              (
                (time() - topk by (%(group)s, %(instance)s) (1, instance:coolmesh_node_info:last_seen))
                and on (%(group)s, %(instance)s)
                (instance:coolmesh_fsm_state:shutdown_phase == 1)
              )
              unless on (%(group)s, %(instance)s)
              (up{%(selector)s} == 1)
            ||| % L,
            'for': c.alertFor.CoolmeshShutdownUnconfirmed,
            labels: {
              severity: c.severities.critical,
            },
            annotations: {
              summary: 'A coolmesh agent with a shutdown pending stopped answering.',
              description: oneLine(|||
                The agent on {{ $labels.%(instance)s }} (node
                {{ $labels.%(node)s }}) had a shutdown pending or running
                when it was last scraped, {{ $value | humanizeDuration }}
                ago, and has not answered since: most likely the server
                powered off at its deadline between two scrapes, but it may
                also have lost power or crashed before. The alert stays
                while the agent is away, for at most a day, and pages once.
              ||| % L),
              runbook_url: runbook('CoolmeshShutdownUnconfirmed'),
            },
          },
        ],
      },
      {
        name: 'coolmesh.power',
        rules: [
          {
            alert: 'CoolmeshPowerProbeLocalFault',
            expr: |||
              (coolmesh_fsm_state{%(selector)s, state="local_fault"} == 1)
              * on (%(group)s, %(instance)s) group_left (%(room)s, %(node)s)
                coolmesh_node_info{%(selector)s}
            ||| % L,
            'for': c.alertFor.CoolmeshPowerProbeLocalFault,
            labels: {
              severity: c.severities.warning,
            },
            annotations: {
              summary: 'A coolmesh agent cannot see the power target its peers see.',
              description: oneLine(|||
                The agent on {{ $labels.%(instance)s }} (node
                {{ $labels.%(node)s }}) has been in local_fault for %(for)s
                (coolmesh_fsm_state = {{ $value }}): its own power probes
                fail while a majority of fresh peers see the target up, or
                they fail on the host itself (unknown result, e.g. no file
                descriptor left: see
                coolmesh_power_probe_failures_total{kind="local"} and the
                agent log). It will not shut down for power, but it would
                not notice a real outage on its own either.
              ||| % (L { 'for': u.words(c.alertFor.CoolmeshPowerProbeLocalFault) })),
              runbook_url: runbook('CoolmeshPowerProbeLocalFault'),
            },
          },
        ],
      },
      {
        name: 'coolmesh.shutdown',
        rules: [
          {
            alert: 'CoolmeshShutdownDryRun',
            expr: |||
              (
                (coolmesh_shutdown_executed{%(selector)s} == 1)
                and on (%(group)s, %(instance)s)
                (coolmesh_shutdown_dry_run{%(selector)s} == 1)
              )
              * on (%(group)s, %(instance)s) group_left (%(room)s, %(node)s)
                coolmesh_node_info{%(selector)s}
            ||| % L,
            'for': c.alertFor.CoolmeshShutdownDryRun,
            labels: {
              severity: c.severities.info,
            },
            annotations: {
              summary: 'A coolmesh agent in dry-run mode would have shut its server down.',
              description: oneLine(|||
                The agent on {{ $labels.%(instance)s }} (node
                {{ $labels.%(node)s }}) runs with --dry-run and reached its
                shutdown: it logged the shutdown command instead of running
                it (coolmesh_shutdown_executed = {{ $value }}). The server
                is still up.
              ||| % L),
              runbook_url: runbook('CoolmeshShutdownDryRun'),
            },
          },
          {
            alert: 'CoolmeshShutdownCommandFailed',
            expr: |||
              increase(coolmesh_shutdown_command_failures_total{%(selector)s}[15m])
              * on (%(group)s, %(instance)s) group_left (%(room)s, %(node)s)
                coolmesh_node_info{%(selector)s}
              > 0
            ||| % L,
            'for': c.alertFor.CoolmeshShutdownCommandFailed,
            labels: {
              severity: c.severities.critical,
            },
            annotations: {
              summary: 'The shutdown command of a coolmesh agent failed.',
              description: oneLine(|||
                The shutdown command on {{ $labels.%(instance)s }} (node
                {{ $labels.%(node)s }}) failed (failures in the last 15
                minutes: {{ $value | humanize }}). The server decided to
                power off and is still running.
              ||| % L),
              runbook_url: runbook('CoolmeshShutdownCommandFailed'),
            },
          },
          {
            alert: 'CoolmeshShutdownOutcomeUnknown',
            expr: |||
              (coolmesh_shutdown_command_outcome_unknown_total{%(selector)s} > 0)
              * on (%(group)s, %(instance)s) group_left (%(room)s, %(node)s)
                coolmesh_node_info{%(selector)s}
            ||| % L,
            'for': c.alertFor.CoolmeshShutdownOutcomeUnknown,
            labels: {
              severity: c.severities.critical,
            },
            annotations: {
              summary: 'A coolmesh agent restarted while its shutdown command ran.',
              description: oneLine(|||
                The agent on {{ $labels.%(instance)s }} (node
                {{ $labels.%(node)s }}) restarted while its shutdown command
                was running, and the server is still up: the outcome of that
                run is unknown
                (coolmesh_shutdown_command_outcome_unknown_total =
                {{ $value }}). The agent runs the command again once the
                command timeout of that run has passed.
              ||| % L),
              runbook_url: runbook('CoolmeshShutdownOutcomeUnknown'),
            },
          },
          {
            alert: 'CoolmeshPowerOnGaveUp',
            expr: |||
              increase(coolmesh_power_on_gave_up_total{%(selector)s}[1h])
              * on (%(group)s, %(instance)s) group_left (%(room)s, %(node)s)
                coolmesh_node_info{%(selector)s}
              > 0
            ||| % L,
            'for': c.alertFor.CoolmeshPowerOnGaveUp,
            labels: {
              severity: c.severities.warning,
            },
            annotations: {
              summary: 'coolmesh gave up waking a server after mains came back.',
              description: oneLine(|||
                The agent on {{ $labels.%(instance)s }} (node
                {{ $labels.%(node)s }}) woke the servers that shut down
                during the outage by Wake-on-LAN and gave up on
                {{ $value | humanize }} of them in the last hour: they did not
                come back into the cluster within power_on.give_up. Those
                servers are still off.
              ||| % L),
              runbook_url: runbook('CoolmeshPowerOnGaveUp'),
            },
          },
          {
            alert: 'CoolmeshMaintenanceMode',
            expr: |||
              (coolmesh_maintenance_until_timestamp_seconds{%(selector)s} - time())
              * on (%(group)s, %(instance)s) group_left (%(room)s, %(node)s)
                coolmesh_node_info{%(selector)s}
            ||| % L,
            'for': c.alertFor.CoolmeshMaintenanceMode,
            labels: {
              severity: c.severities.warning,
            },
            annotations: {
              summary: 'Automatic shutdown has been held for over %s.' % u.words(c.alertFor.CoolmeshMaintenanceMode),
              description: oneLine(|||
                The agent on {{ $labels.%(instance)s }} (node
                {{ $labels.%(node)s }}) has been in maintenance for more
                than %(for)s, and the window ends in
                {{ $value | humanizeDuration }}: until then it will not shut
                down on a cooling or power failure.
              ||| % (L { 'for': u.words(c.alertFor.CoolmeshMaintenanceMode) })),
              runbook_url: runbook('CoolmeshMaintenanceMode'),
            },
          },
        ],
      },
      {
        name: 'coolmesh.cluster',
        rules: [
          // Every agent exports up to 256 coolmesh_peer_up series: at 1,000
          // agents that is 256,000 series, the largest family by far, and
          // reading it is the costliest thing these rules do. So it is read
          // twice per evaluation and joined only where it is small: this record
          // keeps the reports of a peer suspect or dead (1 each, with the
          // reporter's cluster), and CoolmeshPeerLost looks for alive reports
          // only of the peers in it, before joining them with their cluster.
          // (A join of all 256,000 reports with coolmesh_node_info used to be
          // the single most expensive step; see BENCHMARKS.md section 7.)
          {
            record: 'instance:coolmesh_peer_up:not_alive',
            expr: |||
              (
                (coolmesh_peer_up{%(selector)s} == 0)
                * on (%(group)s, %(instance)s) group_left (%(room)s)
                  coolmesh_node_info{%(selector)s}
              ) + 1
            ||| % L,
          },
          {
            alert: 'CoolmeshPeerLost',
            expr: |||
              (
                count by (%(group)s, %(room)s, peer) (instance:coolmesh_peer_up:not_alive)
                > on (%(group)s, %(room)s) group_left
                0.5 * count by (%(group)s, %(room)s) (coolmesh_node_info{%(selector)s})
              )
              unless on (%(group)s, %(room)s, peer)
              (
                (
                  (coolmesh_peer_up{%(selector)s} == 1)
                  and on (%(group)s, peer)
                  instance:coolmesh_peer_up:not_alive
                )
                * on (%(group)s, %(instance)s) group_left (%(room)s)
                  coolmesh_node_info{%(selector)s}
              )
            ||| % L,
            'for': c.alertFor.CoolmeshPeerLost,
            labels: {
              severity: c.severities.warning,
            },
            annotations: {
              summary: 'A coolmesh peer is no longer seen alive by any agent.',
              description: oneLine(|||
                Peer {{ $labels.peer }} in cluster {{ $labels.%(room)s }}
                has been suspect or dead for %(for)s; {{ $value }} agents (a
                majority of those Prometheus scrapes in the room) report it
                down and none sees it alive.
              ||| % (L { 'for': u.words(c.alertFor.CoolmeshPeerLost) })),
              runbook_url: runbook('CoolmeshPeerLost'),
            },
          },
          {
            alert: 'CoolmeshClusterPartitioned',
            expr: |||
              (
                max by (%(group)s, %(instance)s) (coolmesh_cluster_peers{%(selector)s, state="alive"}) + 1
              )
              * on (%(group)s, %(instance)s) group_left (%(room)s, %(node)s)
                coolmesh_node_info{%(selector)s}
              < on (%(group)s, %(room)s) group_left
              count by (%(group)s, %(room)s) (coolmesh_node_info{%(selector)s})
            ||| % L,
            'for': c.alertFor.CoolmeshClusterPartitioned,
            labels: {
              severity: c.severities.warning,
            },
            annotations: {
              summary: 'A coolmesh agent sees fewer live peers than Prometheus does.',
              description: oneLine(|||
                The agent on {{ $labels.%(instance)s }} (node
                {{ $labels.%(node)s }}) counts fewer live agents in cluster
                {{ $labels.%(room)s }} than Prometheus scrapes successfully
                (live agents it sees, itself included: {{ $value }}). The
                cluster is partitioned or this agent's gossip is broken; its
                quorum decisions are based on a partial view.
              ||| % L),
              runbook_url: runbook('CoolmeshClusterPartitioned'),
            },
          },
          // Not reason="handshake": connections that fail the PSK handshake are
          // what a port scan or a vulnerability scanner produces, all day long.
          // A neighbour with the wrong key shows as CoolmeshClusterPartitioned
          // on that neighbour instead (it sees no peer).
          {
            alert: 'CoolmeshGossipRejecting',
            expr: |||
              (sum by (%(group)s, %(instance)s, reason) (rate(coolmesh_gossip_rejected_total{%(selector)s, reason!="handshake"}[5m])) > 0)
              * on (%(group)s, %(instance)s) group_left (%(room)s, %(node)s)
                coolmesh_node_info{%(selector)s}
            ||| % L,
            'for': c.alertFor.CoolmeshGossipRejecting,
            labels: {
              severity: c.severities.warning,
            },
            annotations: {
              summary: 'A coolmesh agent keeps rejecting gossip from peers.',
              description: oneLine(|||
                The agent on {{ $labels.%(instance)s }} (node
                {{ $labels.%(node)s }}) has been rejecting peer input
                ({{ $labels.reason }}) for %(for)s, at
                {{ $value | printf "%%.2f" }} messages per second.
              ||| % (L { 'for': u.words(c.alertFor.CoolmeshGossipRejecting) })),
              runbook_url: runbook('CoolmeshGossipRejecting'),
            },
          },
        ],
      },

    ],
  },
}
