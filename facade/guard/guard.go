// Package guard refuses HTTP/1 requests that two parsers could read differently — the stuff
// of request smuggling — before net/http sees them.
//
// net/http reads a request with both Content-Length and Transfer-Encoding as chunked, and
// joins a folded header line onto the one before; a load balancer in front of the facade may
// do otherwise, and then the two disagree on where one request ends and the next begins. The
// handler cannot tell: by the time it runs, the head has been normalised. So the guard sits
// on the listener, reads each request head off the wire before net/http does, and follows the
// body's framing (Content-Length or chunked) to the next head. A head with both framings, two
// Content-Lengths, a Transfer-Encoding other than "chunked", a folded line, or a line not
// ended by CRLF is answered 400, with the reason, and its connection closed; no byte of it
// reaches the server's handler.
//
// The guard works on plain HTTP/1 connections: wrap the TCP listener, then give it to
// http.Server.Serve. (Under TLS it would have to sit between TLS and the server.) After a
// request that asks for a protocol upgrade is answered 101, the connection is passed through
// untouched.
package guard

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Options tune a guarded listener. The zero value is ready to use.
type Options struct {
	// MaxHeaderBytes bounds a request head, as http.Server.MaxHeaderBytes does (the guard
	// allows the same 4 KiB of slack net/http does); a longer head is answered 431 and its
	// connection closed. Default 1 MiB, net/http's default.
	MaxHeaderBytes int
	// Rejected, if set, is told of each refused request: the client's address, the status
	// answered and why. It is called on the connection's goroutine and must not block.
	Rejected func(remote net.Addr, status int, reason string)
}

// lingerTimeout bounds how long a refused connection is drained before it is closed, so that
// the client reads the 400 instead of a reset.
const lingerTimeout = time.Second

// NewListener returns ln with every connection it accepts guarded.
func NewListener(ln net.Listener, opts Options) net.Listener {
	if opts.MaxHeaderBytes <= 0 {
		opts.MaxHeaderBytes = 1 << 20
	}
	return &listener{Listener: ln, opts: opts}
}

type listener struct {
	net.Listener
	opts Options
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newConn(c, &l.opts), nil
}

// state is what the bytes a conn reads next are.
type state uint8

const (
	stateHead    state = iota // a request head
	stateFixed                // a body of known length
	stateChunked              // a chunked body
	stateTunnel               // an upgraded connection: not HTTP/1 any more
	stateDone                 // nothing: the connection was refused or broke the framing
)

// badRequest is what the guard hands net/http in place of a refused head: a request line net/
// http refuses with exactly goBadRequest (a malformed request line), which it then writes
// from the connection's own goroutine, after any response still being written — so the
// guard's answer, swapped in for it in Write, cannot interleave with another response.
var (
	badRequest   = []byte("REFUSED\r\n\r\n")
	goBadRequest = []byte("HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request")
)

// conn is a guarded connection. Read is called by one goroutine at a time (net/http's);
// Write and Close may come from others.
type conn struct {
	net.Conn
	opts *Options

	// buf[off:] holds bytes read off the wire and not yet returned; the first ready of them
	// are checked and may be returned, the rest are not classified yet.
	buf   []byte
	off   int
	ready int
	// scan is where the search for the end of the head in buf[off+ready:] stands.
	scan   headScan
	state  state
	remain int64 // stateFixed: body bytes left
	chunk  chunkReader
	err    error // returned once buf is drained (stateDone)

	// upgrade says the last head asked for a protocol upgrade, so a 101 answer turns the
	// connection into a tunnel.
	upgrade atomic.Bool
	tunnel  atomic.Bool
	// refusal is the answer to write in place of net/http's 400, once a head is refused.
	refusal atomic.Pointer[[]byte]

	// onHead, if set (by tests), is told the stream offset of each head let through.
	onHead func(offset int64)
	offset int64 // bytes of the stream classified so far

	closeOnce sync.Once
	closeErr  error
}

func newConn(c net.Conn, opts *Options) *conn {
	return &conn{Conn: c, opts: opts, chunk: chunkReader{maxTrail: opts.MaxHeaderBytes}}
}

// Read returns the connection's bytes, a head only once it has been checked.
func (c *conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if c.ready > 0 {
			n := copy(p, c.buf[c.off:c.off+c.ready])
			c.off += n
			c.ready -= n
			if c.off == len(c.buf) {
				c.buf, c.off, c.scan = c.buf[:0], 0, headScan{}
			}
			return n, nil
		}
		if c.state == stateDone {
			return 0, c.err
		}
		if c.off < len(c.buf) {
			if c.classify() {
				continue
			}
		} else if c.state != stateHead {
			// Body or tunnel bytes with nothing buffered: read them straight into p.
			return c.readBody(p)
		}
		if err := c.fill(); err != nil {
			return 0, err
		}
	}
}

