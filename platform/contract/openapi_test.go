package contract

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

func TestOpenAPIDocumentLoads(t *testing.T) {
	if !bytes.HasPrefix(OpenAPI(), []byte("openapi: 3.0.3\n")) {
		t.Fatalf("OpenAPI() does not start with the 3.0.3 header")
	}
	doc, err := LoadOpenAPI()
	if err != nil {
		t.Fatalf("LoadOpenAPI: %v", err)
	}
	if doc.OpenAPI != "3.0.3" {
		t.Errorf("openapi = %q, want 3.0.3", doc.OpenAPI)
	}
	// Every operation has an id (errors name it) and every error is a problem.
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if op.OperationID == "" {
				t.Errorf("%s %s has no operationId", method, path)
			}
			for status, resp := range op.Responses.Map() {
				code, _ := strconv.Atoi(status)
				_, isProblem := resp.Value.Content[problemJSON]
				_, isJSON := resp.Value.Content["application/json"]
				if len(resp.Value.Content) != 1 || (code >= 400) != isProblem || (code < 400) != isJSON {
					t.Errorf("%s %s %s: content %v: errors must be only %s, successes only application/json",
						method, path, status, mapKeys(resp.Value.Content), problemJSON)
				}
			}
		}
	}
}

const (
	customerJSON    = `{"id":"c1","name":"Ada","email":"ada@example.test","credit_limit_cents":10000,"created_at":"2024-05-01T10:00:00.000Z"}`
	itemJSON        = `{"sku":"TEA-1","name":"Tea","price_cents":450,"on_hand":10,"reserved":2,"available":8,"version":3,"updated_at":"2024-05-01T08:00:00.123Z"}`
	paymentJSON     = `{"id":"p1","customer_id":"c1","amount_cents":900,"reference":"order o1","status":"captured","created_at":"2024-05-01T10:00:00.000Z"}`
	refundedJSON    = `{"id":"p1","customer_id":"c1","amount_cents":900,"reference":"order o1","status":"refunded","created_at":"2024-05-01T10:00:00.000Z","refunded_at":"2024-05-01T11:00:00.000Z"}`
	orderJSON       = `{"id":"o1","customer_id":"c1","status":"placed","total_cents":900,"payment_id":"p1","lines":[{"sku":"TEA-1","quantity":2,"unit_price_cents":450}],"created_at":"2024-05-01T10:00:00.000Z"}`
	reservationJSON = `{"order_id":"o1","state":"committed","lines":[{"sku":"TEA-1","quantity":2,"unit_price_cents":450}],"updated_at":"2024-05-01T10:00:00.000Z"}`
	problem404      = `{"type":"about:blank","title":"Not Found","status":404,"detail":"customer c1 not found","instance":"/api/customers/c1","code":"customer_not_found"}`
	problem400      = `{"type":"about:blank","title":"Bad Request","status":400,"code":"invalid_request","errors":[{"field":"email","message":"must contain @"}]}`
)

const (
	ctJSON    = "application/json"
	ctProblem = "application/problem+json"
)

// exchange is one hand-written HTTP exchange for the validator.
type exchange struct {
	name       string
	method     string
	url        string
	reqHeader  http.Header // Content-Type application/json is added when reqBody is set
	reqBody    string
	status     int
	respCT     string
	respHeader http.Header
	respBody   string
	onlyResp   bool   // use CheckResponse (the request is invalid on purpose)
	wantErr    string // "" means valid; otherwise a substring of the error
}

