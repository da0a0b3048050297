package facade

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/ficus-project/ficus/platform/config"
)

// FetchRoutes asks the admin API at adminURL ("http://127.0.0.1:9900") for the live route
// table, authenticating with token.
func FetchRoutes(ctx context.Context, client *http.Client, adminURL, token string) (RouteTable, error) {
	var t RouteTable
	return t, fetchAdmin(ctx, client, adminURL, token, "/api/routes", "routes", &t)
}

// FetchPromotion asks the admin API for every route's promotion stage and gates.
func FetchPromotion(ctx context.Context, client *http.Client, adminURL, token string) ([]RoutePromotion, error) {
	var p []RoutePromotion
	return p, fetchAdmin(ctx, client, adminURL, token, "/api/promotion", "the promotion gates", &p)
}

// FetchConfig asks the admin API for the config serving now (effective, secrets masked).
func FetchConfig(ctx context.Context, client *http.Client, adminURL, token string) (*config.Config, error) {
	var c config.Config
	if err := fetchAdmin(ctx, client, adminURL, token, "/api/config", "the live config", &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// maxAdminAnswer bounds an admin API answer a client reads.
const maxAdminAnswer = 64 << 20

// fetchAdmin GETs path from the admin API and decodes its JSON answer into v.
func fetchAdmin(ctx context.Context, client *http.Client, adminURL, token, path, what string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(adminURL, "/")+path, nil)
	if err != nil {
		return fmt.Errorf("fetching %s: %w", what, err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("fetching %s: %w", what, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return fmt.Errorf("fetching %s: %s: %s", what, resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxAdminAnswer)).Decode(v); err != nil {
		return fmt.Errorf("decoding %s: %w", what, err)
	}
	return nil
}

// WriteRoutes prints t as an aligned text table, one route a line.
func WriteRoutes(w io.Writer, t RouteTable) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "ROUTE\tPATH\tMETHODS\tHEADERS\tBACKEND\tFALLBACK\tSHADOW\tCANARY\tSTAGE\tDIFFS\tBREAKERS\n")
	for _, r := range t.Routes {
		methods := strings.Join(r.Match.Methods, ",")
		var headers []string
		for k, v := range r.Match.Headers {
			headers = append(headers, k+"="+v)
		}
		sort.Strings(headers)
		shadow, canary := "-", "-"
		if r.Shadow != nil {
			shadow = r.Shadow.To
			if r.Shadow.Sample != nil {
				shadow += fmt.Sprintf(" (%g)", *r.Shadow.Sample)
			}
		}
		if r.Canary != nil {
			canary = fmt.Sprintf("%s %g%%", r.Canary.To, r.Canary.Percent)
			if r.RolledBack != nil {
				canary += " ROLLED BACK (" + r.RolledBack.Gate + ")"
				if r.RolledBack.ShareError != "" {
					canary += " IN THIS FACADE ONLY"
				}
			}
		}
		diffs := "-"
		if r.DiffRate != nil {
			diffs = fmt.Sprintf("%.2f%%", 100**r.DiffRate)
		}
		var breakers []string
		for _, name := range slices.Sorted(mapKeys(r.Breakers)) {
			breakers = append(breakers, name+":"+r.Breakers[name])
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.Match.Path, dash(methods),
			dash(strings.Join(headers, ",")), r.To, dash(r.Fallback), shadow, canary, dash(r.Stage), diffs, strings.Join(breakers, " "))
	}
	fmt.Fprintf(tw, "(config generation %d)\n", t.Generation)
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func mapKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}
