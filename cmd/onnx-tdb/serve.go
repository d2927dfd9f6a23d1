package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/onnx-tdb/onnx-tdb/export"
	"github.com/onnx-tdb/onnx-tdb/export/fetch"
	"github.com/onnx-tdb/onnx-tdb/harvest"
	"github.com/onnx-tdb/onnx-tdb/harvest/records"
	"github.com/onnx-tdb/onnx-tdb/modelctx"
	"github.com/onnx-tdb/onnx-tdb/runtime"
	"github.com/onnx-tdb/onnx-tdb/sae"
	"github.com/onnx-tdb/onnx-tdb/serve"
	"github.com/urfave/cli/v2"
)

func serveCommand() *cli.Command {
	d := serve.DefaultLimits()
	return &cli.Command{
		Name:  "serve",
		Usage: "keep models, autoencoders and record sets warm behind a JSON API (/v1/) and a web page (/)",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "model", Aliases: []string{"m"}, Usage: "a model to serve, as --model of forward, or NAME=MODEL; repeatable (the first is the default)"},
			&cli.StringSliceFlag{Name: "sae", Usage: "NAME=AUTOENCODER: a .pt state dict, a converted folder, an az:// or https location, or a registered family with its layer (ae-mlp-post-act-v4@5); repeatable"},
			&cli.StringSliceFlag{Name: "records", Usage: "NAME=LOCATION[#POINT]: a record set: a harvest output folder (#POINT picks the point when it holds several), a point folder holding collated-activations/, or an az:// / https:// location of one such as TDB's public datasets; repeatable"},
			&cli.StringFlag{Name: "addr", Value: "127.0.0.1:8080", Usage: "address to listen on; anything but loopback needs --token, or prints a warning"},
			&cli.StringFlag{Name: "token", EnvVars: []string{"ONNX_TDB_TOKEN"}, Usage: "require Authorization: Bearer TOKEN on every API request"},
			&cli.IntFlag{Name: "max-concurrent", Value: d.MaxConcurrent, Usage: "runs going at once; more wait in a queue"},
			&cli.IntFlag{Name: "max-queue", Value: d.MaxQueue, Usage: "requests waiting for a run slot before new ones get 503"},
			&cli.DurationFlag{Name: "queue-timeout", Value: d.QueueTimeout, Usage: "longest wait for a run slot (then 503)"},
			&cli.Int64Flag{Name: "max-body", Value: d.BodyBytes, Usage: "request body bytes (then 413)"},
			&cli.IntFlag{Name: "max-tokens", Value: d.Tokens, Usage: "tokens per request, all rows together (then 413)"},
			&cli.IntFlag{Name: "max-batch", Value: d.Batch, Usage: "rows per request (then 413)"},
			&cli.DurationFlag{Name: "shutdown-timeout", Value: 30 * time.Second, Usage: "how long SIGINT/SIGTERM waits for in-flight requests"},
			&cli.BoolFlag{Name: "quiet", Usage: "no access log"},
		},
		Action: runServe,
	}
}

// servedThings holds what the server was given, to close after it drained.
type servedThings struct {
	models []*modelctx.Transformer
	saes   []*sae.Autoencoder
}

func (st *servedThings) close() error {
	var errs []error
	for _, a := range st.saes {
		errs = append(errs, a.Close())
	}
	for _, m := range st.models {
		errs = append(errs, m.Close())
	}
	st.saes, st.models = nil, nil // closed once
	return errors.Join(errs...)
}

// nameRef splits NAME=REF; a bare REF is named by its last path element.
func nameRef(s string) (string, string) {
	if name, ref, ok := strings.Cut(s, "="); ok && name != "" && !strings.ContainsAny(name, "/:") {
		return name, ref
	}
	ref := strings.TrimRight(s, "/")
	if i := strings.LastIndexAny(ref, "/\\"); i >= 0 {
		ref = ref[i+1:]
	}
	return ref, s
}

