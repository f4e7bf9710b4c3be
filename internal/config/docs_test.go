package config

import (
	"os"
	"strings"
	"testing"
)

// The YAML the documents show is a configuration sluice accepts: the full
// reference in docs/configuration.md and the short one in the README.
func TestTheDocumentedConfigurationsParse(t *testing.T) {
	for _, path := range []string{"../../docs/configuration.md", "../../README.md"} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		_, block, ok := strings.Cut(string(b), "```yaml\n")
		if !ok {
			t.Fatalf("%s has no yaml block", path)
		}
		block, _, _ = strings.Cut(block, "```")
		if _, err := Parse([]byte(block)); err != nil {
			t.Errorf("%s: its configuration is refused: %v", path, err)
		}
	}
}
