package bench

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"

	"github.com/pion/webrtc/v4"

	"github.com/sluicegw/sluice/gateway"
)

// RunRelay is `sluice bench-relay`, the baseline of `sluice bench`: a minimal one-process pion
// relay. A WHIP publisher's tracks are fanned out to WHEP viewers' tracks through
// pion's TrackLocalStaticRTP, with the same pion settings as the gateway (default
// codecs and interceptors, ICE on one UDP port) — and nothing else: no policy, no
// placement, no media link, no node.
func RunRelay(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sluice bench-relay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	httpAddr := fs.String("http", "127.0.0.1:0", "HTTP address")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	udp, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer udp.Close()
	api, err := benchAPI(udp)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	var mu sync.Mutex
	tracks := map[string][]*webrtc.TrackLocalStaticRTP{}
	ready := map[string]chan struct{}{}
	streamReady := func(id string) chan struct{} {
		if ready[id] == nil {
			ready[id] = make(chan struct{})
		}
		return ready[id]
	}

	answer := func(w http.ResponseWriter, r *http.Request, setup func(pc *webrtc.PeerConnection) error) {
		offer, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		pc, err := api.NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: string(offer)}); err == nil {
			err = setup(pc)
		}
		if err != nil {
			pc.Close()
			http.Error(w, err.Error(), 400)
			return
		}
		sdp, err := completeAnswerPlain(r.Context(), pc)
		if err != nil {
			pc.Close()
			http.Error(w, err.Error(), 500)
			return
		}
		w.Header().Set("Location", r.URL.Path+"/x")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, sdp)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /whip/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		answer(w, r, func(pc *webrtc.PeerConnection) error {
			expect := len(pc.GetTransceivers())
			pc.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
				lt, err := webrtc.NewTrackLocalStaticRTP(t.Codec().RTPCodecCapability, t.Kind().String(), id)
				if err != nil {
					return
				}
				mu.Lock()
				tracks[id] = append(tracks[id], lt)
				if len(tracks[id]) == expect {
					close(streamReady(id))
				}
				mu.Unlock()
				buf := make([]byte, 1500)
				for {
					n, _, err := t.Read(buf)
					if err != nil {
						return
					}
					_, _ = lt.Write(buf[:n])
				}
			})
			return nil
		})
	})
	mux.HandleFunc("POST /whep/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		mu.Lock()
		ch := streamReady(id)
		mu.Unlock()
		<-ch
		answer(w, r, func(pc *webrtc.PeerConnection) error {
			mu.Lock()
			defer mu.Unlock()
			for _, lt := range tracks[id] {
				if _, err := pc.AddTrack(lt); err != nil {
					return err
				}
			}
			return nil
		})
	})
	mux.HandleFunc("DELETE /", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	ln, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "bench-relay ready on http://%s pid %s\n", ln.Addr(), strconv.Itoa(pidSelf()))
	srv := &http.Server{Handler: mux}
	go func() { <-ctx.Done(); _ = srv.Close() }()
	_ = srv.Serve(ln)
	return 0
}

func benchAPI(udp net.PacketConn) (*webrtc.API, error) {
	return gateway.NewWebRTCAPI(gateway.Config{ICEBind: "127.0.0.1"}, udp)
}

func completeAnswerPlain(ctx context.Context, pc *webrtc.PeerConnection) (string, error) {
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", err
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		return "", err
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	return pc.LocalDescription().SDP, nil
}
