package preempt

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/sluicegw/sluice/plugins"
)

// modules are real guests: the hand-written test modules of the policy host
// and the built-in Go policies (whose code uses most of the instruction set a
// compiler emits).
func modules(t *testing.T) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	files, _ := filepath.Glob("../../testdata/*.wasm")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.HasPrefix(b, []byte("\x00asm")) {
			out[filepath.Base(f)] = b
		}
	}
	for _, name := range plugins.Names {
		b, err := plugins.Builtin(name)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = b
	}
	if len(out) < 10 {
		t.Fatalf("only %d modules found", len(out))
	}
	return out
}

// rewritten reads a test module of the policy host and rewrites it.
func rewritten(t *testing.T, name string) (orig, out []byte) {
	t.Helper()
	orig, err := os.ReadFile("../../testdata/" + name + ".wasm")
	if err != nil {
		t.Fatal(err)
	}
	if out, err = Rewrite(orig); err != nil {
		t.Fatal(err)
	}
	return orig, out
}

func runtime(ctx context.Context, t *testing.T) wazero.Runtime {
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCompilationCache(nil))
	t.Cleanup(func() { rt.Close(ctx) })
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	return rt
}

func TestRewrittenModulesValidateAndExportTheStopGlobal(t *testing.T) {
	ctx := context.Background()
	rt := runtime(ctx, t)
	for name, b := range modules(t) {
		out, err := Rewrite(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(out) <= len(b) && !strings.HasPrefix(name, "not-wasm") {
			t.Errorf("%s: the rewrite added nothing (%d → %d bytes)", name, len(b), len(out))
		}
		cm, err := rt.CompileModule(ctx, out)
		if err != nil {
			t.Fatalf("%s: the rewritten module does not compile: %v", name, err)
		}
		cm.Close(ctx)
	}
}

func TestARewrittenModuleDecidesAsBefore(t *testing.T) {
	ctx := context.Background()
	b, out := rewritten(t, "good")
	var results []uint64
	for _, m := range [][]byte{b, out} {
		rt := runtime(ctx, t)
		mod, err := rt.Instantiate(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		st := []uint64{0, 0}
		if err := mod.ExportedFunction("sluice_route").CallWithStack(ctx, st); err != nil {
			t.Fatal(err)
		}
		results = append(results, st[0])
	}
	if results[0] != results[1] {
		t.Fatalf("sluice_route returned %#x before the rewrite and %#x after", results[0], results[1])
	}
}

func TestSettingTheStopGlobalEndsAnEndlessLoop(t *testing.T) {
	ctx := context.Background()
	_, out := rewritten(t, "loop")
	mod, err := runtime(ctx, t).Instantiate(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	stop, ok := mod.ExportedGlobal(ExportName).(api.MutableGlobal)
	if !ok {
		t.Fatalf("%s is not an exported mutable global", ExportName)
	}
	done := make(chan error, 1)
	go func() { done <- mod.ExportedFunction("sluice_route").CallWithStack(ctx, []uint64{0, 0}) }()
	select {
	case err := <-done:
		t.Fatalf("the endless loop returned before it was stopped: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	stop.Set(1)
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "unreachable") {
			t.Fatalf("stopped call returned %v, want an unreachable trap", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the loop did not stop after the global was set")
	}
}

// TestEndlessLoopsOnEveryProcessorStillLetTheStopperRun: compiled code that never
// leaves Wasm cannot be preempted by Go's scheduler, so calls looping on every P
// would starve the goroutine that is to stop them. The rewrite's periodic
// memory.grow is what lets it run; without it this test hangs.
func TestEndlessLoopsOnEveryProcessorStillLetTheStopperRun(t *testing.T) {
	ctx := context.Background()
	_, out := rewritten(t, "loop")
	rt := runtime(ctx, t)
	cm, err := rt.CompileModule(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	n := goruntime.GOMAXPROCS(0) + 1
	done := make(chan error, n)
	var stops []api.MutableGlobal
	for i := 0; i < n; i++ {
		mod, err := rt.InstantiateModule(ctx, cm, wazero.NewModuleConfig().WithName(""))
		if err != nil {
			t.Fatal(err)
		}
		stops = append(stops, mod.ExportedGlobal(ExportName).(api.MutableGlobal))
		go func() { done <- mod.ExportedFunction("sluice_route").CallWithStack(ctx, []uint64{0, 0}) }()
	}
	time.Sleep(100 * time.Millisecond) // needs a P: the loops must yield one
	for _, s := range stops {
		s.Set(1)
	}
	for i := 0; i < n; i++ {
		if err := <-done; err == nil {
			t.Fatal("a stopped loop returned without a trap")
		}
	}
}

// module assembles a module with a memory, one function of type () → () whose
// body is code, and the given export and global sections (nil to leave them out).
func module(code, exports, globals []byte) []byte {
	sec := func(id byte, body []byte) []byte {
		return append(append([]byte{id}, appendU32(nil, uint32(len(body)))...), body...)
	}
	b := []byte("\x00asm\x01\x00\x00\x00")
	b = append(b, sec(1, []byte{1, 0x60, 0, 0})...) // one type: () → ()
	b = append(b, sec(3, []byte{1, 0})...)          // one function of type 0
	b = append(b, sec(5, []byte{1, 0, 1})...)       // one memory of one page
	if globals != nil {
		b = append(b, sec(6, globals)...)
	}
	if exports != nil {
		b = append(b, sec(7, exports)...)
	}
	body := append([]byte{0}, code...) // no locals
	b = append(b, sec(10, append([]byte{1}, append(appendU32(nil, uint32(len(body))), body...)...))...)
	return b
}

func TestModulesWithoutGlobalOrExportSectionsGetThem(t *testing.T) {
	ctx := context.Background()
	out, err := Rewrite(module([]byte{0x03, 0x40, 0x0c, 0x00, 0x0b, 0x0b}, nil, nil)) // loop br 0 end end
	if err != nil {
		t.Fatal(err)
	}
	mod, err := runtime(ctx, t).Instantiate(ctx, out)
	if err != nil {
		t.Fatalf("rewritten module: %v", err)
	}
	if _, ok := mod.ExportedGlobal(ExportName).(api.MutableGlobal); !ok {
		t.Fatal("no stop global exported")
	}
}

func TestModulesTheRewriteCannotKeepStoppableAreRefused(t *testing.T) {
	reserved := append(appendName([]byte{1}, ExportName), 0, 0) // exports function 0 as sluice_preempt
	oneGlobal := []byte{1, 0x7f, 0x01, 0x41, 0x00, 0x0b}
	for _, c := range []struct {
		name, cause string
		b           []byte
	}{
		{"not wasm", "not a WebAssembly", []byte("hello, world")},
		{"truncated", "section", module([]byte{0x0b}, nil, nil)[:20]},
		{"reserved export", "reserves", module([]byte{0x0b}, reserved, nil)},
		// global.set 1 names the global the rewrite would add: such code could
		// reset the stop flag.
		{"undefined global", "does not define", module([]byte{0x41, 0x00, 0x24, 0x01, 0x0b}, nil, oneGlobal)},
		{"unknown opcode", "unknown opcode", module([]byte{0x06, 0x0b}, nil, nil)},
		{"no memory", "no memory", []byte("\x00asm\x01\x00\x00\x00\x01\x04\x01\x60\x00\x00\x03\x02\x01\x00\x0a\x04\x01\x02\x00\x0b")},
		{"unknown prefixed opcode", "unknown opcode 0xfc", module([]byte{0xfc, 0x40, 0x0b}, nil, nil)},
	} {
		_, err := Rewrite(c.b)
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), c.cause) {
			t.Errorf("%s: err = %v, want ErrMalformed naming %q", c.name, err, c.cause)
		}
	}
}

func FuzzRewrite(f *testing.F) {
	for _, name := range []string{"good", "loop", "busy", "memory-bomb", "dispatch", "loops"} {
		if b, err := os.ReadFile("../../testdata/" + name + ".wasm"); err == nil {
			f.Add(b)
		}
	}
	f.Add(module([]byte{0x03, 0x40, 0x0c, 0x00, 0x0b, 0x0b}, nil, nil))
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer rt.Close(ctx)
	valid := func(b []byte) error {
		m, err := rt.CompileModule(ctx, b)
		if err == nil {
			m.Close(ctx)
		}
		return err
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := Rewrite(b)
		if err != nil {
			return
		}
		// What the rewrite produced parses again, up to the reserved export.
		if _, err := Rewrite(out); err == nil || !strings.Contains(err.Error(), "reserves") {
			t.Fatalf("rewriting the output again: %v, want the reserved-export refusal", err)
		}
		// A valid module stays valid.
		if valid(b) == nil {
			if err := valid(out); err != nil {
				t.Fatalf("a valid module became invalid: %v", err)
			}
		}
	})
}

// BenchmarkRewrite measures the rewrite of the built-in route policy, which a
// hot swap pays before compiling.
func BenchmarkRewrite(b *testing.B) {
	m, err := plugins.Builtin("route-hrw")
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(m)))
	for i := 0; i < b.N; i++ {
		if _, err := Rewrite(m); err != nil {
			b.Fatal(err)
		}
	}
}

// TestGoShapedFunctionsComputeTheSameWithTheirJumpsDirect: functions shaped
// as Go compiles them (testdata/dispatch.wat, and loops.wat with nested and
// crossing loops) compute what they did, entered at every basic block as Go's
// runtime resumes one and with a $pc past the dispatcher's table; loops.wat
// also has a loop entered through br_table's default and one entered with $pc
// holding something else.
func TestGoShapedFunctionsComputeTheSameWithTheirJumpsDirect(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		module string
		funcs  []string
	}{
		{"dispatch", []string{"sumsq"}},
		{"loops", []string{"nested", "crossing", "rotated", "scratch"}},
	} {
		orig, out := rewritten(t, c.module)
		if _, st, _ := rewrite(orig); st.direct == 0 {
			t.Errorf("%s: no jump made direct", c.module)
		}
		var mods [2]api.Module
		for k, m := range [][]byte{orig, out} {
			mod, err := runtime(ctx, t).Instantiate(ctx, m)
			if err != nil {
				t.Fatal(err)
			}
			mods[k] = mod
		}
		for _, f := range c.funcs {
			for n := range uint64(10) {
				for _, start := range []uint64{0, 1, 2, 3, 4, 5, 6, 7, 99, 1 << 31} {
					var got [2]uint64
					for k, mod := range mods {
						st := []uint64{n, start}
						if err := mod.ExportedFunction(f).CallWithStack(ctx, st); err != nil {
							t.Fatal(err)
						}
						got[k] = st[0]
					}
					if got[0] != got[1] {
						t.Fatalf("%s(%d) from block %d: %d before the rewrite, %d after", f, n, start, got[0], got[1])
					}
				}
			}
		}
	}
	orig, _ := rewritten(t, "dispatch")
	if got := sumsq(ctx, t, orig, 12); got != 506 {
		t.Fatalf("sumsq(12) = %d, want 506", got)
	}
}

// sumsq calls dispatch.wat's function.
func sumsq(ctx context.Context, t *testing.T, m []byte, n uint64) uint64 {
	mod, err := runtime(ctx, t).Instantiate(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	st := []uint64{n}
	if err := mod.ExportedFunction("sumsq").CallWithStack(ctx, st); err != nil {
		t.Fatal(err)
	}
	return st[0]
}

// TestMostJumpsOfAGoGuestBecomeDirect: the built-in route policy, a Go guest.
func TestMostJumpsOfAGoGuestBecomeDirect(t *testing.T) {
	b, err := plugins.Builtin("route-hrw")
	if err != nil {
		t.Fatal(err)
	}
	_, st, err := rewrite(b)
	if err != nil {
		t.Fatal(err)
	}
	if st.direct < 10000 {
		t.Fatalf("only %d jumps made direct", st.direct)
	}
	t.Logf("%d jumps made direct", st.direct)
}
