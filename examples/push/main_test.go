package main

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
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/sluicegw/sluice/sdk/moqt"
	"github.com/sluicegw/sluice/sdk/moqt/hang"
)

// Test_main runs the example against a draft 19 MoQ server on loopback QUIC
// that subscribes to the catalog and the tracks it lists, as sluice's gateway
// and moq-relay do, and checks what arrives.
func Test_main(t *testing.T) {
	srv := newServer(t)
	os.Args = []string{"push", "-url", "moqt://" + srv.ln.Addr().String(), "-cert-sha256", srv.hash, "-stream", "cam1", "-seconds", "1.2"}
	out := captureStdout(t, main)
	if !strings.HasPrefix(out, "pushed ") || !strings.Contains(out, "over draft-19") {
		t.Fatalf("output %q", out)
	}
	var nv, na int
	fmt.Sscanf(out, "pushed %d video frames and %d audio packets", &nv, &na)
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.ns != "cam1" {
		t.Fatalf("namespace %q, want cam1", srv.ns)
	}
	if nv < 20 || srv.frames["video"] != nv || srv.frames["audio"] != na {
		t.Fatalf("the server got %v; the example says it pushed %d video and %d audio", srv.frames, nv, na)
	}
	if srv.groups["video"] != (nv+29)/30 {
		t.Fatalf("%d video groups for %d frames, want one per keyframe (every 30)", srv.groups["video"], nv)
	}
}

func captureStdout(t *testing.T, f func()) string {
	t.Helper()
	r, w, _ := os.Pipe()
	old := os.Stdout
	os.Stdout = w
	f()
	os.Stdout = old
	w.Close()
	b, _ := io.ReadAll(r)
	return string(b)
}

// server is a minimal draft 19 MoQT subscriber-side server.
type server struct {
	ln     *quic.Listener
	hash   string
	mu     sync.Mutex
	ns     string
	frames map[string]int // objects per track
	groups map[string]int // data streams per track
}

func newServer(t *testing.T) *server {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	ln, err := quic.ListenAddr("127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, NextProtos: []string{moqt.Draft19.ALPN()}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	s := &server{ln: ln, hash: hex.EncodeToString(sum[:]), frames: map[string]int{}, groups: map[string]int{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		conn, err := ln.Accept(context.Background())
		if err != nil {
			return
		}
		if err := s.serve(conn); err != nil && !errors.Is(err, io.EOF) {
			t.Log("server:", err)
		}
		<-conn.Context().Done()
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return s
}

func (s *server) serve(conn *quic.Conn) error {
	v := moqt.Draft19
	ctx := conn.Context()
	uni, err := conn.OpenUniStreamSync(ctx)
	if err != nil {
		return err
	}
	uni.Write((&moqt.Setup{}).Append(nil, v))
	req, err := conn.AcceptStream(ctx)
	if err != nil {
		return err
	}
	m, err := moqt.ReadMessage(req, v, 0)
	if err != nil {
		return err
	}
	pn, ok := m.(*moqt.PublishNamespace)
	if !ok {
		return fmt.Errorf("first request %T", m)
	}
	s.mu.Lock()
	s.ns = pn.Namespace.Path()
	s.mu.Unlock()
	req.Write((&moqt.RequestOK{}).Append(nil, v))
	names := map[uint64]string{}
	catalog := make(chan *hang.Catalog, 1)
	go s.readData(conn, v, names, catalog)
	subscribe := func(id uint64, track string) error {
		s.mu.Lock()
		names[id] = track
		s.mu.Unlock()
		str, err := conn.OpenStreamSync(ctx)
		if err != nil {
			return err
		}
		_, err = str.Write((&moqt.Subscribe{RequestID: id, Namespace: pn.Namespace, TrackName: track}).Append(nil, v))
		return err
	}
	if err := subscribe(1, hang.CatalogTrack); err != nil {
		return err
	}
	var c *hang.Catalog
	select {
	case c = <-catalog:
	case <-ctx.Done():
		return ctx.Err()
	}
	id := uint64(3)
	for name := range c.Video.Renditions {
		subscribe(id, name)
		id += 2
	}
	for name := range c.Audio.Renditions {
		subscribe(id, name)
		id += 2
	}
	return nil
}

// readData counts the objects and groups of every data stream.
func (s *server) readData(conn *quic.Conn, v moqt.Version, names map[uint64]string, catalog chan<- *hang.Catalog) {
	for {
		str, err := conn.AcceptUniStream(conn.Context())
		if err != nil {
			return
		}
		go func() {
			typ, err := moqt.ReadVarint(str, v)
			if err != nil || !moqt.IsSubgroupStream(typ, v) {
				return // the publisher's SETUP stream
			}
			sg, err := moqt.NewSubgroupReader(str, v, typ, 1<<20)
			if err != nil {
				return
			}
			s.mu.Lock()
			name := names[sg.Header.TrackAlias]
			s.groups[name]++
			s.mu.Unlock()
			for {
				o, err := sg.ReadObject()
				if err != nil {
					return
				}
				if name == hang.CatalogTrack {
					if c, err := hang.ParseCatalog(o.Payload); err == nil {
						catalog <- c
					}
					continue
				}
				s.mu.Lock()
				s.frames[name]++
				s.mu.Unlock()
			}
		}()
	}
}
