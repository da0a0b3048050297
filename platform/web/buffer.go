package web

import (
	"bytes"
	"net/http"
)

// ResponseBuffer is an http.ResponseWriter that holds a response — its header, status and
// body — until the caller decides to send it: once a transaction has committed (the
// idempotency middleware stores what it holds) or rolled back (a dry run). Make one with
// NewResponseBuffer.
type ResponseBuffer struct {
	header http.Header
	status int
	body   bytes.Buffer
}

// NewResponseBuffer returns an empty buffer.
func NewResponseBuffer() *ResponseBuffer { return &ResponseBuffer{header: http.Header{}} }

// Header is the held response's header.
func (b *ResponseBuffer) Header() http.Header { return b.header }

// WriteHeader holds status; only the first call counts, as with a connection.
func (b *ResponseBuffer) WriteHeader(status int) {
	if b.status == 0 {
		b.status = status
	}
}

// Write holds p as part of the body (the status is 200 if none was written).
func (b *ResponseBuffer) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}

// Status is the held status: 200 if nothing set one.
func (b *ResponseBuffer) Status() int {
	if b.status == 0 {
		return http.StatusOK
	}
	return b.status
}

// Body is the held body. It is valid until the next Write.
func (b *ResponseBuffer) Body() []byte { return b.body.Bytes() }

// Send writes the held response to w: its header values over w's, then its status and body.
func (b *ResponseBuffer) Send(w http.ResponseWriter) error {
	h := w.Header()
	for k, v := range b.header {
		h[k] = v
	}
	w.WriteHeader(b.Status())
	_, err := w.Write(b.body.Bytes())
	return err
}
