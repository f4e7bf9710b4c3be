package promexpo

// Help is the HELP text of every family sluice writes. docs/metrics.md lists
// the same families with their labels and bounds; a test holds the two and a
// live page together.
var Help = map[string]string{
	// The gateway's sessions and media.
	"sluice_gateway_sessions":                "Live sessions on this gateway, by kind (publish, play).",
	"sluice_gateway_sessions_total":          "Sessions started on this gateway, by kind (publish, play).",
	"sluice_gateway_rtp_packets_total":       "RTP packets received from publishers (dir=in) and sent to viewers (dir=out).",
	"sluice_gateway_rtp_bytes_total":         "RTP bytes received from publishers (dir=in) and sent to viewers (dir=out).",
	"sluice_gateway_rtp_dropped_total":       "RTP packets a stream's fan-out dropped because a viewer could not keep up.",
	"sluice_gateway_media_reattaches_total":  "Media links re-attached to a node after it or its agent was replaced.",
	"sluice_gateway_keyframe_requests_total": "Keyframe requests sent to publishers.",
	"sluice_gateway_link_nacks_total":        "Retransmissions asked of nodes for packets lost on the media link.",
	"sluice_gateway_refused_total":           "Publish and play requests the gateway could not serve (throttled, stream busy, no agent, negotiation failed).",
	"sluice_gateway_throttled_total":         "Publish and play requests the throttle policy did not admit.",
	"sluice_gateway_agents":                  "Serving agents this gateway sees in the cluster.",
	"sluice_gateway_streams":                 "Streams this gateway publishes or plays.",

	// Webhooks (labelled by the webhook's index in the config, never its URL).
	"sluice_webhook_deliveries_total": "Webhook delivery attempts, by webhook and result (delivered, retried, failed).",
	"sluice_webhook_dropped_total":    "Webhook events dropped because the webhook's queue was full (the oldest go first).",
	"sluice_webhook_queue_depth":      "Webhook events waiting to be delivered, by webhook.",

	// The scale signal (gateway.scale).
	"sluice_cluster_desired_agents": "Agents the cluster's streams need, by purpose: min(maxAgents, ceil((streams + queued) / streamsPerAgent)).",

	// Per stream (at most StreamSeriesLimit streams, the rest in stream="_other").
	"sluice_stream_info":                   "A stream this gateway carries, with its protocol, agent and node (value 1).",
	"sluice_stream_viewers":                "Viewers of a stream on this gateway.",
	"sluice_stream_media_bytes_per_second": "A stream's media rate on this gateway in bytes per second, over the last second or more.",

	// The edge proxy.
	"sluice_gateway_proxy_calls_total":              "Requests the proxy forwarded to an agent.",
	"sluice_gateway_proxy_failures_total":           "Proxied requests that failed, by why (unavailable, timeout, client-gone, upstream-limited).",
	"sluice_gateway_proxy_reroutes_total":           "Proxied requests sent to another agent after the first could not take them.",
	"sluice_gateway_proxy_throttled_total":          "Proxied requests the throttle policy did not admit, by answer (refused, origin).",
	"sluice_gateway_proxy_limited_upstreams":        "Upstreams held at concurrency 2 after answering 504 (M2's probation).",
	"sluice_gateway_proxy_request_duration_seconds": "Duration of proxied requests, by route prefix.",

	// The MoQ endpoint.
	"sluice_moq_sessions":              "Live MoQ sessions (raw QUIC and WebTransport).",
	"sluice_moq_sessions_total":        "MoQ sessions accepted.",
	"sluice_moq_objects_total":         "MoQ objects received from publishers.",
	"sluice_moq_object_bytes_total":    "Payload bytes of the MoQ objects received from publishers.",
	"sluice_moq_objects_dropped_total": "MoQ objects dropped because a subscriber could not keep up.",
	"sluice_moq_errors_total":          "MoQT errors sent, by scope (session, request, stream) and code.",

	// Policy slots.
	"sluice_plugin_call_duration_seconds": "Duration of a policy slot's calls, by slot.",
	"sluice_plugin_calls_total":           "Calls of a policy slot.",
	"sluice_plugin_traps_total":           "Calls of a policy slot whose module trapped, ran past its deadline or exited.",
	"sluice_plugin_fallbacks_total":       "Calls of a policy slot answered by its native fallback or failure setting.",
	"sluice_plugin_swaps_total":           "Modules loaded into a policy slot (start, upload, rollback, reload).",
	"sluice_plugin_breaker_open":          "1 while a policy slot's circuit breaker is open (calls fall back).",
	"sluice_plugin_module_info":           "The module a policy slot runs, by its sha256 (value 1).",
	"sluice_plugin_counter":               "A policy's own counter (metric_add), by slot and name.",

	// Agents and their nodes.
	"sluice_agent_nodes":                "Node processes of this agent.",
	"sluice_agent_streams":              "Streams on this agent's nodes.",
	"sluice_agent_queued":               "Open requests waiting in this agent's pool queues.",
	"sluice_agent_respawns_total":       "Node processes restarted after a fault.",
	"sluice_agent_draining":             "1 while this agent is draining (takes no new stream).",
	"sluice_agent_pool_failed":          "1 while a purpose's pool is failed (its recovery budget ran out).",
	"sluice_node_cpu_ratio":             "A node process's CPU use over the last interval, in cores.",
	"sluice_node_resident_memory_bytes": "A node process's resident memory.",
	"sluice_node_streams":               "Streams on a node process.",

	// The process.
	"process_cpu_seconds_total":     "User and system CPU time of this process.",
	"process_resident_memory_bytes": "Resident memory of this process.",
	"process_open_fds":              "Open file descriptors of this process.",
	"process_max_fds":               "The limit on open file descriptors of this process.",
	"go_goroutines":                 "Goroutines of this process.",
	"go_memstats_heap_alloc_bytes":  "Bytes of allocated heap objects.",
	"go_memstats_sys_bytes":         "Bytes of memory the Go runtime obtained from the system.",
	"go_memstats_mallocs_total":     "Heap objects allocated since the process started.",
	"go_info":                       "The Go version this binary was built with (value 1).",
}
