package moq

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sluicegw/sluice/gateway/internal/session"
	"github.com/sluicegw/sluice/internal/medialink"
	"github.com/sluicegw/sluice/internal/streamid"
	"github.com/sluicegw/sluice/internal/wire"
	"github.com/sluicegw/sluice/sdk/moqt"
	"github.com/sluicegw/sluice/sdk/moqt/hang"
)

// streamOf maps a MoQT namespace to the stream id it publishes: exactly one
// field, less a trailing ".hang" (moq-dev's broadcast suffix), that is a valid
// stream id. RATIONALE.md says why.
func streamOf(ns moqt.Namespace) (string, error) {
	if len(ns) != 1 {
		return "", fmt.Errorf("namespace %q has %d fields; a stream is one field (its id, optionally with %q)", ns.Path(), len(ns), hang.Suffix)
	}
	id := strings.TrimSuffix(ns[0], hang.Suffix)
	if err := streamid.Validate(id); err != nil {
		return "", fmt.Errorf("namespace %q: %w", ns[0], err)
	}
	return id, nil
}

// refusal is a request error code and reason.
type refusal struct {
	code   moqt.ErrorCode
	reason string
}

// broadcast is one published stream of a session: a hang broadcast whose
// catalog picks the tracks, each packetized to RTP into the stream's
// Publication. It is the Publication's Source.
type broadcast struct {
	s      *moqSession
	ns     moqt.Namespace
	stream string
	pub    *session.Publication
	// announce is the PUBLISH_NAMESPACE of the announce flow (we subscribe to
	// the catalog and tracks); nil in the PUBLISH flow (the client pushes them).
	announce *request
	once     sync.Once

	mu      sync.Mutex
	catalog *track            // catalog.json
	media   map[string]*track // media tracks by name: subscribed (announce) or pushed
	out     map[string]*rtpTrack
	next    uint8 // the next Publication track index
	ended   bool
	// cataloged is closed when the first catalog has been applied: a pushed
	// track's first frames may overtake the catalog and wait for it.
	cataloged     chan struct{}
	catalogedOnce sync.Once
	timer         *time.Timer // ends an announced broadcast whose catalog never comes
}

// RequestKeyframe implements session.Source. MoQT has no keyframe request a
// hang publisher honours: its groups start with keyframes at its own interval,
// and the node's viewers get the next one (RATIONALE.md).
func (b *broadcast) RequestKeyframe(uint8) {}

// openBroadcast admits, authorizes and places a new broadcast for ns, the
// same as WHIP does for a POST. announce is its PUBLISH_NAMESPACE (nil: the
// PUBLISH flow).
func (s *moqSession) openBroadcast(ns moqt.Namespace, token []byte, announce *request) (*broadcast, *refusal) {
	stream, err := streamOf(ns)
	if err != nil {
		return nil, &refusal{moqt.ReqUninterested, err.Error()}
	}
	ctx, cancel := context.WithTimeout(s.ctx, 15*time.Second)
	defer cancel()
	if ref := s.authorize(ctx, wire.KindPublish, stream, ns, token); ref != nil {
		return nil, ref
	}
	out, admitted, err := s.srv.core.Admit(ctx, session.Admission{Kind: wire.KindPublish, Stream: stream, Path: ns.Path(), Protocol: "moq", Client: s.client})
	switch {
	case err != nil:
		return nil, &refusal{moqt.ReqInternalError, err.Error()}
	case !admitted:
		return nil, &refusal{s.loadCode(), fmt.Sprintf("throttled (%s)", out.Action)}
	}
	pub, err := s.srv.core.Publish(ctx, session.PublishRequest{Stream: stream, Protocol: "moq", Client: s.client})
	if err != nil {
		s.srv.core.Refused()
		return nil, s.refusalOf(err)
	}
	b := &broadcast{s: s, ns: ns, stream: stream, pub: pub, announce: announce, media: map[string]*track{}, out: map[string]*rtpTrack{},
		cataloged: make(chan struct{})}
	s.mu.Lock()
	if s.ctx.Err() != nil {
		s.mu.Unlock()
		pub.Abort()
		return nil, &refusal{moqt.ReqInternalError, "session ended"}
	}
	s.bcasts[stream] = b
	s.mu.Unlock()
	pub.Start(b)
	s.log.Info("moq: publishing", "stream", stream, "namespace", ns.Path())
	return b, nil
}

