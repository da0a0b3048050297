package guard

import "errors"

// errChunked means a chunked body broke the chunked coding's grammar. The guard then passes
// nothing more from the connection: where the body ends is no longer certain.
var errChunked = errors.New("malformed chunked request body")

// maxChunkLine bounds a chunk-size line with its extensions, as net/http does.
const maxChunkLine = 4096

// chunkState is where a chunkReader stands in the chunked coding.
type chunkState uint8

const (
	chunkSize    chunkState = iota // reading the chunk size's hex digits
	chunkSizeWS                    // whitespace after the size
	chunkExt                       // a chunk extension, up to CR
	chunkSizeLF                    // the LF after the size line's CR
	chunkData                      // the chunk's data
	chunkDataCR                    // the CR after the data
	chunkDataLF                    // the LF after the data
	trailerStart                   // the start of a trailer line, or of the final CRLF
	trailerLine                    // inside a trailer line
	trailerLF                      // the LF after a trailer line's CR
	trailerEndLF                   // the LF of the final CRLF
)

// chunkReader follows a chunked body (RFC 9112 section 7.1) byte by byte, skipping chunk
// data in bulk, to find where it ends. It is stricter than net/http (CRLF only, no folded
// trailers), never laxer, so that no byte it calls body is a head to net/http.
type chunkReader struct {
	state    chunkState
	digits   int
	size     int64 // the current chunk's size, then what is left of its data
	line     int   // bytes of the current size line or trailer section so far
	maxTrail int   // bound on the trailer section's bytes
}

// consume reads b as the continuation of the body. It returns how many bytes of b belong to
// the body and whether the body ended there; the rest of b, if any, is the next request's.
func (c *chunkReader) consume(b []byte) (n int, done bool, err error) {
	for n < len(b) {
		if c.state == chunkData {
			k := int64(len(b) - n)
			if k > c.size {
				k = c.size
			}
			n += int(k)
			if c.size -= k; c.size == 0 {
				c.state = chunkDataCR
			}
			continue
		}
		ch := b[n]
		n++
		switch c.state {
		case chunkSize:
			v, ok := hexValue(ch)
			switch {
			case ok:
				if c.digits++; c.digits > 15 { // 15 hex digits cannot overflow an int64
					return n, false, errChunked
				}
				c.size = c.size<<4 | int64(v)
			case c.digits == 0:
				return n, false, errChunked
			case ch == ' ' || ch == '\t':
				c.state = chunkSizeWS
			case ch == ';':
				c.state = chunkExt
			case ch == '\r':
				c.state = chunkSizeLF
			default:
				return n, false, errChunked
			}
		case chunkSizeWS:
			switch ch {
			case ' ', '\t':
			case ';':
				c.state = chunkExt
			case '\r':
				c.state = chunkSizeLF
			default:
				return n, false, errChunked
			}
		case chunkExt:
			switch ch {
			case '\r':
				c.state = chunkSizeLF
			case '\n':
				return n, false, errChunked
			}
		case chunkSizeLF:
			if ch != '\n' {
				return n, false, errChunked
			}
			c.digits, c.line = 0, 0
			if c.size == 0 {
				c.state = trailerStart
			} else {
				c.state = chunkData
			}
			continue // the line is over: do not count its LF against maxChunkLine
		case chunkDataCR:
			if ch != '\r' {
				return n, false, errChunked
			}
			c.state = chunkDataLF
		case chunkDataLF:
			if ch != '\n' {
				return n, false, errChunked
			}
			c.state = chunkSize
			c.line = 0
			continue
		case trailerStart:
			switch ch {
			case '\r':
				c.state = trailerEndLF
			case ' ', '\t', '\n':
				return n, false, errChunked
			default:
				c.state = trailerLine
			}
		case trailerLine:
			switch ch {
			case '\r':
				c.state = trailerLF
			case '\n':
				return n, false, errChunked
			}
		case trailerLF:
			if ch != '\n' {
				return n, false, errChunked
			}
			c.state = trailerStart
		case trailerEndLF:
			if ch != '\n' {
				return n, false, errChunked
			}
			*c = chunkReader{maxTrail: c.maxTrail}
			return n, true, nil
		}
		c.line++
		if (c.state <= chunkSizeLF && c.line > maxChunkLine) || (c.state >= trailerStart && c.line > c.maxTrail) {
			return n, false, errChunked
		}
	}
	return n, false, nil
}

func hexValue(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
