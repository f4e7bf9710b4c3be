// Package moqtest is a small MoQT publisher built on sdk/moqt, for tests of
// the gateway's MoQ endpoint: it dials raw QUIC or WebTransport, does SETUP in
// drafts 16, 17 and 19, publishes a hang broadcast by announcing it (and
// answering the server's SUBSCRIBEs) or by PUBLISH, and writes frames as
// moq-dev's publisher lays them out (one data stream per group, one object
// per frame). It also writes raw bytes, for bad-input tests.
package moqtest

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/webtransport-go"

	"github.com/sluicegw/sluice/sdk/moqt"
	"github.com/sluicegw/sluice/sdk/moqt/hang"
)

// conn is the transport: a QUIC connection or a WebTransport session.
type conn struct {
	ctx        context.Context
	openBidi   func(context.Context) (bidi, error)
	openUni    func(context.Context) (io.WriteCloser, error)
	acceptBidi func(context.Context) (bidi, error)
	acceptUni  func(context.Context) (io.Reader, error)
	close      func(code uint64, reason string)
	// closeCode is the code the server closed with, once it has.
	closeCode func() (uint64, bool)
}

type bidi interface {
	io.ReadWriteCloser
}

// Client is one MoQT session of a test publisher.
type Client struct {
	V    moqt.Version
	c    conn
	ctrl bidi // draft 16
	wmu  sync.Mutex

	mu      sync.Mutex
	nextID  uint64
	waiting map[uint64]chan moqt.Message // draft 16 responses by request id
	tracks  map[string]*Track            // subscribed or published, by name
	subs    chan string                  // names of tracks the server subscribed
	catalog []byte
	ns      moqt.Namespace
}

// Track is a track the server receives: its alias and current group.
type Track struct {
	Name  string
	alias uint64
	c     *Client
	mu    sync.Mutex
	group uint64
	obj   uint64
	w     io.WriteCloser
	sw    moqt.SubgroupWriter
	began bool
}

func pinned(hash string) *tls.Config {
	return &tls.Config{InsecureSkipVerify: true, VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
		if hash == "" {
			return nil
		}
		if len(raw) == 0 {
			return errors.New("no certificate")
		}
		sum := sha256.Sum256(raw[0])
		if hex.EncodeToString(sum[:]) != hash {
			return errors.New("certificate hash does not match")
		}
		return nil
	}}
}

// Dial opens a raw QUIC session with the ALPN of v, trusting the certificate
// whose SHA-256 is hash (any certificate if hash is ""), and does SETUP.
func Dial(ctx context.Context, addr string, v moqt.Version, hash string) (*Client, error) {
	return DialALPN(ctx, addr, v, v.ALPN(), hash)
}

// DialALPN is Dial offering alpn (to test version negotiation) and speaking v.
func DialALPN(ctx context.Context, addr string, v moqt.Version, alpn, hash string) (*Client, error) {
	tc := pinned(hash)
	tc.NextProtos = []string{alpn}
	qc, err := quic.DialAddr(ctx, addr, tc, &quic.Config{MaxIdleTimeout: 30 * time.Second})
	if err != nil {
		return nil, err
	}
	c := conn{ctx: qc.Context(),
		openBidi:   func(ctx context.Context) (bidi, error) { return qc.OpenStreamSync(ctx) },
		openUni:    func(ctx context.Context) (io.WriteCloser, error) { return qc.OpenUniStreamSync(ctx) },
		acceptBidi: func(ctx context.Context) (bidi, error) { return qc.AcceptStream(ctx) },
		acceptUni:  func(ctx context.Context) (io.Reader, error) { return qc.AcceptUniStream(ctx) },
		close:      func(code uint64, r string) { _ = qc.CloseWithError(quic.ApplicationErrorCode(code), r) },
		closeCode: func() (uint64, bool) {
			var ae *quic.ApplicationError
			if errors.As(context.Cause(qc.Context()), &ae) && ae.Remote {
				return uint64(ae.ErrorCode), true
			}
			return 0, false
		}}
	return start(ctx, c, v)
}

