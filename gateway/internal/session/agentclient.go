package session

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/sluicegw/sluice/internal/pki"
	"github.com/sluicegw/sluice/internal/problem"
	"github.com/sluicegw/sluice/internal/wire"
)

// AgentClient calls agents' APIs over mutual TLS.
type AgentClient struct {
	hc   *http.Client // calls that answer at once: 15 s at most
	wait *http.Client // Open, which may wait in an agent's queue: no overall timeout
}

// openLimit ends an Open call whose agent never answers. An agent bounds the
// wait in its queue itself (agent.queueTimeout, default 10s, plus a node's
// start), which may be longer than the 15 s of other calls; this only ends a
// hung agent's call.
const openLimit = 5 * time.Minute

// agentError is a refusal from an agent, with the HTTP status it answered and
// its problem type's last segment (queue-full, queue-timeout, draining, …).
type agentError struct {
	Status int
	Kind   string
	Detail string
}

func (e *agentError) Error() string { return fmt.Sprintf("agent answered %d: %s", e.Status, e.Detail) }

func isAgentStatus(err error, status int) bool {
	var ae *agentError
	return errors.As(err, &ae) && ae.Status == status
}

func newAgentClient(id *pki.Identity) *AgentClient {
	tr := &http.Transport{
		TLSClientConfig:     id.ClientTLS(),
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     time.Minute,
	}
	c := &AgentClient{hc: &http.Client{Transport: tr, Timeout: 15 * time.Second}}
	c.wait = c.Streaming()
	return c
}

func isAgentKind(err error, kind string) bool {
	var ae *agentError
	return errors.As(err, &ae) && ae.Kind == kind
}

// Streaming is the client for answers that last as long as they are read (event
// streams, followed logs): the same connections, no overall timeout.
func (c *AgentClient) Streaming() *http.Client {
	hc := *c.hc
	hc.Timeout = 0
	return &hc
}

func (c *AgentClient) close() { c.hc.CloseIdleConnections() }

// Do calls an agent's API: in (if any) is sent as JSON, a 2xx answer is decoded
// into out (if any), and any other status is an error carrying the agent's
// problem detail.
func (c *AgentClient) Do(ctx context.Context, method, api, path string, in, out any) error {
	return c.do(ctx, c.hc, method, api, path, in, out)
}

func (c *AgentClient) do(ctx context.Context, hc *http.Client, method, api, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "https://"+api+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("agent %s: %w", api, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var p struct {
			Type   string `json:"type"`
			Detail string `json:"detail"`
			Title  string `json:"title"`
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<10))
		if json.Unmarshal(b, &p) != nil || p.Detail == "" {
			p.Detail = strings.TrimSpace(string(b))
			if p.Title != "" {
				p.Detail = p.Title
			}
		}
		return &agentError{Status: resp.StatusCode, Kind: strings.TrimPrefix(p.Type, problem.Base), Detail: p.Detail}
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(out)
}

// Open asks an agent for a session of a stream on one of its nodes.
func (c *AgentClient) Open(ctx context.Context, api string, req wire.OpenRequest) (wire.OpenResponse, error) {
	var out wire.OpenResponse
	ctx, cancel := context.WithTimeout(ctx, openLimit)
	defer cancel()
	err := c.do(ctx, c.wait, http.MethodPost, api, wire.PathSessions, req, &out)
	return out, err
}

// CloseSession closes an agent session.
func (c *AgentClient) CloseSession(ctx context.Context, api, session string) error {
	return c.Do(ctx, http.MethodDelete, api, strings.Replace(wire.PathSession, "{id}", session, 1), nil, nil)
}

// Stream asks an agent whether it carries a stream; it changes nothing.
func (c *AgentClient) Stream(ctx context.Context, api, stream string) (wire.StreamInfo, error) {
	var out wire.StreamInfo
	err := c.Do(ctx, http.MethodGet, api, strings.Replace(wire.PathStream, "{id}", stream, 1), nil, &out)
	return out, err
}
