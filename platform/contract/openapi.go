package contract

import (
	"bytes"
	"context"
	_ "embed" // for the OpenAPI document
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

//go:embed openapi.yaml
var openAPIDocument []byte

// problemJSON is the media type of every error response.
const problemJSON = "application/problem+json"

// OpenAPI returns the raw OpenAPI 3.0.3 document (YAML) that describes the shop's HTTP API.
// The slice is a copy, so the caller may keep or change it.
func OpenAPI() []byte {
	return bytes.Clone(openAPIDocument)
}

// LoadOpenAPI parses the OpenAPI document and validates it against the OpenAPI 3.0 rules.
func LoadOpenAPI() (*openapi3.T, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(openAPIDocument)
	if err != nil {
		return nil, fmt.Errorf("loading openapi.yaml: %w", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("validating openapi.yaml: %w", err)
	}
	return doc, nil
}

// Validator checks real HTTP exchanges against the OpenAPI document. It is built once with
// NewValidator and is safe for concurrent use; it serves tests of the monolith and of the
// extracted services alike.
type Validator struct {
	router     routers.Router
	operations []string
}

// NewValidator loads the OpenAPI document and builds the router that maps requests to
// operations.
func NewValidator() (*Validator, error) {
	// Body decoders live in a global registry in kin-openapi; it registers problem+json itself.
	// Registering from here would be package-level mutation, so only insist that it is there.
	if openapi3filter.RegisteredBodyDecoder(problemJSON) == nil {
		return nil, fmt.Errorf("building contract validator: kin-openapi has no body decoder for %s", problemJSON)
	}
	doc, err := LoadOpenAPI()
	if err != nil {
		return nil, fmt.Errorf("building contract validator: %w", err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("building contract validator: routing openapi.yaml: %w", err)
	}
	var ops []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			ops = append(ops, method+" "+path)
		}
	}
	slices.Sort(ops)
	return &Validator{router: router, operations: ops}, nil
}

// Operations lists every documented operation as "METHOD /path" (path as templated in the
// document, e.g. "GET /api/orders/{id}"), sorted, for coverage checks.
func (v *Validator) Operations() []string {
	return slices.Clone(v.operations)
}

// Operation names the documented operation req is for, as Operations lists it ("GET
// /api/orders/{id}"), so a test can tell which operations it exercised.
func (v *Validator) Operation(req *http.Request) (string, error) {
	route, _, err := v.router.FindRoute(req)
	if err != nil {
		return "", fmt.Errorf("contract: %s %s: no documented operation: %w", req.Method, req.URL.Path, err)
	}
	return route.Method + " " + route.Path, nil
}

// Check validates the request (method, path, params, body) and the response (status
// documented for that operation, content type, body schema). It returns an error naming the
// operation and what is wrong. reqBody and respBody are the raw bodies (the caller already
// read them); req itself is not consumed or changed.
func (v *Validator) Check(ctx context.Context, req *http.Request, reqBody []byte, status int, header http.Header, respBody []byte) error {
	return v.check(ctx, req, reqBody, true, status, header, respBody)
}

// CheckResponse is Check without the request half: tests that send invalid requests on
// purpose use it to check that the error they get back is still as documented.
func (v *Validator) CheckResponse(ctx context.Context, req *http.Request, status int, header http.Header, respBody []byte) error {
	return v.check(ctx, req, nil, false, status, header, respBody)
}

func (v *Validator) check(ctx context.Context, req *http.Request, reqBody []byte, checkRequest bool, status int, header http.Header, respBody []byte) error {
	route, pathParams, err := v.router.FindRoute(req)
	if err != nil {
		return fmt.Errorf("contract: %s %s: no documented operation: %w", req.Method, req.URL.Path, err)
	}
	op := fmt.Sprintf("%s %s (%s)", route.Method, route.Path, route.Operation.OperationID)

	// Options are copied per call so nothing is shared between concurrent checks.
	opts := &openapi3filter.Options{
		IncludeResponseStatus:             true,
		MultiError:                        true,
		RejectWhenRequestBodyNotSpecified: true,
		SkipSettingDefaults:               true,
		AuthenticationFunc:                openapi3filter.NoopAuthenticationFunc,
	}
	opts.WithCustomSchemaErrorFunc(schemaErrorMessage)
	// The clone carries reqBody, so kin-openapi may read it without touching the caller's request.
	clone := req.Clone(ctx)
	setBody(clone, reqBody)
	reqInput := &openapi3filter.RequestValidationInput{
		Request:    clone,
		PathParams: pathParams,
		Route:      route,
		Options:    opts,
	}

	var errs []error
	if checkRequest {
		if err := openapi3filter.ValidateRequest(ctx, reqInput); err != nil {
			errs = append(errs, fmt.Errorf("request: %w", err))
		}
	}
	if header == nil {
		header = http.Header{}
	}
	respInput := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: reqInput,
		Status:                 status,
		Header:                 header,
		Options:                opts,
	}
	respInput.SetBodyBytes(respBody)
	if err := openapi3filter.ValidateResponse(ctx, respInput); err != nil {
		errs = append(errs, fmt.Errorf("response %d: %w", status, err))
	} else if err := checkProblemStatus(status, header, respBody); err != nil {
		errs = append(errs, fmt.Errorf("response %d: %w", status, err))
	}
	if len(errs) > 0 {
		return fmt.Errorf("contract: %s: %w", op, errors.Join(errs...))
	}
	return nil
}

// setBody makes body the request's body, replayable, whatever the request carried before.
func setBody(req *http.Request, body []byte) {
	req.ContentLength = int64(len(body))
	if len(body) == 0 {
		req.Body, req.GetBody = http.NoBody, nil
		return
	}
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	req.Body, _ = req.GetBody()
}

// checkProblemStatus catches what a schema cannot: a problem whose status disagrees with the
// HTTP status it was sent with. It runs after schema validation, so the body is known to parse.
func checkProblemStatus(status int, header http.Header, body []byte) error {
	mediaType, _, err := mime.ParseMediaType(header.Get("Content-Type"))
	if err != nil || !strings.EqualFold(mediaType, problemJSON) {
		return nil
	}
	var p struct {
		Status int `json:"status"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return fmt.Errorf("decoding problem: %w", err)
	}
	if p.Status != status {
		return fmt.Errorf("problem status %d differs from HTTP status %d", p.Status, status)
	}
	return nil
}

// schemaErrorMessage shortens kin-openapi's schema errors, which by default dump the whole
// schema, to where the value is, what is wrong and (a prefix of) the offending value.
func schemaErrorMessage(err *openapi3.SchemaError) string {
	reason := err.Reason
	switch {
	case err.Origin != nil:
		reason = err.Origin.Error()
	case reason == "":
		reason = fmt.Sprintf("does not match %q", err.SchemaField)
	}
	value, _ := json.Marshal(err.Value)
	if len(value) > 120 {
		value = append(value[:117:117], "..."...)
	}
	return fmt.Sprintf("at %q: %s (value %s)", "/"+strings.Join(err.JSONPointer(), "/"), reason, value)
}
