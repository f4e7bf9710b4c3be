package gateway

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/sluicegw/sluice/gateway/internal/session"
	"github.com/sluicegw/sluice/internal/cluster"
	"github.com/sluicegw/sluice/internal/problem"
	"github.com/sluicegw/sluice/internal/streamid"
	"github.com/sluicegw/sluice/internal/wire"
)

// handleRotateGossipKey moves the whole cluster to a new gossip key (serf's
// keyring operations, no downtime): POST /v1/cluster/gossip-key. The key never
// leaves the members; the answer says how many switched.
func (g *Gateway) handleRotateGossipKey(w http.ResponseWriter, r *http.Request) {
	rot, err := g.cluster.RotateKey(r.Context())
	if err != nil {
		problem.Write(w, http.StatusConflict, "rotation-failed", "The gossip key was not rotated", err.Error())
		return
	}
	g.log.Info("gateway: the cluster's gossip key was rotated", "members", rot.Members, "removed", rot.Removed)
	problem.WriteJSON(w, http.StatusOK, rot)
}

func (g *Gateway) handleCluster(w http.ResponseWriter, _ *http.Request) {
	ms := g.cluster.Members()
	out := make([]map[string]any, 0, len(ms))
	for _, m := range ms {
		out = append(out, memberView(m))
	}
	problem.WriteJSON(w, http.StatusOK, map[string]any{"self": g.cluster.Name(), "members": out})
}

func (g *Gateway) handleStreams(w http.ResponseWriter, _ *http.Request) {
	local := g.core.LocalStreams()
	list := make([]*session.StreamView, 0, len(local))
	for _, v := range local {
		list = append(list, v)
	}
	// Streams this gateway does not touch are known to their agents.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for _, a := range g.core.AgentList() {
		var infos []wire.StreamInfo
		if err := g.core.Agents().Do(ctx, http.MethodGet, a.API, wire.PathStreams, nil, &infos); err != nil {
			continue
		}
		for _, si := range infos {
			if v := local[si.Stream]; v != nil {
				v.Viewers = max(v.Viewers, si.Viewers)
				continue
			}
			list = append(list, &session.StreamView{Stream: si.Stream, Agent: si.Agent, Node: si.Node, Viewers: si.Viewers, Since: si.Since})
		}
	}
	slices.SortFunc(list, func(a, b *session.StreamView) int { return strings.Compare(a.Stream, b.Stream) })
	problem.WriteJSON(w, http.StatusOK, map[string]any{"streams": list})
}

func (g *Gateway) handleStream(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("stream")
	if err := streamid.Validate(id); err != nil {
		problem.Write(w, http.StatusBadRequest, "bad-stream-id", "Invalid stream id", err.Error())
		return
	}
	if v := g.core.LocalStreams()[id]; v != nil {
		problem.WriteJSON(w, http.StatusOK, v)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	for _, a := range g.core.AgentList() {
		si, err := g.core.Agents().Stream(ctx, a.API, id)
		if err == nil {
			problem.WriteJSON(w, http.StatusOK, &session.StreamView{Stream: id, Agent: si.Agent, Node: si.Node, Viewers: si.Viewers, Since: si.Since})
			return
		}
	}
	problem.Write(w, http.StatusNotFound, "stream-not-live", "The stream is not live", "no agent carries stream "+id)
}

// memberView is the /v1/cluster shape of a member.
func memberView(m cluster.Member) map[string]any {
	return map[string]any{
		"name":   m.Name,
		"role":   m.Tags[wire.TagRole],
		"id":     m.Tags[wire.TagID],
		"addr":   m.Addr,
		"status": m.Status,
		"tags":   m.Tags,
	}
}
