package wasm

import (
	"errors"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"

	"github.com/sluicegw/sluice/internal/problem"
)

// MaxModuleBytes bounds a module sent with PUT /v1/plugins/{slot}.
const MaxModuleBytes = 32 << 20

// SlotStatus is one slot in GET /v1/plugins.
type SlotStatus struct {
	Slot      string      `json:"slot"`
	Module    *ModuleInfo `json:"module"`
	Previous  *ModuleInfo `json:"previous,omitempty"`
	Failure   string      `json:"failure"`
	Calls     uint64      `json:"calls"`
	Traps     uint64      `json:"traps"`
	Fallbacks uint64      `json:"fallbacks"`
	Swaps     uint64      `json:"swaps"`
	Breaker   string      `json:"breaker"` // closed (in service) or open (falling back)
	LatencyUS struct {
		P50 float64 `json:"p50"`
		P99 float64 `json:"p99"`
	} `json:"latencyMicros"`
	LastError string `json:"lastError,omitempty"`
}

// Status reports every slot.
func (h *Host) Status() []SlotStatus {
	var out []SlotStatus
	for name, s := range h.slots {
		st := SlotStatus{Slot: name, Failure: s.cfg.Failure, Calls: s.calls.Load(), Traps: s.traps.Load(),
			Fallbacks: s.fallbacks.Load(), Swaps: s.swaps.Load(), Breaker: "closed"}
		if m := s.cur.Load(); m != nil {
			info := m.info
			st.Module = &info
		}
		s.swapMu.Lock()
		if s.prev != nil {
			info := s.prev.info
			st.Previous = &info
		}
		s.swapMu.Unlock()
		if s.breakerOpen() {
			st.Breaker = "open"
		}
		p50, p99 := s.lat.percentiles()
		st.LatencyUS.P50, st.LatencyUS.P99 = float64(p50.Nanoseconds())/1e3, float64(p99.Nanoseconds())/1e3
		if e := s.lastErr.Load(); e != nil {
			st.LastError = *e
		}
		out = append(out, st)
	}
	// In the order the slots are named (route, throttle, auth): a client
	// that indexed the list keeps working as slots are added.
	sort.Slice(out, func(i, j int) bool {
		return slices.Index(slotNames, out[i].Slot) < slices.Index(slotNames, out[j].Slot)
	})
	return out
}

// Handler serves GET /v1/plugins, PUT /v1/plugins/{slot} (the module as the
// body) and POST /v1/plugins/{slot}/rollback.
func (h *Host) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/plugins", func(w http.ResponseWriter, _ *http.Request) {
		problem.WriteJSON(w, http.StatusOK, map[string]any{"slots": h.Status()})
	})
	mux.HandleFunc("PUT /v1/plugins/{slot}", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxModuleBytes))
		if err != nil {
			problem.Write(w, http.StatusRequestEntityTooLarge, "module-too-large", "The module is too large", err.Error())
			return
		}
		info, err := h.Load(r.Context(), r.PathValue("slot"), b, "PUT /v1/plugins/"+r.PathValue("slot"))
		if err != nil {
			writeErr(w, err)
			return
		}
		problem.WriteJSON(w, http.StatusOK, info)
	})
	mux.HandleFunc("POST /v1/plugins/{slot}/rollback", func(w http.ResponseWriter, r *http.Request) {
		info, err := h.Rollback(r.Context(), r.PathValue("slot"))
		if err != nil {
			writeErr(w, err)
			return
		}
		problem.WriteJSON(w, http.StatusOK, info)
	})
	return mux
}

func writeErr(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrNoSlot):
		problem.Write(w, http.StatusNotFound, "no-slot", "No such slot", err.Error()+" (slots: "+strings.Join(slotNames, ", ")+")")
	case errors.Is(err, ErrNoPrevious):
		problem.Write(w, http.StatusConflict, "no-previous-module", "Nothing to roll back to", err.Error())
	case errors.Is(err, ErrRefused):
		problem.Write(w, http.StatusUnprocessableEntity, "module-refused", "The module was refused; the current one stays", err.Error())
	default:
		problem.Write(w, http.StatusInternalServerError, "internal", "Internal error", err.Error())
	}
}
