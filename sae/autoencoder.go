package sae

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"sync"

	"github.com/onnx-tdb/onnx-tdb/export/fetch"
	"github.com/onnx-tdb/onnx-tdb/export/torchpt"
	"github.com/onnx-tdb/onnx-tdb/hooks"
	"github.com/onnx-tdb/onnx-tdb/runtime"
)

// Errors of loading and running autoencoders.
var (
	ErrBadStateDict = errors.New("not an SAE state dict")
	ErrNotConverted = errors.New("not a converted SAE folder")
	ErrShape        = errors.New("tensor does not fit the autoencoder")
	ErrClosed       = errors.New("autoencoder is closed")
	ErrTrim         = errors.New("bad latent count to keep")
)

// Option configures loading.
type Option func(*options)

type options struct {
	cache    string
	fetch    fetch.Options
	rt       runtime.Options
	omitDead bool // contexts only
	kind     string
	over     Overrides
}

// Kinds of .pt state dict (WithKind): TDB's own autoencoders, or upstream
// sparse_autoencoder's v5 TopK SAEs, whose state dicts have the same keys
// but whose inputs are normalised (KindAuto tells them by their path).
const (
	KindAuto     = ""
	KindTDB      = "tdb"
	KindOpenAIV5 = "openai-v5"
)

// WithKind says what a .pt state dict is (KindTDB, KindOpenAIV5), where
// its path does not tell.
func WithKind(kind string) Option { return func(o *options) { o.kind = kind } }

// WithOverrides applies a registry's overrides to a SAELens SAE.
func WithOverrides(ov Overrides) Option { return func(o *options) { o.over = ov } }

// WithCache sets the cache root (converted SAEs go to <root>/sae). Default:
// the download cache's root ($ONNX_TDB_CACHE, else ~/.cache/onnx-tdb).
func WithCache(dir string) Option { return func(o *options) { o.cache = dir } }

// WithFetch sets how az:// and https locations are downloaded (cache root,
// blob endpoint, progress).
func WithFetch(f fetch.Options) Option { return func(o *options) { o.fetch = f } }

// WithRuntime sets the ONNX Runtime options of the autoencoder's sessions.
func WithRuntime(r runtime.Options) Option { return func(o *options) { o.rt = r } }

func collect(opts []Option) options {
	var o options
	for _, f := range opts {
		f(&o)
	}
	return o
}

// root resolves the cache root: WithCache, else the fetch cache's.
func (o options) root() (string, error) {
	if o.cache != "" {
		return filepath.Abs(o.cache)
	}
	f := o.fetch
	f.Progress = nil
	c, err := fetch.New(f)
	if err != nil {
		return "", err
	}
	return c.Dir(), nil
}

// Autoencoder is one sparse autoencoder on ONNX Runtime. Its methods are
// safe for concurrent use; Close releases its sessions.
type Autoencoder struct {
	NInputs    int        // n: width of the input point
	NLatents   int        // N: latents
	Activation Activation // ReLU, TopK or Identity
	Source     string     // the file or location it was loaded from

	dir    string
	man    *folderManifest
	eng    *runtime.Engine
	opts   options
	ownDir bool // dir is private (LoadStateDict): removed on Close

	mu     sync.Mutex
	closed bool
}

// Load opens an autoencoder from a .pt state dict (converted into the cache
// on first use), a converted folder, or an az:// / https location.
func Load(path string, opts ...Option) (*Autoencoder, error) {
	return Open(context.Background(), path, opts...)
}

