package compare

import (
	"slices"
	"testing"
)

func TestNoiseLearnsRulesFromOneSidesAnswers(t *testing.T) {
	c, err := New(Rules{})
	if err != nil {
		t.Fatal(err)
	}
	a := Response{Status: 200, Header: map[string][]string{"Content-Type": {"application/json"}, "Location": {"/x/1"}},
		Body: []byte(`{"id":"o-1","items":[{"at":"t1","n":1},{"at":"t2","n":2}],"name":"x"}`)}
	b := Response{Status: 200, Header: map[string][]string{"Content-Type": {"application/json"}, "Location": {"/x/2"}},
		Body: []byte(`{"id":"o-2","items":[{"at":"t3","n":1},{"at":"t4","n":2}],"name":"x"}`)}
	var n Noise
	added, unstable := n.Learn(c.Compare(a, b, nil))
	if unstable || !slices.Equal(added, []string{"/id", "/items/*/at", "header:Location"}) {
		t.Fatalf("learnt %v (unstable %v)", added, unstable)
	}
	if again, _ := n.Learn(c.Compare(a, b, nil)); len(again) != 0 || n.Generation() != 1 {
		t.Errorf("learning the same again added %v, generation %d", again, n.Generation())
	}
	learnt, err := New(n.Rules(Rules{}))
	if err != nil {
		t.Fatal(err)
	}
	if res := learnt.Compare(a, b, nil); !res.Equal() {
		t.Fatalf("after learning: %+v", res.Differences)
	}
	// A real difference is still one.
	b.Body = []byte(`{"id":"o-2","items":[{"at":"t3","n":1},{"at":"t4","n":3}],"name":"x"}`)
	if res := learnt.Compare(a, b, nil); len(res.Differences) != 1 || res.Differences[0].Path != "/items/1/n" {
		t.Fatalf("a real difference after learning: %+v", res.Differences)
	}
	// A status that differs is not noise.
	b.Status = 500
	if added, unstable := n.Learn(c.Compare(a, b, nil)); !unstable || added != nil {
		t.Errorf("a differing status: learnt %v, unstable %v", added, unstable)
	}
}

func TestNoiseIsBounded(t *testing.T) {
	n := Noise{Max: 2}
	res := Result{Differences: []Difference{{Part: PartBody, Path: "/a"}, {Part: PartBody, Path: "/b"}, {Part: PartBody, Path: "/c"}}}
	if added, _ := n.Learn(res); len(added) != 2 || len(n.Learnt()) != 2 {
		t.Fatalf("learnt %v past its bound of 2", n.Learnt())
	}
}

func TestEndpointsName(t *testing.T) {
	e, err := NewEndpoints([]string{"GET /api/items/{sku}", "GET /api/items/special", "POST /api/items"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ method, path, want string }{
		{"GET", "/api/items/A-1", "GET /api/items/{sku}"},
		{"GET", "/api/items/special", "GET /api/items/special"},
		{"GET", "/api/items/A-1?x=1", "GET /api/items/{sku}"},
		{"POST", "/api/items", "POST /api/items"},
		{"GET", "/api/orders/7f3a/lines/2", "GET /api/orders/{id}/lines/{id}"},
		{"DELETE", "/api/items/A-1", "DELETE /api/items/{id}"},
	} {
		if got := e.Name(c.method, c.path); got != c.want {
			t.Errorf("%s %s = %q, want %q", c.method, c.path, got, c.want)
		}
	}
	if _, err := NewEndpoints([]string{"nope"}); err == nil {
		t.Error("a template without a path was accepted")
	}
}
