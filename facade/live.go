package facade

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync/atomic"
	"time"

	"github.com/ficus-project/ficus/facade/gate"
	"github.com/ficus-project/ficus/platform/config"
)

// live is what the facade learns about one route while it serves: the outcomes of each side
// over the gates' window, the shadow's comparisons, whether its canary was rolled back, and
// the shadow's report. A reload that leaves the route's config as it was carries it over;
// one that changes the route starts it afresh — which is what lifts a rollback.
type live struct {
	cfg   config.Route
	gates config.Gates
	// primary and candidate count each side's answers (bad: an error) and keep their
	// latencies: the canary's live traffic while a canary runs, else the shadowed pairs.
	primary, candidate *gate.Window
	// compared counts the shadow's compared pairs (bad: a real difference).
	compared *gate.Window
	// rolledBack is set when the facade took the canary's share back; nil while it runs.
	rolledBack atomic.Pointer[Rollback]
	// lastCheck is when the rollback gates were last judged (UnixNano), to judge at most
	// every rollbackCheckEvery.
	lastCheck atomic.Int64
	// report is the shadow's report; nil without a shadow.
	report *shadowReport
}

// Rollback says when and why the facade rolled a canary back.
type Rollback struct {
	Time time.Time `json:"time"`
	// Gate is the gate that failed; Detail its figures.
	Gate   string `json:"gate"`
	Detail string `json:"detail"`
	// Shared says the rollback is written to the config file (the canary's percent at 0,
	// with a comment saying why), so that every facade reading the file stops sending the
	// canary any share. It is false while the write is under way, and when it could not be
	// done: ShareError then says why, and the rollback holds in this process alone.
	Shared bool `json:"shared"`
	// ShareError says why the rollback is not in the config file; empty once it is.
	ShareError string `json:"share_error,omitempty"`
}

// rollbackCheckEvery bounds how often a canary's rollback gates are judged: each judgement
// reads the windows under their locks, and once every tenth of a second is soon enough.
const rollbackCheckEvery = 100 * time.Millisecond

// liveFor returns the live state route rc gets in a new table: old's, when the route's
// config is unchanged; else a new one, keeping old's shadow report when the shadow itself is
// unchanged (raising a canary's percent keeps what the shadow learnt and counted).
func (f *Facade) liveFor(old *table, name string, rc config.Route, shadow *config.FacadeShadow) *live {
	var prev *live
	if old != nil {
		for _, r := range old.routes {
			if r.Name == name {
				prev = r.live
				break
			}
		}
	}
	if prev != nil && reflect.DeepEqual(prev.cfg, rc) {
		return prev
	}
	lv := &live{cfg: rc}
	if rc.Promote != nil {
		lv.gates = rc.Promote.Gates
	}
	window := lv.gates.Window.D()
	if window <= 0 {
		window = 5 * time.Minute
	}
	lv.primary = gate.NewWindow(window, f.now)
	lv.candidate = gate.NewWindow(window, f.now)
	lv.compared = gate.NewWindow(window, f.now)
	if rc.Shadow != nil {
		if prev != nil && prev.report != nil && reflect.DeepEqual(prev.cfg.Shadow, rc.Shadow) {
			lv.report = prev.report
		} else {
			lv.report = newShadowReport(name, rc.Shadow, shadow)
		}
	}
	return lv
}

// observeCanary counts one answer of a route that runs a canary, on the side that was chosen
// for it, and judges the rollback gates now and then.
func (f *Facade) observeCanary(rt *Route, ex *exchange, d time.Duration) {
	bad := ex.status >= 500 || ex.status == 0
	if ex.chosen == rt.canary {
		rt.live.candidate.Observe(bad, d)
		f.checkRollback(rt)
		return
	}
	rt.live.primary.Observe(bad, d)
}

// checkRollback judges a running canary's error and diff gates, at most every
// rollbackCheckEvery, and rolls the canary back when one fails on enough samples. A gate
// that fails for want of samples rolls nothing back.
func (f *Facade) checkRollback(rt *Route) {
	lv := rt.live
	if rt.canary == nil || lv == nil || lv.rolledBack.Load() != nil || !rt.Config.Promote.RollsBack() {
		return
	}
	now := f.now().UnixNano()
	last := lv.lastCheck.Load()
	if now-last < int64(rollbackCheckEvery) || !lv.lastCheck.CompareAndSwap(last, now) {
		return
	}
	in := gate.Input{Primary: lv.primary.Counts(), Candidate: lv.candidate.Counts()}
	if lv.report != nil {
		c := lv.compared.Counts()
		in.Compared = &c
	}
	for _, r := range gate.Errors(lv.gates, in) {
		if r.OK || r.Samples < int64(lv.gates.MinSamples) {
			continue
		}
		rb := &Rollback{Time: f.now(), Gate: r.Gate, Detail: r.Detail}
		if !lv.rolledBack.CompareAndSwap(nil, rb) {
			return
		}
		f.metrics.rollbacks.WithLabelValues(rt.Name).Inc()
		f.log.Warn("canary rolled back: its share goes to the primary until the route's config changes",
			"route", rt.Name, "canary", rt.canary.backend.Name, "primary", rt.primary.backend.Name,
			"gate", r.Gate, "detail", r.Detail)
		f.shareRollback(rt, rb)
		return
	}
}

// shareRollback writes rb into the config file the facade serves, in the background, so
// that every facade reading the file rolls the canary back too: the route's canary.percent
// goes to 0 with a comment saying when, which gate, its figures and which facade. The
// rollback already holds in this process; the file only spreads it. The outcome is kept in
// the route's Rollback (Shared, ShareError) for the admin API and the metrics; a write that
// fails is logged once, at WARN.
func (f *Facade) shareRollback(rt *Route, rb *Rollback) {
	path := ""
	if t := f.table.Load(); t != nil && t.cfg != nil {
		path = t.cfg.Path
	}
	settle := func(shared bool, why string) {
		done := *rb
		done.Shared, done.ShareError = shared, why
		rt.live.rolledBack.CompareAndSwap(rb, &done)
	}
	if path == "" {
		settle(false, "the facade's config was not loaded from a file: the rollback holds in this process alone")
		return
	}
	f.shareMu.Lock()
	defer f.shareMu.Unlock()
	if f.closed {
		return
	}
	f.sharing.Add(1)
	go func() {
		defer f.sharing.Done()
		note := fmt.Sprintf("rolled back from %g%% at %s by facade %s: gate %s failed: %s",
			rt.Config.Canary.Percent, rb.Time.UTC().Format(time.RFC3339), f.instance, rb.Gate, rb.Detail)
		ctx, cancel := context.WithTimeout(f.life, 10*time.Second)
		defer cancel()
		err := config.RollBackFile(ctx, path, rt.Config, note)
		switch {
		case err == nil:
			settle(true, "")
			f.log.Info("canary rollback written to the config file: every facade reading it stops sending the canary any share",
				"route", rt.Name, "path", path)
		case errors.Is(err, config.ErrAlreadyRolledBack):
			settle(true, "")
			f.log.Info("canary rollback already in the config file (another facade wrote it)", "route", rt.Name, "path", path)
		case errors.Is(err, config.ErrRouteChanged):
			settle(false, "the route changed in the config file since it was judged; the newer config wins: "+err.Error())
			f.log.Info("canary rollback not written: the route changed in the config file since it was judged, and the newer config wins",
				"route", rt.Name, "path", path)
		default:
			settle(false, err.Error())
			f.log.Warn("canary rollback could not be shared with other facades: it holds in this process alone until the route's config changes",
				"route", rt.Name, "path", path, "err", err)
		}
	}()
}