// DialWebTransport opens a WebTransport session to url offering protocols
// (most preferred first), pinning the certificate hash, and does SETUP in the
// version the server picked. It returns the picked protocol with an error
// when the server picked none it speaks.
func DialWebTransport(ctx context.Context, url, hash string, protocols []string) (*Client, string, error) {
	tc := pinned(hash)
	tc.NextProtos = []string{http3.NextProtoH3}
	d := &webtransport.Transport{TLSClientConfig: tc, ApplicationProtocols: protocols,
		QUICConfig: &quic.Config{EnableDatagrams: true, EnableStreamResetPartialDelivery: true, MaxIdleTimeout: 30 * time.Second}}
	rsp, sess, err := d.Dial(ctx, url, http.Header{})
	if err != nil {
		return nil, "", fmt.Errorf("webtransport dial: %w", err)
	}
	_ = rsp
	proto := sess.SessionState().ApplicationProtocol
	c := conn{ctx: sess.Context(),
		openBidi:   func(ctx context.Context) (bidi, error) { return sess.OpenStreamSync(ctx) },
		openUni:    func(ctx context.Context) (io.WriteCloser, error) { return sess.OpenUniStreamSync(ctx) },
		acceptBidi: func(ctx context.Context) (bidi, error) { return sess.AcceptStream(ctx) },
		acceptUni:  func(ctx context.Context) (io.Reader, error) { return sess.AcceptUniStream(ctx) },
		close:      func(code uint64, r string) { _ = sess.CloseWithError(webtransport.SessionErrorCode(code), r) },
		closeCode: func() (uint64, bool) {
			// The session's context says only that it ended; its streams say why.
			_, err := sess.AcceptStream(context.Background())
			var se *webtransport.SessionError
			if errors.As(err, &se) && se.Remote {
				return uint64(se.ErrorCode), true
			}
			return 0, false
		}}
	v, ok := moqt.VersionFromALPN(proto)
	if !ok {
		return &Client{c: c}, proto, fmt.Errorf("the server picked protocol %q", proto)
	}
	cl, err := start(ctx, c, v)
	return cl, proto, err
}

func start(ctx context.Context, c conn, v moqt.Version) (*Client, error) {
	cl := &Client{V: v, c: c, waiting: map[uint64]chan moqt.Message{}, tracks: map[string]*Track{}, subs: make(chan string, 64)}
	if err := cl.setup(ctx); err != nil {
		c.close(0, "")
		return nil, err
	}
	go cl.acceptRequests()
	if v == moqt.Draft16 {
		go cl.readControl()
	}
	return cl, nil
}

func (cl *Client) setup(ctx context.Context) error {
	if cl.V == moqt.Draft16 {
		st, err := cl.c.openBidi(ctx)
		if err != nil {
			return err
		}
		cl.ctrl = st
		if _, err := st.Write((&moqt.ClientSetup{Params: moqt.Params{{Type: moqt.SetupMaxRequestID, Value: 1000},
			{Type: moqt.SetupImplementation, Bytes: []byte("moqtest")}}}).Append(nil, cl.V)); err != nil {
			return err
		}
		m, err := moqt.ReadMessage(st, cl.V, 0)
		if err != nil {
			return fmt.Errorf("read SERVER_SETUP: %w", err)
		}
		if _, ok := m.(*moqt.ServerSetup); !ok {
			return fmt.Errorf("got %T, want SERVER_SETUP", m)
		}
		return nil
	}
	out, err := cl.c.openUni(ctx)
	if err != nil {
		return err
	}
	if _, err := out.Write((&moqt.Setup{Params: moqt.Params{{Type: moqt.SetupImplementation, Bytes: []byte("moqtest")}}}).Append(nil, cl.V)); err != nil {
		return err
	}
	in, err := cl.c.acceptUni(ctx)
	if err != nil {
		return err
	}
	m, err := moqt.ReadMessage(in, cl.V, 0)
	if err != nil {
		return fmt.Errorf("read SETUP: %w", err)
	}
	if _, ok := m.(*moqt.Setup); !ok {
		return fmt.Errorf("got %T, want SETUP", m)
	}
	return nil
}

// Close ends the session with NO_ERROR.
func (cl *Client) Close() { cl.c.close(0, "") }

// Done is closed when the session ends.
func (cl *Client) Done() <-chan struct{} { return cl.c.ctx.Done() }

// ClosedWith waits until the server closes the session and returns its code.
func (cl *Client) ClosedWith(ctx context.Context) (uint64, error) {
	select {
	case <-cl.c.ctx.Done():
	case <-ctx.Done():
		return 0, fmt.Errorf("the session is still open: %w", ctx.Err())
	}
	code, ok := cl.c.closeCode()
	if !ok {
		return 0, fmt.Errorf("the session ended without a close code from the server: %v", context.Cause(cl.c.ctx))
	}
	return code, nil
}

// RequestError is a REQUEST_ERROR the server answered with.
type RequestError struct {
	Code   moqt.ErrorCode
	Reason string
}

