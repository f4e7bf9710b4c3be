// Package node is the program of a node process: one media worker of one purpose
// (relay, …) started by an agent as `sluice node --purpose P`. The agent owns the
// process; the node talks to it over a control channel on file descriptor 3 (see
// wire.ControlMsg): it waits for its identity, starts its QUIC media listener,
// says ready, and sends a heartbeat with its figures every second. It exits when
// the agent says stop, when the control channel closes (the agent died), or when
// its parent dies (the agent also sets a parent-death signal).
package node

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"sync"
	"time"

	"github.com/sluicegw/sluice/internal/medialink"
	"github.com/sluicegw/sluice/internal/pki"
	"github.com/sluicegw/sluice/internal/procstat"
	"github.com/sluicegw/sluice/internal/wire"
)

// Run is the node process's main. It returns when the node should exit.
func Run(ctx context.Context, purpose string, log *slog.Logger) error {
	w, err := newWorker(purpose, log)
	if err != nil {
		return err
	}
	if dir := os.Getenv("SLUICE_NODE_CPUPROFILE_DIR"); dir != "" {
		// For profiling the media path (see README, Performance).
		if f, err := os.Create(filepath.Join(dir, fmt.Sprintf("node-%d.pprof", os.Getpid()))); err == nil {
			_ = pprof.StartCPUProfile(f)
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
	}
	f := os.NewFile(uintptr(wire.ControlFD), "control")
	if f == nil {
		return errors.New("node: no control channel on fd 3 (nodes are started by an agent)")
	}
	conn, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("node: control channel: %w", err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	rd := bufio.NewReaderSize(conn, 64<<10)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var init wire.ControlMsg
	if err := readMsg(rd, &init); err != nil || init.T != wire.MsgInit {
		return fmt.Errorf("node: expected init from the agent: %v", err)
	}
	_ = conn.SetReadDeadline(time.Time{})
	if init.MemLimit > 0 {
		debug.SetMemoryLimit(init.MemLimit)
	}
	id, err := pki.IdentityFromPEM(init.CertPEM, init.KeyPEM, init.CAPEM)
	if err != nil {
		return fmt.Errorf("node: identity: %w", err)
	}
	ep, err := medialink.NewEndpoint(init.Listen)
	if err != nil {
		return err
	}
	defer ep.Close()
	if err := ep.BufferErr(); err != nil {
		log.Warn("node: media socket buffers are small; expect loss under load", "err", err)
	}
	ln, err := ep.Listen(id.ServerTLS())
	if err != nil {
		return err
	}
	defer ln.Close()
	log = log.With("node", init.NodeID, "purpose", purpose)

	var wmu sync.Mutex
	send := func(m wire.ControlMsg) error {
		b, _ := json.Marshal(m)
		wmu.Lock()
		defer wmu.Unlock()
		_ = conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
		_, err := conn.Write(append(b, '\n'))
		return err
	}
	if err := send(wire.ControlMsg{T: wire.MsgReady, Media: ln.Addr().String(), PID: os.Getpid()}); err != nil {
		return fmt.Errorf("node: ready: %w", err)
	}
	log.Info("node ready", "media", ln.Addr().String())

	served := make(chan error, 1)
	go func() { served <- w.Serve(ctx, ep, ln) }()
	go func() { // agent → node
		defer cancel()
		for {
			var m wire.ControlMsg
			if err := readMsg(rd, &m); err != nil {
				log.Info("node: control channel closed; exiting", "err", err)
				return
			}
			switch m.T {
			case wire.MsgDrain:
				w.Drain()
			case wire.MsgStop:
				return
			}
		}
	}()
	usage := procstat.NewMeter(0)
	beat := func() error {
		rss, cpu := usage.Sample()
		return send(wire.ControlMsg{T: wire.MsgBeat, Streams: w.Streams(), RSS: rss, CPU: cpu})
	}
	if err := beat(); err != nil { // the first beat at once: the agent knows the figures from the start
		return fmt.Errorf("node: heartbeat: %w", err)
	}
	tick := time.NewTicker(wire.BeatInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			ln.Close()
			<-served
			return nil
		case err := <-served:
			return err
		case <-tick.C:
			if err := beat(); err != nil {
				return fmt.Errorf("node: heartbeat: %w", err)
			}
		}
	}
}

func readMsg(rd *bufio.Reader, m *wire.ControlMsg) error {
	line, err := rd.ReadBytes('\n')
	if err != nil {
		return err
	}
	return json.Unmarshal(line, m)
}