// classify makes some of the unclassified bytes in buf ready, or refuses the connection,
// and reports whether it did either; false means it needs more bytes.
func (c *conn) classify() bool {
	pending := c.buf[c.off:]
	switch c.state {
	case stateHead:
		if c.tunnel.Load() {
			c.state = stateTunnel
			return true
		}
		end := headEnd(pending, &c.scan)
		if end < 0 {
			if len(pending) > c.opts.MaxHeaderBytes+4096 {
				c.refuse(431, "Request Header Fields Too Large", fmt.Sprintf("the request head is longer than %d bytes", c.opts.MaxHeaderBytes))
			}
			return c.state == stateDone
		}
		fr, err := parseHead(pending[:end])
		if err != nil {
			c.refuse(400, "Bad Request", err.Error())
			return true
		}
		if c.onHead != nil {
			c.onHead(c.offset)
		}
		c.upgrade.Store(fr.upgrade)
		switch {
		case fr.chunked:
			c.state = stateChunked
		case fr.length > 0:
			c.state, c.remain = stateFixed, fr.length
		}
		c.pass(end)
	case stateFixed:
		n := min(int64(len(pending)), c.remain)
		if c.remain -= n; c.remain == 0 {
			c.state = stateHead
		}
		c.pass(int(n))
	case stateChunked:
		n, done, err := c.chunk.consume(pending)
		if done {
			c.state = stateHead
		}
		c.pass(n)
		if err != nil {
			// The bytes before the error are body; after them, nothing is certain.
			c.buf = c.buf[:c.off+c.ready]
			c.state, c.err = stateDone, err
		}
	case stateTunnel:
		c.pass(len(pending))
	}
	return true
}

// pass marks the next n unclassified bytes ready.
func (c *conn) pass(n int) {
	c.ready += n
	c.offset += int64(n)
}

// readBody reads body or tunnel bytes into p, as far as the body goes.
func (c *conn) readBody(p []byte) (int, error) {
	switch c.state {
	case stateFixed:
		if int64(len(p)) > c.remain {
			p = p[:c.remain]
		}
		n, err := c.Conn.Read(p)
		c.offset += int64(n)
		if c.remain -= int64(n); c.remain == 0 {
			c.state = stateHead
		}
		return n, err
	case stateChunked:
		n, err := c.Conn.Read(p)
		k, done, cerr := c.chunk.consume(p[:n])
		c.offset += int64(k)
		switch {
		case cerr != nil:
			c.state, c.err = stateDone, cerr
		case done:
			c.state = stateHead
			c.buf = append(c.buf, p[k:n]...) // the next head's first bytes
		}
		if k == 0 && err == nil && cerr != nil {
			return 0, cerr
		}
		return k, err
	default: // stateTunnel
		n, err := c.Conn.Read(p)
		c.offset += int64(n)
		return n, err
	}
}

// fill reads more bytes off the wire into buf.
func (c *conn) fill() error {
	if c.off > 0 && c.off == len(c.buf) {
		c.buf, c.off = c.buf[:0], 0
	}
	if cap(c.buf)-len(c.buf) < 2048 {
		// Move what is left to the front, or grow: a head may take several reads.
		rest := len(c.buf) - c.off
		nb := c.buf
		if rest+4096 > cap(c.buf) {
			nb = make([]byte, rest, max(2*cap(c.buf), rest+4096))
		} else {
			nb = nb[:rest]
		}
		copy(nb, c.buf[c.off:])
		c.buf, c.off = nb, 0
	}
	n, err := c.Conn.Read(c.buf[len(c.buf):cap(c.buf)])
	c.buf = c.buf[:len(c.buf)+n]
	if n > 0 {
		return nil // an error will come again on the next read
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// refuse drops what is buffered and hands net/http badRequest, to which it answers 400 and
// closes the connection; Write swaps the guard's own answer in.
func (c *conn) refuse(status int, text, reason string) {
	body := fmt.Sprintf(`{"type":"about:blank","title":%q,"status":%d,"detail":%q}`, text, status, reason)
	resp := fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nContent-Type: application/problem+json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s",
		status, text, len(body), body)
	c.refusal.Store(&resp)
	c.buf = append(c.buf[:0], badRequest...)
	c.off, c.ready, c.scan = 0, len(badRequest), headScan{}
	c.state, c.err = stateDone, io.EOF
	if c.opts.Rejected != nil {
		c.opts.Rejected(c.RemoteAddr(), status, reason)
	}
}

// Write writes p, swapping the guard's answer in for net/http's 400 to a refused head, and
// noting a 101 answer to an upgrade request.
func (c *conn) Write(p []byte) (int, error) {
	if r := c.refusal.Load(); r != nil && bytes.Equal(p, goBadRequest) {
		if _, err := c.Conn.Write(*r); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	if c.upgrade.Load() && (bytes.HasPrefix(p, []byte("HTTP/1.1 101 ")) || bytes.HasPrefix(p, []byte("HTTP/1.0 101 "))) {
		c.tunnel.Store(true)
	}
	return c.Conn.Write(p)
}

// CloseWrite half-closes the connection where the underlying one can, as net/http expects of
// a TCP connection before it closes one with the client still sending.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// Close closes the connection. A refused one is half-closed and drained for a moment first:
// closing a socket with unread bytes resets it, and the client might lose the 400.
func (c *conn) Close() error {
	c.closeOnce.Do(func() {
		if c.refusal.Load() != nil {
			_ = c.CloseWrite()
			_ = c.Conn.SetReadDeadline(time.Now().Add(lingerTimeout))
			_, _ = io.Copy(io.Discard, io.LimitReader(c.Conn, 1<<20))
		}
		c.closeErr = c.Conn.Close()
	})
	return c.closeErr
}
