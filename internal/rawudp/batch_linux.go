package rawudp

import (
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr is the kernel's struct mmsghdr: a msghdr and the bytes sent.
type mmsghdr struct {
	hdr syscall.Msghdr
	n   uint32
}

// Batch is datagrams waiting for one sendmmsg on a Conn, for one goroutine
// at a time. The datagrams' bytes and peers are not copied: they must stay as
// they are until Send returns.
type Batch struct {
	c    *Conn
	hdrs []mmsghdr
	iovs []syscall.Iovec

	// The call's arguments and results, and the poller's callback made once
	// (a closure made per Send would be an allocation per batch).
	from  int
	n     uintptr
	errno syscall.Errno
	write func(fd uintptr) bool
}

// NewBatch makes a batch of at most size datagrams.
func (c *Conn) NewBatch(size int) *Batch {
	b := &Batch{c: c, hdrs: make([]mmsghdr, 0, size), iovs: make([]syscall.Iovec, size)}
	b.write = b.sendmmsg
	return b
}

// Len is how many datagrams wait; Cap how many fit.
func (b *Batch) Len() int { return len(b.hdrs) }
func (b *Batch) Cap() int { return cap(b.hdrs) }

// Add queues p to peer; the batch must not be full.
func (b *Batch) Add(p []byte, to *Peer) {
	i := len(b.hdrs)
	b.iovs[i] = syscall.Iovec{Base: unsafe.SliceData(p)}
	b.iovs[i].SetLen(len(p))
	b.hdrs = b.hdrs[:i+1]
	b.hdrs[i] = mmsghdr{hdr: syscall.Msghdr{Name: &to.sa[0], Namelen: uint32(to.len), Iov: &b.iovs[i], Iovlen: 1}}
}

// Send sends the waiting datagrams from the i-th on, in one sendmmsg,
// waiting only while the socket's send buffer is full. It returns how many
// left; when that is fewer than were waiting, err is why the next one did not.
func (b *Batch) Send(i int) (int, error) {
	if i >= len(b.hdrs) {
		return 0, nil
	}
	b.from = i
	if err := b.c.rc.Write(b.write); err != nil {
		return 0, err
	}
	if b.errno != 0 {
		return 0, &net.OpError{Op: "write", Net: "udp", Source: b.c.conn.LocalAddr(), Err: b.errno}
	}
	return int(b.n), nil
}

func (b *Batch) sendmmsg(fd uintptr) bool {
	hdrs := b.hdrs[b.from:]
	for {
		b.n, _, b.errno = syscall.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&hdrs[0])), uintptr(len(hdrs)), syscall.MSG_DONTWAIT, 0, 0)
		if b.errno != syscall.EINTR {
			return b.errno != syscall.EAGAIN
		}
	}
}

// Reset empties the batch, dropping its references to the datagrams.
func (b *Batch) Reset() {
	clear(b.hdrs)
	clear(b.iovs)
	b.hdrs = b.hdrs[:0]
}
