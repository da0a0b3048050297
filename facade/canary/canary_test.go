package canary

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"testing"
)

func request(header, cookie string) *http.Request {
	r, _ := http.NewRequest("GET", "http://x/", nil)
	if header != "" {
		r.Header.Set("X-Customer-ID", header)
	}
	if cookie != "" {
		r.AddCookie(&http.Cookie{Name: "uid", Value: cookie})
	}
	return r
}

func never() uint64 { panic("a sticky request must not draw") }

// TestStickyShareAndRaise: at 10% of 10,000 keys the canary takes 10% within 1.5 points;
// raising to 20% moves only keys from the primary to the canary, about 10% more of them.
func TestStickyShareAndRaise(t *testing.T) {
	ten, err := New(10, "header:X-Customer-ID", "/api/inventory")
	if err != nil {
		t.Fatal(err)
	}
	twenty, _ := New(20, "header:x-customer-id", "/api/inventory")
	const n = 10_000
	var at10, at20, moved int
	for i := range n {
		key := fmt.Sprintf("customer-%d", i)
		r := request(key, "")
		a, b := ten.Canary(r, never), twenty.Canary(r, never)
		if a != ten.Canary(r, never) {
			t.Fatalf("key %s changed side between two requests", key)
		}
		if a {
			at10++
		}
		if b {
			at20++
		}
		if a && !b {
			t.Fatalf("raising the canary moved key %s from the canary back to the primary", key)
		}
		if a != b {
			moved++
		}
	}
	for _, c := range []struct {
		got  int
		want float64
	}{{at10, 10}, {at20, 20}, {moved, 10}} {
		if pct := 100 * float64(c.got) / n; pct < c.want-1.5 || pct > c.want+1.5 {
			t.Errorf("%.2f%% of keys, want %g%% ± 1.5", pct, c.want)
		}
	}
}

func TestCookieAndUnkeyedRequests(t *testing.T) {
	s, err := New(30, "cookie:uid", "r")
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := s.Key(request("", "u-7")); !ok || got != "u-7" {
		t.Fatalf("cookie key = %q, %v", got, ok)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var hits int
	const n = 20_000
	for range n {
		if s.Canary(request("", ""), rng.Uint64) {
			hits++
		}
	}
	if pct := 100 * float64(hits) / n; pct < 28.5 || pct > 31.5 {
		t.Errorf("unkeyed requests: %.2f%% to the canary, want 30 ± 1.5", pct)
	}
	zero, _ := New(0, "cookie:uid", "r")
	all, _ := New(100, "cookie:uid", "r")
	for i := range 100 {
		r := request("", fmt.Sprint(i))
		if zero.Canary(r, never) || !all.Canary(r, never) {
			t.Fatal("0% must send nothing to the canary, 100% everything")
		}
	}
}

func TestRoutesSplitIndependently(t *testing.T) {
	a, _ := New(50, "header:X-Customer-ID", "/a")
	b, _ := New(50, "header:X-Customer-ID", "/b")
	same := 0
	for i := range 2000 {
		k := fmt.Sprint(i)
		if a.KeyCanary(k) == b.KeyCanary(k) {
			same++
		}
	}
	if same > 1150 || same < 850 {
		t.Errorf("two routes at 50%% agree on %d of 2000 keys: their splits are not independent", same)
	}
}

func TestNewRefusesBadSettings(t *testing.T) {
	for _, c := range []struct {
		pct    float64
		sticky string
	}{{-1, ""}, {101, ""}, {10, "ip"}, {10, "header:"}, {10, "query:x"}} {
		if _, err := New(c.pct, c.sticky, "r"); err == nil {
			t.Errorf("New(%g, %q) accepted", c.pct, c.sticky)
		}
	}
}

// FuzzBucket: every key lands in a bucket, the same one every time.
func FuzzBucket(f *testing.F) {
	f.Add("/api", "customer-1")
	f.Add("", "")
	f.Fuzz(func(t *testing.T, salt, key string) {
		b := Bucket(salt, key)
		if b >= Buckets || b != Bucket(salt, key) {
			t.Fatalf("Bucket(%q, %q) = %d", salt, key, b)
		}
	})
}
