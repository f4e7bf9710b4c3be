package procstat

import (
	"net"
	"os"
	"testing"
	"time"
)

// A socket that is never read, with the smallest receive buffer, overflows;
// UDPDrops must count those datagrams against this process and no other.
func TestUDPDropsCountsDatagramsLostAtAnUnreadSocket(t *testing.T) {
	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	_ = rx.SetReadBuffer(1) // the kernel rounds it up to its minimum
	tx, err := net.DialUDP("udp4", nil, rx.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	before := UDPDrops([]int{os.Getpid()})
	buf := make([]byte, 1200)
	for range 2000 {
		_, _ = tx.Write(buf)
	}
	deadline := time.Now().Add(2 * time.Second)
	for UDPDrops([]int{os.Getpid()}) == before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	got := UDPDrops([]int{os.Getpid()}) - before
	if got == 0 {
		t.Fatal("2,000 datagrams into an unread socket with a minimal buffer: no drop counted")
	}
	if none := UDPDrops(nil); none != 0 {
		t.Fatalf("no process given, %d drops counted: the drops of other sockets leak in", none)
	}
}
