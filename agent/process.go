package agent

import (
	"bufio"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/sluicegw/sluice/agent/internal/logring"
	"github.com/sluicegw/sluice/internal/pki"
	"github.com/sluicegw/sluice/internal/wire"
)

// Node states.
const (
	nodeStarting  = "starting"
	nodeRunning   = "running"
	nodeRecycling = "recycling"
	nodeStopped   = "stopped"
)

// nodeProc is one node child process and what the agent knows of it. The fields
// set at spawn do not change; the ones marked below are guarded by the Manager's
// state lock, and wmu serialises writes to the control channel.
type nodeProc struct {
	id      string
	purpose string
	cmd     *exec.Cmd
	pid     int
	ctrl    net.Conn
	started time.Time
	logs    *logring.Ring

	ready  chan struct{} // closed when the node sent MsgReady (or died first)
	exited chan struct{} // closed when the process has been reaped

	// guarded by the Manager's state lock (Manager.mu)
	state     string
	media     string
	lastBeat  time.Time
	streams   map[string]struct{}
	served    int
	rss       int64
	cpu       float64
	reported  int // streams the node itself reports
	recycleAt time.Time
	fault     string // why the agent killed it, if it did
	planned   bool   // stopped on purpose (recycle, API), not a crash
	respawn   bool   // a replacement not yet ready: counts toward the pool's respawnable

	wmu sync.Mutex
}

// spawn starts `sluice node --purpose P` with a control socketpair on fd 3 and
// sends it its identity. It returns at once; n.ready closes when the node is up.
func spawn(cmdline []string, id, purpose string, procs int, ident *pki.Identity, mediaHost string, memLimit int64, log *slog.Logger, onMsg func(*nodeProc, wire.ControlMsg), onExit func(*nodeProc, error)) (*nodeProc, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("agent: socketpair: %w", err)
	}
	parentF := os.NewFile(uintptr(fds[0]), "node-control")
	childF := os.NewFile(uintptr(fds[1]), "node-control-child")
	defer childF.Close()
	ctrl, err := net.FileConn(parentF)
	parentF.Close()
	if err != nil {
		childF.Close()
		return nil, fmt.Errorf("agent: control conn: %w", err)
	}
	args := append(append([]string{}, cmdline[1:]...), "--purpose", purpose)
	cmd := exec.Command(cmdline[0], args...)
	cmd.ExtraFiles = []*os.File{childF} // fd 3
	cmd.Env = append(os.Environ(), "SLUICE_NODE_ID="+id, fmt.Sprintf("GOMAXPROCS=%d", procs))
	// The node dies with the agent: the kernel sends SIGKILL when the parent
	// dies, and the node also exits when its control channel closes.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	n := &nodeProc{
		id: id, purpose: purpose, cmd: cmd, ctrl: ctrl, started: time.Now(),
		logs: logring.New(2000), ready: make(chan struct{}), exited: make(chan struct{}),
		state: nodeStarting, streams: map[string]struct{}{},
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		ctrl.Close()
		return nil, err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		ctrl.Close()
		return nil, fmt.Errorf("agent: start node: %w", err)
	}
	n.pid = cmd.Process.Pid
	go n.logs.CopyFrom(out)
	if err := n.send(wire.ControlMsg{T: wire.MsgInit, NodeID: id, Listen: mediaHost + ":0",
		CertPEM: ident.CertPEM, KeyPEM: ident.KeyPEM, CAPEM: ident.CAPEM, MemLimit: memLimit}); err != nil {
		log.Warn("agent: init to node failed", "node", id, "err", err)
	}
	go func() { // node → agent
		rd := bufio.NewReaderSize(ctrl, 64<<10)
		for {
			line, err := rd.ReadBytes('\n')
			if err != nil {
				return
			}
			var m wire.ControlMsg
			if json.Unmarshal(line, &m) == nil {
				onMsg(n, m)
			}
		}
	}()
	go func() {
		err := cmd.Wait()
		ctrl.Close()
		onExit(n, err)
		close(n.exited)
	}()
	return n, nil
}

func (n *nodeProc) send(m wire.ControlMsg) error {
	b, _ := json.Marshal(m)
	n.wmu.Lock()
	defer n.wmu.Unlock()
	_ = n.ctrl.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_, err := n.ctrl.Write(append(b, '\n'))
	return err
}

// kill ends the process now.
func (n *nodeProc) kill() { _ = n.cmd.Process.Signal(syscall.SIGKILL) }

// stop asks the node to exit and kills it if it has not within grace.
func (n *nodeProc) stop(grace time.Duration) {
	_ = n.send(wire.ControlMsg{T: wire.MsgStop})
	select {
	case <-n.exited:
	case <-time.After(grace):
		n.kill()
		<-n.exited
	}
}
