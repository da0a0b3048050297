package bus

import (
	"context"
	"strings"
	"testing"

	"github.com/ficus-project/ficus/platform/config"
)

func TestSubject(t *testing.T) {
	for typ, want := range map[string]string{
		"shop.inventory.stock_changed.v1": "ficus.events.shop.inventory.stock_changed.v1",
		"a.v1":                            "ficus.events.a.v1",
	} {
		if got, err := Subject(typ); err != nil || got != want {
			t.Errorf("Subject(%q) = %q, %v; want %q", typ, got, err, want)
		}
	}
	for _, bad := range []string{"", "a..b", ".a", "a.", "a.*", "a.>", "a b"} {
		if _, err := Subject(bad); err == nil {
			t.Errorf("Subject(%q) succeeded, want an error", bad)
		}
	}
}

func TestURL(t *testing.T) {
	if got := URL(config.Events{Bus: "embedded", Embedded: config.Embedded{Listen: "127.0.0.1:5222"}}); got != "nats://127.0.0.1:5222" {
		t.Errorf("embedded URL = %q", got)
	}
	if got := URL(config.Events{Bus: "nats://a:4222,nats://b:4222"}); got != "nats://a:4222,nats://b:4222" {
		t.Errorf("external URL = %q", got)
	}
}

func TestServeEmbeddedRefusesExternalBus(t *testing.T) {
	err := ServeEmbedded(context.Background(), config.Events{Bus: "nats://127.0.0.1:4222"}, nil, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "external") {
		t.Fatalf("ServeEmbedded(external) = %v, want an error saying the bus is external", err)
	}
}

func TestConsumerNames(t *testing.T) {
	for name, want := range map[string]bool{"inventory-copy": true, "a_b9": true, "": false, "a.b": false, "a b": false, "a>": false} {
		if got := validName(name); got != want {
			t.Errorf("validName(%q) = %v, want %v", name, got, want)
		}
	}
}
