package fanout

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/sluicegw/sluice/internal/rawudp"
)

// testServer is the gateway's side of the tests: pion sessions whose ICE runs
// on one UDP socket, with no interceptors (the fan-out sends), and a group
// that sends on that socket.
type testServer struct {
	api   *webrtc.API
	group *Group
	track *webrtc.TrackLocalStaticRTP
}

func newTestServer(t *testing.T, cfg Config) *testServer {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	mux := ice.NewUDPMuxDefault(ice.UDPMuxParams{UDPConn: conn})
	t.Cleanup(func() { _ = mux.Close() })
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	se := webrtc.SettingEngine{}
	se.SetICEUDPMux(mux)
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(&interceptor.Registry{}), webrtc.WithSettingEngine(se))
	raw, err := rawudp.New(conn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Sockets = []*Socket{NewSocket(raw)}
	g := NewGroup(cfg)
	t.Cleanup(g.Close)
	g.AddTrack(0, 90000)
	lt, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", "test")
	if err != nil {
		t.Fatal(err)
	}
	return &testServer{api: api, group: g, track: lt}
}

// testViewer is a pion WHEP-style viewer (recvonly video, pion's default
// interceptors: it NACKs what it misses) and what it received, in order.
type testPeer struct {
	pc       *webrtc.PeerConnection
	fan      *Viewer
	mu       sync.Mutex
	seqs     []uint16
	got      atomic.Int64
	keyframe atomic.Int64
}

// drop, when set, is asked for every packet the viewer's socket reads; true
// loses it before pion sees it.
type dropConn struct {
	net.PacketConn
	drop func(b []byte) bool
}

func (c *dropConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, a, err := c.PacketConn.ReadFrom(b)
		if err != nil || c.drop == nil || !c.drop(b[:n]) {
			return n, a, err
		}
	}
}

// connect makes a viewer, negotiates it with the server in process, waits
// until it is connected and attached; read false leaves its track unread.
func (s *testServer) connect(t *testing.T, read bool, drop func([]byte) bool) *testPeer {
	t.Helper()
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	if drop != nil {
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		mux := ice.NewUDPMuxDefault(ice.UDPMuxParams{UDPConn: &dropConn{PacketConn: conn, drop: drop}})
		t.Cleanup(func() { _ = mux.Close() })
		se.SetICEUDPMux(mux)
	}
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(me, ir); err != nil {
		t.Fatal(err)
	}
	vpc, err := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vpc.Close() })
	p := &testPeer{pc: vpc}
	if _, err := vpc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	vpc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		if !read {
			return
		}
		for {
			pkt, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.seqs = append(p.seqs, pkt.SequenceNumber)
			p.mu.Unlock()
			p.got.Add(1)
		}
	})
	spc, err := s.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = spc.Close() })
	sender, err := spc.AddTrack(s.track)
	if err != nil {
		t.Fatal(err)
	}
	connected := make(chan struct{})
	var once sync.Once
	spc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		if st == webrtc.PeerConnectionStateConnected {
			once.Do(func() { close(connected) })
		}
	})
	negotiate(t, vpc, spc)
	select {
	case <-connected:
	case <-time.After(30 * time.Second):
		t.Fatal("viewer not connected within 30 s")
	}
	p.fan, err = s.group.Attach(spc, []Binding{{Track: 0, Sender: sender}}, func(uint8) { p.keyframe.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func negotiate(t *testing.T, offerer, answerer *webrtc.PeerConnection) {
	t.Helper()
	offer, err := offerer.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	og := webrtc.GatheringCompletePromise(offerer)
	if err := offerer.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-og
	if err := answerer.SetRemoteDescription(*offerer.LocalDescription()); err != nil {
		t.Fatal(err)
	}
	answer, err := answerer.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	ag := webrtc.GatheringCompletePromise(answerer)
	if err := answerer.SetLocalDescription(answer); err != nil {
		t.Fatal(err)
	}
	<-ag
	if err := offerer.SetRemoteDescription(*answerer.LocalDescription()); err != nil {
		t.Fatal(err)
	}
}

// send writes count VP8-sized packets from seq first on, paced as a stream
// (one every 2 ms), through the group.
func (s *testServer) send(first uint16, count int) {
	payload := make([]byte, 1000)
	payload[0] = 0x10 // VP8 descriptor: start of partition
	for i := range count {
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: first + uint16(i),
			Timestamp: uint32(i/3) * 3000, SSRC: 42, Marker: i%3 == 2}, Payload: payload}
		s.group.Write(0, pkt)
		time.Sleep(2 * time.Millisecond)
	}
}

