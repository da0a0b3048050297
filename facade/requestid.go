package facade

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync/atomic"
)

// headerRequestID carries the request id to the backend and back to the client.
const headerRequestID = "X-Request-Id"

// idSource makes request ids: a random prefix drawn once per process and a counter, so
// making one is an atomic add and a small string, not a read of crypto/rand.
type idSource struct {
	prefix string
	n      atomic.Uint64
}

func newIDSource() *idSource {
	var b [6]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read does not fail (it crashes the program instead)
	return &idSource{prefix: hex.EncodeToString(b[:]) + "-"}
}

func (s *idSource) next() string {
	var buf [40]byte
	b := append(buf[:0], s.prefix...)
	b = strconv.AppendUint(b, s.n.Add(1), 36)
	return string(b)
}

// validID reports whether a client's request id can be passed on: 1 to 128 visible ASCII
// characters. Anything else is replaced.
func validID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

// randomToken returns a fresh admin token.
func randomToken() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
