package push

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/sluicegw/sluice/sdk/moqt"
	"github.com/sluicegw/sluice/sdk/moqt/hang"
)

// relay is an in-test MoQT server on a real loopback QUIC listener, written
// with sdk/moqt alone. It plays the part of sluice's gateway (or moq-relay):
// it answers SETUP, accepts or refuses PUBLISH_NAMESPACE, subscribes to the
// tracks it is told to, and records every object and control message.
type relay struct {
	t      *testing.T
	ln     *quic.Listener
	hash   string // hex SHA-256 of its certificate
	url    string
	tracks []string // subscribed to, in order, after the announcement
	refuse *moqt.RequestError
	// stall holds data streams unread until it is closed.
	stall chan struct{}

	mu        sync.Mutex
	setup     moqt.Params
	announce  *moqt.PublishNamespace
	objects   []object
	dones     []*moqt.PublishDone
	nsDone    bool // PUBLISH_NAMESPACE_DONE or the request stream's end
	closeCode *quic.ApplicationError
	resets    int                  // data streams the publisher reset
	complete  map[[2]uint64]uint64 // {alias, group} → objects, for streams that ended with FIN
	changed   chan struct{}

	subscribed chan string // each track once its SUBSCRIBE_OK arrived
}

type object struct {
	alias, group, id uint64
	payload          []byte
	streamType       uint64
}

// relayOpts say how the relay behaves; the zero value accepts and subscribes
// to nothing.
type relayOpts struct {
	alpns  []string
	tracks []string
	refuse *moqt.RequestError
	stall  bool
}

func newRelay(t *testing.T, o relayOpts) *relay {
	t.Helper()
	cert, hash := selfSigned(t)
	if o.alpns == nil {
		o.alpns = []string{"moqt-19", "moqt-17", "moqt-16"}
	}
	ln, err := quic.ListenAddr("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: o.alpns},
		&quic.Config{MaxIncomingStreams: 100, MaxIncomingUniStreams: 1000})
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{t: t, ln: ln, hash: hash, url: fmt.Sprintf("moqt://%s/live", ln.Addr()), tracks: o.tracks,
		refuse: o.refuse, changed: make(chan struct{}, 1), complete: map[[2]uint64]uint64{}, subscribed: make(chan string, 64)}
	if o.stall {
		r.stall = make(chan struct{})
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				r.serve(ctx, conn)
			}()
		}
	}()
	t.Cleanup(func() {
		cancel()
		ln.Close()
		if r.stall != nil {
			r.release()
		}
		wg.Wait()
	})
	return r
}

func (r *relay) release() {
	select {
	case <-r.stall:
	default:
		close(r.stall)
	}
}

func selfSigned(t *testing.T) (tls.Certificate, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(24 * time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, hex.EncodeToString(sum[:])
}

func (r *relay) note(f func()) {
	r.mu.Lock()
	f()
	r.mu.Unlock()
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// waitFor polls cond (under r.mu) until it holds, failing after 10 s.
func (r *relay) waitFor(what string, cond func() bool) {
	r.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		ok := cond()
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-r.changed:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			r.t.Fatalf("relay: %s did not happen within 10 s", what)
		}
	}
}

func (r *relay) serve(ctx context.Context, conn *quic.Conn) {
	v, ok := moqt.VersionFromALPN(conn.ConnectionState().TLS.NegotiatedProtocol)
	if !ok {
		conn.CloseWithError(quic.ApplicationErrorCode(moqt.CodeVersionNegotiationFailed), "")
		return
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.readData(conn, v)
	}()
	var err error
	if v == moqt.Draft16 {
		err = r.serve16(conn, v)
	} else {
		err = r.serve17(ctx, conn, v, &wg)
	}
	if err != nil && !errors.Is(err, io.EOF) {
		var ae *quic.ApplicationError
		if errors.As(err, &ae) {
			r.note(func() { r.closeCode = ae })
			return
		}
		r.t.Logf("relay: %s: %v", v, err)
		conn.CloseWithError(quic.ApplicationErrorCode(moqt.CodeOf(err)), err.Error())
	}
	<-conn.Context().Done()
	var ae *quic.ApplicationError
	if errors.As(context.Cause(conn.Context()), &ae) {
		r.note(func() { r.closeCode = ae })
	}
}

