package agent

import "testing"

// Nodes listen where the agent API does unless agent.mediaHost says otherwise:
// in a container the API's host name is the address gateways reach.
func TestNodesListenOnTheAPIsHostByDefault(t *testing.T) {
	for api, want := range map[string]string{
		"":               "127.0.0.1",
		"10.0.0.5:7443":  "10.0.0.5",
		"agent-1:7443":   "agent-1",
		"[fd00::5]:7443": "fd00::5",
		"0.0.0.0:7443":   "127.0.0.1",
		"[::]:7443":      "127.0.0.1",
		":7443":          "127.0.0.1",
	} {
		c, err := Config{ID: "a1", API: api}.Validate()
		if err != nil || c.MediaHost != want {
			t.Errorf("api %q: mediaHost %q (%v), want %q", api, c.MediaHost, err, want)
		}
	}
	if c, _ := (Config{ID: "a1", API: "10.0.0.5:7443", MediaHost: "10.0.0.6"}).Validate(); c.MediaHost != "10.0.0.6" {
		t.Errorf("an explicit mediaHost became %q", c.MediaHost)
	}
}
