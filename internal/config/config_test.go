package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// leaf is one settable field of File: its path and Go type.
type leaf struct {
	path   []string
	t      reflect.Type
	anyKey bool // its parent is a map of plain values, which takes any key
}

// leaves lists every field of t down to the values an operator writes, taking
// "relay" as the key of a map (process.relay.…).
func leaves(t reflect.Type, path []string) []leaf {
	if t == nodeType || reflect.PointerTo(t).Implements(unmarshalerType) {
		return []leaf{{path: path, t: t}}
	}
	switch t.Kind() {
	case reflect.Struct:
		var out []leaf
		for i := range t.NumField() {
			if name := yamlName(t.Field(i)); name != "" {
				out = append(out, leaves(t.Field(i).Type, append(append([]string{}, path...), name))...)
			}
		}
		return out
	case reflect.Map:
		out := leaves(t.Elem(), append(append([]string{}, path...), "relay"))
		if t.Elem().Kind() != reflect.Struct {
			for i := range out {
				out[i].anyKey = true // a map of values takes any key
			}
		}
		return out
	}
	return []leaf{{path: path, t: t}}
}

// nest writes value at path as nested YAML mappings.
func nest(path []string, value string) string {
	var b strings.Builder
	for i, k := range path {
		b.WriteString(strings.Repeat("  ", i) + k + ":")
		if i < len(path)-1 {
			b.WriteString("\n")
		}
	}
	b.WriteString(" " + value + "\n")
	return b.String()
}

// wrongValue is a value of the wrong kind for a field of type t, and the words
// the error must use for it.
func wrongValue(t reflect.Type) (yamlValue, says string) {
	if t == reflect.TypeFor[Duration]() {
		return "soon", `"soon" is not a duration`
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int64:
		return "many", `"many" is not a number (want an integer`
	case reflect.Bool:
		return "perhaps", `"perhaps" is not true or false`
	case reflect.String:
		return "{a: 1}", "a mapping is not a single value (want a string)"
	case reflect.Slice:
		return "just-one", `"just-one" is not a list`
	}
	panic(fmt.Sprintf("no wrong value for %v", t))
}

func TestEveryFieldRefusesAValueOfTheWrongKindNamingItsPathAndValue(t *testing.T) {
	n := 0
	for _, l := range leaves(reflect.TypeFor[File](), nil) {
		if l.t == nodeType {
			continue // plugins: decoded and checked by the policy host
		}
		n++
		value, says := wrongValue(l.t)
		doc := nest(l.path, value)
		_, err := Parse([]byte(doc))
		var fe *FieldError
		path := strings.Join(l.path, ".")
		if !errors.As(err, &fe) || fe.Path != path || !strings.Contains(err.Error(), says) {
			t.Errorf("%s\n: err = %v; want a FieldError for %s saying %q", doc, err, path, says)
			continue
		}
		if !strings.HasPrefix(err.Error(), path+": ") || fe.Line != len(l.path) {
			t.Errorf("%s: err %q, line %d; want it to start with the path and give line %d", path, err, fe.Line, len(l.path))
		}
	}
	if n < 40 {
		t.Fatalf("checked only %d fields; the walk over File lost some", n)
	}
}

func TestEveryStructRefusesAnUnknownFieldNamingTheFieldsItHas(t *testing.T) {
	seen := map[string]bool{}
	for _, l := range leaves(reflect.TypeFor[File](), nil) {
		parent := l.path[:len(l.path)-1]
		key := strings.Join(parent, ".")
		if seen[key] || l.anyKey {
			continue
		}
		seen[key] = true
		doc := nest(append(append([]string{}, parent...), "colour"), "blue")
		_, err := Parse([]byte(doc))
		var fe *FieldError
		want := strings.Join(append(append([]string{}, parent...), "colour"), ".")
		if !errors.As(err, &fe) || fe.Path != want || !strings.Contains(err.Error(), "unknown field (want one of ") ||
			!strings.Contains(err.Error(), l.path[len(l.path)-1]) {
			t.Errorf("%s: err = %v; want unknown field %s, listing %s", doc, err, want, l.path[len(l.path)-1])
		}
	}
}

