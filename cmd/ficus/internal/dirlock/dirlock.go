// Package dirlock keeps two processes from working on the same data directory: each takes an
// exclusive lock (flock) on a file in it, held for as long as the process lives. The kernel
// releases the lock when the process ends, however it ends, so a lock is never left stale.
package dirlock

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/ficus-project/ficus/cmd/ficus/internal/procnet"
)

// FileName is the lock file each locked directory holds. It stays empty: the lock is the
// kernel's, not the file's contents.
const FileName = "ficus.lock"

// ErrLocked means another process holds the lock; errors.Is finds it in a *LockedError.
var ErrLocked = errors.New("directory locked")

// LockedError says which directory is locked, and by whom when /proc/locks tells.
type LockedError struct {
	Dir string
	// Holder describes the process holding the lock: "PID 1234 (ficus up)", or "another
	// process".
	Holder string
}

func (e *LockedError) Error() string { return e.Dir + " is locked by " + e.Holder }

// Is makes errors.Is(err, ErrLocked) hold.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// Lock is a held lock on a directory.
type Lock struct {
	f *os.File
}

// Acquire locks dir (creating it if need be) without waiting. When another process holds
// the lock it returns a *LockedError, which names that process when /proc/locks says which.
func Acquire(dir string) (*Lock, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("locking %s: %w", dir, err)
	}
	path := filepath.Join(dir, FileName)
	// Opened, never written: O_CLOEXEC (Go's default) keeps it out of child processes, whose
	// copy would otherwise hold the lock after this process ended.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("locking %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			who := "another process"
			if p, ok := holder(f); ok {
				who = p.String()
			}
			return nil, &LockedError{Dir: dir, Holder: who}
		}
		return nil, fmt.Errorf("locking %s: %w", dir, err)
	}
	return &Lock{f: f}, nil
}

// Release gives the lock up.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the last descriptor releases the flock
	l.f = nil
	return err
}

// holder finds the process holding a flock on f's file in /proc/locks, whose lines read
// "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF" (PID, then major:minor:inode).
func holder(f *os.File) (procnet.Process, bool) {
	fi, err := f.Stat()
	if err != nil {
		return procnet.Process{}, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return procnet.Process{}, false
	}
	locks, err := os.Open("/proc/locks")
	if err != nil {
		return procnet.Process{}, false
	}
	defer locks.Close()
	// The kernel prints the device as "%02x:%02x" (major:minor) and the inode in decimal.
	dev := uint64(st.Dev)
	major := (dev>>8)&0xfff | (dev>>32)&^uint64(0xfff)
	minor := dev&0xff | (dev>>12)&^uint64(0xff)
	want := fmt.Sprintf("%02x:%02x:%d", major, minor, st.Ino)
	sc := bufio.NewScanner(locks)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[1] != "FLOCK" || fields[5] != want {
			continue
		}
		pid, err := strconv.Atoi(fields[4])
		if err != nil || pid == os.Getpid() {
			continue
		}
		return procnet.Process{PID: pid, Command: procnet.Cmdline("/proc", pid)}, true
	}
	return procnet.Process{}, false
}
