package streamid

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateAcceptsTheAllowedSetAndRefusesEverythingElse(t *testing.T) {
	for _, tc := range []struct {
		id string
		ok bool
	}{
		{"cam-1", true},
		{"A.b_c~d-9", true},
		{strings.Repeat("x", MaxLen), true},
		{"", false},
		{strings.Repeat("x", MaxLen+1), false},
		{"a/b", false},
		{"a b", false},
		{"caf\u00e9", false},
		{"a%20b", false},
		{"..", true}, // dots are allowed; ids are never used as relative paths unescaped
	} {
		err := Validate(tc.id)
		if (err == nil) != tc.ok {
			t.Errorf("Validate(%q) = %v, want ok=%v", tc.id, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("Validate(%q) error %v does not wrap ErrInvalid", tc.id, err)
		}
	}
}

func FuzzValidate(f *testing.F) {
	for _, s := range []string{"cam-1", "", "a/b", strings.Repeat("z", 129), "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		err := Validate(id)
		ok := len(id) >= 1 && len(id) <= MaxLen && strings.Trim(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-") == ""
		if (err == nil) != ok {
			t.Fatalf("Validate(%q) = %v, reference says ok=%v", id, err, ok)
		}
	})
}
