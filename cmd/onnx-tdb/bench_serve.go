package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"

	"github.com/onnx-tdb/onnx-tdb/modelctx"
	"github.com/onnx-tdb/onnx-tdb/serve"
	"github.com/urfave/cli/v2"
)

// benchServeFlag turns bench into the API's benchmark.
func benchServeFlag() cli.Flag {
	return &cli.BoolFlag{Name: "serve", Usage: "measure a warm forward through the HTTP API (loopback, keep-alive, the answer decoded) against the in-process Forward, interleaved; shapes default to 1x16"}
}

// runBenchServe serves the model in-process on loopback and times POST
// /v1/forward (with the default answer: top tokens and the last position's
// logits as JSON, and without the logits) against m.Forward on the same rows.
func runBenchServe(c *cli.Context) error {
	spec := "1x16"
	if c.IsSet("shapes") {
		spec = c.String("shapes")
	}
	shapes, err := parseShapes(spec)
	if err != nil {
		return err
	}
	m, _, err := benchModel(c)
	if err != nil {
		return err
	}
	defer m.Close()
	srv, err := serve.New(serve.WithModel("bench", m), serve.WithAccessLog(false), serve.WithLogger(log.New(io.Discard, "", 0)))
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: srv}
	go hs.Serve(ln)
	defer hs.Close()
	url := fmt.Sprintf("http://%s/v1/forward", ln.Addr())
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}

	w := c.App.Writer
	fmt.Fprintf(w, "model %s, %d layers; API on loopback vs in-process Forward, interleaved\n", m.Manifest().Name, m.NLayers())
	fmt.Fprintf(w, "(API: top tokens and logits_last as JSON, the default answer; .npy: logits_last as .npy bytes; no logits: top tokens only)\n")
	fmt.Fprintf(w, "%-7s %11s %9s %6s %9s %6s %14s %6s\n", "shape", "Forward ms", "API ms", "ratio", ".npy ms", "ratio", "no logits ms", "ratio")
	for _, s := range shapes {
		rows := benchRows(s, m.Manifest().Config.NVocab)
		full, _ := json.Marshal(map[string]any{"tokens": rows, "top": 5})
		lean, _ := json.Marshal(map[string]any{"tokens": rows, "top": 5, "logits_last": false})
		fns := []func() error{
			func() error { _, err := m.Forward(c.Context, rows, modelctx.WithPad(modelctx.PadRight)); return err },
			func() error { return postForward(client, url, full, "") },
			func() error { return postForward(client, url, full, "application/x-npy") },
			func() error { return postForward(client, url, lean, "") },
		}
		b, err := interleaved(benchStopOf(c), fns)
		if err != nil {
			return err
		}
		ms := func(i int) float64 { return float64(b.medianTime(i).Microseconds()) / 1000 }
		base := ms(0)
		fmt.Fprintf(w, "%-7s %11.2f %9.2f %6.2f %9.2f %6.2f %14.2f %6.2f\n", s, base,
			ms(1), ms(1)/base, ms(2), ms(2)/base, ms(3), ms(3)/base)
	}
	return nil
}

// postForward sends one request and reads its whole answer (a client's
// own JSON decoding is not the server's cost, so only errors are decoded).
func postForward(client *http.Client, url string, body []byte, accept string) error {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
			return fmt.Errorf("status %s: %w", resp.Status, err)
		}
		return errors.New(e.Error)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}