// authorize asks Config.Authorize about a request carrying token (its
// AUTHORIZATION_TOKEN parameter, nil if none).
func (s *moqSession) authorize(ctx context.Context, kind, stream string, ns moqt.Namespace, token []byte) *refusal {
	if s.srv.cfg.Authorize == nil {
		return nil
	}
	tok := tokenValue(s.v, token)
	if tok == nil {
		tok = tokenValue(s.v, s.setupToken)
	}
	if tok == nil {
		tok = s.urlToken
	}
	if err := s.srv.cfg.Authorize(ctx, Auth{Kind: kind, Stream: stream, Path: ns.Path(), Client: s.client, Token: tok}); err != nil {
		return &refusal{moqt.ReqUnauthorized, err.Error()}
	}
	return nil
}

// tokenValue is the value of the drafts' Token structure sent by value (Alias
// Type USE_VALUE, Token Type, value). Bytes that are not one are taken as the
// token itself, as clients that send a bare JWT do; the alias types are not
// served (our MAX_AUTH_TOKEN_CACHE_SIZE is 0) and give nil.
func tokenValue(v moqt.Version, b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	alias, n, err := moqt.ParseVarint(b, v)
	if err != nil || alias != 0x3 {
		if err == nil && alias <= 0x2 {
			return nil
		}
		return b
	}
	_, m, err := moqt.ParseVarint(b[n:], v)
	if err != nil {
		return nil
	}
	return b[n+m:]
}

// loadCode is EXCESSIVE_LOAD where the draft has it (17+), else INTERNAL_ERROR.
func (s *moqSession) loadCode() moqt.ErrorCode {
	if s.v == moqt.Draft16 {
		return moqt.ReqInternalError
	}
	return moqt.ReqExcessiveLoad
}

// refusalOf answers the core's refusals in MoQT terms.
func (s *moqSession) refusalOf(err error) *refusal {
	var se *session.Error
	if errors.As(err, &se) {
		switch se.Status {
		case http.StatusConflict:
			return &refusal{moqt.ReqDuplicateSubscription, se.Detail}
		case http.StatusUnauthorized, http.StatusForbidden:
			return &refusal{moqt.ReqUnauthorized, se.Detail}
		case http.StatusTooManyRequests, http.StatusServiceUnavailable:
			return &refusal{s.loadCode(), se.Title + ": " + se.Detail}
		}
		return &refusal{moqt.ReqInternalError, se.Title + ": " + se.Detail}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return &refusal{moqt.ReqTimeout, err.Error()}
	}
	return &refusal{moqt.ReqInternalError, err.Error()}
}

// onPublishNamespace serves the announce flow: admit and place, REQUEST_OK,
// then subscribe to the catalog, whose tracks are subscribed in turn.
func (s *moqSession) onPublishNamespace(r *request, m *moqt.PublishNamespace) {
	tok, _ := m.Params.Get(moqt.ParamAuthToken)
	b, ref := s.openBroadcast(m.Namespace, tok.Bytes, r)
	if ref != nil {
		r.refuse(ref.code, ref.reason)
		return
	}
	r.handle(func(m message) {
		if _, ok := m.(*moqt.PublishNamespaceDone); ok {
			r.release()
			b.end("announcement withdrawn", nil)
		}
	}, func() { b.end("announcement withdrawn", nil) })
	if err := r.send(&moqt.RequestOK{RequestID: r.id}); err != nil {
		b.end("could not accept the announcement", nil)
		return
	}
	b.mu.Lock()
	b.timer = time.AfterFunc(s.srv.cfg.TrackTimeout, func() {
		b.mu.Lock()
		got := len(b.out) > 0
		b.mu.Unlock()
		if !got {
			b.end("no usable catalog within "+s.srv.cfg.TrackTimeout.String(), &refusal{moqt.ReqTimeout, "no usable catalog"})
		}
	})
	b.mu.Unlock()
	tr, err := s.subscribe(b, hang.CatalogTrack)
	if err != nil {
		b.end("could not subscribe to the catalog: "+err.Error(), &refusal{moqt.ReqInternalError, "catalog subscription failed"})
		return
	}
	b.mu.Lock()
	b.catalog = tr
	b.mu.Unlock()
}

