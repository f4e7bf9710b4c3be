package config

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// ICEServer is one entry of gateway.iceServers: a STUN or TURN server that
// clients are told of (RFC 9725 §4.6 Link headers, and the page at /).
type ICEServer struct {
	URLs       URLList `yaml:"urls"`       // stun:, turn: or turns: URLs; one string or a list
	Username   string  `yaml:"username"`   // TURN: required
	Credential string  `yaml:"credential"` // TURN: required; never logged
}

// URLList is a list of URLs written as one string or a YAML list, as in
// WebRTC's RTCIceServer.urls.
type URLList []string

// UnmarshalYAML takes a scalar or a sequence of strings.
func (l *URLList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*l = URLList{n.Value}
		return nil
	}
	var s []string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: urls is not a URL or a list of URLs", n.Line)
	}
	*l = s
	return nil
}

// checkICEServers refuses an entry that a client could not use, naming its
// field. Error messages never carry a credential.
func checkICEServers(servers []ICEServer) error {
	for i, s := range servers {
		field := fmt.Sprintf("gateway.iceServers[%d]", i)
		if len(s.URLs) == 0 {
			return fmt.Errorf("%s.urls: missing (want stun:, turn: or turns: URLs)", field)
		}
		turn := false
		for j, u := range s.URLs {
			scheme, err := checkICEURL(u)
			if err != nil {
				return fmt.Errorf("%s.urls[%d]: %q %w", field, j, u, err)
			}
			turn = turn || scheme != "stun"
		}
		if turn && (s.Username == "" || s.Credential == "") {
			return fmt.Errorf("%s: a TURN server needs username and credential", field)
		}
	}
	return nil
}

// checkICEURL checks a stun: (RFC 7064) or turn:/turns: (RFC 7065) URL:
// scheme:host[:port], and for TURN an optional ?transport=udp|tcp.
func checkICEURL(u string) (scheme string, err error) {
	scheme, rest, ok := strings.Cut(u, ":")
	if !ok || scheme != "stun" && scheme != "turn" && scheme != "turns" {
		return "", errors.New("is not a STUN or TURN URL (want stun:, turn: or turns: host[:port])")
	}
	hostport, query, hasQuery := strings.Cut(rest, "?")
	if hasQuery && (scheme == "stun" || query != "transport=udp" && query != "transport=tcp") {
		return "", errors.New("has a query other than a TURN URL's ?transport=udp or ?transport=tcp")
	}
	host, port := hostport, ""
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		host, port = h, p
	} else if strings.HasPrefix(hostport, "[") && strings.HasSuffix(hostport, "]") {
		host = hostport[1 : len(hostport)-1]
	}
	if !validHost(host) {
		return "", errors.New("has no valid host (want scheme:host[:port])")
	}
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("has port %q (want 1 to 65535)", port)
		}
	}
	return scheme, nil
}

// validHost is a host name or IP address: no separators, spaces or control
// characters, and a colon only inside an IPv6 address.
func validHost(h string) bool {
	if h == "" || strings.Contains(h, ":") && net.ParseIP(h) == nil {
		return false
	}
	for _, c := range []byte(h) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte("/@<>\"\\?#[]", c) >= 0 {
			return false
		}
	}
	return true
}
