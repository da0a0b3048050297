package facade

import (
	"context"
	"embed"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ficus-project/ficus/platform/config"
	"github.com/ficus-project/ficus/platform/problem"
)

// dashboardFiles are the dashboard's page, script and style: plain files, embedded, with no
// build step and nothing fetched from elsewhere.
//
//go:embed dashboard
var dashboardFiles embed.FS

// dashboardIndex is the dashboard's page.
//
//go:embed dashboard/index.html
var dashboardIndex []byte

// dashboardPrefix is where the admin listener serves the dashboard's script and style; the
// page itself is at "/".
const dashboardPrefix = "/dashboard/"

// Bounds of a dashboard snapshot.
const (
	// dashboardSamples is how many of a route's latest differing shadow samples a snapshot
	// carries, newest first, across its endpoints.
	dashboardSamples = 5
	// systemEvery is how long a System's report is reused: however many pages poll, the
	// databases are read at most this often.
	systemEvery = 2 * time.Second
	// systemTimeout bounds one read of a System.
	systemTimeout = 5 * time.Second
)

// Dashboard is the answer of GET /api/dashboard: everything the dashboard page shows, in one
// snapshot.
type Dashboard struct {
	Time       time.Time    `json:"time"`
	Generation uint64       `json:"generation"`
	Reload     ReloadResult `json:"reload"`
	// Routes and Promotion are GET /api/routes' and GET /api/promotion's answers.
	Routes    []RouteInfo      `json:"routes"`
	Promotion []RoutePromotion `json:"promotion"`
	Backends  []BackendStatus  `json:"backends"`
	Shadow    []ShadowSummary  `json:"shadow"`
	// Interval is how long each point of a backend's history covers.
	Interval string `json:"interval"`
	// System is what Options.System reports; nil without one.
	System *SystemStatus `json:"system,omitempty"`
}

// BackendStatus is one backend on the dashboard: its live state, its traffic over the last
// minute and its history (ten minutes, oldest first).
type BackendStatus struct {
	BackendInfo
	LastMinute Traffic `json:"last_minute"`
	History    []Point `json:"history"`
}

// ShadowSummary is one route's shadow report as the dashboard shows it: the counts, each
// endpoint's counts, and the route's latest differing samples in full.
type ShadowSummary struct {
	Route       string            `json:"route"`
	Candidate   string            `json:"candidate"`
	Samples     int64             `json:"samples"`
	Matches     int64             `json:"matches"`
	Differences int64             `json:"differences"`
	Lag         int64             `json:"lag"`
	Errors      int64             `json:"errors"`
	Dropped     int64             `json:"dropped"`
	DiffRate    float64           `json:"diff_rate"`
	Endpoints   []EndpointSummary `json:"endpoints"`
	// Recent are the latest differing samples across the route's endpoints, newest first,
	// at most five.
	Recent []DiffSample `json:"recent"`
}

// EndpointSummary is one endpoint's counts and the fields that differed most.
type EndpointSummary struct {
	Endpoint    string       `json:"endpoint"`
	Samples     int64        `json:"samples"`
	Differences int64        `json:"differences"`
	Lag         int64        `json:"lag"`
	Errors      int64        `json:"errors"`
	TopFields   []FieldCount `json:"top_fields,omitempty"`
}

// System reports, for the dashboard, on the parts of a migration the facade does not run
// itself: the outboxes of the databases, the order sagas, the data migrations. The facade
// must not depend on the monolith, so the caller provides it: ficus serve facade reads the
// databases config.yaml names (cmd/ficus), through the orders module's and platform/migrate's
// read functions. Status gets the config serving now; what it cannot read it reports in the
// answer rather than failing the whole.
type System interface {
	Status(ctx context.Context, cfg *config.Config) SystemStatus
}

