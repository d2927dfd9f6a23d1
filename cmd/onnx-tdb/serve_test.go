package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/onnx-tdb/onnx-tdb/internal/syncbuf"

	"github.com/onnx-tdb/onnx-tdb/internal/golden"
)

// startServe runs `onnx-tdb serve` in-process on a free loopback port and
// returns its URL; stop shuts it down (as SIGINT does) and returns its error.
func startServe(t *testing.T, args ...string) (url string, stop func() error, logs *syncbuf.Buffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out, logs := &syncbuf.Buffer{}, &syncbuf.Buffer{}
	app := newApp()
	app.Writer, app.ErrWriter = out, logs
	errc := make(chan error, 1)
	full := append([]string{"onnx-tdb", "--cache", testCache, "serve", "--addr", "127.0.0.1:0"}, args...)
	go func() { errc <- app.RunContext(ctx, full) }()
	re := regexp.MustCompile(`serving on (http://\S+/) `)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			url = m[1]
			break
		}
		select {
		case err := <-errc:
			cancel()
			t.Fatalf("serve ended: %v\n%s", err, logs.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatal("serve did not start")
		}
	}
	stopped := false
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		return <-errc
	}
	t.Cleanup(func() { stop() })
	return url, stop, logs
}

func TestServeAnswersWithTheCLIsNumbers(t *testing.T) {
	url, stop, logs := startServe(t, "--model", "golden="+golden.ModelDir(), "--max-concurrent", "2")
	rows := [][]int{{464, 2068, 7586, 21831}, {15496, 11, 616}}
	args := []string{"forward", "--model", golden.ModelDir(), "--tokens", tokensArg(rows), "--ablate", "mlp.post_act@1:7", "--set", "attn.v_out@0:2=0.5"}

	dir := t.TempDir()
	if out, err := runCLI(t, append(args, "--save-activations", dir, "--points", "mlp.post_act,attn.qk_probs", "--layers", "1")...); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	js, err := runCLI(t, append(args, "--json", "--top", "4")...)
	if err != nil {
		t.Fatalf("%v\n%s", err, js)
	}
	var cli struct {
		Rows []struct {
			Top []struct {
				ID    int
				Logit float32
			}
		}
	}
	if err := json.Unmarshal([]byte(js), &cli); err != nil {
		t.Fatal(err)
	}

	body, _ := json.Marshal(map[string]any{"tokens": rows, "top": 4, "ablate": []string{"mlp.post_act@1:7"}, "set": []string{"attn.v_out@0:2=0.5"},
		"points": []string{"mlp.post_act@1", "attn.qk_probs@1"}})
	resp, err := http.Post(url+"v1/forward", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, raw)
	}
	var api struct {
		Top [][]struct {
			ID    int
			Logit float32
		}
		Activations map[string]struct {
			Shape []int
			Data  []float32
		}
	}
	if err := json.Unmarshal(raw, &api); err != nil {
		t.Fatal(err)
	}
	for b := range rows {
		for i, tt := range cli.Rows[b].Top {
			if api.Top[b][i] != tt {
				t.Fatalf("row %d top %d: API %+v, CLI %+v", b, i, api.Top[b][i], tt)
			}
		}
	}
	for site, file := range map[string]string{"mlp.post_act@1": "mlp.post_act.L1.npy", "attn.qk_probs@1": "attn.qk_probs.L1.npy"} {
		shape, data := readNpy(t, filepath.Join(dir, file))
		a := api.Activations[site]
		if len(a.Data) != len(data) || len(a.Shape) != len(shape) {
			t.Fatalf("%s: API %v, CLI %v", site, a.Shape, shape)
		}
		for i := range data {
			if a.Data[i] != data[i] {
				t.Fatalf("%s[%d]: API %v, CLI %v", site, i, a.Data[i], data[i])
			}
		}
	}

	// The same bad edit gets the CLI's message.
	_, cliErr := runCLI(t, "forward", "--model", golden.ModelDir(), "--tokens", "1,2", "--ablate", "mlp.post_act@1:x")
	resp, err = http.Post(url+"v1/forward", "application/json", strings.NewReader(`{"tokens": [[1,2]], "ablate": ["mlp.post_act@1:x"]}`))
	if err != nil {
		t.Fatal(err)
	}
	var e struct{ Error string }
	json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if resp.StatusCode != 400 || cliErr == nil || "--"+e.Error != cliErr.Error() {
		t.Fatalf("API %d %q, CLI %v", resp.StatusCode, e.Error, cliErr)
	}

	if err := stop(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if l := logs.String(); !strings.Contains(l, "POST /v1/forward 200") || !strings.Contains(l, "shutting down") {
		t.Fatalf("logs:\n%s", l)
	}
}

func TestServeWarnsWithoutTokenOffLoopback(t *testing.T) {
	for _, c := range []struct {
		addr string
		loop bool
	}{{"127.0.0.1:0", true}, {"localhost:8080", true}, {"[::1]:0", true}, {"0.0.0.0:8080", false}, {":8080", false}, {"192.168.1.2:80", false}} {
		if got := isLoopback(c.addr); got != c.loop {
			t.Errorf("isLoopback(%q) = %v", c.addr, got)
		}
	}
	_, stop, logs := startServe(t, "--model", golden.ModelDir(), "--addr", "0.0.0.0:0")
	stop()
	if !strings.Contains(logs.String(), "with no authentication") {
		t.Fatalf("no warning:\n%s", logs.String())
	}
	_, stop, logs = startServe(t, "--model", golden.ModelDir(), "--addr", "0.0.0.0:0", "--token", "x")
	stop()
	if strings.Contains(logs.String(), "with no authentication") {
		t.Fatalf("a warning with --token:\n%s", logs.String())
	}
}
