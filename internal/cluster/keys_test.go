package cluster

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/sluicegw/sluice/internal/freeport"
)

// A rotation moves three members to one new key without any of them leaving:
// each keeps only the new key (on disk too), a member with the old key can no
// longer join, and a member restarted from its keyring file joins again.
func TestRotateKeyMovesEveryMemberToOneNewKeyWithNoneLeaving(t *testing.T) {
	old := []byte("0123456789abcdef0123456789abcdef")
	ctx := context.Background()
	dir := t.TempDir()
	ring := func(name string) string { return filepath.Join(dir, name+".keyring") }
	start := func(name string, join ...string) *Cluster {
		t.Helper()
		c, err := Start(ctx, Config{Name: name, Bind: freeport.Loopback(t), Key: old, KeyringFile: ring(name), Join: join}, quiet())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a := start("a")
	defer a.Close()
	b := start("b", a.Addr())
	defer b.Close()
	c := start("c", a.Addr())
	waitFor(t, "three alive members, as each sees it", func() bool { return alive(a) == 3 && alive(b) == 3 && alive(c) == 3 })

	rot, err := b.RotateKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rot.Members != 3 || rot.Removed != 1 {
		t.Fatalf("rotation %+v; want 3 members and the old key removed", rot)
	}
	var newKey string
	for _, name := range []string{"a", "b", "c"} {
		keys := readRing(t, ring(name))
		if len(keys) != 1 || keys[0] == base64.StdEncoding.EncodeToString(old) {
			t.Fatalf("%s's keyring after the rotation: %v; want one new key", name, keys)
		}
		if newKey != "" && keys[0] != newKey {
			t.Fatalf("%s has key %s, another member %s", name, keys[0], newKey)
		}
		newKey = keys[0]
	}
	for _, m := range a.Members() {
		if m.Status != "alive" {
			t.Fatalf("member %s is %s after the rotation", m.Name, m.Status)
		}
	}
	if d, err := Start(ctx, Config{Name: "d", Bind: freeport.Loopback(t), Key: old, Join: []string{a.Addr()}}, quiet()); err == nil {
		d.Close()
		t.Fatal("a member with the old key joined after the rotation")
	}
	// c restarts: its keyring file, not the old key it is given, lets it in.
	_ = c.Leave(ctx)
	c.Close()
	c = start("c", a.Addr())
	defer c.Close()
	waitFor(t, "c back from its keyring file", func() bool { return alive(a) == 3 })
}

func alive(c *Cluster) int {
	n := 0
	for _, m := range c.Members() {
		if m.Status == "alive" {
			n++
		}
	}
	return n
}

func readRing(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	if err := json.Unmarshal(b, &keys); err != nil {
		t.Fatal(err)
	}
	return keys
}

// Plaintext gossip has no key to rotate, and says so.
func TestRotateKeyRefusesPlaintextGossip(t *testing.T) {
	c, err := Start(context.Background(), Config{Name: "a", Bind: freeport.Loopback(t), Dev: true}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.RotateKey(context.Background()); err == nil {
		t.Fatal("a rotation of plaintext gossip succeeded")
	}
}
