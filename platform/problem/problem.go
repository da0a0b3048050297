// Package problem writes RFC 9457 problem details (application/problem+json), the one error
// shape every Ficus HTTP surface speaks: the monolith, the extracted services and the facade.
package problem

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// ContentType is the media type of a problem document.
const ContentType = "application/problem+json"

// FieldError is one invalid input field.
type FieldError struct {
	// Field is the JSON path of the field, as in "lines[0].quantity".
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Problem is an RFC 9457 problem document.
type Problem struct {
	// Type is a URI naming the problem type; "about:blank" when only the status matters.
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	// Instance is the request path the problem arose on.
	Instance string `json:"instance,omitempty"`
	// Code is a stable, machine-readable name for the problem (e.g. insufficient_stock).
	Code string `json:"code,omitempty"`
	// Errors lists invalid fields, for 400s.
	Errors []FieldError `json:"errors,omitempty"`
	// RetryAfter, when positive, is sent as the Retry-After header, in seconds.
	RetryAfter int `json:"-"`
}

// New returns a problem of the given status and code, its type derived from the code.
func New(status int, code, detail string) *Problem {
	return &Problem{
		Type:   "https://ficus.dev/problems/" + code,
		Title:  http.StatusText(status),
		Status: status,
		Code:   code,
		Detail: detail,
	}
}

// Error lets a Problem travel as an error.
func (p *Problem) Error() string {
	if p.Detail != "" {
		return p.Title + ": " + p.Detail
	}
	return p.Title
}

// Write sends p as the response.
func Write(w http.ResponseWriter, r *http.Request, p *Problem) {
	if p.Instance == "" && r != nil {
		p.Instance = r.URL.Path
	}
	h := w.Header()
	h.Set("Content-Type", ContentType)
	h.Set("Cache-Control", "no-store")
	if p.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(p.RetryAfter))
	}
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}
