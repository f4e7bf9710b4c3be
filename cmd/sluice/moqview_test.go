package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/sluicegw/sluice/internal/freeport"
	"github.com/sluicegw/sluice/internal/mediatest"
	"github.com/sluicegw/sluice/internal/moqtest"
	"github.com/sluicegw/sluice/sdk/moqt"
	"github.com/sluicegw/sluice/sdk/moqt/hang"
)

// moqViewer is a MoQT subscriber over raw QUIC written here on sdk/moqt: it
// subscribes to tracks of one broadcast and collects their objects.
type moqViewer struct {
	v     moqt.Version
	token string // sent as every SUBSCRIBE's AUTHORIZATION_TOKEN, when set
	qc    *quic.Conn
	ctrl  *quic.Stream // draft 16
	wmu   sync.Mutex
	next  uint64

	mu      sync.Mutex
	names   map[uint64]string // track alias → name
	objects map[string][]viewedObject
	oks     map[uint64]chan moqt.Message // draft 16 responses by request id
}

type viewedObject struct {
	group, id uint64
	frame     hang.Frame
	raw       []byte
}

func dialViewer(ctx context.Context, addr, hash string, v moqt.Version) (*moqViewer, error) {
	tc := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{v.ALPN()},
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			sum := sha256.Sum256(raw[0])
			if hex.EncodeToString(sum[:]) != hash {
				return errors.New("certificate hash does not match")
			}
			return nil
		}}
	qc, err := quic.DialAddr(ctx, addr, tc, &quic.Config{MaxIdleTimeout: 30 * time.Second, MaxIncomingUniStreams: 10000})
	if err != nil {
		return nil, err
	}
	mv := &moqViewer{v: v, qc: qc, names: map[uint64]string{}, objects: map[string][]viewedObject{}, oks: map[uint64]chan moqt.Message{}}
	if err := mv.setup(ctx); err != nil {
		_ = qc.CloseWithError(0, "")
		return nil, err
	}
	go mv.acceptData()
	return mv, nil
}

func (mv *moqViewer) setup(ctx context.Context) error {
	if mv.v == moqt.Draft16 {
		st, err := mv.qc.OpenStreamSync(ctx)
		if err != nil {
			return err
		}
		mv.ctrl = st
		if _, err := st.Write((&moqt.ClientSetup{Params: moqt.Params{{Type: moqt.SetupMaxRequestID, Value: 100}}}).Append(nil, mv.v)); err != nil {
			return err
		}
		if m, err := moqt.ReadMessage(st, mv.v, 0); err != nil {
			return fmt.Errorf("SERVER_SETUP: %w", err)
		} else if _, ok := m.(*moqt.ServerSetup); !ok {
			return fmt.Errorf("got %T, want SERVER_SETUP", m)
		}
		go mv.readControl16()
		return nil
	}
	out, err := mv.qc.OpenUniStreamSync(ctx)
	if err != nil {
		return err
	}
	if _, err := out.Write((&moqt.Setup{}).Append(nil, mv.v)); err != nil {
		return err
	}
	in, err := mv.qc.AcceptUniStream(ctx)
	if err != nil {
		return err
	}
	if m, err := moqt.ReadMessage(in, mv.v, 0); err != nil {
		return fmt.Errorf("SETUP: %w", err)
	} else if _, ok := m.(*moqt.Setup); !ok {
		return fmt.Errorf("got %T, want SETUP", m)
	}
	return nil
}

func (mv *moqViewer) readControl16() {
	for {
		m, err := moqt.ReadMessage(mv.ctrl, mv.v, 0)
		if err != nil {
			return
		}
		var id uint64
		switch m := m.(type) {
		case *moqt.SubscribeOK:
			id = m.RequestID
		case *moqt.RequestError:
			id = m.RequestID
		case *moqt.PublishDone:
			id = m.RequestID
		default:
			continue
		}
		mv.mu.Lock()
		ch := mv.oks[id]
		mv.mu.Unlock()
		if ch != nil {
			select {
			case ch <- m:
			default:
			}
		}
	}
}

