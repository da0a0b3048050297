package listener

import (
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestInheritServesOnThePassedSocket passes a bound socket the way a parent does and checks
// that the inherited listener accepts a connection made to the parent's address.
func TestInheritServesOnThePassedSocket(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := File(ln)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// In one process the "child" reads the descriptor the parent holds.
	env := map[string]string{Env: "facade:" + strconv.Itoa(int(f.Fd()))}
	set, err := Inherit(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	got := set.Take("facade")
	if got == nil || got.Addr().String() != ln.Addr().String() {
		t.Fatalf("Take(facade) = %v, want a listener on %s", got, ln.Addr())
	}
	defer got.Close()
	if set.Take("facade") != nil || set.Take("admin") != nil {
		t.Error("Take returned a listener twice, or one never passed")
	}
	ln.Close() // only the inherited copy accepts now
	accepted := make(chan error, 1)
	go func() {
		c, err := got.Accept()
		if err == nil {
			_, err = c.Write([]byte("hi"))
			c.Close()
		}
		accepted <- err
	}()
	c, err := net.DialTimeout("tcp", got.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil || string(b) != "hi" {
		t.Fatalf("read %q, %v", b, err)
	}
	if err := <-accepted; err != nil {
		t.Fatal(err)
	}
}

func TestInheritRefusesABadSpec(t *testing.T) {
	for _, spec := range []string{"facade", "facade:x", ":3", "facade:1", "a:3,a:4"} {
		if _, err := Inherit(func(string) string { return spec }); err == nil || !strings.Contains(err.Error(), Env) {
			t.Errorf("%s=%q: err %v, want an error naming %s", Env, spec, err, Env)
		}
	}
	set, err := Inherit(func(string) string { return "" })
	if err != nil || set.Take("facade") != nil {
		t.Errorf("no %s: %v, %v", Env, set, err)
	}
}

// TestPassNumbersTheFilesAfterStdio checks the descriptors a child sees: 3 on, in name order,
// and that an earlier value of Env is replaced.
func TestPassNumbersTheFilesAfterStdio(t *testing.T) {
	a, b := os.NewFile(100, "a"), os.NewFile(101, "b") // never used as files
	cmd := exec.Command("true")
	cmd.Env = []string{"HOME=/", Env + "=old:9"}
	Pass(cmd, map[string]*os.File{"monolith": b, "facade": a})
	if len(cmd.ExtraFiles) != 2 || cmd.ExtraFiles[0] != a || cmd.ExtraFiles[1] != b {
		t.Errorf("ExtraFiles = %v", cmd.ExtraFiles)
	}
	if strings.Join(cmd.Env, " ") != "HOME=/ "+Env+"=facade:3,monolith:4" {
		t.Errorf("Env = %q", cmd.Env)
	}
}
