package procstat

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// UDPDrops is the number of datagrams the kernel dropped on arrival (a full
// receive buffer, mostly) at the UDP sockets the given processes hold, from the
// drops column of /proc/net/udp and /proc/net/udp6. A benchmark reads it to
// tell the loss of the server it measures from the loss of its own load
// generator: both run on the same cores, and a starved reader loses at its
// own socket.
func UDPDrops(pids []int) uint64 {
	inodes := make(map[string]bool)
	for _, pid := range pids {
		dir := "/proc/" + strconv.Itoa(pid) + "/fd"
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			l, err := os.Readlink(dir + "/" + e.Name())
			if err == nil && strings.HasPrefix(l, "socket:[") {
				inodes[strings.TrimSuffix(l[len("socket:["):], "]")] = true
			}
		}
	}
	var n uint64
	for _, table := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		n += tableDrops(table, inodes)
	}
	return n
}

// tableDrops sums the drops of the sockets in one /proc/net/udp table whose
// inode is in inodes. Columns: sl local rem st tx:rx tr:when retrnsmt uid
// timeout inode ref pointer drops.
func tableDrops(path string, inodes map[string]bool) uint64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	var n uint64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 13 || !inodes[fs[9]] {
			continue
		}
		d, _ := strconv.ParseUint(fs[12], 10, 64)
		n += d
	}
	return n
}
