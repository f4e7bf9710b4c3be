package config

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// The ACME challenge types gateway.acme.challenges takes (RFC 8555 §8.3,
// RFC 8737). DNS-01 is not offered: it needs a DNS provider's API.
const (
	ChallengeHTTP01    = "http-01"
	ChallengeTLSALPN01 = "tls-alpn-01"
)

// ListenOff is the value of gateway.acme.httpListen that serves no plain HTTP.
const ListenOff = "off"

// checkACME refuses a gateway.acme setting the gateway could not act on,
// naming its field. Settings beside an empty domains list are not checked
// against it: they are unused then, as the reference shows their defaults so.
func checkACME(a ACME) error {
	field := func(name, format string, args ...any) error {
		return &FieldError{Path: "gateway.acme." + name, Msg: fmt.Sprintf(format, args...)}
	}
	for i, d := range a.Domains {
		if err := checkACMEDomain(d); err != nil {
			return field(fmt.Sprintf("domains[%d]", i), "%q %s", d, err)
		}
	}
	if a.Email != "" && (!strings.Contains(a.Email, "@") || strings.ContainsAny(a.Email, " \t\r\n<>")) {
		return field("email", "%q is not an email address (want one like ops@example.com)", a.Email)
	}
	if a.CA != "" {
		u, err := url.Parse(a.CA)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return field("ca", "%q is not an https URL (want an ACME directory, like https://acme-v02.api.letsencrypt.org/directory)", a.CA)
		}
	}
	if a.HTTPListen != "" && a.HTTPListen != ListenOff {
		if err := checkListen(a.HTTPListen); err != nil {
			return field("httpListen", "%q %s", a.HTTPListen, err)
		}
	}
	for i, c := range a.Challenges {
		if c != ChallengeHTTP01 && c != ChallengeTLSALPN01 {
			return field(fmt.Sprintf("challenges[%d]", i), "%q is not a challenge type (want %s or %s)", c, ChallengeHTTP01, ChallengeTLSALPN01)
		}
		if slices.Index(a.Challenges, c) != i {
			return field(fmt.Sprintf("challenges[%d]", i), "%q is listed twice", c)
		}
		if c == ChallengeHTTP01 && a.HTTPListen == ListenOff {
			return field(fmt.Sprintf("challenges[%d]", i), "%q needs gateway.acme.httpListen, which is off", c)
		}
	}
	if a.Challenges != nil && len(a.Challenges) == 0 {
		return field("challenges", "is empty (want %s, %s or both)", ChallengeHTTP01, ChallengeTLSALPN01)
	}
	return nil
}

// checkACMEDomain accepts a name an ACME CA can validate over HTTP-01 or
// TLS-ALPN-01: a host name or an IP address, with no scheme, port or wildcard.
func checkACMEDomain(d string) error {
	switch {
	case strings.HasPrefix(d, "*."):
		return fmt.Errorf("is a wildcard (it needs DNS-01, which sluice does not offer)")
	case !validHost(d) || strings.Contains(d, "*"):
		return fmt.Errorf("is not a host name (want one like media.example.com, without scheme or port)")
	}
	return nil
}

// checkListen accepts host:port with a port 1..65535; the host may be empty
// (every interface).
func checkListen(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("is not host:port (want one like :80 or 192.0.2.1:80)")
	}
	if host != "" && !validHost(host) {
		return fmt.Errorf("has no valid host (want one like :80 or 192.0.2.1:80)")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("has port %q (want 1 to 65535)", port)
	}
	return nil
}