// Open is Load with a context for downloads.
func Open(ctx context.Context, ref string, opts ...Option) (*Autoencoder, error) {
	o := collect(opts)
	if strings.HasPrefix(ref, SAELensScheme) {
		return openRelease(ctx, ref, o)
	}
	if isRemote(ref) {
		return openRemote(ctx, ref, o)
	}
	st, err := os.Stat(ref)
	if err != nil {
		return nil, fmt.Errorf("load sae: %w", err)
	}
	if st.IsDir() {
		if IsSAELensFolder(ref) {
			return openSAELens(ref, o)
		}
		return openFolder(ref, ref, o, false)
	}
	abs, err := filepath.Abs(ref)
	if err != nil {
		return nil, fmt.Errorf("load sae %s: %w", ref, err)
	}
	kind, err := kindOf(abs, o.kind)
	if err != nil {
		return nil, fmt.Errorf("load sae %s: %w", ref, err)
	}
	root, err := o.root()
	if err != nil {
		return nil, fmt.Errorf("load sae %s: %w", ref, err)
	}
	key := cacheKey(fmt.Sprintf("file\x00%s\x00%d\x00%d\x00%s", abs, st.Size(), st.ModTime().UnixNano(), kind))
	stem := strings.TrimSuffix(filepath.Base(abs), filepath.Ext(abs))
	dir := filepath.Join(root, "sae", "local", stem+"-"+key)
	return convertAndOpen(abs, dir, kind, o)
}

// openSAELens converts a SAELens folder into the cache (once) and opens it.
func openSAELens(src string, o options) (*Autoencoder, error) {
	key, err := saelensKey(src, o.over)
	if err != nil {
		return nil, fmt.Errorf("load sae %s: %w", src, err)
	}
	root, err := o.root()
	if err != nil {
		return nil, fmt.Errorf("load sae %s: %w", src, err)
	}
	abs, _ := filepath.Abs(src)
	dir := filepath.Join(root, "sae", "saelens", filepath.Base(abs)+"-"+key)
	unlock := lockFolder(dir)
	defer unlock()
	if !isConverted(dir) {
		if err := convertSAELens(src, dir, o.over); err != nil {
			return nil, fmt.Errorf("load sae %s: %w", src, err)
		}
	}
	return openFolder(dir, src, o, false)
}

// v5Layout matches upstream's v5 paths: <location>_v5_<size>/autoencoders/<layer>.pt.
var v5Layout = regexp.MustCompile(`(^|/)(resid_post_attn|resid_post_mlp)_v5_[0-9]+k/autoencoders/[0-9]+\.pt$`)

// kindOf is what a .pt state dict is: the explicit kind, else from its
// path (upstream's v5 layout), else TDB's own.
func kindOf(path, kind string) (string, error) {
	switch kind {
	case KindTDB, KindOpenAIV5:
		return kind, nil
	case KindAuto:
		if v5Layout.MatchString(filepath.ToSlash(path)) {
			return KindOpenAIV5, nil
		}
		return KindTDB, nil
	}
	return "", fmt.Errorf("%w: sae kind %q (known: tdb, openai-v5)", ErrBadConfig, kind)
}

func isRemote(ref string) bool {
	l := strings.ToLower(ref)
	return strings.HasPrefix(l, "az://") || strings.HasPrefix(l, "https://")
}

func openRemote(ctx context.Context, ref string, o options) (*Autoencoder, error) {
	loc, err := fetch.Parse(ref)
	if err != nil {
		return nil, fmt.Errorf("load sae: %w", err)
	}
	root, err := o.root()
	if err != nil {
		return nil, fmt.Errorf("load sae %s: %w", ref, err)
	}
	kind, err := kindOf(loc.Path, o.kind)
	if err != nil {
		return nil, fmt.Errorf("load sae %s: %w", ref, err)
	}
	dir := filepath.Join(root, "sae", "blobs", loc.Account, loc.Container, filepath.FromSlash(strings.TrimSuffix(loc.Path, ".pt")))
	if kind != KindTDB {
		dir += "." + kind
	}
	if isConverted(dir) {
		return openFolder(dir, loc.URL(), o, false)
	}
	fo := o.fetch
	if fo.Dir == "" {
		fo.Dir = root
	}
	c, err := fetch.New(fo)
	if err != nil {
		return nil, fmt.Errorf("load sae %s: %w", ref, err)
	}
	path, err := c.Fetch(ctx, loc)
	if err != nil {
		return nil, fmt.Errorf("load sae: %w", err)
	}
	ae, err := convertAndOpen(path, dir, kind, o)
	if err != nil {
		return nil, err
	}
	ae.Source = loc.URL()
	return ae, nil
}

func cacheKey(s string) string {
	h := sha256.Sum256([]byte(folderFormat + "\x00" + s))
	return hex.EncodeToString(h[:8])
}

// converting holds one lock per cache folder: one conversion of a folder at
// a time in this process (other processes race safely: writeFolder renames).
var converting sync.Map