func TestOpenAPIValidatorCheck(t *testing.T) {
	v, err := NewValidator()
	if err != nil {
		t.Fatalf("NewValidator: %v", err)
	}
	tests := []exchange{
		// Valid exchanges.
		{name: "health", method: "GET", url: "/healthz", status: 200, respCT: ctJSON, respBody: `{"status":"ok"}`},
		{name: "create customer", method: "POST", url: "/api/customers",
			reqBody: `{"name":"Ada","email":"ada@example.test","credit_limit_cents":10000}`,
			status:  201, respCT: ctJSON, respBody: customerJSON},
		{name: "json with charset", method: "GET", url: "http://shop.test:8080/api/customers/c1",
			status: 200, respCT: "application/json; charset=UTF-8", respBody: customerJSON},
		{name: "customer not found", method: "GET", url: "/api/customers/c1",
			status: 404, respCT: ctProblem, respBody: problem404},
		{name: "validation problem with field errors", method: "POST", url: "/api/customers",
			reqBody: `{"name":"Ada","email":"ada.example.test","credit_limit_cents":10000}`, onlyResp: true,
			status: 400, respCT: ctProblem, respBody: problem400},
		{name: "list items", method: "GET", url: "/api/inventory/items",
			status: 200, respCT: ctJSON, respBody: `{"items":[` + itemJSON + `]}`},
		{name: "restock", method: "POST", url: "/api/inventory/items/TEA-1/restock", reqBody: `{"quantity":5}`,
			status: 200, respCT: ctJSON, respBody: itemJSON},
		{name: "reservation state conflict", method: "POST", url: "/api/inventory/reservations/o1/commit",
			status: 409, respCT: ctProblem,
			respBody: `{"type":"about:blank","title":"Conflict","status":409,"code":"reservation_state"}`},
		{name: "payment with key, replayed", method: "POST", url: "/api/payments",
			reqHeader: http.Header{"Idempotency-Key": {"k-1 ok"}},
			reqBody:   `{"customer_id":"c1","amount_cents":900,"reference":"order o1"}`,
			status:    201, respCT: ctJSON, respHeader: http.Header{"Idempotent-Replayed": {"true"}}, respBody: paymentJSON},
		{name: "payment without key", method: "POST", url: "/api/payments",
			reqBody: `{"customer_id":"c1","amount_cents":900,"reference":"order o1"}`,
			status:  503, respCT: ctProblem,
			respBody: `{"type":"about:blank","title":"Service Unavailable","status":503,"code":"gateway_unavailable"}`},
		{name: "refunded payment", method: "GET", url: "/api/payments/p1",
			status: 200, respCT: ctJSON, respBody: refundedJSON},
		{name: "place order", method: "POST", url: "/api/orders",
			reqHeader: http.Header{"Idempotency-Key": {"abc"}},
			reqBody:   `{"customer_id":"c1","lines":[{"sku":"TEA-1","quantity":2}]}`,
			status:    201, respCT: ctJSON, respBody: orderJSON},
		{name: "order key in flight", method: "POST", url: "/api/orders",
			reqHeader: http.Header{"Idempotency-Key": {"abc"}},
			reqBody:   `{"customer_id":"c1","lines":[{"sku":"TEA-1","quantity":2}]}`,
			status:    409, respCT: ctProblem,
			respBody: `{"type":"about:blank","title":"Conflict","status":409,"code":"idempotency_in_flight"}`},
		{name: "list orders", method: "GET", url: "/api/orders?customer_id=c1",
			status: 200, respCT: ctJSON, respBody: `{"orders":[` + orderJSON + `]}`},
		{name: "list orders, a page", method: "GET", url: "/api/orders?customer_id=c1&limit=200&cursor=abc",
			status: 200, respCT: ctJSON, respBody: `{"orders":[` + orderJSON + `],"next_cursor":"def"}`},
		{name: "list customers by email", method: "GET", url: "/api/customers?email=ada@example.test",
			status: 200, respCT: ctJSON, respBody: `{"customers":[` + customerJSON + `]}`},
		{name: "list items, a page", method: "GET", url: "/api/inventory/items?limit=1",
			status: 200, respCT: ctJSON, respBody: `{"items":[` + itemJSON + `],"next_cursor":"x"}`},
		{name: "priced reservation", method: "GET", url: "/api/inventory/reservations/o1",
			status: 200, respCT: ctJSON, respBody: reservationJSON},
		{name: "release committed", method: "POST", url: "/api/inventory/reservations/o1/release",
			status: 409, respCT: ctProblem,
			respBody: `{"type":"about:blank","title":"Conflict","status":409,"code":"reservation_committed"}`},
		{name: "return", method: "POST", url: "/api/inventory/reservations/o1/return",
			status: 200, respCT: ctJSON, respBody: strings.Replace(reservationJSON, "committed", "returned", 1)},
		{name: "order total over the limit", method: "POST", url: "/api/orders",
			reqBody: `{"customer_id":"c1","lines":[{"sku":"TEA-1","quantity":1000000}]}`,
			status:  422, respCT: ctProblem,
			respBody: `{"type":"about:blank","title":"Unprocessable Entity","status":422,"code":"limit_exceeded","errors":[{"field":"lines","message":"too much"}]}`},
		{name: "restock over the limit", method: "POST", url: "/api/inventory/items/TEA-1/restock", reqBody: `{"quantity":1000000000}`,
			status: 422, respCT: ctProblem,
			respBody: `{"type":"about:blank","title":"Unprocessable Entity","status":422,"code":"limit_exceeded"}`},
		{name: "slow body", method: "POST", url: "/api/customers", onlyResp: true,
			status: 408, respCT: ctProblem,
			respBody: `{"type":"about:blank","title":"Request Timeout","status":408,"code":"body_timeout"}`},
		{name: "list orders without customer, response only", method: "GET", url: "/api/orders", onlyResp: true,
			status: 400, respCT: ctProblem, respBody: problem400},

		// Responses that break the contract.
		{name: "missing required field", method: "GET", url: "/api/customers/c1", status: 200, respCT: ctJSON,
			respBody: `{"id":"c1","name":"Ada","email":"ada@example.test","credit_limit_cents":10000}`,
			wantErr:  `property "created_at" is missing`},
		{name: "extra field", method: "GET", url: "/api/customers/c1", status: 200, respCT: ctJSON,
			respBody: strings.Replace(customerJSON, `{`, `{"balance_cents":0,`, 1),
			wantErr:  `property "balance_cents" is unsupported`},
		{name: "wrong type", method: "GET", url: "/api/customers/c1", status: 200, respCT: ctJSON,
			respBody: strings.Replace(customerJSON, `10000`, `"10000"`, 1),
			wantErr:  `credit_limit_cents`},
		{name: "fractional quantity", method: "GET", url: "/api/inventory/items/TEA-1", status: 200, respCT: ctJSON,
			respBody: strings.Replace(itemJSON, `"on_hand":10`, `"on_hand":1.5`, 1),
			wantErr:  `on_hand`},
		{name: "bad enum", method: "GET", url: "/api/orders/o1", status: 200, respCT: ctJSON,
			respBody: strings.Replace(orderJSON, `"placed"`, `"shipped"`, 1),
			wantErr:  `status`},
		{name: "reservation line without its price", method: "GET", url: "/api/inventory/reservations/o1", status: 200, respCT: ctJSON,
			respBody: strings.Replace(reservationJSON, `,"unit_price_cents":450`, ``, 1),
			wantErr:  `unit_price_cents`},
		{name: "stock beyond 32 bits", method: "GET", url: "/api/inventory/items/TEA-1", status: 200, respCT: ctJSON,
			respBody: strings.Replace(itemJSON, `"on_hand":10`, `"on_hand":3000000000`, 1),
			wantErr:  `on_hand`},
		{name: "money beyond 2^53-1", method: "GET", url: "/api/orders/o1", status: 200, respCT: ctJSON,
			respBody: strings.Replace(orderJSON, `"total_cents":900`, `"total_cents":9007199254740992`, 1),
			wantErr:  `total_cents`},
		{name: "nanosecond timestamp", method: "GET", url: "/api/inventory/items/TEA-1", status: 200, respCT: ctJSON,
			respBody: strings.Replace(itemJSON, `08:00:00.123Z`, `08:00:00.123456789Z`, 1),
			wantErr:  `updated_at`},
		{name: "timestamp not in UTC", method: "GET", url: "/api/inventory/items/TEA-1", status: 200, respCT: ctJSON,
			respBody: strings.Replace(itemJSON, `08:00:00.123Z`, `10:00:00.123+02:00`, 1),
			wantErr:  `updated_at`},
		{name: "page over the limit", method: "GET", url: "/api/orders?customer_id=c1", status: 200, respCT: ctJSON,
			respBody: `{"orders":[` + strings.TrimSuffix(strings.Repeat(orderJSON+",", 201), ",") + `]}`,
			wantErr:  `orders`},
		{name: "bad timestamp", method: "GET", url: "/api/payments/p1", status: 200, respCT: ctJSON,
			respBody: strings.Replace(refundedJSON, `"2024-05-01T11:00:00.000Z"`, `"yesterday"`, 1),
			wantErr:  `refunded_at`},
		{name: "null optional timestamp", method: "GET", url: "/api/orders/o1", status: 200, respCT: ctJSON,
			respBody: strings.TrimSuffix(orderJSON, `}`) + `,"cancelled_at":null}`,
			wantErr:  `cancelled_at`},
		{name: "undocumented status", method: "GET", url: "/api/customers/c1", status: 409, respCT: ctProblem,
			respBody: `{"type":"about:blank","title":"Conflict","status":409}`,
			wantErr:  `status is not supported`},
		{name: "undocumented 500", method: "POST", url: "/api/inventory/items/TEA-1/restock", reqBody: `{"quantity":1}`,
			status: 500, respCT: ctProblem, respBody: `{"type":"about:blank","title":"Internal Server Error","status":500}`,
			wantErr: `status is not supported`},
		{name: "error as plain json", method: "GET", url: "/api/customers/c1", status: 404, respCT: ctJSON,
			respBody: problem404, wantErr: `response header Content-Type has unexpected value`},
		{name: "success as problem", method: "GET", url: "/api/customers/c1", status: 200, respCT: ctProblem,
			respBody: customerJSON, wantErr: `response header Content-Type has unexpected value`},
		{name: "no content type", method: "GET", url: "/api/customers/c1", status: 200,
			respBody: customerJSON, wantErr: `response header Content-Type has unexpected value`},
		{name: "wrong problem code", method: "GET", url: "/api/customers/c1", status: 404, respCT: ctProblem,
			respBody: strings.Replace(problem404, `customer_not_found`, `not_found`, 1), wantErr: `code`},
		{name: "problem status differs", method: "GET", url: "/api/customers/c1", status: 404, respCT: ctProblem,
			respBody: strings.Replace(problem404, `"status":404`, `"status":400`, 1),
			wantErr:  `problem status 400 differs from HTTP status 404`},
		{name: "problem without title", method: "POST", url: "/api/customers", reqBody: `{}`, onlyResp: true,
			status: 400, respCT: ctProblem, respBody: `{"type":"about:blank","status":400}`,
			wantErr: `property "title" is missing`},
		{name: "bad replay header", method: "POST", url: "/api/payments",
			reqBody: `{"customer_id":"c1","amount_cents":900,"reference":"order o1"}`,
			status:  201, respCT: ctJSON, respHeader: http.Header{"Idempotent-Replayed": {"yes"}}, respBody: paymentJSON,
			wantErr: `Idempotent-Replayed`},
		{name: "empty body", method: "GET", url: "/api/orders/o1", status: 200, respCT: ctJSON,
			wantErr: `failed to decode response body`},

		// Requests that break the contract (Check, not CheckResponse).
		{name: "unknown request field", method: "POST", url: "/api/customers",
			reqBody: `{"name":"Ada","email":"ada@example.test","credit_limit_cents":1,"vip":true}`,
			status:  201, respCT: ctJSON, respBody: customerJSON,
			wantErr: `createCustomer`},
		{name: "missing query param", method: "GET", url: "/api/orders",
			status: 400, respCT: ctProblem, respBody: problem400,
			wantErr: `parameter "customer_id" in query has an error`},
		{name: "key too long", method: "POST", url: "/api/orders",
			reqHeader: http.Header{"Idempotency-Key": {strings.Repeat("k", 256)}},
			reqBody:   `{"customer_id":"c1","lines":[{"sku":"TEA-1","quantity":2}]}`,
			status:    201, respCT: ctJSON, respBody: orderJSON,
			wantErr: `Idempotency-Key`},
		{name: "bad sku in body", method: "POST", url: "/api/inventory/items",
			reqBody: `{"sku":"tea","name":"Tea","price_cents":1,"on_hand":1}`,
			status:  201, respCT: ctJSON, respBody: itemJSON,
			wantErr: `sku`},
		{name: "quantity over the limit", method: "POST", url: "/api/orders",
			reqBody: `{"customer_id":"c1","lines":[{"sku":"TEA-1","quantity":72057594037927937}]}`,
			status:  201, respCT: ctJSON, respBody: orderJSON,
			wantErr: `quantity`},
		{name: "limit over the maximum", method: "GET", url: "/api/orders?customer_id=c1&limit=201",
			status: 200, respCT: ctJSON, respBody: `{"orders":[]}`,
			wantErr: `parameter "limit" in query has an error`},
		{name: "too many lines", method: "POST", url: "/api/orders",
			reqBody: `{"customer_id":"c1","lines":[` + strings.TrimSuffix(strings.Repeat(`{"sku":"A","quantity":1},`, 101), ",") + `]}`,
			status:  201, respCT: ctJSON, respBody: orderJSON,
			wantErr: `lines`},
		{name: "body where none is documented", method: "POST", url: "/api/orders/o1/cancel", reqBody: `{}`,
			status: 200, respCT: ctJSON, respBody: orderJSON,
			wantErr: `request body not allowed`},
		{name: "unknown path", method: "GET", url: "/api/widgets", status: 200, respCT: ctJSON, respBody: `{}`,
			wantErr: `GET /api/widgets: no documented operation`},
		{name: "unknown method", method: "DELETE", url: "/api/customers/c1", status: 204,
			wantErr: `no documented operation`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.check(t, v)
			if err != nil {
				t.Logf("got: %v", err)
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("want valid, got: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("want error containing %q, got none", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("want error containing %q, got: %v", tt.wantErr, err)
			}
		})
	}
}