func serveOptions(c *cli.Context, st *servedThings) ([]serve.Option, error) {
	dev, id, err := runtime.ParseDevice(c.String("device"))
	if err != nil {
		return nil, err
	}
	var opts []serve.Option
	if len(c.StringSlice("model")) == 0 {
		return nil, fmt.Errorf("--model is required (an exported folder, a TDB checkpoint folder, %s, or an https/az:// URL)", strings.Join(export.ModelNames(), "|"))
	}
	for _, s := range c.StringSlice("model") {
		name, ref := nameRef(s)
		dir, err := export.Resolve(c.Context, ref, export.ResolveOptions{Fetch: fetchOptions(c)})
		if err != nil {
			return nil, fmt.Errorf("--model %s: %w", s, err)
		}
		m, err := modelctx.Open(dir, modelctx.WithDevice(dev, id))
		if err != nil {
			return nil, fmt.Errorf("--model %s: %w", s, err)
		}
		st.models = append(st.models, m)
		opts = append(opts, serve.WithModel(name, m))
	}
	saeOpts, err := saeOptions(c)
	if err != nil {
		return nil, err
	}
	for _, s := range c.StringSlice("sae") {
		name, ref, ok := strings.Cut(s, "=")
		if !ok || name == "" || ref == "" {
			return nil, fmt.Errorf("--sae %s: want NAME=AUTOENCODER", s)
		}
		layer := -1
		if fam, l, ok := strings.Cut(ref, "@"); ok && strings.HasPrefix(fam, "ae-") {
			if layer, err = strconv.Atoi(l); err != nil {
				return nil, fmt.Errorf("--sae %s: %q is not a layer", s, l)
			}
			ref = fam
		}
		resolved, _, err := sae.Resolve(ref, layer)
		if err != nil {
			return nil, fmt.Errorf("--sae %s: %w (a registered family needs its layer: NAME=FAMILY@LAYER)", s, err)
		}
		ae, err := sae.Open(c.Context, resolved, saeOpts...)
		if err != nil {
			return nil, fmt.Errorf("--sae %s: %w", s, err)
		}
		st.saes = append(st.saes, ae)
		opts = append(opts, serve.WithAutoencoder(name, ae))
	}
	for _, s := range c.StringSlice("records") {
		name, ref, ok := strings.Cut(s, "=")
		if !ok || name == "" || ref == "" {
			return nil, fmt.Errorf("--records %s: want NAME=DIR|URL", s)
		}
		opts = append(opts, serve.WithRecords(name, harvestRecords(c, ref)))
	}
	opts = append(opts, serve.WithWorkflows(serve.AnalysisWorkflows()))
	opts = append(opts, serve.WithToken(c.String("token")), serve.WithLimits(serve.Limits{
		BodyBytes: c.Int64("max-body"), Tokens: c.Int("max-tokens"), Batch: c.Int("max-batch"),
		MaxConcurrent: c.Int("max-concurrent"), MaxQueue: c.Int("max-queue"), QueueTimeout: c.Duration("queue-timeout"),
	}), serve.WithLogger(log.New(c.App.ErrWriter, "", log.LstdFlags)))
	if c.Bool("quiet") {
		opts = append(opts, serve.WithAccessLog(false))
	}
	return opts, nil
}

// isLoopback reports whether addr listens on loopback only.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func runServe(c *cli.Context) error {
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	c.Context = ctx
	st := &servedThings{}
	defer st.close()
	opts, err := serveOptions(c, st)
	if err != nil {
		return err
	}
	srv, err := serve.New(opts...)
	if err != nil {
		return err
	}
	addr := c.String("addr")
	if !isLoopback(addr) && c.String("token") == "" {
		fmt.Fprintf(c.App.ErrWriter, "warning: listening on %s with no authentication: anyone who reaches it can run the models (set --token or ONNX_TDB_TOKEN)\n", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(c.App.Writer, "serving on http://%s/ (API under /v1/)\n", ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	fmt.Fprintln(c.App.ErrWriter, "shutting down: finishing in-flight requests")
	sctx, cancel := context.WithTimeout(context.Background(), c.Duration("shutdown-timeout"))
	defer cancel()
	err = errors.Join(srv.Drain(sctx), hs.Shutdown(sctx))
	if err2 := <-errc; !errors.Is(err2, http.ErrServerClosed) {
		err = errors.Join(err, err2)
	}
	return errors.Join(err, st.close())
}

// harvestRecords serves a record set through harvest.LoadRecord: our
// harvest output (a point folder, or an output folder POINT-qualified as
// DIR#POINT) and TDB's public datasets, local or through the blob cache.
func harvestRecords(c *cli.Context, ref string) serve.RecordLoader {
	loc, point, _ := strings.Cut(ref, "#")
	return func(ctx context.Context, layer, unit int) (json.RawMessage, error) {
		r, err := harvest.LoadRecord(ctx, loc, layer, unit, harvest.WithPoint(point), harvest.WithFetch(fetchOptions(c)))
		if errors.Is(err, harvest.ErrNoRecord) || errors.Is(err, os.ErrNotExist) || errors.Is(err, fetch.ErrNotFound) {
			return nil, fmt.Errorf("%w: %v", serve.ErrNotFound, err)
		}
		if err != nil {
			return nil, err
		}
		return records.Marshal(r), nil
	}
}