// SystemStatus is what a System reports.
type SystemStatus struct {
	Time       time.Time         `json:"time"`
	Outboxes   []OutboxStatus    `json:"outboxes"`
	Sagas      *SagaStatus       `json:"sagas,omitempty"`
	Migrations []MigrationStatus `json:"migrations"`
	// Errors says what could not be read, one line each.
	Errors []string `json:"errors,omitempty"`
}

// OutboxStatus is one database's outbox: the events its relay has not published yet.
type OutboxStatus struct {
	// Database names the database by its owner: "monolith", "inventory", "payments".
	Database string `json:"database"`
	Backlog  int64  `json:"backlog"`
	// Oldest is when the oldest unpublished event was recorded; nil when none waits.
	Oldest *time.Time `json:"oldest,omitempty"`
	// Error says why the outbox could not be read.
	Error string `json:"error,omitempty"`
}

// SagaStatus is the order sagas: how many are in each state, and the unfinished ones.
type SagaStatus struct {
	Counts map[string]int64 `json:"counts"`
	// Active are unfinished sagas, stuck ones first, then compensating, then running, each
	// oldest first; at most a page of each.
	Active []SagaSummary `json:"active"`
	// More says some unfinished sagas were left out of Active.
	More  bool   `json:"more,omitempty"`
	Error string `json:"error,omitempty"`
}

// SagaSummary is one saga on the dashboard.
type SagaSummary struct {
	Order    string    `json:"order"`
	Kind     string    `json:"kind"`
	State    string    `json:"state"`
	Step     string    `json:"step,omitempty"`
	Attempts int       `json:"attempts"`
	Reason   string    `json:"reason,omitempty"`
	Error    string    `json:"error,omitempty"`
	Updated  time.Time `json:"updated"`
}

// MigrationStatus is where one capability's data migration in one direction stands, as its
// target database records it (platform/migrate).
type MigrationStatus struct {
	Capability string `json:"capability"`
	// Direction is "forward" (monolith → service) or "reverse".
	Direction string `json:"direction"`
	// Target names the database the migration writes to.
	Target string           `json:"target"`
	Tables []MigrationTable `json:"tables"`
	// BackfillDone is when the backfill finished; nil while it has not.
	BackfillDone *time.Time `json:"backfill_done,omitempty"`
	// SyncFrom is the stream position the backfill recorded, SyncedTo the one sync reached.
	SyncFrom      uint64 `json:"sync_from"`
	SyncedTo      uint64 `json:"synced_to"`
	EventsApplied int64  `json:"events_applied"`
	// SyncedAt is when sync last applied events; Lag how old the newest of them was then,
	// in seconds. Both nil before sync applied any.
	SyncedAt *time.Time `json:"synced_at,omitempty"`
	Lag      *float64   `json:"lag,omitempty"`
	// Running names the process running a backfill or sync now ("host:pid"); "" for none.
	Running string `json:"running,omitempty"`
	// Verify is the last verify's result; nil before the first.
	Verify *MigrationVerify `json:"verify,omitempty"`
}

// MigrationTable is where the copy of one table stands.
type MigrationTable struct {
	Table    string `json:"table"`
	Copied   int64  `json:"copied"`
	Expected int64  `json:"expected"`
	Done     bool   `json:"done"`
}

// MigrationVerify is the result of the last verify.
type MigrationVerify struct {
	At          time.Time `json:"at"`
	Rows        int64     `json:"rows"`
	Differences int64     `json:"differences"`
	Summary     string    `json:"summary"`
}

// systemCache shares one System read among every page that polls within systemEvery.
type systemCache struct {
	source System

	mu   sync.Mutex // held while reading: one read at a time, the others wait and share it
	at   time.Time
	last SystemStatus
}

func (c *systemCache) get(ctx context.Context, cfg *config.Config, now time.Time) SystemStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	if age := now.Sub(c.at); !c.at.IsZero() && age >= 0 && age < systemEvery {
		return c.last
	}
	// A page that goes away must not cut short a read the others share.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), systemTimeout)
	defer cancel()
	c.last = c.source.Status(rctx, cfg)
	c.at = now
	return c.last
}

