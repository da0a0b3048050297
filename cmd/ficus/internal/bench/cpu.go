package bench

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTick is the unit of utime and stime in /proc/PID/stat: USER_HZ, 100 on Linux.
const clockTick = 10 * time.Millisecond

// treeCPU returns the user+system CPU time of pid and its live children (nginx's workers),
// read from /proc.
func treeCPU(pid int) time.Duration {
	var total time.Duration
	for _, p := range procTree(pid) {
		f := procStat(p)
		if len(f) < 15 {
			continue
		}
		// Fields after the command: state ppid … utime (14th of the line) stime (15th).
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(ut+st) * clockTick
	}
	return total
}

// treeRSS returns the resident memory in bytes of pid and its live children.
func treeRSS(pid int) int64 {
	var total int64
	for _, p := range procTree(pid) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p))
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(b)) {
			if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				f := strings.Fields(rest)
				if len(f) > 0 {
					kb, _ := strconv.ParseInt(f[0], 10, 64)
					total += kb << 10
				}
			}
		}
	}
	return total
}

// procStat returns the fields of /proc/PID/stat after the command name, state first.
func procStat(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}

// procTree returns pid and its direct children.
func procTree(pid int) []int {
	out := []int{pid}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	ppid := strconv.Itoa(pid)
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil || n == pid {
			continue
		}
		if f := procStat(n); len(f) > 1 && f[1] == ppid {
			out = append(out, n)
		}
	}
	return out
}

// ProcessCPU is the CPU time this process has used, user and system: the steadiest figure of
// a benchmark on a machine other work shares.
func ProcessCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
