package arrows

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

// Every package of the module imports only what the design's arrows allow.
func TestEveryPackageImportsOnlyWhatTheArrowsAllow(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", Module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	pkgs := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		pkgs++
		for _, imp := range f[1:] {
			if err := Check(f[0], imp); err != nil {
				t.Error(err)
			}
		}
	}
	if pkgs < 20 {
		t.Fatalf("go list named only %d packages", pkgs)
	}
}

// The rules refuse the arrows that once pointed the wrong way, and others the
// design forbids, so the test above can fail.
func TestTheRulesRefuseArrowsThatPointTheWrongWay(t *testing.T) {
	for _, c := range [][2]string{
		{"wasm", "plugins"},
		{"wasm", "plugins/policy"},
		{"gateway", "plugins/policy"},
		{"internal/policytest", "wasm"},
		{"gateway/internal/session", "agent"},
		{"agent", "gateway"},
		{"agent/node", "wasm"},
		{"sdk", "internal/wire"},
		{"plugins/route-hrw", "wasm"},
		{"internal/cluster", "cmd/sluice"},
		{"gateway", "sdk"},
		{"gateway/internal/moq", "sdk/push"},
	} {
		if err := Check(Module+"/"+c[0], Module+"/"+c[1]); err == nil {
			t.Errorf("%s → %s was allowed", c[0], c[1])
		}
	}
	for _, c := range [][2]string{
		{"cmd/sluice", "wasm"},
		{"gateway/internal/whip", "gateway/internal/session"},
		{"wasm", "sdk/abi"},
		{"plugins/route-hrw", "plugins/policy"},
		{"agent/node", "internal/medialink"},
		{"gateway/internal/moq", "sdk/moqt"},
	} {
		if err := Check(Module+"/"+c[0], Module+"/"+c[1]); err != nil {
			t.Errorf("%s → %s was refused: %v", c[0], c[1], err)
		}
	}
	if err := Check(Module+"/wasm", "github.com/tetratelabs/wazero"); err != nil {
		t.Errorf("wasm may import wazero: %v", err)
	}
	if err := Check(Module+"/sdk", "github.com/tetratelabs/wazero"); err == nil {
		t.Error("the SDK was allowed a dependency outside the standard library")
	}
	if err := Check(Module+"/sdk/push", "github.com/quic-go/quic-go"); err != nil {
		t.Errorf("the push client was refused QUIC: %v", err)
	}
	if err := Check(Module+"/sdk/push", "github.com/pion/rtp"); err == nil {
		t.Error("the push client was allowed a dependency beyond QUIC")
	}
	if err := Check(Module+"/sdk/abi", "encoding/binary"); err != nil {
		t.Errorf("the SDK was refused the standard library: %v", err)
	}
}
