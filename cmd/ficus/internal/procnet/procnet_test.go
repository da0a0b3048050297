package procnet

import (
	"net"
	"os"
	"testing"
)

func TestListenerFindsThisProcess(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	p, ok := Listener("/proc", ln.Addr().(*net.TCPAddr).Port)
	if !ok || p.PID != os.Getpid() {
		t.Fatalf("Listener = %v, %v; want this process, %d", p, ok, os.Getpid())
	}
	if p.Command == "" {
		t.Error("no command line")
	}
	ln.Close()
	if p, ok := Listener("/proc", ln.Addr().(*net.TCPAddr).Port); ok {
		t.Errorf("a closed port is held by %v", p)
	}
}
