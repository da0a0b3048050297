package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/ficus-project/ficus/platform/config"
)

// configParts returns, for each component ficus up runs, the parts of cfg it reads, by the
// config field they come from: a change to one of them takes effect only when the component
// restarts. The facade is not among them: it reloads config.yaml itself (routes, backends,
// its own settings), with no restart.
func configParts(cfg *config.Config) map[string]map[string]any {
	shared := func(m map[string]any) map[string]any {
		m["events"] = cfg.Events
		m["retention"] = cfg.Retention
		return m
	}
	parts := map[string]map[string]any{}
	if cfg.Events.Bus == "embedded" {
		parts["bus"] = map[string]any{"events": cfg.Events}
	}
	mono := map[string]any{
		"monolith.database": cfg.Monolith.Database,
		"monolith.modules":  cfg.Monolith.Modules,
		"monolith.saga":     cfg.Monolith.Saga,
	}
	// The remote adapters are built from the backend of the capability's name.
	for _, capability := range config.Extractable {
		if cfg.Monolith.Modules[capability] == config.ModuleRemote {
			mono["backends."+capability] = cfg.Backends[capability]
		}
	}
	parts["monolith"] = shared(mono)
	for _, name := range services(cfg) {
		parts[name] = shared(map[string]any{"services." + name + ".database": cfg.Services[name].Database})
	}
	return parts
}

// fixedParts are the settings ficus up itself applied at start — the sockets it holds, the
// components it runs, the admin token's place — which a restart of one component cannot
// change.
func fixedParts(cfg *config.Config) map[string]any {
	fixed := map[string]any{
		"facade.listen":            cfg.Facade.Listen,
		"facade.admin.listen":      cfg.Facade.Admin.Listen,
		"facade.admin.token_env":   cfg.Facade.Admin.TokenEnv,
		"facade.admin.token_file":  cfg.Facade.Admin.TokenFile,
		"monolith.listen":          cfg.Monolith.Listen,
		"events.bus":               cfg.Events.Bus,
		"events.embedded.listen":   cfg.Events.Embedded.Listen,
		"services (which are run)": services(cfg),
	}
	for _, name := range services(cfg) {
		fixed["services."+name+".listen"] = cfg.Services[name].Listen
	}
	return fixed
}

// changedFields lists the fields whose values differ between a and b, sorted.
func changedFields(a, b map[string]any) []string {
	var out []string
	for _, k := range unionKeys(a, b) {
		if !sameJSON(a[k], b[k]) {
			out = append(out, k)
		}
	}
	return out
}

func unionKeys(a, b map[string]any) []string {
	var keys []string
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

func sameJSON(a, b any) bool {
	ja, erra := json.Marshal(a)
	jb, errb := json.Marshal(b)
	return erra == nil && errb == nil && string(ja) == string(jb)
}

// configChange is what an edit of config.yaml means for the components ficus up runs.
type configChange struct {
	// restart lists the components to restart, each with the fields that changed for it.
	restart map[string][]string
	// fixed lists the changed settings only a restart of ficus up applies.
	fixed []string
}

// diffConfig compares the config ficus up runs on with an edited one.
func diffConfig(old, edited *config.Config) configChange {
	ch := configChange{restart: map[string][]string{}}
	oldParts, newParts := configParts(old), configParts(edited)
	for name, parts := range oldParts {
		if next, ok := newParts[name]; ok {
			if fields := changedFields(parts, next); len(fields) > 0 {
				ch.restart[name] = fields
			}
		}
	}
	ch.fixed = changedFields(fixedParts(old), fixedParts(edited))
	return ch
}

// watchConfig restarts the components whose part of the config at path changes, until ctx
// is done, and says what it does: which component restarts and for which fields, and which
// changes need ficus up itself restarted. An edit that does not load is reported and
// changes nothing (the facade reports it too, and keeps its last good config).
func (s *supervisor) watchConfig(ctx context.Context, path string, cfg *config.Config, comps []*component) error {
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
	byName := map[string]*component{}
	for _, c := range comps {
		byName[c.name] = c
	}
	var quiet <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			name := filepath.Clean(ev.Name)
			if (name == abs || strings.HasPrefix(filepath.Base(name), "..")) && !ev.Has(fsnotify.Chmod) {
				quiet = time.After(300 * time.Millisecond) // debounce: act once the file is quiet
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			s.logLine("up", fmt.Sprintf("config watcher error: %v", err))
		case <-quiet:
			quiet = nil
			if _, err := os.Stat(abs); errors.Is(err, os.ErrNotExist) {
				continue
			}
			edited, err := config.Load(path)
			if err != nil {
				s.logLine("up", fmt.Sprintf("%s changed but does not load; no component restarted:\n%v", path, err))
				continue
			}
			ch := diffConfig(cfg, edited)
			for _, f := range ch.fixed {
				s.logLine("up", fmt.Sprintf("%s changed %s, which only a restart of ficus up applies (Ctrl-C, then ficus up)", path, f))
			}
			// In the order ficus up started them: the bus before its users.
			for _, c := range comps {
				fields, ok := ch.restart[c.name]
				if !ok {
					continue
				}
				s.logLine("up", fmt.Sprintf("%s changed %s: restarting %s", path, strings.Join(fields, ", "), c.name))
				s.restart(byName[c.name])
			}
			if len(ch.restart) == 0 && len(ch.fixed) == 0 {
				s.logLine("up", fmt.Sprintf("%s changed: nothing to restart (the facade reloads routes and backends itself)", path))
			}
			cfg = edited
		}
	}
}
