package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestWalkthrough follows docs/walkthrough.md word for word against real processes: it reads
// the page's commands, config edits and output excerpts (walkdoc_test.go), starts ficus up in
// a temporary directory on held ports, applies each edit to that directory's copy of the
// repository's config.yaml (failing when a hunk does not apply), runs each command in one
// bash session (so variables carry from step to step, as in the reader's terminal), and fails
// when a command fails or its output no longer matches the excerpt. The page's default
// addresses (127.0.0.1:8080 and the others) are replaced by the held ones in commands, edits
// and excerpts alike; `make run` is ficus up itself (started in the background, as in a
// terminal of its own), `make compare` the ficus compare it wraps. curl lines run the real
// curl, and jq the real jq.
func TestWalkthrough(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the walkthrough needs %s on PATH: %v", tool, err)
		}
	}
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "walkthrough.md"))
	if err != nil {
		t.Fatal(err)
	}
	steps, err := parseWalkthrough(string(doc))
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) == 0 {
		t.Fatal("docs/walkthrough.md has no ```sh block")
	}
	w := newWalker(t)
	for _, s := range steps {
		w.run(s)
		if t.Failed() {
			return
		}
	}
}

// walker is the reader of the walkthrough: a directory with config.yaml and bin/ficus, a
// bash session, and ficus up once `make run` started it.
type walker struct {
	t     *testing.T
	dir   string
	ports *heldPorts
	// addrs maps each of the page's default addresses to the held one.
	addrs [][2]string
	sh    *walkShell
	up    *process
	// upFrom is the number of ficus up's output lines before the current step.
	upFrom int
}

