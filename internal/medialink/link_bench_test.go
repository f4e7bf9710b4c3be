package medialink

import (
	"context"
	"encoding/binary"
	"io"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/sluicegw/sluice/internal/pki"
)

// linkPair opens a mutual-TLS media link over loopback and returns both ends.
func linkPair(tb testing.TB) (client, server *quic.Conn) {
	tb.Helper()
	ca, _ := pki.NewCA("bench")
	id, _ := ca.Issue("bench", []string{"127.0.0.1"})
	ln, err := Listen("127.0.0.1:0", id.ServerTLS())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	accepted := make(chan *quic.Conn, 1)
	go func() {
		c, err := ln.Accept(context.Background())
		if err == nil {
			accepted <- c
		}
	}()
	c, err := Dial(context.Background(), ln.Addr().String(), id.ClientTLS())
	if err != nil {
		tb.Fatal(err)
	}
	s := <-accepted
	tb.Cleanup(func() { c.CloseWithError(0, ""); s.CloseWithError(0, "") })
	return c, s
}

func rtpLike(n int) []byte {
	p := make([]byte, n)
	p[0] = Header(TypeRTP, 1)
	p[1] = 0x80
	return p
}

// BenchmarkLinkDatagram sends RTP-sized packets one per datagram, paced in bursts
// so the datagram queue never overflows, and reports delivery.
func BenchmarkLinkDatagram(b *testing.B) {
	c, s := linkPair(b)
	p := rtpLike(1200)
	got := make(chan int, 1)
	go func() {
		n := 0
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for n < b.N {
			if _, err := s.ReceiveDatagram(ctx); err != nil {
				break
			}
			n++
		}
		got <- n
	}()
	b.SetBytes(int64(len(p)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := c.SendDatagram(p); err != nil {
			b.Fatal(err)
		}
	}
	var n int
	select {
	case n = <-got:
	case <-time.After(3 * time.Second):
		n = -1
	}
	b.StopTimer()
	if n >= 0 {
		b.ReportMetric(100*float64(n)/float64(b.N), "%delivered")
	}
}

// BenchmarkLinkStream sends the same packets length-prefixed on one stream.
func BenchmarkLinkStream(b *testing.B) {
	c, s := linkPair(b)
	p := rtpLike(1200)
	frame := binary.BigEndian.AppendUint16(nil, uint16(len(p)))
	frame = append(frame, p...)
	done := make(chan struct{})
	go func() {
		defer close(done)
		st, err := s.AcceptUniStream(context.Background())
		if err != nil {
			return
		}
		buf := make([]byte, 2+1200)
		for i := 0; i < b.N; i++ {
			if _, err := io.ReadFull(st, buf); err != nil {
				return
			}
		}
	}()
	st, err := c.OpenUniStream()
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(p)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := st.Write(frame); err != nil {
			b.Fatal(err)
		}
	}
	<-done
}

// BenchmarkLinkLatency measures one-way delay (half a round trip) of a 1200-byte
// packet by datagram and by stream.
func BenchmarkLinkLatency(b *testing.B) {
	for _, mode := range []string{"datagram", "stream"} {
		b.Run(mode, func(b *testing.B) {
			c, s := linkPair(b)
			p := rtpLike(1200)
			var cs, ss *quic.Stream
			if mode == "stream" {
				var err error
				cs, err = c.OpenStreamSync(context.Background())
				if err != nil {
					b.Fatal(err)
				}
				_, _ = cs.Write(p)
				ss, err = s.AcceptStream(context.Background())
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.ReadFull(ss, make([]byte, len(p)))
			}
			go func() { // echo
				buf := make([]byte, len(p))
				for {
					if mode == "datagram" {
						d, err := s.ReceiveDatagram(context.Background())
						if err != nil || s.SendDatagram(d) != nil {
							return
						}
					} else {
						if _, err := io.ReadFull(ss, buf); err != nil {
							return
						}
						if _, err := ss.Write(buf); err != nil {
							return
						}
					}
				}
			}()
			lat := make([]time.Duration, 0, b.N)
			buf := make([]byte, len(p))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				if mode == "datagram" {
					_ = c.SendDatagram(p)
					ctx, cancel := context.WithTimeout(context.Background(), time.Second)
					_, err := c.ReceiveDatagram(ctx)
					cancel()
					if err != nil {
						continue // lost; not counted
					}
				} else {
					_, _ = cs.Write(p)
					if _, err := io.ReadFull(cs, buf); err != nil {
						b.Fatal(err)
					}
				}
				lat = append(lat, time.Since(t0)/2)
			}
			b.StopTimer()
			slices.Sort(lat)
			if len(lat) > 0 {
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			}
		})
	}
}

func cpuNow() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkLinkCPU sends 1200-byte packets at a media-like pace (bursts of 10
// every 2 ms, 5,000 packets/s) and reports the CPU time of both ends per packet,
// for datagrams and for one stream.
func BenchmarkLinkCPU(b *testing.B) {
	for _, mode := range []string{"datagram", "stream"} {
		b.Run(mode, func(b *testing.B) {
			c, s := linkPair(b)
			p := rtpLike(1200)
			var recv atomic.Int64
			go func() {
				if mode == "datagram" {
					for {
						if _, err := s.ReceiveDatagram(context.Background()); err != nil {
							return
						}
						recv.Add(1)
					}
				}
				st, err := s.AcceptUniStream(context.Background())
				if err != nil {
					return
				}
				buf := make([]byte, len(p))
				for {
					if _, err := io.ReadFull(st, buf); err != nil {
						return
					}
					recv.Add(1)
				}
			}()
			var st *quic.SendStream
			if mode == "stream" {
				st, _ = c.OpenUniStream()
			}
			cpu0 := cpuNow()
			b.ResetTimer()
			pace(b, func() {
				if mode == "datagram" {
					_ = c.SendDatagram(p)
				} else {
					_, _ = st.Write(p)
				}
			})
			time.Sleep(50 * time.Millisecond)
			b.StopTimer()
			n := recv.Load()
			b.ReportMetric(float64((cpuNow()-cpu0).Microseconds())/float64(max(n, 1)), "cpu-µs/pkt")
			b.ReportMetric(100*float64(n)/float64(b.N), "%delivered")
		})
	}
}

// pace calls send b.N times at media pace: bursts of 10 every 2 ms, 5,000 a second.
func pace(b *testing.B, send func()) {
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for i := 0; i < b.N; i += 10 {
		<-tick.C
		for j := 0; j < 10; j++ {
			send()
		}
	}
}
