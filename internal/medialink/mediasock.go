package medialink

import (
	"net"

	"github.com/sluicegw/sluice/internal/rawudp"
)

// mediaSocket is the media socket of an Endpoint, read and written without the
// scheduler's blocking-syscall state (RATIONALE.md, "Its own socket"; package
// rawudp).
type mediaSocket = rawudp.Conn

// mediaPeer is a peer's media address, as the socket's sockaddr.
type mediaPeer = rawudp.Peer

func newMediaSocket(c *net.UDPConn) (*mediaSocket, error) { return rawudp.New(c) }