// onPublish serves the PUBLISH flow: the client pushes a track of a
// namespace; the first for a namespace admits and places its broadcast.
func (s *moqSession) onPublish(r *request, m *moqt.Publish) {
	stream, err := streamOf(m.Namespace)
	if err != nil {
		r.refuse(moqt.ReqUninterested, err.Error())
		return
	}
	// PUBLISHes of one namespace may come back to back: the first makes the
	// broadcast, the others wait for it.
	s.openMu.Lock()
	defer s.openMu.Unlock()
	s.mu.Lock()
	b := s.bcasts[stream]
	s.mu.Unlock()
	if b != nil && b.announce != nil {
		r.refuse(moqt.ReqDuplicateSubscription, "the namespace is announced in this session: the gateway subscribes to its tracks")
		return
	}
	if b == nil {
		tok, _ := m.Params.Get(moqt.ParamAuthToken)
		var ref *refusal
		if b, ref = s.openBroadcast(m.Namespace, tok.Bytes, nil); ref != nil {
			r.refuse(ref.code, ref.reason)
			return
		}
	}
	tr := &track{s: s, b: b, name: m.TrackName, alias: m.TrackAlias, req: r, catalog: m.TrackName == hang.CatalogTrack}
	if err := s.addTrack(tr); err != nil {
		s.fail(err)
		return
	}
	r.handle(func(m message) {
		switch m.(type) {
		case *moqt.PublishDone:
			r.release()
			tr.ended("publish done")
		}
	}, func() { tr.ended("publish stream closed") })
	var ok moqt.Message = &moqt.RequestOK{}
	if s.v != moqt.Draft19 {
		ok = &moqt.PublishOK{RequestID: r.id}
	}
	if err := r.send(ok); err != nil {
		return
	}
	tr.watch()
	b.mu.Lock()
	if tr.catalog {
		b.catalog = tr
	} else {
		b.media[tr.name] = tr
	}
	b.mu.Unlock()
}

// subscribe sends SUBSCRIBE for a track of an announced broadcast. The track
// alias is our request id until SUBSCRIBE_OK says otherwise (draft 16).
func (s *moqSession) subscribe(b *broadcast, name string) (*track, error) {
	r, err := s.ourRequest()
	if err != nil {
		return nil, err
	}
	tr := &track{s: s, b: b, name: name, alias: r.id, req: r, catalog: name == hang.CatalogTrack}
	if err := s.addTrack(tr); err != nil {
		r.release()
		return nil, err
	}
	r.handle(tr.onResponse, func() { tr.ended("subscription closed") })
	if err := r.send(&moqt.Subscribe{RequestID: r.id, Namespace: b.ns, TrackName: name}); err != nil {
		s.dropTrack(tr)
		r.release()
		return nil, err
	}
	if r.stream != nil {
		s.goOwned(func() {
			if err := r.follow(); err != nil {
				s.fail(err)
			}
		})
	}
	tr.watch()
	return tr, nil
}

// onCatalog applies a catalog: the best video and audio renditions RTP can
// carry become (or stay) the Publication's tracks; in the announce flow they
// are subscribed, and tracks the catalog no longer lists are unsubscribed.
func (b *broadcast) onCatalog(c *hang.Catalog) {
	picks := pickRenditions(c)
	b.mu.Lock()
	if b.ended {
		b.mu.Unlock()
		return
	}
	var added []medialink.Track
	var drop []*track
	var subscribe []string
	for name, tr := range b.media {
		if _, ok := picks[name]; !ok && b.announce != nil {
			drop = append(drop, tr)
			delete(b.media, name)
		}
	}
	for name, p := range picks {
		out := b.out[name]
		if out == nil || out.codec != p.codec {
			if int(b.next) >= medialink.MaxTracks {
				continue
			}
			out = newRTPTrack(b.next, p.codec, p.info, b.pub.WriteRTP)
			b.next++
			b.out[name] = out
			added = append(added, out.track())
		}
		if b.announce != nil && b.media[name] == nil {
			subscribe = append(subscribe, name)
		}
	}
	b.mu.Unlock()
	for _, tr := range drop {
		tr.cancel(moqt.ReqInternalError)
	}
	if len(added) > 0 {
		// One announcement for all of them, so a viewer that joins sees every track.
		b.pub.AddTrack(added...)
		b.s.log.Info("moq: tracks", "stream", b.stream, "tracks", trackNames(added))
	}
	b.catalogedOnce.Do(func() { close(b.cataloged) })
	sort.Strings(subscribe)
	for _, name := range subscribe {
		tr, err := b.s.subscribe(b, name)
		if err != nil {
			b.s.log.Warn("moq: subscribe", "stream", b.stream, "track", name, "err", err)
			continue
		}
		b.mu.Lock()
		b.media[name] = tr
		b.mu.Unlock()
	}
}

