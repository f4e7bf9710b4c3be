package auth

import (
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// jwksFile is a JWK Set file re-read when it changes. It is looked at on the
// request path, at most once per every: a stat is far cheaper than a watcher
// goroutine to own, and a rename over the file (how keys are rotated safely)
// is seen as well as a write in place.
type jwksFile struct {
	path  string
	every time.Duration
	log   *slog.Logger

	mu     sync.Mutex
	looked time.Time
	info   os.FileInfo
	keys   []key
	gen    uint64 // counts the key sets read; a verified token is cached per set
}

func openJWKS(path string, every time.Duration, now time.Time, log *slog.Logger) (*jwksFile, error) {
	f := &jwksFile{path: path, every: every, log: log}
	if err := f.reload(now); err != nil {
		return nil, err
	}
	return f, nil
}

// current is the file's keys, re-read first when it is due to be looked at
// (or force, for a kid no key has) and has changed. A file that no longer
// parses keeps the keys it had, and says so in the log.
func (f *jwksFile) current(now time.Time, force bool) []key {
	f.mu.Lock()
	defer f.mu.Unlock()
	if now.Sub(f.looked) >= f.every || force && now.Sub(f.looked) >= f.every/4 {
		if err := f.reloadLocked(now); err != nil {
			f.log.Warn("auth: JWKS file not reloaded; keeping its previous keys", "file", f.path, "err", err)
		}
	}
	return f.keys
}

// generation is the number of the key set current(now) gives.
func (f *jwksFile) generation(now time.Time) uint64 {
	f.current(now, false)
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.gen
}

func (f *jwksFile) reload(now time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reloadLocked(now)
}

func (f *jwksFile) reloadLocked(now time.Time) error {
	f.looked = now
	fi, err := os.Stat(f.path)
	if err != nil {
		return fmt.Errorf("auth.jwt.jwksFile: %w", err)
	}
	if f.info != nil && os.SameFile(f.info, fi) && fi.ModTime().Equal(f.info.ModTime()) && fi.Size() == f.info.Size() {
		return nil
	}
	b, err := os.ReadFile(f.path)
	if err != nil {
		return fmt.Errorf("auth.jwt.jwksFile: %w", err)
	}
	ks, err := parseJWKS(b)
	if err != nil {
		return fmt.Errorf("auth.jwt.jwksFile %s: %w", f.path, err)
	}
	f.info, f.keys = fi, ks
	f.gen++
	return nil
}
