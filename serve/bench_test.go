package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
)

// BenchmarkForward compares a warm 1x16 forward in-process with the same
// through the API (loopback, keep-alive, the whole answer read).
func BenchmarkForward(b *testing.B) {
	m := goldenModel(b)
	_, ts, _ := start(b)
	rows := [][]int{make([]int, 16)}
	for i := range rows[0] {
		rows[0][i] = (1000 + 7919*i) % 50257
	}
	b.Run("in-process", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := m.Forward(context.Background(), rows); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, c := range []struct {
		name string
		body map[string]any
	}{
		{"api", map[string]any{"tokens": rows}},
		{"api-no-logits", map[string]any{"tokens": rows, "logits_last": false}},
	} {
		js, _ := json.Marshal(c.body)
		b.Run(c.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				resp, err := http.Post(ts.URL+"/v1/forward", "application/json", bytes.NewReader(js))
				if err != nil {
					b.Fatal(err)
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatal(resp.Status)
				}
				b.SetBytes(n)
			}
		})
	}
}
