// prometheusRules: alerts/coolmesh.recording.yml, the recording rules the
// dashboards read. (The alerts' own records are in prometheusAlerts.)
//
// Naming follows level:metric:operations, with the metric part always a
// coolmesh_ name, so every rule lives in the coolmesh namespace:
//   instance:...  one series per agent, with the group labels, instance, and
//                 the room and node labels (joined from coolmesh_node_info)
//   cluster:...   one series per (group labels, room)
// These read instance:coolmesh_node_info:last_seen of prometheusAlerts
// (group coolmesh.state): load both files.
//
// Cost at 1,000 agents (BENCHMARKS.md section 7 measures it): every rule
// here reads at most a few series per agent at one instant, and no rule
// reads a range longer than 5 minutes. The room-level rules (cluster:...)
// aggregate the instance-level ones where they can instead of joining the
// raw series with coolmesh_node_info again, and keep what the room
// dashboard's top row and its distributions read down to a handful of
// series per room (state counts, temperature and headroom histograms).
{
  prometheusRules+:: {
    local L = $._config.L,
    groups+: [
      {
        name: 'coolmesh.recording.instance',
        rules: [
          // Scrape health of every agent with its last known identity (within a
          // day), so that agents that are down still show up under their cluster.
          // The identity comes from instance:coolmesh_node_info:last_seen (the
          // latest one if a node was renamed), which carries it forward for a
          // day at the cost of an instant lookup; a last_over_time(...[1d]) of
          // coolmesh_node_info read a day of samples of every agent (8,640 each
          // at a 10 s scrape) at every evaluation.
          {
            record: 'instance:coolmesh_up:max',
            expr: |||
              max by (%(group)s, %(instance)s, %(room)s, %(node)s) (
                up{%(selector)s}
                + on (%(group)s, %(instance)s) group_left (%(room)s, %(node)s)
                  0 * topk by (%(group)s, %(instance)s) (1, instance:coolmesh_node_info:last_seen{%(selector)s})
              )
              or on (%(group)s, %(instance)s)
              max by (%(group)s, %(instance)s) (up{%(selector)s})
            ||| % L,
          },
          {
            record: 'instance:coolmesh_thermal_hottest_celsius:max',
            expr: |||
              max by (%(group)s, %(instance)s, %(room)s, %(node)s) (
                coolmesh_thermal_hottest_celsius{%(selector)s}
                * on (%(group)s, %(instance)s) group_left (%(room)s, %(node)s)
                  coolmesh_node_info{%(selector)s}
              )
            ||| % L,
          },
          {
            record: 'instance:coolmesh_thermal_headroom_celsius:min',
            expr: |||
              min by (%(group)s, %(instance)s, %(room)s, %(node)s) (
                coolmesh_thermal_headroom_celsius{%(selector)s}
                * on (%(group)s, %(instance)s) group_left (%(room)s, %(node)s)
                  coolmesh_node_info{%(selector)s}
              )
            ||| % L,
          },
          {
            record: 'instance:coolmesh_thermal_trend_celsius_per_minute:max',
            expr: |||
              max by (%(group)s, %(instance)s, %(room)s, %(node)s) (
                coolmesh_thermal_trend_celsius_per_minute{%(selector)s}
                * on (%(group)s, %(instance)s) group_left (%(room)s, %(node)s)
                  coolmesh_node_info{%(selector)s}
              )
            ||| % L,
          },
          {
            record: 'instance:coolmesh_thermal_time_to_critical_seconds:min',
            expr: |||
              min by (%(group)s, %(instance)s, %(room)s, %(node)s) (
                coolmesh_thermal_time_to_critical_seconds{%(selector)s}
                * on (%(group)s, %(instance)s) group_left (%(room)s, %(node)s)
                  coolmesh_node_info{%(selector)s}
              )
            ||| % L,
          },
          // Current state as a number, for state-timeline panels and "worst state"
          // stats: 0 normal, 1 maintenance, 2 local_fault, 3 pre_fail, 4 shutdown.
          {
            record: 'instance:coolmesh_fsm_state:code',
            expr: |||
              max by (%(group)s, %(instance)s, %(room)s, %(node)s) (
                (
                    (coolmesh_fsm_state{%(selector)s, state="normal"} == 1) * 0
                  or
                    (coolmesh_fsm_state{%(selector)s, state="maintenance"} == 1) * 1
                  or
                    (coolmesh_fsm_state{%(selector)s, state="local_fault"} == 1) * 2
                  or
                    (coolmesh_fsm_state{%(selector)s, state="pre_fail"} == 1) * 3
                  or
                    (coolmesh_fsm_state{%(selector)s, state="shutdown"} == 1) * 4
                )
                * on (%(group)s, %(instance)s) group_left (%(room)s, %(node)s)
                  coolmesh_node_info{%(selector)s}
              )
            ||| % L,
          },
          // Reason of the current state as a number: 0 none, 1 operator,
          // 2 prediction, 3 overheat, 4 cooling, 5 power.
          {
            record: 'instance:coolmesh_fsm_reason:code',
            expr: |||
              max by (%(group)s, %(instance)s, %(room)s, %(node)s) (
                (
                    (coolmesh_fsm_reason{%(selector)s, reason="none"} == 1) * 0
                  or
                    (coolmesh_fsm_reason{%(selector)s, reason="operator"} == 1) * 1
                  or
                    (coolmesh_fsm_reason{%(selector)s, reason="prediction"} == 1) * 2
                  or
                    (coolmesh_fsm_reason{%(selector)s, reason="overheat"} == 1) * 3
                  or
                    (coolmesh_fsm_reason{%(selector)s, reason="cooling"} == 1) * 4
                  or
                    (coolmesh_fsm_reason{%(selector)s, reason="power"} == 1) * 5
                )
                * on (%(group)s, %(instance)s) group_left (%(room)s, %(node)s)
                  coolmesh_node_info{%(selector)s}
              )
            ||| % L,
          },
          {
            record: 'instance:coolmesh_shutdown_deadline_timestamp_seconds:min',
            expr: |||
              min by (%(group)s, %(instance)s, %(room)s, %(node)s) (
                coolmesh_shutdown_deadline_timestamp_seconds{%(selector)s}
                * on (%(group)s, %(instance)s) group_left (%(room)s, %(node)s)
                  coolmesh_node_info{%(selector)s}
              )
            ||| % L,
          },
          {
            record: 'instance:coolmesh_power_up:min',
            expr: |||
              min by (%(group)s, %(instance)s, %(room)s, %(node)s) (
                coolmesh_power_up{%(selector)s}
                * on (%(group)s, %(instance)s) group_left (%(room)s, %(node)s)
                  coolmesh_node_info{%(selector)s}
              )
            ||| % L,
          },
          // Peers by liveness (alive, suspect, dead) as each agent sees them.
          {
            record: 'instance:coolmesh_cluster_peers:max',
            expr: |||
              max by (%(group)s, %(instance)s, %(room)s, %(node)s, state) (
                coolmesh_cluster_peers{%(selector)s}
                * on (%(group)s, %(instance)s) group_left (%(room)s, %(node)s)
                  coolmesh_node_info{%(selector)s}
              )
            ||| % L,
          },
        ],
      },
      {
        name: 'coolmesh.recording.cluster',
        rules: [
          // Agents Prometheus scrapes successfully, per cluster.
          {
            record: 'cluster:coolmesh_node_info:count',
            expr: |||
              count by (%(group)s, %(room)s) (coolmesh_node_info{%(selector)s})
            ||| % L,
          },
          // Agents per state machine state (normal, pre_fail, shutdown,
          // local_fault, maintenance), 0 for a state no agent is in: the room
          // dashboard's "nodes per state", five series per room.
          {
            record: 'cluster:coolmesh_fsm_state:count',
            expr: |||
              sum by (%(group)s, %(room)s, state) (
                coolmesh_fsm_state{%(selector)s}
                * on (%(group)s, %(instance)s) group_left (%(room)s)
                  coolmesh_node_info{%(selector)s}
              )
            ||| % L,
          },
          // From the instance-level records (already labelled with cluster), so
          // the raw series are not joined with coolmesh_node_info a second time.
          {
            record: 'cluster:coolmesh_thermal_hottest_celsius:max',
            expr: |||
              max by (%(group)s, %(room)s) (instance:coolmesh_thermal_hottest_celsius:max{%(selector)s})
            ||| % L,
          },
          {
            record: 'cluster:coolmesh_thermal_headroom_celsius:min',
            expr: |||
              min by (%(group)s, %(room)s) (instance:coolmesh_thermal_headroom_celsius:min{%(selector)s})
            ||| % L,
          },
          // Distribution of the agents' hottest sensor, as a cumulative histogram
          // (le in °C; the last bucket, +Inf, counts every agent with a reading):
          // the room dashboard's heatmap reads these 9 series per room instead
          // of one series per agent.
          {
            record: 'cluster:coolmesh_thermal_hottest_celsius:bucket',
            expr: |||
              label_replace(sum by (%(group)s, %(room)s) (instance:coolmesh_thermal_hottest_celsius:max{%(selector)s} <= bool 30), "le", "30", "", "")
              or label_replace(sum by (%(group)s, %(room)s) (instance:coolmesh_thermal_hottest_celsius:max{%(selector)s} <= bool 40), "le", "40", "", "")
              or label_replace(sum by (%(group)s, %(room)s) (instance:coolmesh_thermal_hottest_celsius:max{%(selector)s} <= bool 50), "le", "50", "", "")
              or label_replace(sum by (%(group)s, %(room)s) (instance:coolmesh_thermal_hottest_celsius:max{%(selector)s} <= bool 60), "le", "60", "", "")
              or label_replace(sum by (%(group)s, %(room)s) (instance:coolmesh_thermal_hottest_celsius:max{%(selector)s} <= bool 70), "le", "70", "", "")
              or label_replace(sum by (%(group)s, %(room)s) (instance:coolmesh_thermal_hottest_celsius:max{%(selector)s} <= bool 80), "le", "80", "", "")
              or label_replace(sum by (%(group)s, %(room)s) (instance:coolmesh_thermal_hottest_celsius:max{%(selector)s} <= bool 90), "le", "90", "", "")
              or label_replace(sum by (%(group)s, %(room)s) (instance:coolmesh_thermal_hottest_celsius:max{%(selector)s} <= bool 100), "le", "100", "", "")
              or label_replace(count by (%(group)s, %(room)s) (instance:coolmesh_thermal_hottest_celsius:max{%(selector)s}), "le", "+Inf", "", "")
            ||| % L,
          },
          // Distribution of the agents' thermal headroom (°C below critical),
          // cumulative like the one above: 8 series per room.
          {
            record: 'cluster:coolmesh_thermal_headroom_celsius:bucket',
            expr: |||
              label_replace(sum by (%(group)s, %(room)s) (instance:coolmesh_thermal_headroom_celsius:min{%(selector)s} <= bool 5), "le", "5", "", "")
              or label_replace(sum by (%(group)s, %(room)s) (instance:coolmesh_thermal_headroom_celsius:min{%(selector)s} <= bool 10), "le", "10", "", "")
              or label_replace(sum by (%(group)s, %(room)s) (instance:coolmesh_thermal_headroom_celsius:min{%(selector)s} <= bool 15), "le", "15", "", "")
              or label_replace(sum by (%(group)s, %(room)s) (instance:coolmesh_thermal_headroom_celsius:min{%(selector)s} <= bool 20), "le", "20", "", "")
              or label_replace(sum by (%(group)s, %(room)s) (instance:coolmesh_thermal_headroom_celsius:min{%(selector)s} <= bool 30), "le", "30", "", "")
              or label_replace(sum by (%(group)s, %(room)s) (instance:coolmesh_thermal_headroom_celsius:min{%(selector)s} <= bool 40), "le", "40", "", "")
              or label_replace(sum by (%(group)s, %(room)s) (instance:coolmesh_thermal_headroom_celsius:min{%(selector)s} <= bool 60), "le", "60", "", "")
              or label_replace(count by (%(group)s, %(room)s) (instance:coolmesh_thermal_headroom_celsius:min{%(selector)s}), "le", "+Inf", "", "")
            ||| % L,
          },
          // Highest vote count any agent reports, per power target and vote.
          {
            record: 'cluster:coolmesh_cluster_power_votes:max',
            expr: |||
              max by (%(group)s, %(room)s, target, vote) (
                coolmesh_cluster_power_votes{%(selector)s}
                * on (%(group)s, %(instance)s) group_left (%(room)s)
                  coolmesh_node_info{%(selector)s}
              )
            ||| % L,
          },
          {
            record: 'cluster:coolmesh_cluster_quorum:max',
            expr: |||
              max by (%(group)s, %(room)s) (
                coolmesh_cluster_quorum{%(selector)s}
                * on (%(group)s, %(instance)s) group_left (%(room)s)
                  coolmesh_node_info{%(selector)s}
              )
            ||| % L,
          },
          {
            record: 'cluster:coolmesh_cluster_overheating_peers:max',
            expr: |||
              max by (%(group)s, %(room)s) (
                coolmesh_cluster_overheating_peers{%(selector)s}
                * on (%(group)s, %(instance)s) group_left (%(room)s)
                  coolmesh_node_info{%(selector)s}
              )
            ||| % L,
          },
          // Gossip efficiency: messages sent per second, per agent and cluster-wide.
          {
            record: 'cluster:coolmesh_gossip_messages_out:rate5m',
            expr: |||
              sum by (%(group)s, %(room)s, kind) (
                rate(coolmesh_gossip_messages_total{%(selector)s, direction="out"}[5m])
                * on (%(group)s, %(instance)s) group_left (%(room)s)
                  coolmesh_node_info{%(selector)s}
              )
            ||| % L,
          },
          {
            record: 'cluster:coolmesh_gossip_rejected:rate5m',
            expr: |||
              sum by (%(group)s, %(room)s, reason) (
                rate(coolmesh_gossip_rejected_total{%(selector)s}[5m])
                * on (%(group)s, %(instance)s) group_left (%(room)s)
                  coolmesh_node_info{%(selector)s}
              )
            ||| % L,
          },
        ],
      },

    ],
  },
}
