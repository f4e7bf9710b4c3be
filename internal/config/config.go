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
	"reflect"
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
	Plugins     yaml.Node          `yaml:"plugins"`  // decoded by the policy host
	Auth        auth.Config        `yaml:"auth"`     // tokens for WHIP, WHEP, MoQ and /v1; default off
	Webhooks    []Webhook          `yaml:"webhooks"` // endpoints told of stream events; default none
	Streams     []Stream           `yaml:"streams"`  // preloaded streams and per-stream rules; default none
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
	ICEBind       string   `yaml:"iceBind"`       // default: this machine's addresses; an IP; 0.0.0.0 / ::
	ICEHosts      []string `yaml:"iceHosts"`      // advertised addresses (NAT / container)
	StreamHeader  string   `yaml:"streamHeader"`  // default X-Stream-Id
	CORSOrigins   []string `yaml:"corsOrigins"`   // default ["*"]
	APIToken      string   `yaml:"apiToken"`      // required beyond loopback
	MaxOfferBytes int64    `yaml:"maxOfferBytes"` // default 65536
	RouteHeaders  []string `yaml:"routeHeaders"`  // headers the route policy sees; default [X-Region]
	ACME          ACME     `yaml:"acme"`
	MoQ           MoQ      `yaml:"moq"`

	// DrainTimeout is how long live sessions may run on after SIGTERM or
	// SIGINT before the gateway closes them and leaves; default 30s (sluice
	// dev: 3s).
	DrainTimeout Duration `yaml:"drainTimeout"`
	// ICEServers are the STUN/TURN servers told to clients; default none.
	ICEServers []ICEServer `yaml:"iceServers"`
	// Proxy routes HTTP and gRPC calls by stream id; default none.
	Proxy Proxy `yaml:"proxy"`
	// Scale is the scale signal for an autoscaler; default off.
	Scale Scale `yaml:"scale"`
}

// Proxy is the gateway's edge proxy: HTTP and gRPC calls routed by stream id.
type Proxy struct {
	Routes []ProxyRoute `yaml:"routes"`
}

// ProxyRoute is one proxied path prefix.
type ProxyRoute struct {
	Prefix  string   `yaml:"prefix"`  // required: "/api/", "/perception.v1."
	Rewrite string   `yaml:"rewrite"` // replaces prefix; default: keep the path
	Service string   `yaml:"service"` // agent.services name; default "default"
	Stream  string   `yaml:"stream"`  // header (default), path:N, query:NAME
	Timeout Duration `yaml:"timeout"` // default: none
	MaxBody int64    `yaml:"maxBody"` // bytes; default 10 MiB
	Origin  string   `yaml:"origin"`  // the throttle's "origin" answer goes here; default the service
}

// MoQ is the gateway's Media over QUIC endpoint (raw QUIC and WebTransport).
type MoQ struct {
	Listen string `yaml:"listen"` // UDP address; default off (sluice dev: 127.0.0.1:4443)
	Cert   string `yaml:"cert"`   // PEM certificate (chain) file, with key; default a self-signed one, loopback only
	Key    string `yaml:"key"`    // PEM private key file
}

// ACME turns gateway.listen into an HTTPS listener whose certificates are
// obtained and renewed from an ACME CA (certmagic). It is off while Domains is
// empty; the other fields are then unused.
type ACME struct {
	Domains []string `yaml:"domains"` // names to get certificates for; default none (ACME off)
	Email   string   `yaml:"email"`   // the ACME account's contact; default none
	CA      string   `yaml:"ca"`      // the CA's directory URL (https); default Let's Encrypt production
	CARoot  string   `yaml:"caRoot"`  // PEM file of roots the CA's own HTTPS chains to; default the system's
	Storage string   `yaml:"storage"` // directory for the account, keys and certificates; default ./acme

	// HTTPListen is the plain-HTTP address that answers HTTP-01 challenges
	// and redirects every other request to HTTPS; default :80, off for none
	// (then TLS-ALPN-01 alone).
	HTTPListen string `yaml:"httpListen"`
	// Challenges are the ACME challenge types offered to the CA: http-01
	// (on HTTPListen) and tls-alpn-01 (on gateway.listen); default both, or
	// tls-alpn-01 alone when HTTPListen is off.
	Challenges []string `yaml:"challenges"`
	// RenewInterval is how often certificates are checked; one is renewed
	// once a third of its lifetime is left (or when the CA's renewal info
	// says); default 10m.
	RenewInterval Duration `yaml:"renewInterval"`
}

