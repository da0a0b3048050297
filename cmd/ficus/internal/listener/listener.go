// Package listener hands listening sockets from a parent process to its children. A parent
// that binds a component's port itself (ficus up, or a test) learns at once whether the port
// is free, keeps it bound while the child restarts, so clients queue in the backlog rather
// than being refused, and leaves no gap between choosing a port and binding it in which
// another process could take it.
//
// The parent passes the sockets as extra files (exec.Cmd.ExtraFiles) and names them in the
// environment variable Env: FICUS_LISTENERS=facade:3,admin:4 means file descriptor 3 is the
// facade's listener and 4 the admin API's.
package listener

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Env names the environment variable that lists inherited listeners as NAME:FD pairs.
const Env = "FICUS_LISTENERS"

// maxInherited bounds how many listeners a process accepts from its parent.
const maxInherited = 16

// Set holds the listeners a process inherited, by name. Its zero value is empty. It is safe
// for concurrent use.
type Set struct {
	mu  sync.Mutex
	lns map[string]net.Listener
}

// Inherit reads the listeners the parent passed, as named by the variable Env (read with
// getenv). A process whose parent passed none gets an empty set.
func Inherit(getenv func(string) string) (*Set, error) {
	s := &Set{lns: map[string]net.Listener{}}
	spec := strings.TrimSpace(getenv(Env))
	if spec == "" {
		return s, nil
	}
	pairs := strings.Split(spec, ",")
	if len(pairs) > maxInherited {
		return nil, fmt.Errorf("inheriting listeners: %s names %d listeners, at most %d", Env, len(pairs), maxInherited)
	}
	// Check the whole list before touching a descriptor: a wrong one is closed on failure.
	fds := map[string]int{}
	var names []string
	for _, p := range pairs {
		name, fdText, ok := strings.Cut(strings.TrimSpace(p), ":")
		fd, err := strconv.Atoi(fdText)
		if !ok || name == "" || err != nil || fd < 3 {
			return nil, fmt.Errorf("inheriting listeners: %s=%q: want NAME:FD pairs with FD ≥ 3, got %q", Env, spec, p)
		}
		if _, dup := fds[name]; dup {
			return nil, fmt.Errorf("inheriting listeners: %s names %q twice", Env, name)
		}
		fds[name] = fd
		names = append(names, name)
	}
	for _, name := range names {
		f := os.NewFile(uintptr(fds[name]), name)
		ln, err := net.FileListener(f)
		f.Close() // FileListener holds its own duplicate
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("inheriting listener %s from fd %d: %w", name, fds[name], err)
		}
		s.lns[name] = ln
	}
	return s, nil
}

// Take returns the listener named name and removes it from the set, or nil when the parent
// passed none by that name.
func (s *Set) Take(name string) net.Listener {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ln := s.lns[name]
	delete(s.lns, name)
	return ln
}

// Close closes the listeners nobody took.
func (s *Set) Close() {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, ln := range s.lns {
		_ = ln.Close()
		delete(s.lns, name)
	}
}

// Pass arranges for cmd's process to inherit the named listeners: it appends their files to
// cmd.ExtraFiles and sets Env in cmd.Env (which must already hold the child's environment;
// any Env there is replaced). The files stay open in the parent: the caller closes them
// when no child needs them any more.
func Pass(cmd *exec.Cmd, files map[string]*os.File) {
	cmd.Env = slices.DeleteFunc(cmd.Env, func(kv string) bool { return strings.HasPrefix(kv, Env+"=") })
	if len(files) == 0 {
		return
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	var spec []string
	for _, name := range names {
		// The child's descriptors 0–2 are stdin, stdout and stderr; ExtraFiles follow.
		fd := 3 + len(cmd.ExtraFiles)
		cmd.ExtraFiles = append(cmd.ExtraFiles, files[name])
		spec = append(spec, name+":"+strconv.Itoa(fd))
	}
	cmd.Env = append(cmd.Env, Env+"="+strings.Join(spec, ","))
}

// File returns a duplicate of ln's socket to pass to a child. ln must be a TCP listener.
func File(ln net.Listener) (*os.File, error) {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return nil, errors.New("passing a listener: not a TCP listener")
	}
	f, err := tl.File()
	if err != nil {
		return nil, fmt.Errorf("passing a listener: %w", err)
	}
	return f, nil
}