func (e *RequestError) Error() string {
	return fmt.Sprintf("REQUEST_ERROR 0x%x: %s", uint64(e.Code), e.Reason)
}

// request sends m and waits for its answer.
func (cl *Client) request(ctx context.Context, id uint64, m moqt.Message) (moqt.Message, bidi, error) {
	if cl.V == moqt.Draft16 {
		ch := make(chan moqt.Message, 4)
		cl.mu.Lock()
		cl.waiting[id] = ch
		cl.mu.Unlock()
		if err := cl.writeControl(m); err != nil {
			return nil, nil, err
		}
		select {
		case a := <-ch:
			return a, nil, nil
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-cl.c.ctx.Done():
			return nil, nil, fmt.Errorf("session closed: %v", context.Cause(cl.c.ctx))
		}
	}
	st, err := cl.c.openBidi(ctx)
	if err != nil {
		return nil, nil, err
	}
	if _, err := st.Write(m.Append(nil, cl.V)); err != nil {
		return nil, nil, err
	}
	a, err := moqt.ReadMessage(st, cl.V, 0)
	return a, st, err
}

func (cl *Client) writeControl(m moqt.Message) error {
	cl.wmu.Lock()
	defer cl.wmu.Unlock()
	_, err := cl.ctrl.Write(m.Append(nil, cl.V))
	return err
}

func (cl *Client) newID() uint64 {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	id := cl.nextID
	cl.nextID += 2
	return id
}

// Announce publishes the namespace (PUBLISH_NAMESPACE) with catalog as its
// catalog.json, and answers the server's SUBSCRIBEs from then on. A refusal
// comes back as a *RequestError.
func (cl *Client) Announce(ctx context.Context, ns moqt.Namespace, catalog *hang.Catalog) error {
	cat, err := catalog.Marshal()
	if err != nil {
		return err
	}
	cl.mu.Lock()
	cl.catalog, cl.ns = cat, ns
	cl.mu.Unlock()
	id := cl.newID()
	a, _, err := cl.request(ctx, id, &moqt.PublishNamespace{RequestID: id, Namespace: ns})
	if err != nil {
		return err
	}
	switch a := a.(type) {
	case *moqt.RequestOK:
		return nil
	case *moqt.RequestError:
		return &RequestError{Code: a.Code, Reason: a.Reason}
	}
	return fmt.Errorf("PUBLISH_NAMESPACE answered with %T", a)
}