// subscribe sends SUBSCRIBE for a track and waits for SUBSCRIBE_OK.
func (mv *moqViewer) subscribe(ctx context.Context, ns, name string) (*moqt.SubscribeOK, error) {
	mv.mu.Lock()
	id := mv.next
	mv.next += 2
	ch := make(chan moqt.Message, 4)
	mv.oks[id] = ch
	mv.mu.Unlock()
	sub := &moqt.Subscribe{RequestID: id, Namespace: moqt.Namespace{ns}, TrackName: name}
	if mv.token != "" {
		sub.Params = moqt.Params{{Type: moqt.ParamAuthToken, Bytes: []byte(mv.token)}}
	}
	if mv.v == moqt.Draft16 {
		mv.wmu.Lock()
		_, err := mv.ctrl.Write(sub.Append(nil, mv.v))
		mv.wmu.Unlock()
		if err != nil {
			return nil, err
		}
	} else {
		st, err := mv.qc.OpenStreamSync(ctx)
		if err != nil {
			return nil, err
		}
		if _, err := st.Write(sub.Append(nil, mv.v)); err != nil {
			return nil, err
		}
		go func() {
			for {
				m, err := moqt.ReadMessage(st, mv.v, 0)
				if err != nil {
					return
				}
				ch <- m
			}
		}()
	}
	select {
	case m := <-ch:
		switch m := m.(type) {
		case *moqt.SubscribeOK:
			mv.mu.Lock()
			mv.names[m.TrackAlias] = name
			mv.mu.Unlock()
			return m, nil
		case *moqt.RequestError:
			return nil, fmt.Errorf("SUBSCRIBE %s/%s refused: 0x%x %s", ns, name, uint64(m.Code), m.Reason)
		}
		return nil, fmt.Errorf("SUBSCRIBE %s/%s answered with %T", ns, name, m)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (mv *moqViewer) acceptData() {
	for {
		rs, err := mv.qc.AcceptUniStream(context.Background())
		if err != nil {
			return
		}
		go mv.readData(rs)
	}
}

func (mv *moqViewer) readData(rs io.Reader) {
	t, err := moqt.ReadVarint(rs, mv.v)
	if err != nil {
		return
	}
	sr, err := moqt.NewSubgroupReader(rs, mv.v, t, 4<<20)
	if err != nil {
		return
	}
	// The SUBSCRIBE_OK naming the alias may come after the stream's first bytes.
	var name string
	for deadline := time.Now().Add(time.Second); name == "" && time.Now().Before(deadline); {
		mv.mu.Lock()
		name = mv.names[sr.Header.TrackAlias]
		mv.mu.Unlock()
		if name == "" {
			time.Sleep(5 * time.Millisecond)
		}
	}
	for {
		o, err := sr.ReadObject()
		if err != nil {
			return
		}
		if o.Status != moqt.StatusNormal {
			continue
		}
		vo := viewedObject{group: sr.Header.GroupID, id: o.ID, raw: append([]byte(nil), o.Payload...)}
		if name != hang.CatalogTrack {
			f, err := hang.ParseFrame(vo.raw)
			if err != nil {
				continue
			}
			vo.frame = f
		}
		mv.mu.Lock()
		mv.objects[name] = append(mv.objects[name], vo)
		mv.mu.Unlock()
	}
}

// got is the objects received on a track, in group and object order.
func (mv *moqViewer) got(name string) []viewedObject {
	mv.mu.Lock()
	defer mv.mu.Unlock()
	out := append([]viewedObject(nil), mv.objects[name]...)
	// Groups travel on streams of their own and may be read out of order.
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && (out[j].group < out[j-1].group || out[j].group == out[j-1].group && out[j].id < out[j-1].id); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

func (mv *moqViewer) close() { _ = mv.qc.CloseWithError(0, "") }

// viewers is the stream's viewer count in /v1/streams.
func viewers(t *testing.T, base, stream string) int {
	_, body := get(t, base+"/v1/streams/"+stream)
	var sv struct {
		Viewers int `json:"viewers"`
	}
	_ = json.Unmarshal([]byte(body), &sv)
	return sv.Viewers
}

func payloads(os []viewedObject) [][]byte {
	out := make([][]byte, len(os))
	for i, o := range os {
		out[i] = o.frame.Payload
	}
	return out
}

// mediaSource publishes the known sequence: warm sends the first frames (a
// keyframe) once, send the rest in real time.
type mediaSource struct {
	warm func(ctx context.Context)
	send func(ctx context.Context, video, audio [][]byte) error
}

func whipSource(t *testing.T, ctx context.Context, base, stream string, video, audio [][]byte) mediaSource {
	api, _ := mediatest.API()
	pub, err := mediatest.Publish(ctx, api, base, stream)
	if err != nil {
		t.Fatalf("WHIP publish: %v", err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	if err := mediatest.WaitConnected(ctx, pub.PC); err != nil {
		t.Fatal(err)
	}
	return mediaSource{warm: func(ctx context.Context) { _ = pub.Send(ctx, video[:1], audio[:1]) }, send: pub.Send}
}

func moqSource(t *testing.T, ctx context.Context, moqAddr, hash, stream string, video, audio [][]byte) mediaSource {
	cl, err := moqtest.Dial(ctx, moqAddr, moqt.Draft19, hash)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	if err := cl.Announce(ctx, moqt.Namespace{stream + hang.Suffix}, vp8OpusCatalog()); err != nil {
		t.Fatalf("announce: %v", err)
	}
	if err := cl.WaitSubscribed(ctx, hang.CatalogTrack, "video/hd", "audio/data"); err != nil {
		t.Fatal(err)
	}
	vt, at := cl.Track("video/hd"), cl.Track("audio/data")
	var us uint64
	return mediaSource{
		warm: func(ctx context.Context) {
			_ = vt.WriteFrame(ctx, true, us, video[0])
			_ = at.WriteFrame(ctx, true, us, audio[0])
			us += 100_000
		},
		send: func(ctx context.Context, video, audio [][]byte) error { return sendMoQ(ctx, vt, at, us, video, audio) },
	}
}

// A live stream is watched by MoQ subscribers through `sluice dev`, whether
// it is published over WHIP or pushed over MoQ, in draft 16 and draft 19:
// the catalog lists its VP8 and Opus tracks as "video" and "audio", the
// frames arrive in order byte for byte (≥ 95%), a subscriber that joins
// mid-stream starts at a keyframe, the first object of its group, each
// session counts as one viewer and closing them leaves the stream.
func TestDevServesALiveStreamToMoQSubscribers(t *testing.T) {
	moqAddr := freeport.Loopback(t)
	_, base := startDev(t, "--moq", moqAddr)
	_, hash := get(t, "http://"+moqAddr+"/certificate.sha256")
	video, audio := knownMedia(t)
	for _, c := range []struct {
		from string
		v    moqt.Version
	}{{"whip", moqt.Draft16}, {"whip", moqt.Draft19}, {"moq", moqt.Draft16}} {
		t.Run(c.from+"/"+c.v.String(), func(t *testing.T) {
			v := c.v
			ctx := ctxT(t, 90*time.Second)
			stream := fmt.Sprintf("moq-view-%s-%d", c.from, uint32(v)&0xff)
			var src mediaSource
			if c.from == "whip" {
				src = whipSource(t, ctx, base, stream, video, audio)
			} else {
				src = moqSource(t, ctx, moqAddr, hash, stream, video, audio)
			}
			// Until the viewer is in, keep sending the first frames (a keyframe).
			warm, stopWarm := context.WithCancel(ctx)
			warmed := make(chan struct{})
			go func() {
				defer close(warmed)
				for warm.Err() == nil {
					src.warm(warm)
					time.Sleep(100 * time.Millisecond)
				}
			}()
			var err error
			var mv *moqViewer
			for deadline := time.Now().Add(15 * time.Second); ; {
				mv, err = dialViewer(ctx, moqAddr, hash, v)
				if err == nil {
					if _, err = mv.subscribe(ctx, stream+hang.Suffix, hang.CatalogTrack); err == nil {
						break
					}
					mv.close()
				}
				if time.Now().After(deadline) {
					stopWarm()
					t.Fatalf("subscribe to the catalog: %v", err)
				}
				time.Sleep(200 * time.Millisecond)
			}
			defer mv.close()
			for _, name := range []string{"video", "audio"} {
				if _, err := mv.subscribe(ctx, stream, name); err != nil {
					stopWarm()
					t.Fatal(err)
				}
			}
			time.Sleep(300 * time.Millisecond)
			stopWarm()
			<-warmed

			half := len(video) / 2
			late := make(chan *moqViewer, 1)
			go func() {
				// Join mid-stream, well past the sequence's first keyframe.
				time.Sleep(time.Duration(half) * time.Second / 30)
				lv, err := dialViewer(ctx, moqAddr, hash, v)
				if err == nil {
					if _, err = lv.subscribe(ctx, stream, "video"); err != nil {
						lv.close()
						lv = nil
					}
				}
				if err != nil {
					t.Errorf("late subscriber: %v", err)
				}
				late <- lv
			}()
			if err := src.send(ctx, video[1:], audio[1:]); err != nil {
				t.Fatal(err)
			}
			time.Sleep(500 * time.Millisecond)

			cats := mv.got(hang.CatalogTrack)
			if len(cats) == 0 {
				t.Fatal("no catalog object")
			}
			cat, err := hang.ParseCatalog(cats[len(cats)-1].raw)
			if err != nil {
				t.Fatalf("catalog: %v", err)
			}
			if cat.Video == nil || cat.Video.Renditions["video"].Codec != "vp8" || cat.Audio == nil || cat.Audio.Renditions["audio"].Codec != "opus" {
				t.Errorf("catalog %s does not list video vp8 and audio opus", cats[len(cats)-1].raw)
			}
			for _, c := range []struct {
				name string
				warm []byte
				want [][]byte
			}{{"video", video[0], video[1:]}, {"audio", audio[0], audio[1:]}} {
				got := payloads(mv.got(c.name))
				for len(got) > 0 && bytes.Equal(got[0], c.warm) {
					got = got[1:]
				}
				n, err := mediatest.Match(c.want, got)
				if err != nil {
					t.Errorf("%s: %v", c.name, err)
				}
				if need := len(c.want) * 95 / 100; n < need {
					t.Errorf("%s: %d of %d frames arrived in order, want at least %d (95%%)", c.name, n, len(c.want), need)
				}
				t.Logf("%s %s: %d of %d frames arrived in order, byte for byte", v, c.name, n, len(c.want))
			}
			// A track the stream does not have, and a stream that is not live,
			// are refused.
			if _, err := mv.subscribe(ctx, stream, "video/hd"); err == nil || !strings.Contains(err.Error(), "0x10") {
				t.Errorf("SUBSCRIBE to a track the stream lacks: %v, want DOES_NOT_EXIST (0x10)", err)
			}
			if _, err := mv.subscribe(ctx, "not-live", "video"); err == nil || !strings.Contains(err.Error(), "0x10") {
				t.Errorf("SUBSCRIBE to a stream that is not live: %v, want DOES_NOT_EXIST (0x10)", err)
			}
			lv := <-late
			if lv == nil {
				return
			}
			lg := lv.got("video")
			// Each session counts as one viewer, whatever it subscribes to;
			// closing the sessions leaves the stream.
			if n := viewers(t, base, stream); n != 2 {
				t.Errorf("the stream counts %d viewers for two MoQ sessions", n)
			}
			lv.close()
			mv.close()
			for deadline := time.Now().Add(10 * time.Second); viewers(t, base, stream) != 0; {
				if time.Now().After(deadline) {
					t.Errorf("the stream still counts %d viewers after every MoQ session closed", viewers(t, base, stream))
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if len(lg) == 0 {
				t.Fatal("the late subscriber got no video")
			}
			if lg[0].id != 0 || len(lg[0].frame.Payload) == 0 || lg[0].frame.Payload[0]&1 != 0 {
				t.Errorf("the late subscriber's first video object is object %d of group %d, not a keyframe opening its group", lg[0].id, lg[0].group)
			}
			if n, _ := mediatest.Match(video[1:], payloads(lg)); n < len(video)/4 {
				t.Errorf("the late subscriber got %d frames of the sequence in order, want at least %d", n, len(video)/4)
			}
		})
	}
}
