package whip

import "strings"

// ICEServer is a STUN or TURN server that clients are told of in Link
// headers (RFC 9725 §4.6), for their own gathering: a client behind a strict
// NAT reaches the gateway through the TURN server's relay. The gateway itself
// gathers host candidates only.
type ICEServer struct {
	// URLs are stun:, turn: or turns: URLs (RFC 7064, RFC 7065).
	URLs []string
	// Username and Credential are a TURN server's long-term credentials
	// (credential-type "password"). Empty for STUN.
	Username, Credential string
}

// linkHeaders are the Link header values that name servers, one per URL:
// <turn:turn.example.net?transport=udp>; rel="ice-server"; username="u";
// credential="p"; credential-type="password".
func linkHeaders(servers []ICEServer) []string {
	var links []string
	for _, s := range servers {
		for _, u := range s.URLs {
			v := "<" + u + `>; rel="ice-server"`
			if s.Username != "" || s.Credential != "" {
				v += "; username=" + quote(s.Username) + "; credential=" + quote(s.Credential) + `; credential-type="password"`
			}
			links = append(links, v)
		}
	}
	return links
}

// quote makes s an RFC 9110 quoted-string.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}
