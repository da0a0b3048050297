package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// benchProc is a process the benchmark started, in its own process group so that it and
// anything it starts end together.
type benchProc struct {
	name string
	url  string
	dir  string // a directory to remove on stop, for the pseudo-process that owns it
	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	out  strings.Builder // the first 8 KiB of what it wrote, for error messages
}

// Write keeps the first 8 KiB of the process's output for error messages.
func (p *benchProc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if room := 8<<10 - p.out.Len(); room > 0 {
		p.out.Write(b[:min(len(b), room)])
	}
	return len(b), nil
}

func (p *benchProc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.TrimSpace(p.out.String())
}

func (p *benchProc) pid() int { return p.cmd.Process.Pid }

func (p *benchProc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// start runs path with args. When announces is set the process prints "… listening on
// http://ADDR" and that becomes p.url.
func (p *benchProc) start(ctx context.Context, path string, args []string, announces bool) error {
	p.cmd = exec.Command(path, args...)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p.cmd.Env = append(os.Environ(), "FICUS_ADMIN_TOKEN=bench-facade")
	p.cmd.Stdout, p.cmd.Stderr = p, p
	var pr *os.File
	if announces {
		r, w, err := os.Pipe()
		if err != nil {
			return err
		}
		defer w.Close()
		pr, p.cmd.Stdout = r, w
	}
	if err := p.cmd.Start(); err != nil {
		if pr != nil {
			pr.Close()
		}
		return err
	}
	p.done = make(chan struct{})
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	if !announces {
		return nil
	}
	addr := make(chan string, 1)
	go func() {
		defer pr.Close()
		sc := bufio.NewScanner(pr)
		sent := false
		for sc.Scan() {
			if _, u, ok := strings.Cut(sc.Text(), " listening on "); ok && !sent {
				addr <- u
				sent = true
			}
			_, _ = p.Write(append(sc.Bytes(), '\n'))
		}
	}()
	select {
	case p.url = <-addr:
		return nil
	case <-p.done:
		return fmt.Errorf("exited at start: %s", p.output())
	case <-time.After(30 * time.Second):
		return errors.New("printed no address within 30s")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stop sends the process group SIGTERM, then SIGKILL after 3s.
func (p *benchProc) stop() {
	if p.dir != "" {
		_ = os.RemoveAll(p.dir)
	}
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(3 * time.Second):
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-p.done
}

// waitHTTP polls u until it answers 200.
func waitHTTP(ctx context.Context, u string, p *benchProc) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(15 * time.Second)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if !p.alive() {
			return errors.New("the process exited")
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not answering 200 within 15s: %w", u, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
