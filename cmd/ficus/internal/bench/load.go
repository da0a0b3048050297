package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// loadGen sends closed-loop load: conns connections, each sending its next request as
// soon as the last one is answered.
type loadGen interface {
	name() string
	run(ctx context.Context, url string, conns int, d time.Duration) (cellResult, error)
}

// wrkGen runs wrk, the cheapest load generator for the machine it shares.
type wrkGen struct {
	path    string
	threads int
}

func (g wrkGen) name() string { return fmt.Sprintf("wrk -t %d", g.threads) }

func (g wrkGen) run(ctx context.Context, url string, conns int, d time.Duration) (cellResult, error) {
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	threads := min(g.threads, conns)
	secs := max(1, int((d+time.Second/2)/time.Second))
	cmd := exec.CommandContext(ctx, g.path, "-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns),
		"-d", strconv.Itoa(secs)+"s", "--latency", url)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return cellResult{}, ctx.Err()
	}
	if err != nil {
		return cellResult{}, fmt.Errorf("wrk: %w: %s", err, out)
	}
	res, err := parseWrk(string(out))
	if err != nil {
		return cellResult{}, fmt.Errorf("reading wrk's output: %w:\n%s", err, out)
	}
	return res, nil
}

// parseWrk reads the figures of `wrk --latency`.
func parseWrk(out string) (cellResult, error) {
	var res cellResult
	var haveRPS, haveReqs bool
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "Requests/sec:":
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return res, fmt.Errorf("requests/s %q: %w", f[1], err)
			}
			res.rps, haveRPS = v, true
		case len(f) >= 3 && f[1] == "requests" && f[2] == "in":
			v, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return res, fmt.Errorf("requests %q: %w", f[0], err)
			}
			res.requests, haveReqs = v, true
		case len(f) == 2 && (f[0] == "50%" || f[0] == "99%"):
			v, err := parseWrkDuration(f[1])
			if err != nil {
				return res, err
			}
			if f[0] == "50%" {
				res.p50 = v
			} else {
				res.p99 = v
			}
		case len(f) == 5 && f[0] == "Non-2xx":
			v, _ := strconv.ParseInt(f[4], 10, 64)
			res.errors += v
		case len(f) >= 3 && f[0] == "Socket" && f[1] == "errors:":
			// Socket errors: connect 0, read 0, write 0, timeout 0
			for i := 2; i+1 < len(f); i += 2 {
				v, _ := strconv.ParseInt(strings.TrimSuffix(f[i+1], ","), 10, 64)
				res.errors += v
			}
		}
	}
	if !haveRPS || !haveReqs || res.p50 == 0 {
		return res, errors.New("no Requests/sec, request count or latency distribution")
	}
	return res, nil
}

// parseWrkDuration reads wrk's durations: 188.00us, 1.27ms, 2.01s, 1.00m (minutes, as
// time.ParseDuration reads it too).
func parseWrkDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("latency %q: %w", s, err)
	}
	return d, nil
}

// vegetaGen sends the load from this process with vegeta, for machines without wrk.
type vegetaGen struct{}

func (vegetaGen) name() string { return "vegeta (in process)" }

func (vegetaGen) run(ctx context.Context, url string, conns int, d time.Duration) (cellResult, error) {
	atk := vegeta.NewAttacker(vegeta.Workers(uint64(conns)), vegeta.MaxWorkers(uint64(conns)),
		vegeta.Connections(conns), vegeta.MaxConnections(conns), vegeta.KeepAlive(true),
		vegeta.Timeout(10*time.Second))
	tgt := vegeta.NewStaticTargeter(vegeta.Target{Method: http.MethodGet, URL: url})
	stop := context.AfterFunc(ctx, func() { atk.Stop() })
	defer stop()
	var m vegeta.Metrics
	for r := range atk.Attack(tgt, vegeta.Rate{Freq: 0}, d, "bench") {
		m.Add(r)
	}
	m.Close()
	if err := ctx.Err(); err != nil {
		return cellResult{}, err
	}
	res := cellResult{requests: int64(m.Requests), rps: m.Throughput, p50: m.Latencies.P50, p99: m.Latencies.P99}
	res.errors = int64(float64(m.Requests) * (1 - m.Success))
	if m.Requests == 0 {
		return res, fmt.Errorf("no requests sent: %v", m.Errors)
	}
	return res, nil
}
