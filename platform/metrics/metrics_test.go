package metrics_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ficus-project/ficus/platform/metrics"
)

func TestRegisterSharesEqualCollectors(t *testing.T) {
	reg := prometheus.NewRegistry()
	var err error
	a := metrics.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: "x_total", Help: "x"}), &err)
	b := metrics.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: "x_total", Help: "x"}), &err)
	if err != nil || a != b {
		t.Fatalf("an equal collector was not shared: err %v, same %v", err, a == b)
	}
	metrics.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: "x_total", Help: "other help"}), &err)
	if err == nil {
		t.Fatal("a conflicting collector was accepted")
	}
}