func lockFolder(dir string) (unlock func()) {
	mu, _ := converting.LoadOrStore(dir, &sync.Mutex{})
	mu.(*sync.Mutex).Lock()
	return mu.(*sync.Mutex).Unlock
}

func convertAndOpen(pt, dir, kind string, o options) (*Autoencoder, error) {
	defer lockFolder(dir)()
	if !isConverted(dir) {
		if err := convertFile(pt, dir, kind); err != nil {
			return nil, fmt.Errorf("load sae %s: %w", pt, err)
		}
	}
	return openFolder(dir, pt, o, false)
}

// convertFile reads a .pt state dict and writes its converted folder.
func convertFile(pt, dir, kind string) error {
	sd, err := torchpt.LoadStateDict(pt)
	if err != nil {
		return err
	}
	p, err := fromStateDict(sd)
	if err != nil {
		return err
	}
	big := len(p.encoder) > 1<<24
	m := manifestOf(p, pt)
	if kind == KindOpenAIV5 {
		// Upstream's Autoencoder normalises TopK SAEs' inputs (its LN
		// preprocess) and de-normalises their outputs.
		m.Family, m.Norm = FamilyOpenAIV5, NormLayerNorm
	}
	err = writeFolder(dir, m, func(ww *weightWriter) error { return writeParams(ww, p) })
	if big {
		// The state dict was read into Go memory once; give it back now
		// rather than when the collector gets to it.
		p = nil
		debug.FreeOSMemory()
	}
	return err
}

func manifestOf(p *params, source string) folderManifest {
	return folderManifest{Source: source, NInputs: p.nInputs, NLatents: p.nLatents, Activation: p.act}
}

// LoadStateDict opens an autoencoder from a state dict already in memory
// (torchpt.LoadStateDict's result, or one built in Go). Its converted
// folder is private and removed by Close.
func LoadStateDict(sd *torchpt.StateDict, opts ...Option) (*Autoencoder, error) {
	p, err := fromStateDict(sd)
	if err != nil {
		return nil, fmt.Errorf("load sae: %w", err)
	}
	return fromParams(p, "state dict", collect(opts))
}

func fromParams(p *params, source string, o options) (*Autoencoder, error) {
	tmp, err := os.MkdirTemp("", "onnx-tdb-sae-")
	if err != nil {
		return nil, fmt.Errorf("load sae: %w", err)
	}
	dir := filepath.Join(tmp, "sae")
	if err := writeFolder(dir, manifestOf(p, source), func(ww *weightWriter) error { return writeParams(ww, p) }); err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("load sae: %w", err)
	}
	ae, err := openFolder(dir, source, o, true)
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	return ae, nil
}

// openFolder opens a converted folder. owned folders live in a private
// temporary parent, removed on Close.
func openFolder(dir, source string, o options, owned bool) (*Autoencoder, error) {
	man, err := readManifest(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			err = fmt.Errorf("%w: %s has no %s", ErrNotConverted, dir, manifestName)
		}
		return nil, fmt.Errorf("load sae: %w", err)
	}
	// The graph is built anew from the manifest (sae.onnx is its copy for
	// inspection), so folders converted before a graph output was added get
	// it too.
	model, err := buildGraph(man)
	if err != nil {
		return nil, fmt.Errorf("load sae %s: %w", dir, err)
	}
	eng, err := runtime.NewEngine(&runtime.Graph{Model: model, Dir: dir}, o.rt)
	if err != nil {
		return nil, fmt.Errorf("load sae %s: %w", dir, err)
	}
	if source == "" {
		source = man.Source
	}
	return &Autoencoder{
		NInputs: man.NInputs, NLatents: man.NLatents, Activation: man.Activation, Source: source,
		dir: dir, man: man, eng: eng, opts: o, ownDir: owned,
	}, nil
}

// Dir is the converted folder the autoencoder runs from.
func (a *Autoencoder) Dir() string { return a.dir }

// Close releases the autoencoder's sessions (and its private folder).
func (a *Autoencoder) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil
	}
	a.closed = true
	err := a.eng.Close()
	if a.ownDir {
		err = errors.Join(err, os.RemoveAll(filepath.Dir(a.dir)))
	}
	return err
}

