package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ficusBin is the ficus binary built once for the end-to-end tests.
var ficusBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ficus-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ficusBin = filepath.Join(dir, "ficus")
	build := exec.Command("go", "build", "-o", ficusBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building ficus:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freeAddrs returns n loopback addresses nothing listens on.
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var lns []net.Listener
	var addrs []string
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		addrs = append(addrs, ln.Addr().String())
	}
	for _, ln := range lns {
		ln.Close()
	}
	return addrs
}

func TestCheckCommand(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("backends:\n  m: { url: http://127.0.0.1:1, timeout: soon }\nroutes:\n  - match: { path: / }\n    to: nobody\n"), 0o644)
	out, err := exec.Command(ficusBin, "check", "-c", bad).CombinedOutput()
	if code := exitStatus(err); code != 1 {
		t.Fatalf("check on a bad file: exit %d, want 1\n%s", code, out)
	}
	for _, want := range []string{bad + `:2:42: backends.m.timeout: invalid duration "soon"`, bad + `:5:5: routes[0].to: unknown backend "nobody"`, "2 problem(s)"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	out, err = exec.Command(ficusBin, "check", "-c", filepath.Join("..", "..", "config.yaml")).CombinedOutput()
	if code := exitStatus(err); code != 0 || !strings.Contains(string(out), "is valid") {
		t.Errorf("check on config.yaml: exit %d\n%s", code, out)
	}
	if code := exitStatus(exec.Command(ficusBin, "nonsense").Run()); code != 2 {
		t.Errorf("unknown command: exit %d, want 2", code)
	}
}

func exitStatus(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

// TestUpServesThePrintedCurl is what a new user does: ficus up, paste the printed curl, get
// a 201 through the facade. Then a component is killed and comes back, and an interrupt
// stops everything.
func TestUpServesThePrintedCurl(t *testing.T) {
	dir := t.TempDir()
	a := freeAddrs(t, 4)
	cfg := fmt.Sprintf(`facade:
  listen: %s
  admin: { listen: %s, token_env: E2E_TOKEN }
backends:
  monolith: { url: http://%s, timeout: 5s }
routes:
  - match: { path: / }
    to: monolith
monolith: { listen: %s, database: sqlite:data/monolith.db }
events: { bus: embedded, embedded: { listen: %s, store: data/nats } }
`, a[0], a[1], a[2], a[2], a[3])
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	up := exec.Command(ficusBin, "up", "-c", cfgPath)
	up.Env = append(os.Environ(), "E2E_TOKEN=secret")
	up.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pr, pw := io.Pipe()
	up.Stdout, up.Stderr = pw, pw
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-up.Process.Pid, syscall.SIGKILL) })
	var log bytes.Buffer
	lines := make(chan string, 1024)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// Read until the banner's curl is complete.
	var curl []string
	for curl == nil || !strings.HasSuffix(curl[len(curl)-1], "}'") {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("ficus up exited before printing the banner:\n%s", log.String())
			}
			log.WriteString(l + "\n")
			if strings.Contains(l, "curl -s -X POST") || curl != nil {
				curl = append(curl, strings.TrimSpace(l))
			}
		case <-ctx.Done():
			t.Fatalf("no banner in time:\n%s", log.String())
		}
	}
	go func() {
		for l := range lines {
			log.WriteString(l + "\n")
		}
	}()
	cmdline := strings.Join(curl, "\n")
	if !strings.Contains(cmdline, "http://"+a[0]+"/api/orders") {
		t.Fatalf("the curl does not go through the facade:\n%s", cmdline)
	}

	status, backend, body := placeOrder(t, cmdline)
	if status != http.StatusCreated || backend != "monolith" {
		t.Fatalf("pasted curl: status %d via %q: %s", status, backend, body)
	}
	var order struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal(body, &order); err != nil || order.Status != "placed" {
		t.Fatalf("order: %v %s", err, body)
	}

	// The order's event went through the outbox and the relay to the bus.
	tailCtx, stopTail := context.WithTimeout(ctx, 30*time.Second)
	defer stopTail()
	tail := exec.CommandContext(tailCtx, ficusBin, "events", "tail", "-all", "-c", cfgPath)
	tailOut, err := tail.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := tail.Start(); err != nil {
		t.Fatal(err)
	}
	sawEvent := false
	for sc := bufio.NewScanner(tailOut); sc.Scan(); {
		if strings.Contains(sc.Text(), "shop.orders.order_placed.v1") && strings.Contains(sc.Text(), order.ID) {
			sawEvent = true
			break
		}
	}
	stopTail()
	tail.Wait()
	if !sawEvent {
		t.Errorf("ficus events tail never showed the order_placed event of %s", order.ID)
	}

	// Kill the monolith for real: the supervisor restarts it and orders flow again.
	pid := findProcess(t, "serve monolith -c "+cfgPath)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		status, _, body = placeOrder(t, cmdline)
		if status == http.StatusCreated {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the monolith did not come back: last %d %s\n%s", status, body, log.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if np := findProcess(t, "serve monolith -c "+cfgPath); np == pid {
		t.Errorf("the monolith was not restarted")
	}

	// An interrupt stops every component.
	if err := up.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- up.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ficus up exited with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("ficus up did not stop on interrupt")
	}
	for _, addr := range a {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after ficus up stopped", addr)
		}
	}
}