// waitFor polls cond for up to 10 s (the packets are in flight).
func waitFor(cond func() bool) bool {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// inOrder reports whether seqs is exactly first, first+1, … count packets.
func inOrder(seqs []uint16, first uint16, count int) bool {
	if len(seqs) != count {
		return false
	}
	for i, s := range seqs {
		if s != first+uint16(i) {
			return false
		}
	}
	return true
}

// At 100 viewers on the fan-out path, every viewer receives every packet, in
// order, and one viewer that never reads what it is sent takes nothing from
// the others: they still receive every packet in order.
func TestEveryOneOfAHundredViewersReceivesEveryPacketInOrderBesideOneThatStopsReading(t *testing.T) {
	if testing.Short() {
		t.Skip("100 pion sessions")
	}
	s := newTestServer(t, Config{})
	stalled := s.connect(t, false, nil)
	var peers []*testPeer
	for range 99 {
		peers = append(peers, s.connect(t, true, nil))
	}
	if s.group.Viewers() != 100 {
		t.Fatalf("%d viewers on the path", s.group.Viewers())
	}
	const first, count = 60000, 600 // through a sequence number wrap
	s.send(first, count)
	for i, p := range peers {
		if !waitFor(func() bool { return p.got.Load() >= count }) {
			t.Fatalf("viewer %d received %d of %d packets", i, p.got.Load(), count)
		}
		p.mu.Lock()
		ok := inOrder(p.seqs, first, count)
		p.mu.Unlock()
		if !ok {
			t.Fatalf("viewer %d received the packets out of order or twice", i)
		}
	}
	if stalled.got.Load() != 0 {
		t.Fatal("the stalled viewer read packets")
	}
}

// A viewer that loses packets on the way asks for them (pion's NACK
// generator) and receives each from the group's shared history, while
// another viewer of the same track, which lost nothing, receives each packet
// once, in order.
func TestNACKsAreAnsweredFromTheSharedHistory(t *testing.T) {
	s := newTestServer(t, Config{})
	var mu sync.Mutex
	lost := map[uint16]bool{}
	lossy := s.connect(t, true, func(b []byte) bool {
		// An SRTP packet (RFC 7983: first byte 128–191; not RTCP, whose
		// packet types are 192–223) whose sequence number (in the clear) is
		// a multiple of 25 is lost the first time it arrives.
		if len(b) < 12 || b[0] < 128 || b[0] > 191 || b[1] >= 192 && b[1] <= 223 {
			return false
		}
		seq := uint16(b[2])<<8 | uint16(b[3])
		mu.Lock()
		defer mu.Unlock()
		if seq%25 != 0 || lost[seq] {
			return false
		}
		lost[seq] = true
		return true
	})
	clean := s.connect(t, true, nil)
	const first, count = 101, 390 // neither the first nor the last is lost: no packet around them would show the gap
	s.send(first, count)
	if !waitFor(func() bool { return clean.got.Load() >= count && lossy.got.Load() >= count }) {
		t.Fatalf("received %d and %d of %d packets (lossy, clean); %d retransmitted, %d unanswered", lossy.got.Load(), clean.got.Load(), count, lossy.fan.Retransmitted(), lossy.fan.Unanswered())
	}
	lossy.mu.Lock()
	seen := map[uint16]bool{}
	for _, s := range lossy.seqs {
		seen[s] = true
	}
	lossy.mu.Unlock()
	for i := range count {
		if !seen[first+uint16(i)] {
			t.Fatalf("the lossy viewer never received packet %d", first+i)
		}
	}
	if r := lossy.fan.Retransmitted(); r < 15 {
		t.Fatalf("%d retransmissions for 15 lost packets", r)
	}
	clean.mu.Lock()
	defer clean.mu.Unlock()
	if !inOrder(clean.seqs, first, count) || clean.fan.Retransmitted() != 0 {
		t.Fatalf("the clean viewer: in order %v, retransmitted %d", inOrder(clean.seqs, first, count), clean.fan.Retransmitted())
	}
}

// A viewer's PLI reaches the group's keyframe callback with its track.
func TestAViewersKeyframeRequestReachesTheCallback(t *testing.T) {
	s := newTestServer(t, Config{})
	p := s.connect(t, true, nil)
	s.send(1, 10)
	recv := p.pc.GetTransceivers()[0].Receiver()
	ssrc := uint32(recv.Track().SSRC())
	if err := p.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}}); err != nil {
		t.Fatal(err)
	}
	if !waitFor(func() bool { return p.keyframe.Load() > 0 }) {
		t.Fatal("the PLI did not reach the callback")
	}
}