func (a *Autoencoder) isClosed() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.closed
}

// String describes the autoencoder.
func (a *Autoencoder) String() string {
	return fmt.Sprintf("sae(%d inputs → %d latents, %s, %s)", a.NInputs, a.NLatents, a.Activation, a.Source)
}

// Encode computes the latents of x, whose last axis is the input width:
// x [..., n] gives [..., N].
func (a *Autoencoder) Encode(ctx context.Context, x *hooks.Tensor) (*hooks.Tensor, error) {
	if err := a.checkInput(x); err != nil {
		return nil, fmt.Errorf("sae encode: %w", err)
	}
	out, err := a.run(ctx, a.normIn(x), a.NInputs, inX, outLatents, a.NLatents, nil)
	if err != nil {
		return nil, fmt.Errorf("sae encode: %w", err)
	}
	return out, nil
}

func (a *Autoencoder) checkInput(x *hooks.Tensor) error {
	if x == nil || len(x.Shape) == 0 || x.Shape[len(x.Shape)-1] != a.NInputs || x.Numel() != len(x.Data) {
		return fmt.Errorf("%w: input of shape %v, want [..., %d]", ErrShape, shapeOf(x), a.NInputs)
	}
	return nil
}

// Decode computes the reconstruction of latents z [..., N]: [..., n] (a
// transcoder's [..., d_out]). Autoencoders whose output depends on the
// input as well give ErrNeedsInput: use DecodeFrom.
func (a *Autoencoder) Decode(ctx context.Context, z *hooks.Tensor) (*hooks.Tensor, error) {
	if a.needsInput() {
		return nil, fmt.Errorf("sae decode: %w (use DecodeFrom)", ErrNeedsInput)
	}
	return a.DecodeFrom(ctx, z, nil)
}

// EncodePreAct computes the pre-activations of the chosen latents (all, in
// order, when latents is nil): x [..., n] gives [..., len(latents)], the
// original's encode_pre_act(x, latent_slice). Only the encoder rows of the
// chosen latents are read.
func (a *Autoencoder) EncodePreAct(ctx context.Context, x *hooks.Tensor, latents []int) (*hooks.Tensor, error) {
	var idx []int64
	if latents == nil {
		idx = make([]int64, a.NLatents)
		for i := range idx {
			idx[i] = int64(i)
		}
	} else {
		if len(latents) == 0 {
			return nil, fmt.Errorf("sae encode_pre_act: %w: empty latent list", ErrShape)
		}
		idx = make([]int64, len(latents))
		for i, l := range latents {
			if l < 0 || l >= a.NLatents {
				return nil, fmt.Errorf("sae encode_pre_act: %w: latent %d out of range [0,%d)", ErrShape, l, a.NLatents)
			}
			idx[i] = int64(l)
		}
	}
	extra := map[string]*runtime.Tensor{inLatentIdx: {Shape: []int64{int64(len(idx))}, I64: idx}}
	if err := a.checkInput(x); err != nil {
		return nil, fmt.Errorf("sae encode_pre_act: %w", err)
	}
	out, err := a.run(ctx, a.normIn(x), a.NInputs, inX, outPreAct, len(idx), extra)
	if err != nil {
		return nil, fmt.Errorf("sae encode_pre_act: %w", err)
	}
	return out, nil
}

// DecodeVJP is the vector-Jacobian product of Decode: for g = d(loss)/d(the
// reconstruction) [..., n] it returns d(loss)/d(the latents) [..., N],
// g · decoder.
func (a *Autoencoder) DecodeVJP(ctx context.Context, g *hooks.Tensor) (*hooks.Tensor, error) {
	if a.denormalises() {
		return nil, fmt.Errorf("sae decode vjp: %w (use DecodeVJPAt)", ErrNeedsInput)
	}
	return a.decodeVJP(ctx, g)
}

func (a *Autoencoder) decodeVJP(ctx context.Context, g *hooks.Tensor) (*hooks.Tensor, error) {
	out, err := a.run(ctx, g, a.NOutputs(), inGradRec, outVJPDec, a.NLatents, nil)
	if err != nil {
		return nil, fmt.Errorf("sae decode vjp: %w", err)
	}
	return out, nil
}

