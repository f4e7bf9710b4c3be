package config

import (
	"errors"
	"strings"
	"testing"
)

func TestACMESettingsTheGatewayCannotUseAreRefusedNamingTheField(t *testing.T) {
	for _, c := range []struct{ doc, path, says string }{
		{"domains: [https://media.example.com]", "gateway.acme.domains[0]", "is not a host name"},
		{"domains: [a.example.com, 'media.example.com:443']", "gateway.acme.domains[1]", "is not a host name"},
		{"domains: ['*.example.com']", "gateway.acme.domains[0]", "needs DNS-01"},
		{"email: ops", "gateway.acme.email", "is not an email address"},
		{"ca: http://127.0.0.1:14000/dir", "gateway.acme.ca", "is not an https URL"},
		{"ca: acme-v02.api.letsencrypt.org", "gateway.acme.ca", "is not an https URL"},
		{"httpListen: '80'", "gateway.acme.httpListen", "is not host:port"},
		{"httpListen: ':http'", "gateway.acme.httpListen", `has port "http"`},
		{"challenges: [dns-01]", "gateway.acme.challenges[0]", "is not a challenge type"},
		{"challenges: [http-01, http-01]", "gateway.acme.challenges[1]", "is listed twice"},
		{"challenges: []", "gateway.acme.challenges", "is empty"},
		{"{httpListen: 'off', challenges: [tls-alpn-01, http-01]}", "gateway.acme.challenges[1]", "httpListen, which is off"},
	} {
		_, err := Parse([]byte("gateway:\n  acme:\n    " + c.doc + "\n"))
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Path != c.path || !strings.Contains(err.Error(), c.says) {
			t.Errorf("acme: %s: err = %v; want %s saying %q", c.doc, err, c.path, c.says)
		}
	}
}

func TestACMESettingsAGatewayCanUseAreAccepted(t *testing.T) {
	for _, doc := range []string{
		"{}",
		"{domains: [media.example.com, 192.0.2.7], email: ops@example.com}",
		"{domains: [gw.sluice.test], ca: 'https://127.0.0.1:14000/dir', caRoot: pebble.pem, storage: /var/lib/sluice/acme}",
		"{domains: [a.example.com], httpListen: 'off', challenges: [tls-alpn-01]}",
		"{domains: [a.example.com], httpListen: '[::1]:8080', challenges: [http-01], renewInterval: 1m}",
		"{domains: [], ca: 'https://acme-v02.api.letsencrypt.org/directory', httpListen: ':80'}", // the reference's defaults
	} {
		if _, err := Parse([]byte("gateway:\n  acme: " + doc + "\n")); err != nil {
			t.Errorf("acme: %s: %v", doc, err)
		}
	}
}

// FuzzACME feeds arbitrary gateway.acme values through Parse: an error is
// always a FieldError under gateway.acme, and nothing panics.
func FuzzACME(f *testing.F) {
	for _, s := range []string{
		"domains: [a.example.com]", "domains: ['*.x']", "httpListen: ':0'", "httpListen: '[::]:80'",
		"ca: 'https://[::1]:1/dir'", "challenges: [http-01, tls-alpn-01]", "email: a@b", "domains: ['']",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, value string) {
		_, err := Parse([]byte("gateway:\n  acme: {" + value + "}\n"))
		var fe *FieldError
		if errors.As(err, &fe) && !strings.HasPrefix(fe.Path, "gateway.acme") {
			t.Fatalf("%q: a FieldError outside gateway.acme: %v", value, err)
		}
	})
}
