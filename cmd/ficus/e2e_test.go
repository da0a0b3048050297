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
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ficus-project/ficus/cmd/ficus/internal/listener"
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

// freeAddrs returns n loopback addresses nothing listened on a moment ago. Another process
// can take one before the process under test binds it: prefer holdPorts, which keeps the
// ports bound and hands them to the process (ficus up and ficus serve take listeners).
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

// heldPorts are loopback ports the test keeps bound until it hands them to a ficus process,
// so that no other process can take one in between.
type heldPorts struct {
	files map[string]*os.File
	addrs map[string]string
}

// holdPorts binds a loopback port for each name (the listener names ficus takes: facade,
// admin, monolith, bus) and releases them when the test ends.
func holdPorts(t *testing.T, names ...string) *heldPorts {
	t.Helper()
	h := &heldPorts{files: map[string]*os.File{}, addrs: map[string]string{}}
	for _, name := range names {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		f, err := listener.File(ln)
		ln.Close() // f holds the socket
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		h.files[name], h.addrs[name] = f, ln.Addr().String()
	}
	return h
}

// addr is the held address of name: "127.0.0.1:PORT".
func (h *heldPorts) addr(name string) string { return h.addrs[name] }

// pass hands every held port to cmd, whose Env must be set.
func (h *heldPorts) pass(cmd *exec.Cmd) {
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	listener.Pass(cmd, h.files)
}

