package resilience

import (
	"io"
	"net/http"
	"strings"
)

func okResponse(req *http.Request, status int, body string) *http.Response {
	return &http.Response{
		StatusCode: status,
		Header:     http.Header{},
		Body:       io.NopCloser(strings.NewReader(body)),
		Request:    req,
	}
}

func newReq(method, body string) *http.Request {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://backend.test/x", r)
	if err != nil {
		panic(err)
	}
	// Like a server-side request: no GetBody.
	req.GetBody = nil
	return req
}
