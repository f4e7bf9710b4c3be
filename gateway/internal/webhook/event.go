// Package webhook delivers a gateway's stream events (stream.started,
// stream.ended, stream.moved, viewer.joined, viewer.left, node.failed) to
// operators' HTTP endpoints: SDR's add and delete URLs, generalised.
//
// Each event is a JSON object POSTed to every target that asked for its type,
// signed with the target's secret in a Sluice-Signature header (Stripe's
// shape: a timestamp and an HMAC-SHA256 of "timestamp.body"; Verify is the
// receiver's check). Each target has its own bounded queue and one delivery
// goroutine, which retries a failed delivery with exponential backoff and
// jitter a bounded number of times. Send never blocks: a full queue drops its
// oldest event and counts it, so a slow or dead receiver costs media and API
// calls nothing.
package webhook

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"time"

	"github.com/sluicegw/sluice/internal/config"
)

// Event types.
const (
	StreamStarted = "stream.started" // a publisher's media began to flow through this gateway
	StreamEnded   = "stream.ended"   // that publisher is gone
	StreamMoved   = "stream.moved"   // the stream's media went to another node or agent (FromAgent, FromNode)
	ViewerJoined  = "viewer.joined"  // a viewer on this gateway started receiving media (Viewers: this gateway's count)
	ViewerLeft    = "viewer.left"    // a viewer on this gateway left
	NodeFailed    = "node.failed"    // an agent reported a node carrying this gateway's streams dead (Streams)
)

// Types are every event type, in the order the documentation lists them.
var Types = []string{StreamStarted, StreamEnded, StreamMoved, ViewerJoined, ViewerLeft, NodeFailed}

// Event is one event's JSON body. Fields a type does not use are left out.
type Event struct {
	ID        string    `json:"id"`   // unique per event ("evt_" and 32 hex digits); the same on every retry
	Type      string    `json:"type"` // one of Types
	Time      time.Time `json:"time"` // when it happened (RFC 3339, UTC)
	Stream    string    `json:"stream,omitempty"`
	Gateway   string    `json:"gateway"` // the gateway that saw it
	Agent     string    `json:"agent,omitempty"`
	Node      string    `json:"node,omitempty"`
	Protocol  string    `json:"protocol,omitempty"` // whip, moq (stream.*)
	Viewers   *int      `json:"viewers,omitempty"`  // viewer.*: the stream's viewers on this gateway afterwards
	FromAgent string    `json:"fromAgent,omitempty"`
	FromNode  string    `json:"fromNode,omitempty"`
	Streams   []string  `json:"streams,omitempty"` // node.failed: this gateway's streams on the node
	Reason    string    `json:"reason,omitempty"`
}

// Count is a viewer count for Event.Viewers.
func Count(n int) *int { return &n }

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand does not fail (Go 1.24)
	return "evt_" + hex.EncodeToString(b[:])
}

// Target is one endpoint events are sent to (an entry of `webhooks`).
type Target struct {
	URL    string   // http or https URL the events are POSTed to
	Events []string // the types it gets; empty: all
	Secret string   // the HMAC key of Sluice-Signature; "" sends no signature
}

func (t Target) wants(typ string) bool { return len(t.Events) == 0 || slices.Contains(t.Events, typ) }

func (t Target) equal(o Target) bool {
	return t.URL == o.URL && t.Secret == o.Secret && slices.Equal(t.Events, o.Events)
}

// Check reports the first thing wrong with t, by its field name, as the
// configuration file's check does.
func (t Target) Check() error {
	if field, err := (config.Webhook{URL: t.URL, Events: t.Events}).Problem(); err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	return nil
}
