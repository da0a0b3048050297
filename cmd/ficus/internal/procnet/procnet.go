// Package procnet finds which process listens on a TCP port, from what Linux tells in /proc:
// /proc/net/tcp and tcp6 map a listening port to a socket inode, and /proc/PID/fd links show
// which process holds that inode. Other users' processes are hidden from an unprivileged
// caller; then only the port is known.
package procnet

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Process is a process holding a socket.
type Process struct {
	PID int
	// Command is its command line, arguments separated by spaces (shortened to 200 bytes).
	Command string
}

// String describes p for an error message: "PID 1234 (ficus serve facade -c config.yaml)".
func (p Process) String() string {
	if p.Command == "" {
		return fmt.Sprintf("PID %d", p.PID)
	}
	return fmt.Sprintf("PID %d (%s)", p.PID, p.Command)
}

// tcpListen is the state column's value for a listening socket in /proc/net/tcp.
const tcpListen = "0A"

// Listener returns the process listening on TCP port port, if /proc says which. root is the
// proc file system's mount point, "/proc" outside tests.
func Listener(root string, port int) (Process, bool) {
	inodes := map[string]bool{}
	for _, name := range []string{"net/tcp", "net/tcp6"} {
		listeningInodes(filepath.Join(root, name), port, inodes)
	}
	if len(inodes) == 0 {
		return Process{}, false
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		return Process{}, false
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		fdDir := filepath.Join(root, e.Name(), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue // gone, or another user's
		}
		for _, fd := range fds {
			target, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
			if err != nil {
				continue
			}
			inode, ok := strings.CutPrefix(target, "socket:[")
			if ok && inodes[strings.TrimSuffix(inode, "]")] {
				return Process{PID: pid, Command: Cmdline(root, pid)}, true
			}
		}
	}
	return Process{}, false
}

// Cmdline returns pid's command line with spaces between the arguments, shortened to 200
// bytes, or "" when it cannot be read.
func Cmdline(root string, pid int) string {
	b, err := os.ReadFile(filepath.Join(root, strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return ""
	}
	s := strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// listeningInodes adds to inodes the socket inodes that listen on port in the table at
// path (the format of /proc/net/tcp: "sl local_address rem_address st … inode").
func listeningInodes(path string, port int, inodes map[string]bool) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	want := fmt.Sprintf(":%04X", port)
	sc := bufio.NewScanner(f)
	sc.Scan() // the header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || fields[3] != tcpListen || !strings.HasSuffix(fields[1], want) {
			continue
		}
		inodes[fields[9]] = true
	}
}
