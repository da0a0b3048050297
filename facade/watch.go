package facade

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Watch reloads the config at path whenever it changes, until ctx is done. It watches the
// file's directory, not the file, so saves that replace the file (write a temporary file,
// rename it over the old one) are seen as well as writes in place, and so is a Kubernetes
// ConfigMap update (its "..data" symlink swap). Changes are debounced:
// the reload happens once the file has been quiet for Options.Debounce. A change that
// leaves the file missing is ignored until the file is back. Reload outcomes are reported
// through ReloadFile; Watch itself returns only when ctx is done or the watch cannot start.
func (f *Facade) Watch(ctx context.Context, path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("watching config: %w", err)
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watching config: %w", err)
	}
	defer w.Close()
	if err := w.Add(filepath.Dir(abs)); err != nil {
		return fmt.Errorf("watching config directory %s: %w", filepath.Dir(abs), err)
	}
	if f.watching != nil {
		f.watching()
	}
	fire := make(chan struct{}, 1)
	timer := time.AfterFunc(time.Hour, func() {
		select {
		case fire <- struct{}{}:
		default:
		}
	})
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			// "..data"-style names are how Kubernetes swaps a mounted ConfigMap: the file
			// itself is a symlink that never changes.
			name := filepath.Clean(ev.Name)
			if (name == abs || strings.HasPrefix(filepath.Base(name), "..")) && !ev.Has(fsnotify.Chmod) {
				timer.Reset(f.debounce)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			f.log.Warn("config watcher error", "path", abs, "err", err)
		case <-fire:
			if _, err := os.Stat(abs); errors.Is(err, os.ErrNotExist) {
				f.log.Debug("config file missing; waiting for it to come back", "path", abs)
				continue
			}
			_ = f.ReloadFile(path) // outcome logged, counted and kept by ReloadFile
		}
	}
}
