package resilience

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// healthRig runs a Health against a real loopback backend whose health answer the test
// sets, with the wait between probes in the test's hands: each probe is one step.
type healthRig struct {
	t       *testing.T
	h       *Health
	status  atomic.Int32 // what the backend answers probes; 0 means it is down
	tick    chan time.Time
	probed  chan error
	changes chan bool
	recover chan struct{}
}

func newHealthRig(t *testing.T, healthy, unhealthy int) *healthRig {
	r := &healthRig{t: t, tick: make(chan time.Time), probed: make(chan error, 1), changes: make(chan bool, 4), recover: make(chan struct{}, 4)}
	r.status.Store(200)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/readyz" || req.Header.Get("User-Agent") != "ficus-health-check" {
			t.Errorf("probe %s %s (User-Agent %q)", req.Method, req.URL, req.Header.Get("User-Agent"))
		}
		st := int(r.status.Load())
		if st == 0 {
			// Down: drop the connection without an answer.
			c, _, _ := w.(http.Hijacker).Hijack()
			c.Close()
			return
		}
		w.WriteHeader(st)
	}))
	t.Cleanup(srv.Close)
	r.h = NewHealth(RoundTripFunc(func(req *http.Request) (*http.Response, error) { return okResponse(req, 200, "served"), nil }),
		HealthSettings{
			URL:                srv.URL + "/readyz",
			Timeout:            2 * time.Second,
			HealthyThreshold:   healthy,
			UnhealthyThreshold: unhealthy,
			OnProbe:            func(err error) { r.probed <- err },
			OnChange:           func(ok bool, _ error) { r.changes <- ok },
			OnRecover:          func() { r.recover <- struct{}{} },
			After:              func(time.Duration) <-chan time.Time { return r.tick },
		})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.h.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	})
	r.waitProbe() // Run probes once at once
	return r
}

// waitProbe waits for the probe under way and returns its outcome.
func (r *healthRig) waitProbe() error {
	r.t.Helper()
	select {
	case err := <-r.probed:
		return err
	case <-time.After(5 * time.Second):
		r.t.Fatal("no probe within 5s")
		return nil
	}
}

// step lets the interval pass and waits for the next probe.
func (r *healthRig) step() error {
	r.t.Helper()
	select {
	case r.tick <- time.Time{}:
	case <-time.After(5 * time.Second):
		r.t.Fatal("Run is not waiting for the next probe")
	}
	return r.waitProbe()
}

// changed returns the change the last probe made, failing the test if it made none. The
// hooks run before OnProbe, so once a probe is seen its change is there to read.
func (r *healthRig) changed() bool {
	r.t.Helper()
	select {
	case c := <-r.changes:
		return c
	default:
		r.t.Fatal("the probe changed nothing")
		return false
	}
}

func (r *healthRig) recovered() {
	r.t.Helper()
	select {
	case <-r.recover:
	default:
		r.t.Fatal("the return after a failed probe was not reported")
	}
}

func (r *healthRig) noEvents() {
	r.t.Helper()
	select {
	case c := <-r.changes:
		r.t.Fatalf("unexpected change to healthy=%v", c)
	case <-r.recover:
		r.t.Fatal("unexpected recovery")
	default:
	}
}

func TestHealthMarksUnhealthyAfterThresholdAndRefuses(t *testing.T) {
	r := newHealthRig(t, 2, 3)
	if !r.h.Healthy() {
		t.Fatal("a backend counts as healthy until probes say otherwise")
	}
	r.status.Store(503)
	for i := 1; i <= 2; i++ {
		if err := r.step(); err == nil {
			t.Fatalf("probe %d passed on a 503", i)
		}
		if !r.h.Healthy() {
			t.Fatalf("unhealthy after %d failed probes; the threshold is 3", i)
		}
	}
	r.status.Store(0) // and then down altogether
	if err := r.step(); err == nil {
		t.Fatal("probe passed on a dropped connection")
	}
	if r.h.Healthy() || r.changed() {
		t.Fatal("not unhealthy after 3 failed probes")
	}
	resp, err := r.h.RoundTrip(newReq("GET", ""))
	if !errors.Is(err, ErrUnhealthy) || resp != nil {
		t.Fatalf("request to an unhealthy backend: %v, %v; want ErrUnhealthy", resp, err)
	}

	// A 404 is an answer: the backend is up even if it lacks the path.
	r.status.Store(404)
	if err := r.step(); err != nil {
		t.Fatalf("probe answered 404 failed: %v", err)
	}
	if r.h.Healthy() {
		t.Fatal("healthy after 1 passing probe; the threshold is 2")
	}
	r.noEvents()
	if err := r.step(); err != nil {
		t.Fatal(err)
	}
	if !r.h.Healthy() || !r.changed() {
		t.Fatal("not healthy after 2 passing probes")
	}
	r.recovered()
	if resp, err := r.h.RoundTrip(newReq("GET", "")); err != nil || resp.StatusCode != 200 {
		t.Fatalf("request to a healthy backend: %v", err)
	}
}

// TestHealthReportsShortOutages checks a backend down for fewer probes than the unhealthy
// threshold, as during a quick restart, is still reported back (OnRecover), while probes
// that never fail report nothing.
func TestHealthReportsShortOutages(t *testing.T) {
	r := newHealthRig(t, 1, 3)
	for range 3 {
		if err := r.step(); err != nil {
			t.Fatal(err)
		}
	}
	r.noEvents()
	r.status.Store(0)
	if err := r.step(); err == nil {
		t.Fatal("probe of a down backend passed")
	}
	r.status.Store(200)
	if err := r.step(); err != nil {
		t.Fatal(err)
	}
	r.recovered()
	if !r.h.Healthy() {
		t.Fatal("a backend never marked unhealthy turned unhealthy")
	}
	r.noEvents()
}

// TestHealthPokeProbesAtOnce checks Poke gets a probe without waiting for the interval.
func TestHealthPokeProbesAtOnce(t *testing.T) {
	r := newHealthRig(t, 1, 1)
	r.status.Store(500)
	r.h.Poke()
	if err := r.waitProbe(); err == nil {
		t.Fatal("the poked probe passed on a 500")
	}
	if r.h.Healthy() {
		t.Fatal("healthy after a failed probe with threshold 1")
	}
}
