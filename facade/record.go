package facade

import (
	"encoding/base64"
	"log/slog"
	"net/http"
	"slices"
	"unicode/utf8"

	"github.com/ficus-project/ficus/platform/compare/scenario"
	"github.com/ficus-project/ficus/platform/config"
)

// recordQueue bounds the recorded requests waiting to be written: the request path only
// hands a line over, and drops it (counted) when the writer is behind.
const recordQueue = 1024

// recordLine is a recorded request on its way to the file.
type recordLine struct {
	path string // the file
	max  config.ByteSize
	rec  scenario.Recorded
}

// records says whether the table records requests with method, and draws the sample.
func (f *Facade) records(t *table, method string) bool {
	return t.recordFile != "" && slices.Contains(t.record.Methods, method) && f.chance(*t.record.Sample)
}

// recordRequest hands a request to the recording writer; secrets are redacted and hop-by-hop
// headers dropped first.
func (f *Facade) recordRequest(t *table, r *http.Request, cleanPath string, body []byte) {
	h := r.Header.Clone()
	removeHopByHop(h)
	line := &recordLine{path: t.recordFile, max: t.record.MaxBytes, rec: scenario.Recorded{Time: f.now().UTC(), Method: r.Method,
		Path: cleanPath, Query: r.URL.RawQuery, Header: redact(h, append([]string{t.overrideHeader}, t.shadow.RedactHeaders...))}}
	if len(body) > 0 {
		if utf8.Valid(body) {
			line.rec.Body = string(body)
		} else {
			line.rec.BodyBase64 = base64.StdEncoding.EncodeToString(body)
		}
	}
	select {
	case f.recordQueue <- line:
	default:
		f.metrics.recorded.WithLabelValues("dropped").Inc()
	}
}

// startRecorder writes recorded requests until the facade's life ends.
func (f *Facade) startRecorder() {
	f.recordQueue = make(chan *recordLine, recordQueue)
	f.checkers.Add(1)
	go func() {
		defer f.checkers.Done()
		var file *jsonLines
		defer func() {
			if file != nil {
				_ = file.close()
			}
		}()
		for {
			select {
			case <-f.life.Done():
				return
			case l := <-f.recordQueue:
				if file == nil || file.path != l.path {
					if file != nil {
						_ = file.close()
					}
					file = &jsonLines{path: l.path}
				}
				if err := file.write(l.rec, int64(l.max)); err != nil {
					f.logs.log(f.log, slog.LevelError, "record/write", "recording traffic failed", "path", l.path, "err", err)
					f.metrics.recorded.WithLabelValues("dropped").Inc()
					continue
				}
				f.metrics.recorded.WithLabelValues("recorded").Inc()
			}
		}
	}()
}
