// Package canary splits a route's requests between its primary and a canary backend: a
// weighted share, sticky by a header or a cookie.
//
// A request's key is hashed to one of 10,000 buckets, and the canary takes the buckets below
// its percent times 100. The buckets a canary takes at 10% are among those it takes at 20%,
// so raising the percent moves only the keys that must move, from the primary to the canary,
// and lowering it moves them back: a client sees one side as long as the percent stays.
// A Split is immutable and safe for concurrent use.
package canary

import (
	"fmt"
	"net/http"
	"strings"
)

// Buckets is how many buckets keys hash to: a percent has two decimals.
const Buckets = 10_000

// Split is one route's canary split.
type Split struct {
	// threshold is the number of buckets (of Buckets) the canary takes.
	threshold uint64
	// salt makes routes split independently: the 10% of one route are not the 10% of another.
	salt   string
	header string // the sticky header's canonical name, or ""
	cookie string // the sticky cookie's name, or ""
}

// New returns the split of percent (0 to 100, two decimals) of requests to the canary,
// sticky by sticky ("header:NAME", "cookie:NAME", or "" for a fresh draw per request). salt
// is the route's name.
func New(percent float64, sticky, salt string) (*Split, error) {
	if percent < 0 || percent > 100 {
		return nil, fmt.Errorf("canary percent %g: want 0 to 100", percent)
	}
	s := &Split{threshold: uint64(percent*100 + 0.5), salt: salt}
	if sticky != "" {
		kind, name, _ := strings.Cut(sticky, ":")
		switch {
		case name == "":
			return nil, fmt.Errorf("canary sticky %q: want header:NAME or cookie:NAME", sticky)
		case kind == "header":
			s.header = http.CanonicalHeaderKey(name)
		case kind == "cookie":
			s.cookie = name
		default:
			return nil, fmt.Errorf("canary sticky %q: want header:NAME or cookie:NAME", sticky)
		}
	}
	return s, nil
}

// Key returns the request's sticky key and whether it has one.
func (s *Split) Key(r *http.Request) (string, bool) {
	switch {
	case s.header != "":
		if v := r.Header[s.header]; len(v) > 0 && v[0] != "" {
			return v[0], true
		}
	case s.cookie != "":
		if c, err := r.Cookie(s.cookie); err == nil && c.Value != "" {
			return c.Value, true
		}
	}
	return "", false
}

// Canary reports whether the request goes to the canary. A request with a sticky key goes
// where its key's bucket says; one without is placed by draw, a uniform random number.
func (s *Split) Canary(r *http.Request, draw func() uint64) bool {
	if s.threshold == 0 {
		return false
	}
	if s.threshold >= Buckets {
		return true
	}
	if key, ok := s.Key(r); ok {
		return s.KeyCanary(key)
	}
	return draw()%Buckets < s.threshold
}

// KeyCanary reports whether the requests of key go to the canary.
func (s *Split) KeyCanary(key string) bool { return Bucket(s.salt, key) < s.threshold }

// Bucket returns key's bucket, 0 to Buckets-1, under salt: FNV-1a over the salt, a zero
// byte and the key, then a 64-bit finalizer (splitmix64's) so that keys differing in their
// last byte (customer-1, customer-2) spread over every bucket. It is the same in every
// process and every version, so facades behind one load balancer agree.
func Bucket(salt, key string) uint64 {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	for i := 0; i < len(salt); i++ {
		h = (h ^ uint64(salt[i])) * prime
	}
	h *= prime // the zero byte between salt and key
	for i := 0; i < len(key); i++ {
		h = (h ^ uint64(key[i])) * prime
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h % Buckets
}
