package gpt2_test

import (
	"errors"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/export"
	"github.com/onnx-tdb/onnx-tdb/export/arch/gpt2"
	"github.com/onnx-tdb/onnx-tdb/internal/hostile"
)

// parseUntrustedConfig is how a config.json from a URL is read before
// anything is fetched: parsed, then bounded. The architecture's config
// parser replaces it when it does both.
var parseUntrustedConfig = func(b []byte) error {
	_, _, err := gpt2.ParseTDBConfig(b)
	return err
}

func TestHostileConfigsRefused(t *testing.T) {
	for _, f := range hostile.Configs() {
		t.Run(f.Name, func(t *testing.T) {
			var err error
			alloc := hostile.Allocated(func() { err = parseUntrustedConfig(f.Bytes) })
			if err == nil {
				t.Fatalf("%s (%s) accepted", f.Name, f.Why)
			}
			if !errors.Is(err, export.ErrUnsupported) && !errors.Is(err, export.ErrCheckpoint) {
				t.Errorf("error wraps neither ErrUnsupported nor ErrCheckpoint: %v", err)
			}
			if alloc > hostile.MaxAlloc {
				t.Errorf("allocated %d bytes refusing it", alloc)
			}
		})
	}
	if n := len(hostile.Configs()[0].Bytes); n != 112 {
		t.Errorf("the n_layers file is %d bytes, want the issue's 112", n)
	}
}

func TestRealConfigsWithinLimits(t *testing.T) {
	for _, body := range []string{
		`{"enc":"gpt2","ctx_window":1024,"d_model":768,"n_layers":12,"m_attn":1,"n_heads":12,"m_mlp":4}`,
		`{"enc":"gpt2","ctx_window":1024,"d_model":1600,"n_layers":48,"m_attn":1,"n_heads":25,"m_mlp":4}`,
		`{"enc":"gpt2","ctx_window":64,"d_model":64,"n_layers":2,"m_attn":1,"n_heads":4,"m_mlp":4}`,
	} {
		if err := parseUntrustedConfig([]byte(body)); err != nil {
			t.Errorf("%s: %v", body, err)
		}
	}
}
