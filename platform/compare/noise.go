package compare

import (
	"net/textproto"
	"slices"
	"strings"
	"sync"
)

// DefaultMaxNoise is how many noise rules a Noise keeps when its Max is zero.
const DefaultMaxNoise = 64

// Noise learns what varies on its own in one endpoint's answers — timestamps, generated ids,
// a request id echoed in the body — from pairs of answers that one side gave to the same
// request: whatever differs between them is noise, not a difference between two sides.
// Rules turns what it learnt into comparison rules, so noise needs no rules written by hand.
//
// The zero value has learnt nothing and is ready to use; a Noise is safe for concurrent use.
type Noise struct {
	// Max bounds the rules kept (body patterns and headers together); what is learnt beyond
	// it is not kept. Zero means DefaultMaxNoise. Set it before first use.
	Max int

	mu      sync.Mutex
	ignore  []string // body pointer patterns, array indexes written "*"
	headers []string // canonical header names
	gen     uint64   // counts changes, so users can tell a rule set is stale
}

// NoiseRule returns the rule that a difference between two answers of one side makes:
// a body value's pointer with its array indexes written "*" ("/items/*/updated_at", "" for
// a whole non-JSON body), or a header's name as "header:NAME". A status that differs is no
// noise rule: an endpoint that answers one request with two statuses is unstable, and
// ignoring its status would hide real differences.
func NoiseRule(d Difference) (string, bool) {
	switch d.Part {
	case PartHeader:
		return "header:" + textproto.CanonicalMIMEHeaderKey(d.Path), true
	case PartBody:
		if d.Path == "" {
			return "", true
		}
		segs := strings.Split(d.Path[1:], "/")
		for i, s := range segs {
			if s != "" && strings.Trim(s, "0123456789") == "" {
				segs[i] = "*"
			}
		}
		return "/" + strings.Join(segs, "/"), true
	}
	return "", false
}

// Learn records the differences between two answers of the same side as noise, and returns
// the rules it had not learnt before. It learns nothing, and reports unstable, when the
// statuses differ.
func (n *Noise) Learn(res Result) (added []string, unstable bool) {
	for _, d := range res.Differences {
		if d.Part == PartStatus {
			return nil, true
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	limit := n.Max
	if limit <= 0 {
		limit = DefaultMaxNoise
	}
	for _, d := range res.Differences {
		rule, ok := NoiseRule(d)
		if !ok {
			continue
		}
		if len(n.ignore)+len(n.headers) >= limit {
			break
		}
		if h, isHeader := strings.CutPrefix(rule, "header:"); isHeader {
			if !slices.Contains(n.headers, h) {
				n.headers = append(n.headers, h)
				added = append(added, rule)
			}
			continue
		}
		if !slices.Contains(n.ignore, rule) {
			n.ignore = append(n.ignore, rule)
			added = append(added, rule)
		}
	}
	if len(added) > 0 {
		n.gen++
	}
	return added, false
}

// Learnt returns every rule learnt so far, body patterns then headers ("header:NAME").
func (n *Noise) Learnt() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := slices.Clone(n.ignore)
	for _, h := range n.headers {
		out = append(out, "header:"+h)
	}
	return out
}

// Generation counts the changes to what was learnt: 0 until the first rule.
func (n *Noise) Generation() uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.gen
}

// Rules returns base with the noise learnt added: the body patterns to its ignores, and the
// noisy headers taken out of the headers it compares.
func (n *Noise) Rules(base Rules) Rules {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := base.Merge(Rules{Ignore: n.ignore})
	if len(n.headers) > 0 {
		headers := base.Headers
		if headers == nil {
			headers = DefaultHeaders
		}
		kept := []string{}
		for _, h := range headers {
			if !slices.Contains(n.headers, textproto.CanonicalMIMEHeaderKey(h)) {
				kept = append(kept, h)
			}
		}
		out.Headers = kept
	}
	return out
}
