package config

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"time"

	"github.com/google/renameio/v2"
	"go.yaml.in/yaml/v3"
)

// ErrRouteChanged means the config file no longer holds the route as it was judged: an
// operator (or `ficus promote`) changed it since, and the newer config wins over a rollback
// decided on the older one.
var ErrRouteChanged = errors.New("the route changed in the file since it was judged")

// ErrAlreadyRolledBack means the file already holds the route's canary at 0: another facade
// wrote the same rollback first.
var ErrAlreadyRolledBack = errors.New("the route's canary is already at 0% in the file")

// maxNote bounds the comment a rollback writes, so that a detail string cannot grow the file.
const maxNote = 400

// RollBackRoute returns the config file data with the canary of route judged set to percent
// 0, and note written as a YAML comment on the line of that percent, so that every facade
// reading the file stops sending the canary any share and an operator reading it sees why.
// The canary entry stays (its backend shows what was rolled back). Like PromoteRoute it
// edits only that line, every other byte kept; a line that already carries a comment keeps
// it, and the note goes on its own comment line just above.
//
// judged is the route as the caller judged it, as Parse returns it: when the file's route
// differs, RollBackRoute writes nothing and returns ErrRouteChanged; when it differs only by
// the canary already being at 0, ErrAlreadyRolledBack. path names the file in messages.
func RollBackRoute(path string, data []byte, judged Route, note string) ([]byte, error) {
	if judged.Canary == nil || judged.Canary.Percent == 0 {
		return nil, fmt.Errorf("rolling back route %q: %w", judged.Name, ErrAlreadyRolledBack)
	}
	cfg, err := Parse(path, data)
	if err != nil {
		return nil, fmt.Errorf("rolling back route %q: %w", judged.Name, err)
	}
	i, err := FindRoute(cfg, judged.Name)
	if err != nil || cfg.Routes[i].Name != judged.Name {
		return nil, fmt.Errorf("rolling back route %q: no route of that name in %s: %w", judged.Name, path, ErrRouteChanged)
	}
	want := judged
	c := *judged.Canary
	c.Percent = 0
	want.Canary = &c
	switch r := cfg.Routes[i]; {
	case reflect.DeepEqual(r, want):
		return nil, fmt.Errorf("rolling back route %q: %w", judged.Name, ErrAlreadyRolledBack)
	case !reflect.DeepEqual(r, judged):
		return nil, fmt.Errorf("rolling back route %q in %s: %w", judged.Name, path, ErrRouteChanged)
	}

	e, err := newEditor(data)
	if err != nil {
		return nil, fmt.Errorf("rolling back route %q: %s: %w", judged.Name, path, err)
	}
	item, err := e.route(i)
	if err != nil {
		return nil, fmt.Errorf("rolling back route %q: %s: routes[%d]: %w", judged.Name, path, i, err)
	}
	canary := value(item, "canary")
	if canary == nil || canary.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("rolling back route %q: %s: routes[%d].canary is not a mapping; edit it by hand", judged.Name, path, i)
	}
	pct := value(canary, "percent")
	if pct == nil {
		return nil, fmt.Errorf("rolling back route %q: %s: routes[%d].canary has no percent", judged.Name, path, i)
	}
	if err := e.setScalar(canary, "percent", "0"); err != nil {
		return nil, fmt.Errorf("rolling back route %q: %s: routes[%d].canary: %w", judged.Name, path, i, err)
	}
	comment := "# " + oneLine(note)
	text := e.line(pct.Line)
	if commentStart(text) < 0 {
		e.set[pct.Line] = text + " " + comment
	} else {
		indent := text[:len(text)-len(strings.TrimLeft(text, " "))]
		e.inserted[pct.Line-1] = append(e.inserted[pct.Line-1], indent+comment)
	}
	out := e.bytes()

	// The edit must do exactly what was meant, and nothing else.
	got, err := Parse(path, out)
	if err != nil {
		return nil, fmt.Errorf("rolling back route %q would leave %s invalid: %w", judged.Name, path, err)
	}
	expect, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	expect.Routes[i] = want
	if !reflect.DeepEqual(got, expect) {
		return nil, fmt.Errorf("rolling back route %q: the edited %s does not say what was meant (an unusual layout?); edit it by hand", judged.Name, path)
	}
	return out, nil
}

// RollBackFile rolls route judged back in the config file at path, as RollBackRoute does,
// and writes the result atomically: to a temporary file in the same directory, with the
// file's mode, renamed over it, so a facade watching the file never reads half of it.
//
// Two facades that decide the same rollback at once take turns on an exclusive lock (flock)
// on the file's directory: the second finds the canary at 0 and gets ErrAlreadyRolledBack.
// An editor takes no such lock, so the file is read again just before the rename, and an
// edit made since the first read is kept (ErrRouteChanged) rather than overwritten. A file
// that is a symbolic link (a Kubernetes ConfigMap's) is not replaced: the rename would put a
// plain file in the link's place.
func RollBackFile(ctx context.Context, path string, judged Route, note string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("rolling back route %q: %w", judged.Name, err)
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		return fmt.Errorf("rolling back route %q: %s is a symbolic link; it is not replaced", judged.Name, path)
	}
	unlock, err := lockDir(ctx, filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("rolling back route %q: %w", judged.Name, err)
	}
	defer unlock()
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("rolling back route %q: %w", judged.Name, err)
	}
	out, err := RollBackRoute(path, data, judged, note)
	if err != nil {
		return err
	}
	pf, err := renameio.NewPendingFile(path, renameio.WithTempDir(filepath.Dir(path)), renameio.WithExistingPermissions())
	if err != nil {
		return fmt.Errorf("rolling back route %q: writing %s: %w", judged.Name, path, err)
	}
	// Removes the temporary file when the rename is not reached; after it, does nothing.
	defer func() { _ = pf.Cleanup() }()
	if _, err := pf.Write(out); err != nil {
		return fmt.Errorf("rolling back route %q: writing %s: %w", judged.Name, path, err)
	}
	if now, err := os.ReadFile(path); err != nil || !bytes.Equal(now, data) {
		return fmt.Errorf("rolling back route %q: %s was edited while the rollback was written: %w", judged.Name, path, ErrRouteChanged)
	}
	if err := pf.CloseAtomicallyReplace(); err != nil {
		return fmt.Errorf("rolling back route %q: writing %s: %w", judged.Name, path, err)
	}
	return nil
}

// lockDir takes an exclusive flock on dir, polling until ctx is done or 5s have passed; the
// returned func releases it.
func lockDir(ctx context.Context, dir string) (func(), error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("locking %s: %w", dir, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := syscall.Flock(int(d.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { d.Close() }, nil // closing the descriptor releases the lock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			d.Close()
			return nil, fmt.Errorf("locking %s: %w", dir, err)
		}
		select {
		case <-ctx.Done():
			d.Close()
			return nil, fmt.Errorf("locking %s: %w", dir, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// oneLine makes note fit on one comment line: no line breaks, at most maxNote bytes.
func oneLine(note string) string {
	note = strings.Join(strings.Fields(note), " ")
	if len(note) > maxNote {
		note = strings.ToValidUTF8(note[:maxNote], "") + "…"
	}
	return note
}

// commentStart returns where a YAML comment begins on line — a # at the line's start or
// after a space, outside quotes — or -1.
func commentStart(line string) int {
	var quote byte
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '#' && (i == 0 || line[i-1] == ' ' || line[i-1] == '\t'):
			return i
		}
	}
	return -1
}
