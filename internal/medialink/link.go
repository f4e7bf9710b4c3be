package medialink

import (
	"context"
	"errors"
	"io"
	"sync"

	"github.com/quic-go/quic-go"
)

// maxStreamPacket bounds a packet sent on a unidirectional stream.
const maxStreamPacket = 64 << 10

// Send sends one framed packet (header byte followed by payload) on c. It uses a
// datagram when the packet fits and a unidirectional stream when it does not, so
// a large packet is delayed a little rather than lost. p is not retained.
func Send(c *quic.Conn, p []byte) error {
	err := c.SendDatagram(p)
	var tooLarge *quic.DatagramTooLargeError
	if !errors.As(err, &tooLarge) {
		return err
	}
	if len(p) > maxStreamPacket {
		return err
	}
	s, err := c.OpenUniStream()
	if err != nil {
		return err
	}
	if _, err := s.Write(p); err != nil {
		s.CancelWrite(0)
		return err
	}
	return s.Close()
}

// ReadPackets calls fn with every framed packet that arrives on c, by datagram or by
// unidirectional stream, until ctx ends or the connection closes. fn may be called
// from several goroutines at once. Each p is a fresh buffer that fn may keep. It
// returns the error that ended the connection.
func ReadPackets(ctx context.Context, c *quic.Conn, fn func(p []byte)) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			s, err := c.AcceptUniStream(ctx)
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				p, err := io.ReadAll(io.LimitReader(s, maxStreamPacket+1))
				if err != nil || len(p) > maxStreamPacket || len(p) == 0 {
					s.CancelRead(0)
					return
				}
				fn(p)
			}()
		}
	}()
	for {
		p, err := c.ReceiveDatagram(ctx)
		if err != nil {
			return err
		}
		fn(p)
	}
}
