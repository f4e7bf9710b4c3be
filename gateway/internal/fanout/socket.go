package fanout

import (
	"errors"
	"net"
	"net/netip"

	"github.com/sluicegw/sluice/internal/rawudp"
)

// batchSize is how many datagrams one sendmmsg carries at most.
const batchSize = 64

// Socket is one of the gateway's ICE UDP sockets, the one pion's mux reads and
// answers STUN on: the fan-out sends a viewer's SRTP from the socket its ICE
// pair selected, so the viewer sees the 5-tuple it checked. It sends with raw
// system calls (package rawudp): a sendmmsg through net.UDPConn would wake the
// runtime's sysmon thread on most packets of a live stream.
type Socket struct {
	raw   *rawudp.Conn
	local netip.AddrPort
}

// NewSocket wraps an ICE socket for batched sends.
func NewSocket(r *rawudp.Conn) *Socket {
	s := &Socket{raw: r}
	if a, ok := r.UDPConn().LocalAddr().(*net.UDPAddr); ok {
		s.local = a.AddrPort()
		s.local = netip.AddrPortFrom(s.local.Addr().Unmap(), s.local.Port())
	}
	return s
}

// batch is the datagrams waiting for one sendmmsg on one socket; its buffers
// are made once and reused.
type batch struct {
	sock *Socket
	out  *rawudp.Batch
	bufs [batchSize][maxPacket]byte
}

func newBatch(s *Socket) *batch { return &batch{sock: s, out: s.raw.NewBatch(batchSize)} }

// next is the buffer of the next datagram; add commits it.
func (b *batch) next() []byte { return b.bufs[b.out.Len()][:] }

// pending is how many datagrams wait.
func (b *batch) pending() int { return b.out.Len() }

// add queues the datagram in next()'s buffer, n bytes long, to a peer, and
// sends the batch when it is full. It returns the datagrams the kernel
// refused while flushing.
func (b *batch) add(n int, to *rawudp.Peer) int {
	b.out.Add(b.bufs[b.out.Len()][:n], to)
	if b.out.Len() == batchSize {
		return b.flush()
	}
	return 0
}

// flush sends what is waiting in one sendmmsg (more if the kernel takes
// part). A datagram the kernel refuses (a route gone, say) is skipped and
// counted; the rest are still sent.
func (b *batch) flush() (failed int) {
	total := b.out.Len()
	for i := 0; i < total; {
		n, err := b.out.Send(i)
		i += n
		switch {
		case i >= total:
		case err == nil && n == 0, errors.Is(err, net.ErrClosed):
			failed += total - i
			i = total
		case err != nil:
			i++
			failed++
		}
	}
	b.out.Reset()
	return failed
}
