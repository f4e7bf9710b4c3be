package moq

import (
	"bytes"
	"testing"

	"github.com/sluicegw/sluice/sdk/moqt"
)

// A token sent by value (as sluice push sends it) gives its value, a bare
// JWT itself, and the alias forms (which our cache size of 0 forbids) none.
func TestTokenValueReadsTheTokenStructureOrABareToken(t *testing.T) {
	for _, v := range []moqt.Version{moqt.Draft16, moqt.Draft19} {
		byValue := append(moqt.AppendVarint(moqt.AppendVarint(nil, v, 0x3), v, 0), "eyJhbGciOi.x.y"...)
		for _, tc := range []struct {
			in, want []byte
		}{
			{byValue, []byte("eyJhbGciOi.x.y")},
			{[]byte("eyJhbGciOi.x.y"), []byte("eyJhbGciOi.x.y")},
			{moqt.AppendVarint(moqt.AppendVarint(nil, v, 0x2), v, 7), nil},
			{nil, nil},
		} {
			if got := tokenValue(v, tc.in); !bytes.Equal(got, tc.want) {
				t.Errorf("%s: tokenValue(%q) = %q, want %q", v, tc.in, got, tc.want)
			}
		}
	}
	if got := queryToken("/moq?x=1&jwt=abc.def.ghi"); string(got) != "abc.def.ghi" {
		t.Errorf("queryToken = %q", got)
	}
	if queryToken("/moq") != nil || queryToken("/moq?jwt=") != nil {
		t.Error("queryToken found a token in a URL without one")
	}
}

// FuzzTokenValue: whatever a client sends as AUTHORIZATION_TOKEN or PATH,
// reading the token never panics and gives a suffix of what was sent.
func FuzzTokenValue(f *testing.F) {
	f.Add([]byte{0x3, 0x0, 'e', 'y'}, "/?jwt=a.b.c")
	f.Add([]byte{0x40}, "/%zz?jwt=%zz")
	f.Add([]byte("eyJ"), "?")
	f.Fuzz(func(t *testing.T, b []byte, path string) {
		for _, v := range moqt.Supported {
			if got := tokenValue(v, b); got != nil && !bytes.HasSuffix(b, got) {
				t.Fatalf("tokenValue(%x) = %x, not a suffix", b, got)
			}
		}
		_ = queryToken(path)
	})
}
