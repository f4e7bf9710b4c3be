package config

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// FieldError is a setting that does not fit its field. Its message starts with
// the field's full path and says the value given and what the field takes:
// `process.relay.concurrent: "many" is not a number (want an integer 0..4096)`.
type FieldError struct {
	Path string // dotted path from the top of the file: process.relay.concurrent
	Line int    // line of the value in the file, 1-based; 0 when unknown
	Msg  string // what is wrong with the value, and what is allowed
}

func (e *FieldError) Error() string { return e.Path + ": " + e.Msg }

var (
	nodeType        = reflect.TypeFor[yaml.Node]()
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
)

// check walks a decoded YAML tree beside the Go type it will be decoded into,
// and reports the first value whose kind does not fit, or the first unknown
// field, by its path. yaml.v3's own errors say only "line 3: cannot unmarshal
// !!str `many` into int"; walking the tree first lets every error name the
// field, which is what an operator searches the file for.
func check(n *yaml.Node, t reflect.Type, path, want string) error {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil
		}
		return check(n.Content[0], t, path, want)
	}
	if t == nodeType || n.ShortTag() == "!!null" {
		return nil // decoded later by its owner, or absent (the default)
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			return &FieldError{Path: path, Line: n.Line, Msg: err.Error()}
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		return checkStruct(n, t, path)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return mismatch(n, path, "is not a mapping", orDefault(want, "a mapping of names to settings"))
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if err := check(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value), ""); err != nil {
				return err
			}
		}
		return nil
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return mismatch(n, path, "is not a list", orDefault(want, "a list, like [a, b]"))
		}
		for i, e := range n.Content {
			if err := check(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i), ""); err != nil {
				return err
			}
		}
		return nil
	}
	return checkScalar(n, t, path, want)
}

// checkStruct checks a mapping against a struct's yaml fields, refusing keys the
// struct does not have.
func checkStruct(n *yaml.Node, t reflect.Type, path string) error {
	if n.Kind != yaml.MappingNode {
		return mismatch(n, path, "is not a mapping", "a mapping of the fields "+strings.Join(fieldNames(t), ", "))
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key := n.Content[i]
		f, ok := fieldByKey(t, key.Value)
		if !ok {
			return &FieldError{Path: join(path, key.Value), Line: key.Line,
				Msg: fmt.Sprintf("unknown field (want one of %s)", strings.Join(fieldNames(t), ", "))}
		}
		if err := check(n.Content[i+1], f.Type, join(path, key.Value), f.Tag.Get("want")); err != nil {
			return err
		}
	}
	return nil
}

// checkScalar checks a scalar value against a number, boolean or string field.
func checkScalar(n *yaml.Node, t reflect.Type, path, want string) error {
	if n.Kind != yaml.ScalarNode {
		return mismatch(n, path, "is not a single value", orDefault(want, kindWant(t)))
	}
	tag := n.ShortTag()
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		switch tag {
		case "!!int":
			v := reflect.New(t)
			if err := n.Decode(v.Interface()); err != nil {
				return mismatch(n, path, "does not fit", orDefault(want, kindWant(t)))
			}
			return nil
		case "!!float":
			return mismatch(n, path, "is not a whole number", orDefault(want, kindWant(t)))
		}
		return mismatch(n, path, "is not a number", orDefault(want, kindWant(t)))
	case reflect.Float32, reflect.Float64:
		if tag != "!!int" && tag != "!!float" {
			return mismatch(n, path, "is not a number", orDefault(want, kindWant(t)))
		}
	case reflect.Bool:
		if tag != "!!bool" {
			return mismatch(n, path, "is not true or false", orDefault(want, kindWant(t)))
		}
	}
	return nil // a string takes any scalar, as yaml.v3 decodes it
}

// mismatch is a FieldError for a value of the wrong kind.
func mismatch(n *yaml.Node, path, what, want string) error {
	if path == "" {
		path = "the file" // the document itself is not a mapping
	}
	return &FieldError{Path: path, Line: n.Line, Msg: fmt.Sprintf("%s %s (want %s)", shown(n), what, want)}
}

// shown is how an error quotes the value given.
func shown(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	if n.ShortTag() == "!!str" {
		return strconv.Quote(n.Value)
	}
	return n.Value
}

func kindWant(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer ≥ 0"
	}
	return "an integer"
}

func orDefault(want, def string) string {
	if want != "" {
		return want
	}
	return def
}

func join(path, key string) string {
	if key == "" {
		key = `""`
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// yamlName is a struct field's key in the file, or "" when it has none.
func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" || !f.IsExported() {
		return ""
	}
	if name == "" {
		return strings.ToLower(f.Name)
	}
	return name
}

func fieldByKey(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if f := t.Field(i); yamlName(f) == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func fieldNames(t reflect.Type) []string {
	var names []string
	for i := range t.NumField() {
		if name := yamlName(t.Field(i)); name != "" {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}
