// Package problem writes the answers of every sluice HTTP API: RFC 9457 problem
// details (application/problem+json), the one error shape, and plain JSON
// documents. Problem types are stable URIs under Base so that clients branch on
// them rather than on titles or details.
package problem

import (
	"encoding/json"
	"net/http"
)

// Base prefixes every problem type sluice emits.
const Base = "https://sluice.dev/problems/"

// ContentType is the media type of a problem document.
const ContentType = "application/problem+json"

// Details is an RFC 9457 problem document. Extra members go in Extra and are
// flattened into the top-level object.
type Details struct {
	Type     string         `json:"type"`
	Title    string         `json:"title"`
	Status   int            `json:"status"`
	Detail   string         `json:"detail,omitempty"`
	Instance string         `json:"instance,omitempty"`
	Extra    map[string]any `json:"-"`
}

// MarshalJSON flattens Extra beside the standard members.
func (d Details) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(d.Extra)+5)
	for k, v := range d.Extra {
		m[k] = v
	}
	m["type"], m["title"], m["status"] = d.Type, d.Title, d.Status
	if d.Detail != "" {
		m["detail"] = d.Detail
	}
	if d.Instance != "" {
		m["instance"] = d.Instance
	}
	return json.Marshal(m)
}

// Write sends a problem with the given status. kind is the short, stable name that
// becomes the type URI (Base+kind); title is a short human summary of the kind and
// detail says what exactly went wrong with this request.
func Write(w http.ResponseWriter, status int, kind, title, detail string) {
	WriteDetails(w, Details{Type: Base + kind, Title: title, Status: status, Detail: detail})
}

// WriteDetails sends d with d.Status.
func WriteDetails(w http.ResponseWriter, d Details) {
	body, err := json.Marshal(d)
	if err != nil {
		http.Error(w, "problem encoding failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", ContentType)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(d.Status)
	_, _ = w.Write(body)
}

// WriteJSON sends v as an indented JSON document with the given status. It is the
// one success writer of the gateway, agent and policy APIs, so that every API
// answers in the same shape.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		Write(w, http.StatusInternalServerError, "internal", "Internal error", "encoding the answer: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}
