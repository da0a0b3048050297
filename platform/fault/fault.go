// Package fault gives domain errors a kind (not found, invalid, conflict, …) without tying the
// domain to HTTP. Each module declares its sentinel errors with a kind and a stable code; the
// one place that speaks HTTP (package web) maps kinds to statuses.
package fault

import (
	"errors"
	"fmt"
	"strings"
)

// Kind classifies a domain error.
type Kind int

// Kinds of domain error.
const (
	// Internal is an unexpected failure.
	Internal Kind = iota
	// Invalid input.
	Invalid
	// NotFound is an unknown id.
	NotFound
	// Conflict with the current state (stock, duplicates, state machine).
	Conflict
	// Declined is a refused payment.
	Declined
	// Unavailable is a dependency that is down; the caller may retry.
	Unavailable
	// Unprocessable is a well-formed request whose effect would break a declared limit (an
	// order total, stock on hand): the request, not the server, must change.
	Unprocessable
)

// Error is a domain error with a kind and a stable code.
type Error struct {
	Kind Kind
	// Code is stable and machine-readable: "insufficient_stock".
	Code string
	Msg  string
	// Fields lists the invalid fields of an Invalid error.
	Fields []Field
}

// Field is one invalid input field.
type Field struct {
	Name string
	Msg  string
}

// New returns a sentinel domain error.
func New(kind Kind, code, msg string) *Error {
	return &Error{Kind: kind, Code: code, Msg: msg}
}

func (e *Error) Error() string {
	if len(e.Fields) == 0 {
		return e.Msg
	}
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Name + ": " + f.Msg
	}
	return e.Msg + ": " + strings.Join(parts, "; ")
}

// Is matches errors of the same code, so a sentinel matches its detailed copies.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && t.Kind == e.Kind
}

// Wrapf returns err (a sentinel) with more detail; errors.Is still matches the sentinel.
func Wrapf(err *Error, format string, args ...any) error {
	return &Error{Kind: err.Kind, Code: err.Code, Msg: err.Msg + ": " + fmt.Sprintf(format, args...), Fields: err.Fields}
}

// As returns the domain error in err's chain, if any.
func As(err error) (*Error, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e, true
	}
	return nil, false
}

// ErrInvalid is the sentinel every validation error matches.
var ErrInvalid = New(Invalid, "invalid_request", "invalid request")

// Fields collects invalid fields; its Err is nil when none were added.
type Fields []Field

// Check adds a field error when ok is false.
func (f *Fields) Check(ok bool, name, format string, args ...any) {
	if !ok {
		*f = append(*f, Field{Name: name, Msg: fmt.Sprintf(format, args...)})
	}
}

// Err returns an Invalid error listing the fields, or nil.
func (f Fields) Err() error {
	if len(f) == 0 {
		return nil
	}
	return &Error{Kind: Invalid, Code: ErrInvalid.Code, Msg: ErrInvalid.Msg, Fields: f}
}
