package agent

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// inspect writes a process-table snapshot when M2's inspection.process is enabled
// and its schedule is due, keeping the last Retention files.
func (a *Agent) inspect() {
	ins := a.cfg.Inspection
	if !ins.Enable {
		return
	}
	now := time.Now()
	if a.nextInspect.IsZero() {
		a.nextInspect = ins.next(now)
	}
	if now.Before(a.nextInspect) {
		return
	}
	a.nextInspect = ins.next(now)
	if err := os.MkdirAll(ins.Dir, 0o755); err != nil {
		a.log.Warn("agent: inspection", "err", err)
		return
	}
	b, _ := json.MarshalIndent(a.Status(), "", "  ")
	name := filepath.Join(ins.Dir, fmt.Sprintf("process-%s.json", now.UTC().Format("20060102T150405.000Z")))
	if err := os.WriteFile(name, b, 0o644); err != nil {
		a.log.Warn("agent: inspection", "err", err)
		return
	}
	files, _ := filepath.Glob(filepath.Join(ins.Dir, "process-*.json"))
	sort.Strings(files)
	for len(files) > ins.Retention {
		_ = os.Remove(files[0])
		files = files[1:]
	}
}
