package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Config configures a Dispatcher. The zero value of each field means its
// default.
type Config struct {
	// Gateway is the gateway id written in every event's gateway field.
	Gateway string
	// QueueSize bounds each target's queue of undelivered events; when it is
	// full the oldest is dropped (and counted), since a receiver catching up
	// is better served by what happened last. Default 1024.
	QueueSize int
	// Attempts is how many times one event is tried before it is given up
	// and counted failed. Default 6 (about 30 s of retries with the default
	// backoff).
	Attempts int
	// MinBackoff is the wait before the first retry; each further retry
	// waits twice as long, up to MaxBackoff, each wait drawn from half to
	// the whole of that figure (jitter, so receivers coming back are not
	// hit by every gateway at once). Defaults 500ms and 30s.
	MinBackoff, MaxBackoff time.Duration
	// Timeout bounds one delivery attempt, the answer included. Default 5s.
	Timeout time.Duration
}

func (c Config) withDefaults() Config {
	if c.QueueSize <= 0 {
		c.QueueSize = 1024
	}
	if c.Attempts <= 0 {
		c.Attempts = 6
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = 500 * time.Millisecond
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 30 * time.Second
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	return c
}

// Dispatcher queues events for its targets and delivers them, one goroutine
// per target. Its methods are safe for concurrent use.
type Dispatcher struct {
	cfg  Config
	log  *slog.Logger
	set  *metrics.Set
	hc   *http.Client
	ctx  context.Context
	stop context.CancelFunc

	mu      sync.Mutex
	workers []*worker // by target index
	wg      sync.WaitGroup
	closed  bool
}

// New starts a dispatcher for targets (checked by the caller: Target.Check).
// Its series go in set.
func New(cfg Config, targets []Target, log *slog.Logger, set *metrics.Set) *Dispatcher {
	cfg = cfg.withDefaults()
	if set == nil {
		set = metrics.NewSet()
	}
	d := &Dispatcher{cfg: cfg, log: log, set: set,
		// Redirects are not followed: a receiver that moved answers 3xx,
		// which is a failed delivery the operator sees in the metrics.
		hc: &http.Client{Timeout: cfg.Timeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	d.ctx, d.stop = context.WithCancel(context.Background())
	d.Update(targets)
	return d
}

// Update replaces the targets (a config reload). A target that is the same
// (URL, events and secret) at the same index keeps its queue and goroutine;
// every other old target is stopped and its undelivered events are counted
// dropped.
func (d *Dispatcher) Update(targets []Target) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	next := make([]*worker, len(targets))
	for i, t := range targets {
		if i < len(d.workers) && d.workers[i].target.equal(t) {
			next[i], d.workers[i] = d.workers[i], nil
			continue
		}
		next[i] = d.startWorker(i, t)
	}
	for _, w := range d.workers {
		if w != nil {
			w.quit()
		}
	}
	d.workers = next
}

// Send queues ev for every target that wants its type, filling its id, time
// and gateway. It never blocks.
func (d *Dispatcher) Send(ev Event) {
	if ev.ID == "" {
		ev.ID = newID()
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	ev.Gateway = d.cfg.Gateway
	d.mu.Lock()
	ws := d.workers
	d.mu.Unlock()
	var body []byte
	for _, w := range ws {
		if !w.target.wants(ev.Type) {
			continue
		}
		if body == nil {
			var err error
			if body, err = json.Marshal(ev); err != nil {
				d.log.Error("webhook: event not encoded", "type", ev.Type, "err", err)
				return
			}
		}
		w.push(queued{id: ev.ID, typ: ev.Type, body: body})
	}
}

// Close stops every delivery goroutine; undelivered events are lost. It is
// safe to call twice.
func (d *Dispatcher) Close() {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.closed = true
	d.mu.Unlock()
	d.stop()
	d.wg.Wait()
}

// queued is an event waiting for one target.
type queued struct {
	id, typ string
	body    []byte
}

// worker is one target's queue and delivery goroutine.
type worker struct {
	d      *Dispatcher
	index  int
	target Target
	ctx    context.Context
	cancel context.CancelFunc
	wake   chan struct{} // one token: the queue has something

	mu    sync.Mutex
	queue []queued

	delivered, retried, failed, dropped *metrics.Counter
}

func (d *Dispatcher) startWorker(i int, t Target) *worker {
	label := `{url_index="` + strconv.Itoa(i) + `"`
	w := &worker{d: d, index: i, target: t, wake: make(chan struct{}, 1),
		delivered: d.set.GetOrCreateCounter(`sluice_webhook_deliveries_total` + label + `,result="delivered"}`),
		retried:   d.set.GetOrCreateCounter(`sluice_webhook_deliveries_total` + label + `,result="retried"}`),
		failed:    d.set.GetOrCreateCounter(`sluice_webhook_deliveries_total` + label + `,result="failed"}`),
		dropped:   d.set.GetOrCreateCounter(`sluice_webhook_dropped_total` + label + `}`),
	}
	// The gauge is made once per index and reads whichever worker holds the
	// index now.
	d.set.GetOrCreateGauge(`sluice_webhook_queue_depth`+label+`}`, func() float64 { return float64(d.depth(i)) })
	w.ctx, w.cancel = context.WithCancel(d.ctx)
	d.wg.Add(1)
	go func() { defer d.wg.Done(); w.run() }()
	return w
}

// depth is the queue length of the target at index i, 0 if none.
func (d *Dispatcher) depth(i int) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if i >= len(d.workers) || d.workers[i] == nil {
		return 0
	}
	w := d.workers[i]
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.queue)
}

// Depth is the number of events waiting for the target at index i (for tests
// and the API).
func (d *Dispatcher) Depth(i int) int { return d.depth(i) }

// push queues q, dropping the oldest waiting event when the queue is full.
func (w *worker) push(q queued) {
	w.mu.Lock()
	if len(w.queue) >= w.d.cfg.QueueSize {
		w.queue = w.queue[1:]
		w.dropped.Inc()
	}
	w.queue = append(w.queue, q)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *worker) pop() (queued, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.queue) == 0 {
		return queued{}, false
	}
	q := w.queue[0]
	w.queue[0] = queued{}
	w.queue = w.queue[1:]
	return q, true
}

