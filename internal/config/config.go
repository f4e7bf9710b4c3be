// Package config reads sluice's YAML configuration file, the one file every
// subcommand takes with --config. Unknown fields are refused, so a typo is an
// error at start, not a silently ignored setting. Zero values mean the defaults
// documented on the packages that use them (gateway.Config, agent.Config, …).
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sluicegw/sluice/internal/auth"
)

// File is the whole configuration file.
type File struct {
	Cluster     Cluster            `yaml:"cluster"`
	TLS         TLS                `yaml:"tls"`
	Gateway     Gateway            `yaml:"gateway"`
	Agent       Agent              `yaml:"agent"`
	MemoryUsage MemoryUsage        `yaml:"memoryUsage"`
	Process     map[string]Process `yaml:"process"`
	Inspection  Inspection         `yaml:"inspection"`
	Plugins     yaml.Node          `yaml:"plugins"` // decoded by the policy host
	Auth        auth.Config        `yaml:"auth"`    // tokens for WHIP, WHEP, MoQ and /v1; default off
}

// Cluster is the serf membership.
type Cluster struct {
	Name      string   `yaml:"name"`      // member name; default: tls.name
	Bind      string   `yaml:"bind"`      // default 127.0.0.1:7946
	Advertise string   `yaml:"advertise"` // default: bind
	Join      []string `yaml:"join"`
}

// TLS names the member's certificate (made by `sluice ca`).
type TLS struct {
	Dir  string `yaml:"dir"`  // holds ca.crt, gossip.key, NAME.crt, NAME.key
	Name string `yaml:"name"` // NAME
}

// Gateway is the gateway's section.
type Gateway struct {
	Listen        string   `yaml:"listen"`        // default 127.0.0.1:8080
	ICEUDPPort    int      `yaml:"iceUDPPort"`    // default 8189
	ICEBind       string   `yaml:"iceBind"`       // default 127.0.0.1
	ICEHosts      []string `yaml:"iceHosts"`      // advertised addresses (NAT / container)
	StreamHeader  string   `yaml:"streamHeader"`  // default X-Stream-Id
	CORSOrigins   []string `yaml:"corsOrigins"`   // default ["*"]
	APIToken      string   `yaml:"apiToken"`      // required beyond loopback
	MaxOfferBytes int64    `yaml:"maxOfferBytes"` // default 65536
	RouteHeaders  []string `yaml:"routeHeaders"`  // headers the route policy sees; default [X-Region]
	ACME          ACME     `yaml:"acme"`
	MoQ           MoQ      `yaml:"moq"`
}

// MoQ is the gateway's Media over QUIC endpoint (raw QUIC and WebTransport).
type MoQ struct {
	Listen string `yaml:"listen"` // UDP address; default off (sluice dev: 127.0.0.1:4443)
	Cert   string `yaml:"cert"`   // PEM certificate (chain) file, with key; default a self-signed one, loopback only
	Key    string `yaml:"key"`    // PEM private key file
}

// ACME turns on HTTPS with certificates from certmagic.
type ACME struct {
	Domains []string `yaml:"domains"`
	Email   string   `yaml:"email"`
}

// Agent is the agent's section.
type Agent struct {
	ID           string   `yaml:"id"`           // default: tls.name
	API          string   `yaml:"api"`          // default 127.0.0.1:7443
	MediaHost    string   `yaml:"mediaHost"`    // default 127.0.0.1
	DrainTimeout Duration `yaml:"drainTimeout"` // default 30s
	QueueTimeout Duration `yaml:"queueTimeout"` // default 10s
	QueueLimit   int      `yaml:"queueLimit"`   // default 64
}

// MemoryUsage is M2's memoryUsage.
type MemoryUsage struct {
	TotalUsableRatio int `yaml:"totalUsableRatio"` // percent, default 100
	WorkingRatio     int `yaml:"workingRatio"`     // percent, default 60
}

// Process is one purpose's pool, with M2's names.
type Process struct {
	Memory      string    `yaml:"memory"`
	Concurrent  int       `yaml:"concurrent"`
	WaitQueue   int       `yaml:"waitQueue"`
	Respawnable int       `yaml:"respawnable"`
	Keepalive   Keepalive `yaml:"keepalive"`
	Recovery    int       `yaml:"recovery"`
	Intensity   Intensity `yaml:"intensity"`
	Warm        int       `yaml:"warm"`
	Procs       int       `yaml:"procs"`
}

// Keepalive is M2's keepalive.
type Keepalive struct {
	MaxCount int      `yaml:"maxcount"`
	MaxAge   Duration `yaml:"maxage"`
	TimeWait Duration `yaml:"timewait"`
}

// Intensity is the restart-intensity limit.
type Intensity struct {
	MaxRestarts int      `yaml:"maxRestarts"`
	Period      Duration `yaml:"period"`
}

// Inspection is M2's inspection section.
type Inspection struct {
	Process struct {
		Enable    bool   `yaml:"enable"`
		Retention int    `yaml:"retention"`
		Schedule  string `yaml:"schedule"` // "5 * * * * *" (cron with seconds) or "60s"
		Dir       string `yaml:"dir"`
	} `yaml:"process"`
}

// Duration is a time.Duration written as "30s", "1m", "24h".
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (like 30s, 1m, 24h)", n.Line, s)
	}
	if v < 0 {
		return fmt.Errorf("line %d: duration %q is negative", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// Load reads a configuration file; an empty path gives the zero File (defaults).
func Load(path string) (*File, error) {
	if path == "" {
		return &File{}, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	f, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return f, nil
}

// Parse decodes a configuration document, refusing unknown fields.
func Parse(b []byte) (*File, error) {
	f := &File{}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(f); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return f, nil
}