func (tt exchange) check(t *testing.T, v *Validator) error {
	t.Helper()
	var body *bytes.Reader
	if tt.reqBody != "" {
		body = bytes.NewReader([]byte(tt.reqBody))
	} else {
		body = bytes.NewReader(nil)
	}
	req := httptest.NewRequest(tt.method, tt.url, body)
	for k, vs := range tt.reqHeader {
		req.Header[k] = vs
	}
	if tt.reqBody != "" {
		req.Header.Set("Content-Type", ctJSON)
	}
	header := http.Header{}
	for k, vs := range tt.respHeader {
		header[k] = vs
	}
	if tt.respCT != "" {
		header.Set("Content-Type", tt.respCT)
	}
	if tt.onlyResp {
		return v.CheckResponse(t.Context(), req, tt.status, header, []byte(tt.respBody))
	}
	err := v.Check(t.Context(), req, []byte(tt.reqBody), tt.status, header, []byte(tt.respBody))
	// Check must leave the caller's request body unread.
	if n, _ := req.Body.Read(make([]byte, 1)); tt.reqBody != "" && n == 0 {
		t.Errorf("Check consumed the caller's request body")
	}
	return err
}

func TestOpenAPIValidatorConcurrent(t *testing.T) {
	v, err := NewValidator()
	if err != nil {
		t.Fatalf("NewValidator: %v", err)
	}
	header := http.Header{"Content-Type": {ctJSON}}
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i := range 32 {
		wg.Go(func() {
			reqBody := []byte(`{"customer_id":"c1","lines":[{"sku":"TEA-1","quantity":2}]}`)
			req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, "http://shop.test/api/orders", bytes.NewReader(reqBody))
			if err != nil {
				errs <- err
				return
			}
			req.Header.Set("Content-Type", ctJSON)
			req.Header.Set("Idempotency-Key", fmt.Sprintf("key-%d", i))
			errs <- v.Check(context.Background(), req, reqBody, http.StatusCreated, header, []byte(orderJSON))
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// endpointRow is one row of the endpoint table in docs/api.md.
type endpointRow struct {
	method string
	paths  []string
	// statuses maps every documented status to the problem codes named for it.
	statuses map[int][]string
}

var (
	// apiDocPath is the prose contract, relative to this package.
	apiDocPath   = "../../docs/api.md"
	statusOrCode = regexp.MustCompile("\\b([1-5][0-9][0-9])\\b|`([a-z_]+)`")
	httpMethods  = []string{"GET", "POST", "PUT", "PATCH", "DELETE"}
)

// readEndpointTable parses the rows `| METHOD | path | body | success | errors |` of the
// markdown table in docs/api.md.
func readEndpointTable(t *testing.T) []endpointRow {
	t.Helper()
	f, err := os.Open(apiDocPath)
	if err != nil {
		t.Fatalf("opening docs/api.md: %v", err)
	}
	defer f.Close()
	var rows []endpointRow
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		cells := strings.Split(strings.TrimSpace(sc.Text()), "|")
		if len(cells) != 7 || cells[0] != "" || cells[6] != "" {
			continue
		}
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if !slices.Contains(httpMethods, cells[1]) {
			continue // header or separator
		}
		row := endpointRow{method: cells[1], statuses: map[int][]string{}}
		for p := range strings.SplitSeq(cells[2], ",") {
			p, _, _ = strings.Cut(strings.TrimSpace(p), "?")
			row.paths = append(row.paths, p)
		}
		// "201 Customer" and "400, 404 `a` / `b`, 409 `c`": a code belongs to the status before it.
		last := 0
		for _, m := range statusOrCode.FindAllStringSubmatch(cells[4]+", "+cells[5], -1) {
			if m[1] != "" {
				last, _ = strconv.Atoi(m[1])
				if _, seen := row.statuses[last]; !seen {
					row.statuses[last] = nil // the status is listed, with no code named yet
				}
				continue
			}
			if last == 0 {
				t.Errorf("docs/api.md %s %s: code %q before any status", row.method, cells[2], m[2])
				continue
			}
			row.statuses[last] = append(row.statuses[last], m[2])
		}
		rows = append(rows, row)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading docs/api.md: %v", err)
	}
	if len(rows) == 0 {
		t.Fatalf("docs/api.md: no endpoint rows found")
	}
	return rows
}

func TestOpenAPIOperationsMatchDocs(t *testing.T) {
	v, err := NewValidator()
	if err != nil {
		t.Fatalf("NewValidator: %v", err)
	}
	rows := readEndpointTable(t)
	var documented []string
	for _, row := range rows {
		for _, p := range row.paths {
			documented = append(documented, row.method+" "+p)
		}
	}
	specified := v.Operations()
	for _, op := range documented {
		if !slices.Contains(specified, op) {
			t.Errorf("%s is in docs/api.md but not in openapi.yaml", op)
		}
	}
	for _, op := range specified {
		if !slices.Contains(documented, op) {
			t.Errorf("%s is in openapi.yaml but not in docs/api.md", op)
		}
	}
	if len(documented) != len(specified) {
		t.Errorf("docs/api.md lists %d operations (duplicates?), openapi.yaml %d", len(documented), len(specified))
	}
}

// TestOpenAPIStatusesMatchDocs checks that every status and problem code in the docs' endpoint
// table is in the spec, and that the spec adds only the generic errors the conventions promise.
func TestOpenAPIStatusesMatchDocs(t *testing.T) {
	doc, err := LoadOpenAPI()
	if err != nil {
		t.Fatalf("LoadOpenAPI: %v", err)
	}
	for _, row := range readEndpointTable(t) {
		for _, path := range row.paths {
			name := row.method + " " + path
			item := doc.Paths.Value(path)
			if item == nil || item.GetOperation(row.method) == nil {
				continue // reported by TestOpenAPIOperationsMatchDocs
			}
			op := item.GetOperation(row.method)
			generic := map[int]bool{}
			if op.RequestBody != nil {
				generic[400], generic[408], generic[413], generic[415] = true, true, true, true
			}
			idempotent := hasHeaderParam(op, "Idempotency-Key")
			if idempotent {
				generic[409], generic[422] = true, true
			}
			for status, codes := range row.statuses {
				resp := op.Responses.Status(status)
				if resp == nil {
					t.Errorf("%s: docs list %d, openapi.yaml does not", name, status)
					continue
				}
				enum := codeEnum(resp.Value)
				for _, c := range codes {
					if !slices.Contains(enum, c) {
						t.Errorf("%s %d: docs name code %q, openapi.yaml allows %q", name, status, c, enum)
					}
				}
			}
			for s, resp := range op.Responses.Map() {
				status, _ := strconv.Atoi(s)
				if _, ok := row.statuses[status]; !ok && !generic[status] {
					t.Errorf("%s: openapi.yaml lists %d, docs/api.md does not", name, status)
				}
				if idempotent && status == 409 && !slices.Contains(codeEnum(resp.Value), "idempotency_in_flight") {
					t.Errorf("%s 409: must allow idempotency_in_flight", name)
				}
				if idempotent && status == 422 && !slices.Contains(codeEnum(resp.Value), "idempotency_key_reused") {
					t.Errorf("%s 422: must allow idempotency_key_reused", name)
				}
			}
		}
	}
}

func hasHeaderParam(op *openapi3.Operation, name string) bool {
	return op.Parameters.GetByInAndName(openapi3.ParameterInHeader, name) != nil
}

// codeEnum returns the problem codes a response allows, from the allOf parts of its schema.
func codeEnum(resp *openapi3.Response) []string {
	mt := resp.Content.Get(problemJSON)
	if mt == nil || mt.Schema == nil {
		return nil
	}
	var enum []string
	for _, part := range append(openapi3.SchemaRefs{mt.Schema}, mt.Schema.Value.AllOf...) {
		if code := part.Value.Properties["code"]; code != nil {
			for _, e := range code.Value.Enum {
				enum = append(enum, fmt.Sprint(e))
			}
		}
	}
	return enum
}

func mapKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