// Publish pushes a track with PUBLISH (the flow MediaMTX uses). The catalog
// track's group is sent at once.
func (cl *Client) Publish(ctx context.Context, ns moqt.Namespace, name string, catalog *hang.Catalog) (*Track, error) {
	id := cl.newID()
	alias := id + 1000
	a, _, err := cl.request(ctx, id, &moqt.Publish{RequestID: id, Namespace: ns, TrackName: name, TrackAlias: alias})
	if err != nil {
		return nil, err
	}
	switch a := a.(type) {
	case *moqt.RequestOK, *moqt.PublishOK:
	case *moqt.RequestError:
		return nil, &RequestError{Code: a.Code, Reason: a.Reason}
	default:
		return nil, fmt.Errorf("PUBLISH answered with %T", a)
	}
	t := &Track{Name: name, alias: alias, c: cl}
	cl.mu.Lock()
	cl.tracks[name] = t
	cl.mu.Unlock()
	if catalog != nil {
		cat, err := catalog.Marshal()
		if err != nil {
			return nil, err
		}
		if err := t.WriteObject(ctx, true, cat); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// WaitSubscribed waits until the server has subscribed to every named track.
func (cl *Client) WaitSubscribed(ctx context.Context, names ...string) error {
	for {
		cl.mu.Lock()
		missing := ""
		for _, n := range names {
			if cl.tracks[n] == nil {
				missing = n
			}
		}
		cl.mu.Unlock()
		if missing == "" {
			return nil
		}
		select {
		case <-cl.subs:
		case <-ctx.Done():
			return fmt.Errorf("the server did not subscribe to %q: %w", missing, ctx.Err())
		case <-cl.c.ctx.Done():
			return fmt.Errorf("session closed: %v", context.Cause(cl.c.ctx))
		}
	}
}

// Track returns a track the server subscribed to (or that was published), or nil.
func (cl *Client) Track(name string) *Track {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.tracks[name]
}

// readControl reads the draft 16 control stream: answers to our requests, and
// the server's SUBSCRIBEs.
func (cl *Client) readControl() {
	for {
		m, err := moqt.ReadMessage(cl.ctrl, cl.V, 0)
		if err != nil {
			return
		}
		var id uint64
		switch m := m.(type) {
		case *moqt.Subscribe:
			cl.onSubscribe(m, nil)
			continue
		case *moqt.RequestOK:
			id = m.RequestID
		case *moqt.RequestError:
			id = m.RequestID
		case *moqt.PublishOK:
			id = m.RequestID
		case *moqt.Unsubscribe:
			cl.unsubscribed(m.RequestID)
			continue
		default:
			continue
		}
		cl.mu.Lock()
		ch := cl.waiting[id]
		cl.mu.Unlock()
		if ch != nil {
			ch <- m
		}
	}
}

// acceptRequests serves the server's request streams (draft 17+ SUBSCRIBE).
func (cl *Client) acceptRequests() {
	for {
		st, err := cl.c.acceptBidi(cl.c.ctx)
		if err != nil {
			return
		}
		go func() {
			m, err := moqt.ReadMessage(st, cl.V, 0)
			if err != nil {
				return
			}
			if sub, ok := m.(*moqt.Subscribe); ok {
				cl.onSubscribe(sub, st)
				_, _ = io.Copy(io.Discard, st) // until the server unsubscribes
				cl.unsubscribed(sub.RequestID)
			}
		}()
	}
}

func (cl *Client) unsubscribed(id uint64) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	for n, t := range cl.tracks {
		if t.alias == id {
			delete(cl.tracks, n)
		}
	}
}

// onSubscribe accepts a SUBSCRIBE (alias = its request id, as @moq/net does)
// and sends the catalog's group when the catalog is asked for.
func (cl *Client) onSubscribe(m *moqt.Subscribe, st bidi) {
	ok := &moqt.SubscribeOK{RequestID: m.RequestID, TrackAlias: m.RequestID, Params: moqt.Params{{Type: moqt.ParamGroupOrder, Value: 2}}}
	var err error
	if st == nil {
		err = cl.writeControl(ok)
	} else {
		_, err = st.Write(ok.Append(nil, cl.V))
	}
	if err != nil {
		return
	}
	t := &Track{Name: m.TrackName, alias: m.RequestID, c: cl}
	cl.mu.Lock()
	cl.tracks[m.TrackName] = t
	cat := cl.catalog
	cl.mu.Unlock()
	if m.TrackName == hang.CatalogTrack && cat != nil {
		_ = t.WriteObject(cl.c.ctx, true, cat)
	}
	select {
	case cl.subs <- m.TrackName:
	default:
	}
}

// WriteFrame writes a hang frame: a keyframe starts a new group (a new data
// stream), any other frame continues the current one.
func (t *Track) WriteFrame(ctx context.Context, key bool, tsMicros uint64, payload []byte) error {
	return t.WriteObject(ctx, key, hang.Frame{TimestampMicros: tsMicros, Payload: payload}.Append(nil))
}

// WriteObject writes one object: newGroup starts a group on a new stream.
func (t *Track) WriteObject(ctx context.Context, newGroup bool, payload []byte) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if newGroup || t.w == nil {
		if t.w != nil {
			_ = t.w.Close()
			t.group++
		}
		w, err := t.c.c.openUni(ctx)
		if err != nil {
			return err
		}
		t.w, t.obj = w, 0
		t.sw = moqt.SubgroupWriter{V: t.c.V, Header: moqt.SubgroupHeader{TrackAlias: t.alias, GroupID: t.group,
			HasPriority: true, EndOfGroup: true, FirstObject: true}}
		if _, err := w.Write(t.sw.AppendHeader(nil)); err != nil {
			return err
		}
	} else {
		t.obj++
	}
	b, err := t.sw.AppendObject(nil, moqt.Object{ID: t.obj, Payload: payload})
	if err != nil {
		return err
	}
	_, err = t.w.Write(b)
	return err
}

// EndGroup ends the current group's stream.
func (t *Track) EndGroup() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.w != nil {
		_ = t.w.Close()
		t.w = nil
		t.group++
	}
}

// WriteRaw writes b on the control stream (draft 16) or a new request stream
// (17+): for malformed input.
func (cl *Client) WriteRaw(ctx context.Context, b []byte) error {
	if cl.V == moqt.Draft16 {
		cl.wmu.Lock()
		defer cl.wmu.Unlock()
		_, err := cl.ctrl.Write(b)
		return err
	}
	st, err := cl.c.openBidi(ctx)
	if err != nil {
		return err
	}
	_, err = st.Write(b)
	return err
}