// readData records the objects of every data stream the publisher opens.
func (r *relay) readData(conn *quic.Conn, v moqt.Version) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		if r.stall != nil {
			select {
			case <-r.stall:
			case <-conn.Context().Done():
				return
			}
		}
		str, err := conn.AcceptUniStream(conn.Context())
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.readSubgroup(str, v)
		}()
	}
}

func (r *relay) readSubgroup(str *quic.ReceiveStream, v moqt.Version) {
	typ, err := moqt.ReadVarint(str, v)
	if err != nil {
		return
	}
	if typ == moqt.StreamTypeSetup {
		r.readSetup17(str, v)
		return
	}
	sg, err := moqt.NewSubgroupReader(str, v, typ, 1<<20)
	if err != nil {
		r.t.Errorf("relay: subgroup header: %v", err)
		return
	}
	n := uint64(0)
	for {
		o, err := sg.ReadObject()
		if errors.Is(err, io.EOF) {
			r.note(func() { r.complete[[2]uint64{sg.Header.TrackAlias, sg.Header.GroupID}] = n })
			return
		}
		var se *quic.StreamError
		if errors.As(err, &se) {
			r.note(func() { r.resets++ })
			return
		}
		if err != nil {
			return
		}
		n++
		r.note(func() {
			r.objects = append(r.objects, object{alias: sg.Header.TrackAlias, group: sg.Header.GroupID, id: o.ID, payload: o.Payload, streamType: typ})
		})
	}
}

// readSetup17 reads the client's SETUP after its stream type (0x2F00).
func (r *relay) readSetup17(str *quic.ReceiveStream, v moqt.Version) {
	// The stream type is the SETUP message's type: re-frame the rest.
	var hdr [2]byte
	if _, err := io.ReadFull(str, hdr[:]); err != nil {
		return
	}
	payload := make([]byte, int(hdr[0])<<8|int(hdr[1]))
	if _, err := io.ReadFull(str, payload); err != nil {
		return
	}
	m, err := moqt.DecodeMessage(moqt.TypeSetup, payload, v)
	if err != nil {
		r.t.Errorf("relay: client SETUP: %v", err)
		return
	}
	r.note(func() { r.setup = m.(*moqt.Setup).Params })
	_, _ = io.Copy(io.Discard, str)
}

// aliases maps track aliases (the relay's request ids) to track names.
func (r *relay) aliasOf(track string) uint64 {
	if track == hang.CatalogTrack {
		return 1
	}
	for i, name := range r.tracks {
		if name == track {
			return uint64(3 + 2*i)
		}
	}
	return 0
}

func (r *relay) serve16(conn *quic.Conn, v moqt.Version) error {
	ctrl, err := conn.AcceptStream(conn.Context())
	if err != nil {
		return err
	}
	m, err := moqt.ReadMessage(ctrl, v, 0)
	if err != nil {
		return err
	}
	cs, ok := m.(*moqt.ClientSetup)
	if !ok {
		return fmt.Errorf("first message %T", m)
	}
	r.note(func() { r.setup = cs.Params })
	var mu sync.Mutex
	write := func(m moqt.Message) {
		mu.Lock()
		defer mu.Unlock()
		_, _ = ctrl.Write(m.Append(nil, v))
	}
	write(&moqt.ServerSetup{Params: moqt.Params{{Type: moqt.SetupMaxRequestID, Value: 100}}})
	for {
		m, err := moqt.ReadMessage(ctrl, v, 0)
		if err != nil {
			return err
		}
		switch m := m.(type) {
		case *moqt.PublishNamespace:
			r.note(func() { r.announce = m })
			if r.refuse != nil {
				re := *r.refuse
				re.RequestID = m.RequestID
				write(&re)
				continue
			}
			write(&moqt.RequestOK{RequestID: m.RequestID})
			for _, name := range append([]string{hang.CatalogTrack}, r.tracks...) {
				write(&moqt.Subscribe{RequestID: r.aliasOf(name), Namespace: m.Namespace, TrackName: name})
			}
		case *moqt.SubscribeOK:
			r.subscribed <- r.trackOf(m.RequestID)
		case *moqt.PublishDone:
			r.note(func() { r.dones = append(r.dones, m) })
		case *moqt.PublishNamespaceDone:
			r.note(func() { r.nsDone = true })
		case *moqt.RequestError:
			r.t.Errorf("relay: publisher refused request %d: %s", m.RequestID, m.Reason)
		default:
			return fmt.Errorf("relay: unexpected %T", m)
		}
	}
}