// EncodeVJP is the vector-Jacobian product of Encode at x: for g =
// d(loss)/d(the latents) [..., N] it returns d(loss)/d(x) [..., n]. The
// activation's derivative is 1 where a latent is active (ReLU, TopK) and 1
// everywhere for Identity.
func (a *Autoencoder) EncodeVJP(ctx context.Context, x, g *hooks.Tensor) (*hooks.Tensor, error) {
	if x == nil || g == nil || len(x.Shape) != len(g.Shape) || len(x.Shape) == 0 || g.Shape[len(g.Shape)-1] != a.NLatents ||
		x.Numel() != len(x.Data) || g.Numel() != len(g.Data) || x.Numel()/max(a.NInputs, 1) != g.Numel()/max(a.NLatents, 1) {
		return nil, fmt.Errorf("sae encode vjp: %w: x %v and gradient %v do not match [..., %d] and [..., %d]", ErrShape, shapeOf(x), shapeOf(g), a.NInputs, a.NLatents)
	}
	rows := int64(g.Numel() / max(a.NLatents, 1))
	extra := map[string]*runtime.Tensor{inGradLat: {Shape: []int64{rows, int64(a.NLatents)}, F32: g.Data}}
	out, err := a.run(ctx, a.normIn(x), a.NInputs, inX, outVJPEnc, a.NInputs, extra)
	if err != nil {
		return nil, fmt.Errorf("sae encode vjp: %w", err)
	}
	a.normInVJP(x, out)
	return out, nil
}

func shapeOf(t *hooks.Tensor) []int {
	if t == nil {
		return nil
	}
	return t.Shape
}

// run feeds x, flattened to [rows, width], to the graph and returns output
// with x's leading axes and outWidth.
func (a *Autoencoder) run(ctx context.Context, x *hooks.Tensor, width int, in, output string, outWidth int, extra map[string]*runtime.Tensor) (*hooks.Tensor, error) {
	if x == nil || len(x.Shape) == 0 || x.Shape[len(x.Shape)-1] != width {
		shape := []int(nil)
		if x != nil {
			shape = x.Shape
		}
		return nil, fmt.Errorf("%w: input of shape %v, want [..., %d]", ErrShape, shape, width)
	}
	numel := x.Numel()
	if numel < 0 || numel != len(x.Data) {
		return nil, fmt.Errorf("%w: shape %v with %d values", ErrShape, x.Shape, len(x.Data))
	}
	if a.isClosed() {
		return nil, ErrClosed
	}
	rows := numel / width
	shape := append(append([]int(nil), x.Shape[:len(x.Shape)-1]...), outWidth)
	if rows == 0 {
		return hooks.Zeros(shape...), nil
	}
	inputs := map[string]*runtime.Tensor{in: {Shape: []int64{int64(rows), int64(width)}, F32: x.Data}}
	for k, v := range extra {
		inputs[k] = v
	}
	res, err := a.eng.Run(ctx, runtime.Request{Inputs: inputs, Outputs: []string{output}})
	if err != nil {
		if errors.Is(err, runtime.ErrClosed) {
			return nil, ErrClosed
		}
		return nil, err
	}
	t := res[output]
	if t == nil || len(t.F32) != rows*outWidth {
		return nil, fmt.Errorf("%s: unexpected result", output)
	}
	return &hooks.Tensor{Shape: shape, Data: t.F32}, nil
}

// Tensor reads one of the autoencoder's tensors by its state-dict key
// (pre_bias, encoder.weight, latent_bias, decoder.weight,
// latents_activation_frequency, latents_mean_square) into Go memory.
func (a *Autoencoder) Tensor(key string) ([]float32, []int, error) {
	ref, ok := a.man.Tensors[key]
	if !ok || ref.DType != "float32" {
		return nil, nil, fmt.Errorf("sae %s: no float32 tensor %q", a.dir, key)
	}
	v, err := readF32(a.dir, ref)
	if err != nil {
		return nil, nil, fmt.Errorf("sae %s: %s: %w", a.dir, key, err)
	}
	shape := make([]int, len(ref.Dims))
	for i, d := range ref.Dims {
		shape[i] = int(d)
	}
	return v, shape, nil
}
