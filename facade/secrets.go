package facade

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/ficus-project/ficus/platform/compare"
	"github.com/ficus-project/ficus/platform/compare/scenario"
)

// secretWords mark a JSON field whose value a diff sample never shows: any field whose name
// holds one of them, in any case ("password", "client_secret", "accessToken").
var secretWords = []string{"password", "passwd", "secret", "token", "apikey", "api_key", "credential"}

// isSecretName reports whether a JSON field or pointer segment names a secret.
func isSecretName(name string) bool {
	name = strings.ToLower(name)
	for _, w := range secretWords {
		if strings.Contains(name, w) {
			return true
		}
	}
	return false
}

// redactBody returns b with the value of every secret-named field of a JSON body replaced
// by "[redacted]"; other bodies, and JSON without such fields, come back as they are.
func redactBody(b []byte) []byte {
	if len(b) == 0 || !json.Valid(b) || !bytes.ContainsAny(b, "\"") {
		return b
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber() // keep numbers as written
	var v any
	if err := dec.Decode(&v); err != nil || !redactValue(v) {
		return b
	}
	out, err := json.Marshal(v)
	if err != nil {
		return b
	}
	return out
}

// redactValue replaces secret-named fields' values in v, and reports whether it did.
func redactValue(v any) bool {
	changed := false
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if isSecretName(k) {
				v[k] = scenario.Redacted
				changed = true
			} else if redactValue(e) {
				changed = true
			}
		}
	case []any:
		for _, e := range v {
			if redactValue(e) {
				changed = true
			}
		}
	}
	return changed
}

// redactDifferences blanks the values of differences in secret-named body fields and in
// redacted headers.
func redactDifferences(ds []compare.Difference, extraHeaders []string) []compare.Difference {
	out := ds
	for i, d := range ds {
		secret := false
		if d.Part == compare.PartHeader {
			secret = isRedactedHeader(d.Path, extraHeaders)
		} else {
			for _, seg := range strings.Split(d.Path, "/") {
				if isSecretName(seg) {
					secret = true
					break
				}
			}
		}
		if !secret {
			continue
		}
		if &out[0] == &ds[0] {
			out = append([]compare.Difference(nil), ds...)
		}
		if out[i].A != "" {
			out[i].A = scenario.Redacted
		}
		if out[i].B != "" {
			out[i].B = scenario.Redacted
		}
	}
	return out
}

// isRedactedHeader reports whether a report never shows header name's values.
func isRedactedHeader(name string, extra []string) bool {
	for _, list := range [][]string{alwaysRedacted, extra} {
		for _, k := range list {
			if http.CanonicalHeaderKey(k) == http.CanonicalHeaderKey(name) {
				return true
			}
		}
	}
	return false
}