func TestTheIssuesExampleReadsAsTheIssueAsks(t *testing.T) {
	_, err := Parse([]byte("process:\n  relay:\n    concurrent: many\n"))
	want := `process.relay.concurrent: "many" is not a number (want an integer 0..4096, 0 = automatic)`
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant  %s", err, want)
	}
}

func TestGoodValuesOfEveryKindDecode(t *testing.T) {
	doc := `
cluster: {name: gw-1, join: [10.0.0.5:7946, 10.0.0.6:7946]}
gateway: {iceUDPPort: 8189, corsOrigins: ["*"], maxOfferBytes: 70000}
agent: {drainTimeout: 5s, queueTimeout: 0, queueLimit: 8}
memoryUsage: {totalUsableRatio: 90, workingRatio: 50}
process:
  relay: {memory: 120%, concurrent: 2, waitQueue: 4, keepalive: {maxcount: 10, maxage: 1h, timewait: 1m}}
  record: {concurrent: 1}
inspection: {process: {enable: true, retention: 3}}
plugins: {slots: {route: {module: builtin:route-hrw}}}
`
	f, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if f.Process["relay"].Keepalive.MaxAge != Duration(3600e9) || f.Process["record"].Concurrent != 1 ||
		!f.Inspection.Process.Enable || len(f.Cluster.Join) != 2 || f.Agent.QueueLimit != 8 || f.Plugins.Kind != yaml.MappingNode {
		t.Fatalf("decoded %+v", f)
	}
}

func TestLoadPrefixesTheFileAndLine(t *testing.T) {
	path := t.TempDir() + "/sluice.yaml"
	if err := os.WriteFile(path, []byte("agent:\n  queueLimit: lots\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil || !strings.Contains(err.Error(), "sluice.yaml line 2: agent.queueLimit: \"lots\" is not a number") {
		t.Fatalf("err = %v", err)
	}
}

// FuzzParse feeds arbitrary documents to Parse: it must return a File or an
// error, never panic, and a FieldError always names a path.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"", "process:\n  relay:\n    concurrent: many\n", "gateway: {iceHosts: x}", "a: &x {b: *x}",
		"process: {relay: {keepalive: {maxage: 1h}}}", "plugins: {slots: {}}", "- 1\n- 2", "cluster: [1]",
		"memoryUsage: {workingRatio: 1.5}", "agent: {drainTimeout: -1s}", "process: {relay: [1]}",
		"webhooks: [{url: 'http://a/', events: [stream.started]}]", "webhooks: [{url: ':'}]", "streams: [{id: 'cam-*'}, {id: '*'}]",
		"streams: [{id: lobby, tags: {region: eu}, limits: {maxViewers: 1}}]", "streams: [{id: '**'}]",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		_, err := Parse([]byte(doc))
		var fe *FieldError
		if errors.As(err, &fe) && fe.Path == "" {
			t.Fatalf("a FieldError without a path: %v", err)
		}
	})
}

// An agent's tags are strings whatever YAML scalar the operator wrote, so
// `gpu: 1` is the tag gpu=1 a policy compares with "1".
func TestAgentTagsAreReadAsStrings(t *testing.T) {
	f, err := Parse([]byte("agent:\n  tags: {region: eu-west, gpu: 1, spot: true}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"region": "eu-west", "gpu": "1", "spot": "true"}; !reflect.DeepEqual(f.Agent.Tags, want) {
		t.Fatalf("agent.tags = %v, want %v", f.Agent.Tags, want)
	}
	if _, err := Parse([]byte("agent:\n  tags: [eu-west]\n")); err == nil || !strings.HasPrefix(err.Error(), "agent.tags: ") {
		t.Fatalf("a list for agent.tags: %v", err)
	}
}