// upConfig writes a config for ficus up on the held ports, with data under dir.
func upConfig(t *testing.T, dir string, h *heldPorts, extra string) string {
	t.Helper()
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
%s`, h.addr("facade"), h.addr("admin"), h.addr("monolith"), h.addr("monolith"), h.addr("bus"), extra)
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// outputLog collects a process's output lines; it is safe for concurrent use.
type outputLog struct {
	mu      sync.Mutex
	lines   []string
	changed chan struct{} // closed and replaced on every new line
	closed  bool
}

func newOutputLog() *outputLog { return &outputLog{changed: make(chan struct{})} }

func (l *outputLog) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, line)
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *outputLog) end() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *outputLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// waitFor waits until a line contains s and returns the lines up to it.
func (l *outputLog) waitFor(t *testing.T, s string, timeout time.Duration) []string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		l.mu.Lock()
		for i, line := range l.lines {
			if strings.Contains(line, s) {
				out := append([]string(nil), l.lines[:i+1]...)
				l.mu.Unlock()
				return out
			}
		}
		closed, changed := l.closed, l.changed
		l.mu.Unlock()
		if closed {
			t.Fatalf("the process ended without printing %q:\n%s", s, l)
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("no %q within %s:\n%s", s, timeout, l)
		}
	}
}

// process is a ficus process the test started, in its own process group, killed with its
// children when the test ends.
type process struct {
	cmd  *exec.Cmd
	out  *outputLog
	done chan struct{} // closed when it has exited
	err  error         // its exit, once done is closed
}

// startFicus starts ficus with args, collecting its output.
func startFicus(t *testing.T, cmd *exec.Cmd) *process {
	t.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, out: newOutputLog(), done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			p.out.add(sc.Text())
		}
		p.out.end()
	}()
	go func() {
		p.err = cmd.Wait()
		pw.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	})
	return p
}

// wait waits for the process to exit and returns its exit status.
func (p *process) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return exitStatus(p.err)
	case <-time.After(timeout):
		t.Fatalf("%v still running after %s:\n%s", p.cmd.Args, timeout, p.out)
		return -1
	}
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
	// A file given without -c was once ignored, and config.yaml checked instead.
	cmd := exec.Command(ficusBin, "check", "bad.yaml")
	cmd.Dir = dir
	out, err = cmd.CombinedOutput()
	if code := exitStatus(err); code != 2 || !strings.Contains(string(out), "did you mean -c bad.yaml?") || strings.Contains(string(out), "is valid") {
		t.Errorf("check bad.yaml: exit %d, want 2 and a hint\n%s", code, out)
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

// TestUpRefusesArguments: `ficus up extra` once started the whole system.
func TestUpRefusesArguments(t *testing.T) {
	dir := t.TempDir()
	h := holdPorts(t, "facade", "admin", "monolith", "bus")
	cfgPath := upConfig(t, dir, h, "")
	for _, args := range [][]string{{"up", "extra", "-c", cfgPath}, {"up", "-c", cfgPath, "extra"}} {
		cmd := exec.Command(ficusBin, args...)
		h.pass(cmd)
		p := startFicus(t, cmd)
		if code := p.wait(t, 10*time.Second); code != 2 || !strings.Contains(p.out.String(), `takes no arguments, got ["extra"]`) {
			t.Errorf("%v: exit %d, want 2\n%s", args, code, p.out)
		}
		if strings.Contains(p.out.String(), "Ficus is up") {
			t.Errorf("%v started the system:\n%s", args, p.out)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); err == nil {
		t.Error("ficus up with a stray argument created the data directory")
	}
}

// TestUpGivesUpWhenAComponentIsNotReady: a component not ready within -ready-timeout makes
// ficus up stop everything and exit 1 with the reason, rather than hang.
func TestUpGivesUpWhenAComponentIsNotReady(t *testing.T) {
	dir := t.TempDir()
	h := holdPorts(t, "facade", "admin", "monolith", "bus")
	cfgPath := upConfig(t, dir, h, "")
	cmd := exec.Command(ficusBin, "up", "-c", cfgPath, "-ready-timeout", "1ms")
	h.pass(cmd)
	up := startFicus(t, cmd)
	if code := up.wait(t, 20*time.Second); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if !strings.Contains(up.out.String(), "bus did not become ready within 1ms (-ready-timeout); stopped everything") {
		t.Errorf("no reason given:\n%s", up.out)
	}
	if left := processesWith("-c " + cfgPath); len(left) > 0 {
		t.Errorf("components still running after ficus up gave up: %v", left)
	}
}

// TestRoutesSaysWhereTheTokenComesFrom: without a token, ficus routes names the variable
// and the file a token comes from.
func TestRoutesSaysWhereTheTokenComesFrom(t *testing.T) {
	dir := t.TempDir()
	// Nothing binds these: ficus routes fails before it connects.
	a := freeAddrs(t, 4)
	h := &heldPorts{addrs: map[string]string{"facade": a[0], "admin": a[1], "monolith": a[2], "bus": a[3]}}
	cfgPath := upConfig(t, dir, h, "")
	cmd := exec.Command(ficusBin, "routes", "-c", cfgPath)
	cmd.Env = append(os.Environ(), "E2E_TOKEN=")
	out, err := cmd.CombinedOutput()
	if code := exitStatus(err); code != 1 {
		t.Fatalf("routes without a token: exit %d, want 1\n%s", code, out)
	}
	for _, want := range []string{"$E2E_TOKEN is empty", filepath.Join(dir, "data", "admin.token"), "banner"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
}

// TestUpServesThePrintedCurl is what a new user does: ficus up, paste the printed curl, get
// a 201 through the facade. A second ficus up on the same data, or on the same ports, is
// refused at once. Then a component is killed and comes back, and an interrupt stops
// everything.
func TestUpServesThePrintedCurl(t *testing.T) {
	dir := t.TempDir()
	h := holdPorts(t, "facade", "admin", "monolith", "bus")
	cfgPath := upConfig(t, dir, h, "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const token = "e2e-secret-token-1234"
	cmd := exec.Command(ficusBin, "up", "-c", cfgPath)
	cmd.Env = append(os.Environ(), "E2E_TOKEN="+token)
	h.pass(cmd)
	up := startFicus(t, cmd)
	// Read until the banner's curl is complete.
	lines := up.out.waitFor(t, "Stop:   Ctrl-C", 90*time.Second)
	var curl []string
	for _, l := range lines {
		if strings.Contains(l, "curl -s -X POST") || (curl != nil && !strings.HasSuffix(curl[len(curl)-1], "}'")) {
			curl = append(curl, strings.TrimSpace(l))
		}
	}
	cmdline := strings.Join(curl, "\n")
	if !strings.Contains(cmdline, "http://"+h.addr("facade")+"/api/orders") {
		t.Fatalf("the curl does not go through the facade:\n%s", cmdline)
	}
	banner := strings.Join(lines, "\n")
	for _, want := range []string{
		"bus         nats://" + h.addr("bus"), "monolith    http://" + h.addr("monolith"),
		"facade      http://" + h.addr("facade"), "admin       http://" + h.addr("admin"),
		"ada@example.com", "bob@decline.test", "olga@outage.test", "cass@example.com", "402", "503",
	} {
		if !strings.Contains(banner, want) {
			t.Errorf("the banner lacks %q:\n%s", want, banner)
		}
	}
	if strings.Contains(banner, "nats-server") || strings.Contains(banner, "Starting JetStream") {
		t.Errorf("the NATS server's startup banner is printed:\n%s", banner)
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

	// The monolith prunes its bookkeeping tables (retention) beside the relay.
	resp, err := http.Get("http://" + h.addr("monolith") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metricsText, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, table := range []string{"ficus_outbox", "ficus_idempotency"} {
		if want := `ficus_retention_pruned_rows_total{database="monolith",table="` + table + `"}`; !bytes.Contains(metricsText, []byte(want)) {
			t.Errorf("the monolith's /metrics lacks %s: is its pruner running?", want)
		}
	}

	// The token reaches the facade only, and no log line.
	if strings.Contains(up.out.String(), token) {
		t.Errorf("the admin token from the environment is printed:\n%s", up.out)
	}
	for comp, wantToken := range map[string]bool{"serve bus": false, "serve monolith": false, "serve facade": true} {
		pid := findProcess(t, comp+" -c "+cfgPath)
		environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			t.Fatal(err)
		}
		if has := bytes.Contains(environ, []byte("E2E_TOKEN="+token)); has != wantToken {
			t.Errorf("%s has the admin token in its environment: %v, want %v", comp, has, wantToken)
		}
	}
	routes := exec.Command(ficusBin, "routes", "-c", cfgPath)
	routes.Env = append(os.Environ(), "E2E_TOKEN="+token)
	if out, err := routes.CombinedOutput(); err != nil || !strings.Contains(string(out), "monolith:closed") {
		t.Errorf("ficus routes: %v\n%s", err, out)
	}

	// A second ficus up on the same data is refused at once, naming the first.
	second := exec.Command(ficusBin, "up", "-c", cfgPath)
	out, err := second.CombinedOutput()
	if code := exitStatus(err); code != 1 || !strings.Contains(string(out), fmt.Sprintf("is locked by PID %d", up.cmd.Process.Pid)) {
		t.Errorf("second ficus up on the same data: exit %d, want 1 naming PID %d\n%s", code, up.cmd.Process.Pid, out)
	}
	// So is one with its own data on the same ports, naming every port and its holder.
	other := t.TempDir()
	otherCfg := filepath.Join(other, "config.yaml")
	cfgBytes, _ := os.ReadFile(cfgPath)
	os.WriteFile(otherCfg, cfgBytes, 0o644)
	out, err = exec.Command(ficusBin, "up", "-c", otherCfg).CombinedOutput()
	if code := exitStatus(err); code != 1 {
		t.Errorf("ficus up on taken ports: exit %d, want 1\n%s", code, out)
	}
	for _, want := range []string{"facade.listen " + h.addr("facade") + " is in use by PID", "monolith.listen " + h.addr("monolith") + " is in use by PID",
		"facade.admin.listen", "events.embedded.listen"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("ficus up on taken ports: missing %q in:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(other, "data", "monolith.db")); err == nil {
		t.Error("ficus up on taken ports created a database before refusing")
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

	// Kill the monolith for real: the supervisor restarts it on the port it holds, and orders
	// flow again.
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
			t.Fatalf("the monolith did not come back: last %d %s\n%s", status, body, up.out)
		}
		time.Sleep(200 * time.Millisecond) // poll interval, not a wait for an outcome
	}
	if np := findProcess(t, "serve monolith -c "+cfgPath); np == pid {
		t.Errorf("the monolith was not restarted")
	}

	// An interrupt stops every component.
	if err := up.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := up.wait(t, 30*time.Second); code != 0 {
		t.Errorf("ficus up exited with %d:\n%s", code, up.out)
	}
	if left := processesWith("-c " + cfgPath); len(left) > 0 {
		t.Errorf("components still running after ficus up stopped: %v", left)
	}
}

var curlData = regexp.MustCompile(`-d '([^']*)'`)
var curlURL = regexp.MustCompile(`(http://\S+/api/orders)`)

// placeOrder runs the banner's curl: through bash and curl when they exist, or the same
// request from Go.
func placeOrder(t *testing.T, cmdline string) (int, string, []byte) {
	t.Helper()
	if _, err := exec.LookPath("curl"); err == nil {
		out, err := exec.Command("bash", "-c", strings.Replace(cmdline, "curl -s", "curl -s -i --max-time 10", 1)).Output()
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
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
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
	h := holdPorts(t, "facade", "admin", "monolith", "bus")
	cfgPath := upConfig(t, dir, h, "")
	cmd := exec.Command(ficusBin, "up", "-c", cfgPath)
	h.pass(cmd)
	up := startFicus(t, cmd)
	up.out.waitFor(t, "Ficus is up.", 90*time.Second)
	if err := up.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	up.wait(t, 10*time.Second)
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
		time.Sleep(100 * time.Millisecond) // poll interval
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
