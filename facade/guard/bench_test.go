package guard

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"testing"
)

// BenchmarkListener measures a kept-alive POST with a 1 KiB body, answered with a 1 KiB body,
// over an unguarded listener and a guarded one: the guard's cost on the normal path is the
// ratio of the two (docs/facade.md reports it).
func BenchmarkListener(b *testing.B) {
	payload := bytes.Repeat([]byte("x"), 1<<10)
	for _, bc := range []struct {
		name string
		wrap func(net.Listener) net.Listener
	}{
		{"plain", func(ln net.Listener) net.Listener { return ln }},
		{"guarded", func(ln net.Listener) net.Listener { return NewListener(ln, Options{}) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				w.Write(payload)
			})}
			go srv.Serve(bc.wrap(ln))
			b.Cleanup(func() { srv.Close() })
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			b.Cleanup(client.CloseIdleConnections)
			url := "http://" + ln.Addr().String() + "/"
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := client.Post(url, "text/plain", bytes.NewReader(payload))
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		})
	}
}