// startHistory ticks the backends' traffic history until Close.
func (f *Facade) startHistory() {
	f.checkers.Add(1)
	go func() {
		defer f.checkers.Done()
		f.metrics.history.run(f.life.Done())
	}()
}

// DashboardSnapshot returns what the dashboard shows now (GET /api/dashboard).
func (f *Facade) DashboardSnapshot(ctx context.Context) Dashboard {
	t := f.table.Load()
	d := Dashboard{
		Time:       f.now().UTC(),
		Generation: t.generation,
		Reload:     f.LastReload(),
		Routes:     f.Routes().Routes,
		Promotion:  f.Promotion(),
		Interval:   historyInterval.String(),
		Shadow:     []ShadowSummary{},
	}
	for _, b := range f.Backends() {
		bs := BackendStatus{BackendInfo: b, History: []Point{}}
		if points, last, ok := f.metrics.history.read(b.Name); ok {
			bs.History, bs.LastMinute = points, last
		}
		d.Backends = append(d.Backends, bs)
	}
	for _, rep := range f.ShadowReports() {
		d.Shadow = append(d.Shadow, summarize(rep))
	}
	if f.system != nil {
		s := f.system.get(ctx, t.cfg, f.now())
		d.System = &s
	}
	return d
}

// summarize cuts a route's shadow report down to what the dashboard shows.
func summarize(rep ShadowReport) ShadowSummary {
	s := ShadowSummary{Route: rep.Route, Candidate: rep.Candidate, Samples: rep.Samples, Matches: rep.Matches,
		Differences: rep.Differences, Lag: rep.Lag, Errors: rep.Errors, Dropped: rep.Dropped, DiffRate: rep.DiffRate,
		Endpoints: []EndpointSummary{}, Recent: []DiffSample{}}
	for _, e := range rep.Endpoints {
		s.Endpoints = append(s.Endpoints, EndpointSummary{Endpoint: e.Endpoint, Samples: e.Samples,
			Differences: e.Differences, Lag: e.Lag, Errors: e.Errors, TopFields: e.TopFields})
		s.Recent = append(s.Recent, e.Recent...)
	}
	slices.SortStableFunc(s.Recent, func(a, b DiffSample) int { return b.Time.Compare(a.Time) })
	if len(s.Recent) > dashboardSamples {
		s.Recent = s.Recent[:dashboardSamples]
	}
	return s
}

// dashboardPage serves the dashboard's page at "/" and its files under dashboardPrefix. They
// hold no data, so they are served without the token: the page asks for it, keeps it in the
// browser's session storage, and sends it with every GET /api/dashboard.
func dashboardPage() (page, files http.Handler) {
	static := http.FileServerFS(dashboardFiles) // "/dashboard/app.js" is the file dashboard/app.js
	notFound := func(w http.ResponseWriter, r *http.Request) {
		problem.Write(w, r, problem.New(http.StatusNotFound, "not_found", "no admin endpoint "+r.URL.Path))
	}
	index := get(func(w http.ResponseWriter, r *http.Request) {
		pageHeaders(w.Header())
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(dashboardIndex)
	})
	page = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			notFound(w, r)
			return
		}
		index.ServeHTTP(w, r)
	})
	files = get(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, dashboardPrefix)
		if name == "" || name == "index.html" || strings.Contains(name, "/") {
			notFound(w, r) // no directory listings; the page is at "/"
			return
		}
		pageHeaders(w.Header())
		static.ServeHTTP(w, r)
	})
	return page, files
}

// pageHeaders keeps the dashboard to its own files: no script, style or connection from
// anywhere else, no framing, no referrer.
func pageHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
		"connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
}

// openToAll says whether path is served without the admin token: the health checks and the
// dashboard's page and files, which hold no data.
func openToAll(path string) bool {
	return path == "/healthz" || path == "/readyz" || path == "/" || strings.HasPrefix(path, dashboardPrefix)
}
