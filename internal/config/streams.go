package config

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/sluicegw/sluice/internal/streamid"
)

// Webhook is one entry of `webhooks`: an endpoint the gateways POST their
// stream events to, signed with Secret (the Sluice-Signature header).
type Webhook struct {
	URL    string   `yaml:"url"`    // http:// or https://; required
	Events []string `yaml:"events"` // WebhookEvents; default all of them
	// Secret is the HMAC-SHA256 key of the Sluice-Signature header. Required
	// by `sluice gateway`; `sluice dev` sends unsigned events without one.
	Secret string `yaml:"secret"`
}

// WebhookEvents are the event types a webhook may ask for.
var WebhookEvents = []string{"stream.started", "stream.ended", "stream.moved", "viewer.joined", "viewer.left", "node.failed"}

// Stream is one entry of `streams`: rules for the streams whose id matches
// ID, and, when ID is an exact id, a stream the gateway places at start and
// keeps placed, so that its first viewer finds a node ready.
type Stream struct {
	// ID is a stream id, or a pattern with one "*" at its end ("cam-*")
	// whose rules apply to every matching id; an exact id is preloaded.
	// Required. The first entry that matches a stream decides.
	ID string `yaml:"id"`
	// Purpose is the node purpose that carries the stream; default the
	// gateway's (relay).
	Purpose string `yaml:"purpose"`
	// Tags are agent tags (agent.tags) the stream's agent must carry, such as
	// {region: eu-west}; default none (any agent).
	Tags map[string]string `yaml:"tags"`
	// Limits bound the stream on each gateway, as a token's limits do.
	Limits StreamLimits `yaml:"limits"`
}

// StreamLimits are a stream's limits on each gateway.
type StreamLimits struct {
	MaxViewers int   `yaml:"maxViewers" want:"an integer ≥ 0, 0 = no limit"` // viewers at once; a viewer past it gets 403
	MaxBitrate int64 `yaml:"maxBitrate" want:"an integer ≥ 0, 0 = no limit"` // bits/s; a WHIP publisher over it for 3 s is ended
}

// Preloaded reports whether s names one stream (no pattern): one placed at start.
func (s Stream) Preloaded() bool { return !strings.Contains(s.ID, "*") }

// Matches reports whether stream falls under s.
func (s Stream) Matches(stream string) bool {
	if p, ok := strings.CutSuffix(s.ID, "*"); ok {
		return strings.HasPrefix(stream, p)
	}
	return s.ID == stream
}

// checkWebhooks refuses an entry a gateway could not deliver to, by its
// field. Messages never carry the secret.
func checkWebhooks(hooks []Webhook) error {
	for i, h := range hooks {
		if field, err := h.Problem(); err != nil {
			return &FieldError{Path: fmt.Sprintf("webhooks[%d].%s", i, field), Msg: err.Error()}
		}
	}
	return nil
}

// Problem is the first thing that keeps a gateway from delivering to h, and
// the field it is in ("url", "events[1]"); "" and nil when there is none.
// The gateway checks its webhooks with it too.
func (h Webhook) Problem() (field string, err error) {
	if err := checkHookURL(h.URL); err != nil {
		return "url", err
	}
	for j, e := range h.Events {
		if !slices.Contains(WebhookEvents, e) {
			return fmt.Sprintf("events[%d]", j), fmt.Errorf("%q is not an event (want one of %s)", e, strings.Join(WebhookEvents, ", "))
		}
	}
	return "", nil
}

func checkHookURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case s == "":
		return errors.New("missing (want an http:// or https:// URL)")
	case err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
		return fmt.Errorf("%q is not an http:// or https:// URL with a host", s)
	case u.User != nil:
		return errors.New("carries user info (authenticate the receiver with the secret instead)")
	}
	return nil
}

// checkStreams refuses an id that is neither a stream id nor a prefix
// pattern, and limits below zero.
func checkStreams(streams []Stream) error {
	for i, s := range streams {
		field := fmt.Sprintf("streams[%d]", i)
		id, pattern := strings.CutSuffix(s.ID, "*")
		switch {
		case s.ID == "":
			return &FieldError{Path: field + ".id", Msg: "missing (want a stream id, or a prefix and * such as cam-*)"}
		case strings.Contains(id, "*"):
			return &FieldError{Path: field + ".id", Msg: fmt.Sprintf("%q has a * before its end (want one * at the end, such as cam-*)", s.ID)}
		case id != "" && streamid.Validate(id) != nil, !pattern && id == "":
			return &FieldError{Path: field + ".id", Msg: fmt.Sprintf("%q is not a stream id (1-128 of A-Z a-z 0-9 . _ ~ -)", s.ID)}
		case s.Limits.MaxViewers < 0:
			return &FieldError{Path: field + ".limits.maxViewers", Msg: fmt.Sprintf("%d is negative (want an integer ≥ 0, 0 = no limit)", s.Limits.MaxViewers)}
		case s.Limits.MaxBitrate < 0:
			return &FieldError{Path: field + ".limits.maxBitrate", Msg: fmt.Sprintf("%d is negative (want an integer ≥ 0, 0 = no limit)", s.Limits.MaxBitrate)}
		}
	}
	return nil
}
