package cluster

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/sluicegw/sluice/internal/freeport"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestEncryptedMembersSeeEachOtherAndTagChanges(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	ctx := context.Background()
	a, err := Start(ctx, Config{Name: "a", Bind: freeport.Loopback(t), Key: key, Tags: map[string]string{"role": "agent"}, TagInterval: 50 * time.Millisecond}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Start(ctx, Config{Name: "b", Bind: freeport.Loopback(t), Key: key, Join: []string{a.Addr()}, Tags: map[string]string{"role": "gateway"}}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	waitFor(t, "b to see a as an alive agent", func() bool {
		for _, m := range b.Members() {
			if m.Name == "a" && m.Status == "alive" && m.HasRole("agent") {
				return true
			}
		}
		return false
	})
	changes, stop := b.Subscribe()
	defer stop()
	if err := a.SetTags(map[string]string{"load": "7"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b to see a's new load tag", func() bool {
		for _, m := range b.Members() {
			if m.Name == "a" && m.Tags["load"] == "7" && m.Tags["role"] == "agent" {
				return true
			}
		}
		return false
	})
	select {
	case <-changes:
	case <-time.After(5 * time.Second):
		t.Fatal("subscriber was not told of the tag change")
	}

	if err := a.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b to see a as left", func() bool {
		for _, m := range b.Members() {
			if m.Name == "a" {
				return m.Status == "left"
			}
		}
		return false
	})
}

func TestMemberWithWrongKeyCannotJoin(t *testing.T) {
	ctx := context.Background()
	a, err := Start(ctx, Config{Name: "a", Bind: freeport.Loopback(t), Key: []byte("0123456789abcdef")}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Start(ctx, Config{Name: "b", Bind: freeport.Loopback(t), Key: []byte("fedcba9876543210"), Join: []string{a.Addr()}}, quiet())
	if err == nil {
		b.Close()
		t.Fatal("a member with another key joined")
	}
}

func TestPlaintextGossipIsRefusedOutsideDevLoopback(t *testing.T) {
	ctx := context.Background()
	if _, err := Start(ctx, Config{Name: "a", Bind: freeport.Loopback(t)}, quiet()); err == nil || !strings.Contains(err.Error(), "encrypted") {
		t.Fatalf("unencrypted non-dev member: err = %v", err)
	}
	if _, err := Start(ctx, Config{Name: "a", Bind: "0.0.0.0:0", Dev: true}, quiet()); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("dev member on a wildcard address: err = %v", err)
	}
}

func TestTagsOverTheSerfLimitAreRefusedAndTheOldOnesKept(t *testing.T) {
	c, err := Start(context.Background(), Config{Name: "a", Bind: freeport.Loopback(t), Dev: true, Tags: map[string]string{"role": "agent"}}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.SetTags(map[string]string{"big": strings.Repeat("x", 600)})
	if !errors.Is(err, ErrTagsTooLarge) {
		t.Fatalf("err = %v, want ErrTagsTooLarge", err)
	}
	if got := c.Tags(); got["role"] != "agent" || got["big"] != "" {
		t.Fatalf("tags after a refused update = %v", got)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	_ = c.Close() // twice is safe
}
