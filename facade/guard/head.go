package guard

import (
	"bytes"
	"errors"
	"net/http"
)

// framing is how the body of a request whose head passed the checks is delimited: the guard
// follows it to find where the next head starts.
type framing struct {
	// chunked says the body is in the chunked transfer coding.
	chunked bool
	// length is the body's size when it is not chunked (0: no body).
	length int64
	// upgrade says the request asks to switch protocols (an Upgrade header): after a 101
	// answer the connection carries no more HTTP/1 heads.
	upgrade bool
}

// Reasons a head is refused. Each is the detail of the 400 answer, so it says what to fix.
var (
	errCLAndTE          = errors.New("request smuggling: both Content-Length and Transfer-Encoding are set")
	errDuplicateCL      = errors.New("request smuggling: more than one Content-Length")
	errBadCL            = errors.New("invalid Content-Length: it must be one non-negative decimal number")
	errDuplicateTE      = errors.New("request smuggling: more than one Transfer-Encoding")
	errTENotChunked     = errors.New("request smuggling: Transfer-Encoding must be exactly \"chunked\"")
	errTEOnHTTP10       = errors.New("request smuggling: Transfer-Encoding on an HTTP/1.0 request")
	errObsFold          = errors.New("request smuggling: a header line starts with a space or tab (obsolete line folding)")
	errSpaceBeforeColon = errors.New("request smuggling: whitespace between a header name and its colon")
	errBareLF           = errors.New("a line ends in LF without CR")
	errBareCR           = errors.New("a CR not followed by LF")
)

// headScan is where the search for the end of a head stands: the start of the line being
// read and how far the bytes have been searched. Resuming from it keeps the search linear
// however the head is split across reads (a client sending a byte at a time must not cost
// the square of its head's length).
type headScan struct {
	line, searched int
}

// headEnd returns the length of the head at the start of b, up to and including the empty
// line that ends it, or -1 when b holds no whole head yet; s carries the search over to the
// next call, with more bytes. A head ends at the first empty line, whether its line ends are
// CRLF or a bare LF: parseHead refuses the latter, but must see the head to do so.
func headEnd(b []byte, s *headScan) int {
	for {
		i := bytes.IndexByte(b[s.searched:], '\n')
		if i < 0 {
			s.searched = len(b)
			return -1
		}
		nl := s.searched + i
		line := b[s.line:nl]
		s.line, s.searched = nl+1, nl+1
		if len(line) == 0 || (len(line) == 1 && line[0] == '\r') {
			*s = headScan{}
			return nl + 1
		}
	}
}

// parseHead checks a whole request head (the request line, header lines and the empty line)
// for what lets two HTTP parsers disagree on where a request ends, and returns its body's
// framing. What it lets through, net/http reads the same way: one Content-Length or one
// "Transfer-Encoding: chunked" (HTTP/1.1 only), never both, no folded lines, every line
// ended by CRLF. A head that is malformed in a way net/http refuses anyway (no colon, a bad
// method) passes with no body: net/http answers 400 and closes the connection.
func parseHead(head []byte) (framing, error) {
	var fr framing
	var cl, te int
	http10 := false
	for n := 0; len(head) > 0; n++ {
		i := bytes.IndexByte(head, '\n')
		if i < 0 { // cannot happen for a head headEnd found; be safe
			return fr, errBareLF
		}
		if i == 0 || head[i-1] != '\r' {
			return fr, errBareLF
		}
		line := head[:i-1]
		head = head[i+1:]
		if bytes.IndexByte(line, '\r') >= 0 {
			return fr, errBareCR
		}
		if len(line) == 0 { // the empty line that ends the head
			break
		}
		if n == 0 {
			if sp := bytes.LastIndexByte(line, ' '); sp >= 0 {
				major, minor, ok := http.ParseHTTPVersion(string(line[sp+1:]))
				http10 = ok && major == 1 && minor == 0
			}
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			return fr, errObsFold
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			continue // net/http refuses it
		}
		name, value := line[:colon], trimOWS(line[colon+1:])
		if len(name) > 0 && (name[len(name)-1] == ' ' || name[len(name)-1] == '\t') {
			return fr, errSpaceBeforeColon
		}
		switch {
		case equalFold(name, "Content-Length"):
			if cl++; cl > 1 {
				return fr, errDuplicateCL
			}
			l, ok := parseLength(value)
			if !ok {
				return fr, errBadCL
			}
			fr.length = l
		case equalFold(name, "Transfer-Encoding"):
			if te++; te > 1 {
				return fr, errDuplicateTE
			}
			if !equalFold(value, "chunked") {
				return fr, errTENotChunked
			}
			fr.chunked = true
		case equalFold(name, "Upgrade"):
			fr.upgrade = true
		}
	}
	switch {
	case cl > 0 && te > 0:
		return fr, errCLAndTE
	case te > 0 && http10:
		return fr, errTEOnHTTP10
	}
	return fr, nil
}

// parseLength parses a Content-Length value: 1 to 18 decimal digits, so that it cannot
// overflow.
func parseLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// trimOWS trims the optional whitespace (spaces and tabs) around a header value.
func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// equalFold reports whether b is s, ignoring ASCII case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c, d := b[i], s[i]
		if c|0x20 != d|0x20 || (c|0x20 < 'a' || c|0x20 > 'z') && c != d {
			return false
		}
	}
	return true
}