// quit stops the worker; what it has not delivered counts as dropped.
func (w *worker) quit() {
	w.cancel()
	w.mu.Lock()
	w.dropped.Add(len(w.queue))
	w.queue = nil
	w.mu.Unlock()
}

// run delivers the queue in order until the worker is stopped.
func (w *worker) run() {
	for {
		q, ok := w.pop()
		if !ok {
			select {
			case <-w.ctx.Done():
				return
			case <-w.wake:
				continue
			}
		}
		if !w.deliver(q) && w.ctx.Err() != nil {
			return
		}
	}
}

// deliver tries q up to Attempts times and reports whether it got through.
func (w *worker) deliver(q queued) bool {
	cfg := w.d.cfg
	backoff := cfg.MinBackoff
	for attempt := 1; ; attempt++ {
		err := w.post(q)
		if err == nil {
			w.delivered.Inc()
			return true
		}
		if w.ctx.Err() != nil {
			return false
		}
		if attempt >= cfg.Attempts {
			w.failed.Inc()
			w.d.log.Warn("webhook: event not delivered; given up", "url_index", w.index, "host", hostOf(w.target.URL),
				"type", q.typ, "id", q.id, "attempts", attempt, "err", err)
			return false
		}
		w.retried.Inc()
		wait := backoff/2 + rand.N(backoff/2+1)
		backoff = min(2*backoff, cfg.MaxBackoff)
		select {
		case <-w.ctx.Done():
			return false
		case <-time.After(wait):
		}
	}
}

// post makes one delivery attempt: 2xx is delivered, anything else an error.
func (w *worker) post(q queued) error {
	ctx, cancel := context.WithTimeout(w.ctx, w.d.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.target.URL, bytes.NewReader(q.body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "sluice-webhook/1")
	req.Header.Set("Sluice-Event", q.typ)
	req.Header.Set("Sluice-Delivery", q.id)
	if w.target.Secret != "" {
		// Signed at each attempt, so a retry's timestamp is fresh.
		req.Header.Set(SignatureHeader, Sign(w.target.Secret, time.Now(), q.body))
	}
	resp, err := w.d.hc.Do(req)
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err // without the URL, which may carry a token
	}
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("answered %s", resp.Status)
	}
	return nil
}

// hostOf is a URL's host, what logs show instead of a URL that may carry a
// token in its path or query.
func hostOf(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Host
	}
	return ""
}
