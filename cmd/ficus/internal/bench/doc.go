// Package bench holds ficus's benchmarks: the facade's overhead against direct calls, a stock
// reverse proxy and nginx (Facade); orders through the monolith against the same orders placed
// in process (Orders); and the event pipeline end to end against its own drain rate (Events).
// Each prints its figures next to a baseline measured in the same run, because on a shared
// machine only same-run ratios and CPU time per operation are steady. `ficus bench` is the
// thin command over it; the package lives under cmd/ficus because it needs the monolith and
// the facade, which platform/ may not import.
package bench
