// Package metrics holds what Ficus's components share about Prometheus collectors. Each
// component builds its own collectors and registers them on a registry it is given; none
// uses the global default registry.
package metrics

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers c on reg and returns it, or returns the equal collector registered
// before (two relays or buses in one process share their metrics). A failure is joined into
// *errp, so a constructor can register many collectors and check once.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C, errp *error) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		*errp = errors.Join(*errp, err)
	}
	return c
}
