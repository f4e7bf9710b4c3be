package cluster

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
)

// loadKeyring reads a keyring file as serf writes it (a JSON list of base64
// keys, the primary first); nil when the file does not exist yet.
func loadKeyring(path string) (*memberlist.Keyring, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cluster: keyring: %w", err)
	}
	var encoded []string
	if err := json.Unmarshal(b, &encoded); err != nil || len(encoded) == 0 {
		return nil, fmt.Errorf("cluster: keyring %s: not a JSON list of base64 keys", path)
	}
	keys := make([][]byte, len(encoded))
	for i, e := range encoded {
		if keys[i], err = base64.StdEncoding.DecodeString(e); err != nil {
			return nil, fmt.Errorf("cluster: keyring %s: key %d: %w", path, i, err)
		}
	}
	kr, err := memberlist.NewKeyring(keys[1:], keys[0])
	if err != nil {
		return nil, fmt.Errorf("cluster: keyring %s: %w", path, err)
	}
	return kr, nil
}

// KeyRotation is what RotateKey did.
type KeyRotation struct {
	Members int `json:"members"` // members that installed and switched to the new key
	Removed int `json:"removed"` // old keys removed from every member
}

// RotateKey moves the whole cluster to a new random gossip key with no
// downtime, by serf's keyring operations: every member installs it, every
// member switches to it, then every other key is removed. Each step needs
// every alive member's answer before the next one starts, so no member is
// ever left unable to read the others; a member that did not answer keeps the
// old key (the first two steps are harmless to repeat). Members with a
// KeyringFile keep the new key across restarts.
func (c *Cluster) RotateKey(ctx context.Context) (KeyRotation, error) {
	if c.cfg.Dev && len(c.cfg.Key) == 0 && c.cfg.KeyringFile == "" {
		return KeyRotation{}, errors.New("cluster: gossip is not encrypted (sluice dev): there is no key to rotate")
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return KeyRotation{}, err
	}
	key := base64.StdEncoding.EncodeToString(raw)
	km := c.serf.KeyManager()
	// Each step is a serf query every member answers; an answer lost to the
	// gossip's own timing is asked again (the steps are idempotent).
	step := func(what string, op func(string) (*serf.KeyResponse, error), k string) (int, error) {
		var err error
		for try := 0; try < 3; try++ {
			if cerr := ctx.Err(); cerr != nil {
				return 0, cerr
			}
			var resp *serf.KeyResponse
			resp, err = op(k)
			if err == nil && resp.NumErr > 0 {
				err = fmt.Errorf("%d of %d members failed: %v", resp.NumErr, resp.NumNodes, resp.Messages)
			}
			if err == nil && resp.NumResp < resp.NumNodes {
				err = fmt.Errorf("%d of %d members answered", resp.NumResp, resp.NumNodes)
			}
			if err == nil {
				return resp.NumNodes, nil
			}
			c.log.Warn("cluster: key rotation step incomplete; asking again", "step", what, "err", err)
		}
		return 0, fmt.Errorf("cluster: key rotation: %s: %w", what, err)
	}
	n, err := step("install the new key", km.InstallKey, key)
	if err != nil {
		return KeyRotation{}, err
	}
	if _, err := step("switch to the new key", km.UseKey, key); err != nil {
		return KeyRotation{Members: n}, err
	}
	list, err := km.ListKeys()
	if err != nil {
		return KeyRotation{Members: n}, fmt.Errorf("cluster: key rotation: list keys: %w", err)
	}
	out := KeyRotation{Members: n}
	for old := range list.Keys {
		if old == key {
			continue
		}
		if _, err := step("remove an old key", km.RemoveKey, old); err != nil {
			return out, err
		}
		out.Removed++
	}
	return out, nil
}
