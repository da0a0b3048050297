package main

import (
	"strings"
	"testing"
)

// A govulncheck -format json stream, cut down: one advisory called, one only imported, one
// called and excused.
const stream = `{"config":{"go_version":"go1.26.8","scan_level":"symbol"}}
{"progress":{"message":"Fetching vulnerabilities from the database..."}}
{"osv":{"id":"GO-2026-0001","summary":"HTTP/1 desync in net/http"}}
{"osv":{"id":"GO-2026-0002","summary":"bad parse in x/text"}}
{"osv":{"id":"GO-2026-0003","summary":"proxy middleware in echo"}}
{"finding":{"osv":"GO-2026-0001","fixed_version":"v1.26.9","trace":[{"module":"stdlib","package":"net/http","function":"Serve"},{"module":"github.com/ficus-project/ficus","function":"run"}]}}
{"finding":{"osv":"GO-2026-0002","trace":[{"module":"golang.org/x/text","package":"golang.org/x/text/encoding"}]}}
{"finding":{"osv":"GO-2026-0003","trace":[{"module":"github.com/labstack/echo/v4","package":"github.com/labstack/echo/v4","function":"New"}]}}
{"finding":{"osv":"GO-2026-0003","trace":[{"module":"github.com/labstack/echo/v4"}]}}
`

func TestJudgeFailsOnACalledSymbolNotExcused(t *testing.T) {
	rep, err := parseReport(strings.NewReader(stream))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	err = rep.judge(map[string]string{"GO-2026-0003": "not used", "GO-2026-9999": "stale"}, "v0", &out)
	if err == nil || !strings.Contains(err.Error(), "GO-2026-0001") || strings.Contains(err.Error(), "GO-2026-0003") {
		t.Fatalf("judge = %v: want a failure naming GO-2026-0001 only", err)
	}
	for _, want := range []string{
		"CALLED   GO-2026-0001  HTTP/1 desync in net/http (fixed in: v1.26.9)",
		"excused  GO-2026-0003  proxy middleware in echo (fixed in: none)",
		"GO-2026-9999 is in the ignore file but not called",
		"(vulndb v0, go1.26.8): 2 advisories called, 1 excused; 1 more in dependencies but not called",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestJudgePassesWhenEveryCallIsExcused(t *testing.T) {
	rep, err := parseReport(strings.NewReader(stream))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := rep.judge(map[string]string{"GO-2026-0001": "r", "GO-2026-0003": "r"}, "v0", &out); err != nil {
		t.Fatalf("judge = %v, want nil:\n%s", err, out.String())
	}
}

func TestParseReportRejectsGarbage(t *testing.T) {
	if _, err := parseReport(strings.NewReader(`{"config":{}}` + "\nnot json")); err == nil {
		t.Fatal("parseReport accepted a stream that is not JSON")
	}
}

func TestParseIgnore(t *testing.T) {
	got, err := parseIgnore(strings.NewReader("# comment\n\nGO-2026-0001 not reachable # trailing\n"), "f")
	if err != nil || got["GO-2026-0001"] != "not reachable" || len(got) != 1 {
		t.Fatalf("parseIgnore = %v, %v", got, err)
	}
	_, err = parseIgnore(strings.NewReader("GO-2026-0001\nCVE-2026-1 reason\n"), "f")
	if err == nil || !strings.Contains(err.Error(), "f:1: GO-2026-0001 has no reason") || !strings.Contains(err.Error(), "f:2:") {
		t.Fatalf("parseIgnore of bad lines = %v", err)
	}
}
