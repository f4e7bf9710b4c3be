package moqt

import "testing"

func TestNamespaceFromPath(t *testing.T) {
	if n := NamespaceFromPath("live/cam1.hang"); !n.Equal(Namespace{"live", "cam1.hang"}) || n.Path() != "live/cam1.hang" {
		t.Errorf("got %q", n)
	}
	if n := NamespaceFromPath(""); len(n) != 0 {
		t.Errorf("empty path gave %q", n)
	}
}
