package gateway

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The vendored uPlot files are the ones refresh.sh fetches for its pinned
// version: SHA256SUMS names that version and each file's digest, and a file
// edited by hand or a version bumped without a refresh fails here.
func TestTheVendoredUPlotIsThePinnedVersion(t *testing.T) {
	dir := filepath.Join("dashboard", "vendor")
	script, err := os.ReadFile(filepath.Join(dir, "refresh.sh"))
	if err != nil {
		t.Fatal(err)
	}
	pinned := regexp.MustCompile(`(?m)^VERSION=(1\.6\.\d+)$`).FindSubmatch(script)
	if pinned == nil {
		t.Fatal("refresh.sh pins no uplot 1.6.x VERSION")
	}
	f, err := os.Open(filepath.Join(dir, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	files := 0
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "# uplot "); ok {
			if v != string(pinned[1]) {
				t.Errorf("SHA256SUMS is of uplot %s, refresh.sh pins %s: run go generate ./gateway", v, pinned[1])
			}
			continue
		}
		sum, name, ok := strings.Cut(line, "  ")
		if !ok {
			t.Fatalf("SHA256SUMS: bad line %q", line)
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := sha256.Sum256(b); hex.EncodeToString(got[:]) != sum {
			t.Errorf("%s is not uplot %s's (sha256 %x, want %s): run go generate ./gateway", name, pinned[1], got, sum)
		}
		files++
	}
	if files != 3 {
		t.Errorf("SHA256SUMS lists %d files, want the script, the stylesheet and the licence", files)
	}
}

// The page's assets are served, and what is beside them in the source tree
// (the refresh script, the checksums) is not.
func TestTheDashboardServesItsAssetsOnly(t *testing.T) {
	h := dashboard()
	for path, want := range map[string]int{
		"/": 200, "/sluice.js": 200, "/vendor/uPlot.iife.min.js": 200, "/vendor/uPlot.min.css": 200, "/vendor/LICENSE": 200,
		"/vendor/refresh.sh": 404, "/vendor/SHA256SUMS": 404,
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != want {
			t.Errorf("GET %s = %d, want %d", path, rec.Code, want)
		}
	}
}
