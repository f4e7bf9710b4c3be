package fanout

import (
	"errors"
	"net"
	"net/netip"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// batchSize is how many datagrams one sendmmsg carries at most.
const batchSize = 64

// Socket is one of the gateway's ICE UDP sockets, the one pion's mux reads and
// answers STUN on: the fan-out sends a viewer's SRTP from the socket its ICE
// pair selected, so the viewer sees the 5-tuple it checked.
type Socket struct {
	conn  *net.UDPConn
	local netip.AddrPort
	batch interface {
		WriteBatch(ms []ipv4.Message, flags int) (int, error)
	}
}

// NewSocket wraps an ICE socket for batched sends.
func NewSocket(c *net.UDPConn) *Socket {
	s := &Socket{conn: c}
	if a, ok := c.LocalAddr().(*net.UDPAddr); ok {
		s.local = a.AddrPort()
		s.local = netip.AddrPortFrom(s.local.Addr().Unmap(), s.local.Port())
	}
	if s.local.Addr().Is4() {
		s.batch = ipv4.NewPacketConn(c)
	} else {
		s.batch = ipv6.NewPacketConn(c)
	}
	return s
}

// batch is the datagrams waiting for one sendmmsg on one socket; its buffers
// are made once and reused.
type batch struct {
	sock *Socket
	msgs []ipv4.Message // len: the datagrams waiting
	bufs [batchSize][maxPacket]byte
	iov  [batchSize][1][]byte
}

func newBatch(s *Socket) *batch {
	b := &batch{sock: s, msgs: make([]ipv4.Message, 0, batchSize)}
	return b
}

// next is the buffer of the next datagram; add commits it.
func (b *batch) next() []byte { return b.bufs[len(b.msgs)][:] }

// add queues the datagram in next()'s buffer, n bytes long, to addr, and
// sends the batch when it is full. It returns the datagrams the kernel
// refused while flushing.
func (b *batch) add(n int, addr *net.UDPAddr) int {
	i := len(b.msgs)
	b.iov[i][0] = b.bufs[i][:n]
	b.msgs = append(b.msgs, ipv4.Message{Buffers: b.iov[i][:], Addr: addr})
	if len(b.msgs) == batchSize {
		return b.flush()
	}
	return 0
}

// flush sends what is waiting, one sendmmsg per 64 datagrams. A datagram the
// kernel refuses (a route gone, say) is skipped and counted; the rest are
// still sent.
func (b *batch) flush() (failed int) {
	ms := b.msgs
	for len(ms) > 0 {
		n, err := b.sock.batch.WriteBatch(ms, 0)
		if n < 0 {
			n = 0
		}
		ms = ms[n:]
		if err == nil && n == 0 {
			failed += len(ms)
			break
		}
		if err != nil && len(ms) > 0 {
			if errors.Is(err, net.ErrClosed) {
				failed += len(ms)
				break
			}
			ms = ms[1:]
			failed++
		}
	}
	for i := range b.msgs {
		b.msgs[i] = ipv4.Message{}
	}
	b.msgs = b.msgs[:0]
	return failed
}