func newWalker(t *testing.T) *walker {
	h := holdPorts(t, "bus", "monolith", "inventory", "payments", "facade", "admin")
	w := &walker{t: t, dir: t.TempDir(), ports: h}
	for _, p := range [][2]string{{"8080", "facade"}, {"9900", "admin"}, {"8081", "monolith"},
		{"8082", "inventory"}, {"8083", "payments"}, {"4222", "bus"}} {
		w.addrs = append(w.addrs, [2]string{"127.0.0.1:" + p[0], h.addr(p[1])})
	}
	cfg, err := os.ReadFile(filepath.Join("..", "..", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(w.dir, "config.yaml"), []byte(w.mapAddrs(string(cfg))), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(w.dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(ficusBin, filepath.Join(w.dir, "bin", "ficus")); err != nil {
		t.Fatal(err)
	}
	w.sh = startShell(t, w.dir, walkEnv())
	return w
}

// walkEnv is the environment of the reader's terminal: this process's, less what would
// point ficus elsewhere than the walkthrough's directory.
func walkEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "FICUS_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func (w *walker) mapAddrs(s string) string {
	for _, a := range w.addrs {
		s = strings.ReplaceAll(s, a[0], a[1])
	}
	return s
}

// run performs one step: its config edits, its commands, and checks its excerpts.
func (w *walker) run(s walkStep) {
	t := w.t
	t.Logf("walkthrough.md:%d: %s", s.sh.line, s.heading)
	if w.up != nil {
		w.upFrom = len(w.up.out.snapshot())
	}
	for _, d := range s.diffs {
		w.edit(d)
	}
	cmds := s.sh.commands()
	attempt := func() (string, int, error) {
		var out strings.Builder
		for i, c := range cmds {
			status, text, err := w.exec(c)
			out.WriteString(text)
			if err != nil {
				return out.String(), status, err
			}
			if status != 0 && i < len(cmds)-1 {
				return out.String(), status, fmt.Errorf("walkthrough.md:%d: %q exited %d:\n%s", s.sh.line, c, status, text)
			}
			if i == len(cmds)-1 {
				return out.String(), status, nil
			}
		}
		return out.String(), 0, nil
	}
	var retry time.Duration
	wantExit := 0
	for _, e := range s.expects {
		retry = max(retry, e.retry)
		if e.exit != 0 {
			wantExit = e.exit
		}
	}
	deadline := time.Now().Add(retry)
	for {
		out, status, err := attempt()
		problem := ""
		switch {
		case err != nil:
			problem = err.Error()
		case status != wantExit:
			problem = fmt.Sprintf("walkthrough.md:%d: the last command exited %d, the page expects %d:\n%s", s.sh.line, status, wantExit, out)
		default:
			for _, e := range s.expects {
				text := out
				if e.fromUp {
					if w.up == nil {
						problem = fmt.Sprintf("walkthrough.md:%d: from=up before `make run`", e.line)
						break
					}
					text = strings.Join(w.up.out.snapshot()[w.upFrom:], "\n")
				}
				if ok, missing := matchExcerpt(strings.Split(w.mapAddrs(strings.Join(e.body, "\n")), "\n"), text); !ok {
					problem = fmt.Sprintf("walkthrough.md:%d: the output has no line matching %q (in order):\n%s", e.line, missing, text)
					break
				}
			}
		}
		if problem == "" {
			return
		}
		if time.Now().After(deadline) {
			if retry > 0 {
				problem += fmt.Sprintf("\n(still so after retrying for %s)", retry)
			}
			if w.up != nil {
				problem += "\n--- ficus up's last lines ---\n" + strings.Join(lastN(w.up.out.snapshot(), 60), "\n")
			}
			// What the page ran in the background logs to data/*.log.
			logs, _ := filepath.Glob(filepath.Join(w.dir, "data", "*.log"))
			for _, l := range logs {
				b, _ := os.ReadFile(l)
				problem += fmt.Sprintf("\n--- %s ---\n%s", filepath.Base(l), strings.Join(lastN(strings.Split(string(b), "\n"), 20), "\n"))
			}
			t.Fatal(problem)
		}
		time.Sleep(250 * time.Millisecond) // polling: the page says to run it again until it shows
	}
}

func lastN(s []string, n int) []string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// exec runs one command as the reader would: `make run` starts ficus up, `make compare` runs
// the ficus compare it wraps, anything else goes to the bash session.
func (w *walker) exec(c string) (int, string, error) {
	c = w.mapAddrs(c)
	switch c {
	case "make run":
		if w.up != nil {
			return 0, "", fmt.Errorf("`make run` twice")
		}
		cmd := exec.Command(filepath.Join(w.dir, "bin", "ficus"), "up", "-c", "config.yaml")
		cmd.Dir, cmd.Env = w.dir, walkEnv()
		w.ports.pass(cmd)
		w.up = startFicus(w.t, cmd)
		w.t.Cleanup(func() { // stop it as the reader does, with Ctrl-C, before the kill
			_ = syscall.Kill(cmd.Process.Pid, syscall.SIGINT)
			select {
			case <-w.up.done:
			case <-time.After(20 * time.Second):
			}
		})
		w.up.out.waitFor(w.t, "Stop:   Ctrl-C", 2*time.Minute) // the banner's last line
		return 0, strings.Join(w.up.out.snapshot(), "\n"), nil
	case "make compare":
		c = "./bin/ficus compare"
	}
	return w.sh.run(c, 3*time.Minute)
}

// edit applies a ```diff block to config.yaml atomically, as an editor saves, and waits
// until the running facade has loaded it.
func (w *walker) edit(d walkBlock) {
	t := w.t
	path := filepath.Join(w.dir, "config.yaml")
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d.body = strings.Split(w.mapAddrs(strings.Join(d.body, "\n")), "\n")
	edited, err := applyDiff(string(old), d)
	if err != nil {
		t.Fatal(err)
	}
	gen := 0
	if w.up != nil {
		gen = w.reload().Generation
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	if w.up == nil {
		return
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := w.reload()
		if r.Generation > gen {
			break
		}
		if !r.OK && r.Time.After(time.Now().Add(-10*time.Second)) && len(r.Errors) > 0 {
			t.Fatalf("walkthrough.md:%d: the facade refused the edited config.yaml: %v", d.line, r.Errors)
		}
		if time.Now().After(deadline) {
			t.Fatalf("walkthrough.md:%d: the facade did not load the edited config.yaml within 10s (last reload: %+v)", d.line, r)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type walkReload struct {
	Time       time.Time `json:"time"`
	OK         bool      `json:"ok"`
	Errors     []string  `json:"errors"`
	Generation int       `json:"generation"`
}

// reload is the facade's last config load, from its admin API.
func (w *walker) reload() walkReload {
	w.t.Helper()
	token, err := os.ReadFile(filepath.Join(w.dir, "data", "admin.token"))
	if err != nil {
		w.t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+w.ports.addr("admin")+"/api/reload", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		w.t.Fatalf("asking the facade for its last reload: %v", err)
	}
	defer resp.Body.Close()
	var r walkReload
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		w.t.Fatalf("GET /api/reload: %v", err)
	}
	return r
}

// walkShell is one bash session, fed a command at a time; each command's output goes to a
// file, and its exit status comes back on the session's stdout after a marker.
type walkShell struct {
	dir   string
	in    io.Writer
	lines chan string
	n     int
}

const walkMarker = "__WALKTHROUGH_DONE__"

func startShell(t *testing.T, dir string, env []string) *walkShell {
	cmd := exec.Command("bash", "--noprofile", "--norc")
	cmd.Dir, cmd.Env = dir, env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &walkShell{dir: dir, in: in, lines: make(chan string, 16)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
		close(s.lines)
	}()
	t.Cleanup(func() {
		// The session and whatever it left running in the background (a sync).
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	if err := os.MkdirAll(filepath.Join(dir, ".walkthrough"), 0o755); err != nil {
		t.Fatal(err)
	}
	return s
}

// run runs one command in the session and returns its exit status and output.
func (s *walkShell) run(c string, timeout time.Duration) (int, string, error) {
	s.n++
	outFile := filepath.Join(".walkthrough", fmt.Sprintf("out-%d", s.n))
	// Its stdin is /dev/null, so that nothing it runs reads the session's next commands.
	if _, err := fmt.Fprintf(s.in, "{ %s\n} > %s 2>&1 < /dev/null; echo \"%s $?\"\n", c, outFile, walkMarker); err != nil {
		return 0, "", fmt.Errorf("the bash session is gone: %v", err)
	}
	deadline := time.After(timeout)
	for {
		select {
		case line, ok := <-s.lines:
			if !ok {
				return 0, "", fmt.Errorf("the bash session ended during %q", c)
			}
			rest, found := strings.CutPrefix(line, walkMarker+" ")
			if !found {
				continue
			}
			status, _ := strconv.Atoi(rest)
			out, err := os.ReadFile(filepath.Join(s.dir, outFile))
			return status, string(out), err
		case <-deadline:
			return 0, "", fmt.Errorf("%q did not finish within %s", c, timeout)
		}
	}
}

// snapshot is a copy of the lines so far.
func (l *outputLog) snapshot() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}