var curlData = regexp.MustCompile(`-d '([^']*)'`)
var curlURL = regexp.MustCompile(`(http://\S+/api/orders)`)

// placeOrder runs the banner's curl: through bash and curl when they exist, or the same
// request from Go.
func placeOrder(t *testing.T, cmdline string) (int, string, []byte) {
	t.Helper()
	if _, err := exec.LookPath("curl"); err == nil {
		out, err := exec.Command("bash", "-c", strings.Replace(cmdline, "curl -s", "curl -s -i", 1)).Output()
		if err != nil {
			return 0, "", out
		}
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out)), nil)
		if err != nil {
			return 0, "", out
		}
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Ficus-Backend"), b
	}
	url := curlURL.FindStringSubmatch(cmdline)[1]
	data := curlData.FindStringSubmatch(cmdline)[1]
	req, _ := http.NewRequest("POST", url, strings.NewReader(data))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", strconv.FormatInt(time.Now().UnixNano(), 10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Ficus-Backend"), b
}

// findProcess returns the pid of a process whose command line contains s.
func findProcess(t *testing.T, s string) int {
	t.Helper()
	pids := processesWith(s)
	if len(pids) == 0 {
		t.Fatalf("no process running %q", s)
	}
	return pids[0]
}

// TestChildrenStopWhenUpIsKilled: a supervisor killed outright (no chance to stop its
// children) does not leave the components running.
func TestChildrenStopWhenUpIsKilled(t *testing.T) {
	dir := t.TempDir()
	a := freeAddrs(t, 4)
	cfg := fmt.Sprintf(`facade: { listen: %s, admin: { listen: %s } }
backends: { monolith: { url: http://%s } }
routes: [{ match: { path: / }, to: monolith }]
monolith: { listen: %s, database: sqlite:data/monolith.db }
events: { bus: embedded, embedded: { listen: %s, store: data/nats } }
`, a[0], a[1], a[2], a[2], a[3])
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	up := exec.Command(ficusBin, "up", "-c", cfgPath)
	out, err := up.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Process.Kill() })
	ready := false
	for sc := bufio.NewScanner(out); sc.Scan(); {
		if strings.Contains(sc.Text(), "Ficus is up.") {
			ready = true
			break
		}
	}
	if !ready {
		t.Fatal("ficus up never became ready")
	}
	go io.Copy(io.Discard, out)
	if err := up.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	up.Wait()
	deadline := time.Now().Add(15 * time.Second)
	for {
		left := processesWith(cfgPath)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, pid := range left {
				syscall.Kill(pid, syscall.SIGKILL)
			}
			t.Fatalf("components still running after ficus up was killed: %v", left)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// processesWith returns the pids whose command line contains s.
func processesWith(s string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(strings.ReplaceAll(string(cmd), "\x00", " "), s) {
			pids = append(pids, pid)
		}
	}
	return pids
}
