package guard

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"testing"
)

// wire is a net.Conn that reads a fixed stream in pieces of at most step bytes and discards
// what is written.
type wire struct {
	net.Conn
	r    *bytes.Reader
	step int
}

func (w *wire) Read(p []byte) (int, error) {
	if len(p) > w.step {
		p = p[:w.step]
	}
	return w.r.Read(p)
}
func (w *wire) Write(p []byte) (int, error) { return len(p), nil }
func (w *wire) RemoteAddr() net.Addr        { return &net.TCPAddr{} }

type counter struct {
	r io.Reader
	n int64
}

func (c *counter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// FuzzGuard checks the guard against net/http itself: every request net/http reads from a
// guarded stream starts where the guard checked a head. Were it otherwise, some bytes the
// guard took for a body would be a head to net/http — a smuggled request.
func FuzzGuard(f *testing.F) {
	for _, s := range []string{
		okHead + okHead,
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" + okHead,
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n0\r\nT: 1\r\n\r\n" + okHead,
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
		"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
		"POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc",
		"\r\n" + okHead,
		"GET / HTTP/1.1\nHost: x\n\n",
	} {
		f.Add([]byte(s), uint8(7))
	}
	f.Fuzz(func(t *testing.T, data []byte, step uint8) {
		heads := map[int64]bool{}
		c := newConn(&wire{r: bytes.NewReader(data), step: int(step) + 1}, &Options{MaxHeaderBytes: 1 << 10})
		c.onHead = func(off int64) { heads[off] = true }
		cr := &counter{r: c}
		br := bufio.NewReader(cr)
		for {
			at := cr.n - int64(br.Buffered())
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if !heads[at] {
				t.Fatalf("net/http read a request at offset %d that the guard did not check (it checked %v): %q", at, heads, data)
			}
			if _, err := io.Copy(io.Discard, req.Body); err != nil {
				return
			}
		}
	})
}

// FuzzParseHead: parsing any head neither panics nor lets through both framings.
func FuzzParseHead(f *testing.F) {
	f.Add([]byte("POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n"))
	f.Add([]byte("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"))
	f.Fuzz(func(t *testing.T, head []byte) {
		fr, err := parseHead(head)
		if err == nil && fr.chunked && fr.length != 0 {
			t.Fatalf("%q: both framings let through", head)
		}
	})
}