// Agent is the agent's section.
type Agent struct {
	ID           string   `yaml:"id"`                               // default: tls.name
	API          string   `yaml:"api"`                              // default 127.0.0.1:7443
	MediaHost    string   `yaml:"mediaHost"`                        // default: api's host, else 127.0.0.1
	DrainTimeout Duration `yaml:"drainTimeout"`                     // default 30s
	QueueTimeout Duration `yaml:"queueTimeout"`                     // default 10s
	QueueLimit   int      `yaml:"queueLimit" want:"an integer ≥ 0"` // default 64

	// Metrics is the address of a standalone agent's own /metrics listener
	// (plain HTTP, Prometheus text); default 127.0.0.1:9464, "off" for none.
	// sluice dev serves the agent's series on the gateway's /metrics instead.
	Metrics string `yaml:"metrics"`

	Services     map[string]string `yaml:"services"`     // name → host:port (http:// or h2c:// to force one)
	ServiceHooks ServiceHooks      `yaml:"serviceHooks"` // paths on the default service
	ServiceIdle  Duration          `yaml:"serviceIdle"`  // a stream held for calls alone; default 10m

	// Tags are the agent's own serf tags, seen by the route policy as the
	// candidate's tags (region, zone, gpu…); default none. agent.Config.Tags
	// says what keys and values it takes.
	Tags map[string]string `yaml:"tags"`
}

// ServiceHooks are SDR's add and delete URLs.
type ServiceHooks struct {
	Add    string `yaml:"add"`
	Remove string `yaml:"remove"`
}

// MemoryUsage is M2's memoryUsage.
type MemoryUsage struct {
	TotalUsableRatio int `yaml:"totalUsableRatio" want:"an integer percentage 1..100"` // default 100
	WorkingRatio     int `yaml:"workingRatio" want:"an integer percentage 1..100"`     // default 60
}

// Process is one purpose's pool, with M2's names.
type Process struct {
	Memory      string    `yaml:"memory"`
	Concurrent  int       `yaml:"concurrent" want:"an integer 0..4096, 0 = automatic"`
	WaitQueue   int       `yaml:"waitQueue" want:"an integer ≥ 0, 0 = no limit"`
	Respawnable int       `yaml:"respawnable" want:"an integer ≥ 1"`
	Keepalive   Keepalive `yaml:"keepalive"`
	Recovery    int       `yaml:"recovery" want:"an integer ≥ 1"`
	Intensity   Intensity `yaml:"intensity"`
	Warm        int       `yaml:"warm" want:"an integer ≥ -1, -1 = none"`
	Procs       int       `yaml:"procs" want:"an integer 1..1024"`
}

// Keepalive is M2's keepalive.
type Keepalive struct {
	MaxCount int      `yaml:"maxcount" want:"an integer ≥ 0, 0 = never"`
	MaxAge   Duration `yaml:"maxage"`
	TimeWait Duration `yaml:"timewait"`
}

// Intensity is the restart-intensity limit.
type Intensity struct {
	MaxRestarts int      `yaml:"maxRestarts" want:"an integer ≥ 0"`
	Period      Duration `yaml:"period"`
}

// Inspection is M2's inspection section.
type Inspection struct {
	Process struct {
		Enable    bool   `yaml:"enable"`
		Retention int    `yaml:"retention" want:"an integer ≥ 1"`
		Schedule  string `yaml:"schedule"` // "5 * * * * *" (cron with seconds) or "60s"
		Dir       string `yaml:"dir"`
	} `yaml:"process"`
}

// Duration is a time.Duration written as "30s", "1m", "24h".
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if n.Kind != yaml.ScalarNode || n.Decode(&s) != nil {
		return errors.New("is not a duration (want one like 30s, 1m, 24h)")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration (want one like 30s, 1m, 24h)", s)
	}
	if v < 0 {
		return fmt.Errorf("%q is negative (want a duration ≥ 0s)", s)
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
	var fe *FieldError
	if errors.As(err, &fe) && fe.Line > 0 {
		return nil, fmt.Errorf("config %s line %d: %w", path, fe.Line, err)
	}
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return f, nil
}

// Parse decodes a configuration document, refusing unknown fields. A value that
// does not fit its field is a *FieldError naming the field's path.
func Parse(b []byte) (*File, error) {
	f := &File{}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, err // not YAML at all: yaml.v3's message has the line
	}
	if err := check(&doc, reflect.TypeFor[File](), "", ""); err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(f); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if err := checkICEServers(f.Gateway.ICEServers); err != nil {
		return nil, err
	}
	if err := checkACME(f.Gateway.ACME); err != nil {
		return nil, err
	}
	if err := checkScale(f.Gateway.Scale); err != nil {
		return nil, err
	}
	if err := checkWebhooks(f.Webhooks); err != nil {
		return nil, err
	}
	if err := checkStreams(f.Streams); err != nil {
		return nil, err
	}
	return f, nil
}