func (r *relay) trackOf(alias uint64) string {
	for _, name := range append([]string{hang.CatalogTrack}, r.tracks...) {
		if r.aliasOf(name) == alias {
			return name
		}
	}
	return fmt.Sprintf("alias %d", alias)
}

func (r *relay) serve17(ctx context.Context, conn *quic.Conn, v moqt.Version, wg *sync.WaitGroup) error {
	uni, err := conn.OpenUniStreamSync(ctx)
	if err != nil {
		return err
	}
	if _, err := uni.Write((&moqt.Setup{}).Append(nil, v)); err != nil {
		return err
	}
	req, err := conn.AcceptStream(conn.Context())
	if err != nil {
		return err
	}
	m, err := moqt.ReadMessage(req, v, 0)
	if err != nil {
		return err
	}
	pn, ok := m.(*moqt.PublishNamespace)
	if !ok {
		return fmt.Errorf("relay: first request %T", m)
	}
	r.note(func() { r.announce = pn })
	if r.refuse != nil {
		_, _ = req.Write(r.refuse.Append(nil, v))
		_ = req.Close()
		<-conn.Context().Done()
		return nil
	}
	if _, err := req.Write((&moqt.RequestOK{}).Append(nil, v)); err != nil {
		return err
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(io.Discard, req)
		r.note(func() { r.nsDone = true })
	}()
	for _, name := range append([]string{hang.CatalogTrack}, r.tracks...) {
		sub, err := conn.OpenStreamSync(ctx)
		if err != nil {
			return err
		}
		id := r.aliasOf(name)
		if _, err := sub.Write((&moqt.Subscribe{RequestID: id, Namespace: pn.Namespace, TrackName: name}).Append(nil, v)); err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.readSubscription(sub, v, name)
		}()
	}
	<-conn.Context().Done()
	return nil
}

// readSubscription reads a draft 17+ subscription's stream: SUBSCRIBE_OK,
// then PUBLISH_DONE and the end.
func (r *relay) readSubscription(sub *quic.Stream, v moqt.Version, name string) {
	for {
		m, err := moqt.ReadMessage(sub, v, 0)
		if err != nil {
			return
		}
		switch m := m.(type) {
		case *moqt.SubscribeOK:
			if m.TrackAlias != r.aliasOf(name) {
				r.t.Errorf("relay: %s: track alias %d, want the request id %d", name, m.TrackAlias, r.aliasOf(name))
			}
			r.subscribed <- name
		case *moqt.PublishDone:
			r.note(func() { r.dones = append(r.dones, m) })
		case *moqt.RequestError:
			r.t.Errorf("relay: %s refused: %s", name, m.Reason)
		}
	}
}

// waitSubscribed waits until the publisher accepted every subscription.
func (r *relay) waitSubscribed() {
	r.t.Helper()
	for range len(r.tracks) + 1 {
		select {
		case <-r.subscribed:
		case <-time.After(10 * time.Second):
			r.t.Fatal("relay: subscriptions not accepted within 10 s")
		}
	}
}

// objectsOf returns the recorded objects of a track, in arrival order.
func (r *relay) objectsOf(track string) []object {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []object
	for _, o := range r.objects {
		if o.alias == r.aliasOf(track) {
			out = append(out, o)
		}
	}
	return out
}

func (r *relay) count(track string) int { return len(r.objectsOf(track)) }

// frameOf parses a media object as a hang frame.
func frameOf(t *testing.T, o object) hang.Frame {
	t.Helper()
	f, err := hang.ParseFrame(o.payload)
	if err != nil {
		t.Fatal(err)
	}
	return f
}