func trackNames(ts []medialink.Track) string {
	var parts []string
	for _, t := range ts {
		parts = append(parts, fmt.Sprintf("%d:%s", t.Index, t.MimeType))
	}
	return strings.Join(parts, " ")
}

// rendition is a catalog track RTP can carry.
type rendition struct {
	codec string
	info  codecInfo
	area  uint64 // video: coded pixels, to pick the largest
}

// pickRenditions picks the largest video rendition and the first audio
// rendition (by name) RTP carries: WHEP viewers take one track of each kind.
func pickRenditions(c *hang.Catalog) map[string]rendition {
	out := map[string]rendition{}
	best := func(cands map[string]rendition) {
		names := make([]string, 0, len(cands))
		for n := range cands {
			names = append(names, n)
		}
		sort.Strings(names)
		pick := ""
		for _, n := range names {
			if pick == "" || cands[n].area > cands[pick].area {
				pick = n
			}
		}
		if pick != "" {
			out[pick] = cands[pick]
		}
	}
	if c.Video != nil {
		cands := map[string]rendition{}
		for name, v := range c.Video.Renditions {
			if info, err := rtpCodec(v.Codec, v.Description); err == nil && info.kind == "video" && hang.ContainerKind(v.Container) == hang.ContainerLegacy {
				cands[name] = rendition{codec: v.Codec, info: info, area: v.CodedWidth * v.CodedHeight}
			}
		}
		best(cands)
	}
	if c.Audio != nil {
		cands := map[string]rendition{}
		for name, a := range c.Audio.Renditions {
			if info, err := rtpCodec(a.Codec, a.Description); err == nil && info.kind == "audio" && hang.ContainerKind(a.Container) == hang.ContainerLegacy {
				cands[name] = rendition{codec: a.Codec, info: info}
			}
		}
		best(cands)
	}
	return out
}

// output is the RTP track a media track's frames go to, if the catalog picked
// it. Before the first catalog it waits for one up to catalogWait.
func (b *broadcast) output(name string) *rtpTrack {
	select {
	case <-b.cataloged:
	default:
		t := time.NewTimer(catalogWait)
		select {
		case <-b.cataloged:
		case <-t.C:
		case <-b.s.ctx.Done():
		}
		t.Stop()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.out[name]
}

// catalogWait is how long a frame that overtook its broadcast's first catalog
// waits for it.
const catalogWait = time.Second

// end stops the broadcast once: its tracks' subscriptions, the announcement
// (with ref, when we end it: PUBLISH_NAMESPACE_CANCEL or a reset), and the
// Publication, so the node ends the stream for its viewers.
func (b *broadcast) end(reason string, ref *refusal) {
	b.once.Do(func() {
		b.mu.Lock()
		b.ended = true
		if b.timer != nil {
			b.timer.Stop()
		}
		tracks := make([]*track, 0, len(b.media)+1)
		for _, tr := range b.media {
			tracks = append(tracks, tr)
		}
		if b.catalog != nil {
			tracks = append(tracks, b.catalog)
		}
		b.mu.Unlock()
		for _, tr := range tracks {
			tr.cancel(moqt.ReqInternalError)
		}
		if b.announce != nil && ref != nil {
			b.announce.cancelNamespace(ref.code, ref.reason)
		} else if b.announce != nil {
			b.announce.release()
		}
		s := b.s
		s.mu.Lock()
		if s.bcasts[b.stream] == b {
			delete(s.bcasts, b.stream)
		}
		s.mu.Unlock()
		b.pub.End()
		s.log.Info("moq: broadcast ended", "stream", b.stream, "reason", reason)
	})
}
