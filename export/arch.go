package export

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/onnx-tdb/onnx-tdb/export/fetch"
	"github.com/onnx-tdb/onnx-tdb/modelctx/tokenizer"
)

// Errors of the architecture registry.
var (
	// ErrUnknownArchitecture is returned for a manifest or checkpoint whose
	// architecture has no registered plugin.
	ErrUnknownArchitecture = errors.New("unknown architecture")
	// ErrNotMine is what an architecture's Open returns for a folder that is
	// not one of its checkpoints; Resolve then asks the next architecture.
	ErrNotMine = errors.New("not a checkpoint of this architecture")
)

// Architecture is one model family as a plugin: it reads its checkpoints,
// builds its stage graphs (every hook point a named tensor) and describes
// them in the manifest, tokenizer included (by the name it registered in
// modelctx/tokenizer).
// Plugins register themselves by name in an init function; the engine
// (runtime/, hooks/, sae/, modelctx/) only ever sees the manifest they
// write.
type Architecture interface {
	// Name is the name recorded in manifests ("gpt2").
	Name() string
	// Open opens a local checkpoint folder. It returns an error wrapping
	// ErrNotMine when the folder is not of this architecture.
	Open(dir string) (Source, error)
}

// Fetcher is implemented by architectures whose checkpoints can be
// downloaded: it fetches the folder at loc into the cache and returns the
// local folder, ready for Open.
type Fetcher interface {
	Fetch(ctx context.Context, c *fetch.Cache, loc fetch.Location) (string, error)
}

// Source is an opened checkpoint.
type Source interface {
	// Architecture names the plugin that opened it.
	Architecture() string
	// Describe names the source for messages and the manifest.
	Describe() string
	// Build writes the model's weights and stage graphs through b and fills
	// the architecture's parts of the manifest (config, points, KV cache,
	// weight locations, residual boundaries, tokenizer).
	Build(ctx context.Context, b *Builder) error
}

var registry = struct {
	sync.RWMutex
	archs map[string]Architecture
	order []string
	names map[string]string // registered model names -> checkpoint URL
}{archs: map[string]Architecture{}, names: map[string]string{}}

// Register adds an architecture. It panics on a duplicate name: plugins
// register in init, so that is a build mistake, not a run-time condition.
func Register(a Architecture) {
	registry.Lock()
	defer registry.Unlock()
	if _, dup := registry.archs[a.Name()]; dup {
		panic(fmt.Sprintf("export: architecture %q registered twice", a.Name()))
	}
	registry.archs[a.Name()] = a
	registry.order = append(registry.order, a.Name())
}

// RegisterModel adds a model name that Resolve turns into a checkpoint URL
// (gpt2-small, ...).
func RegisterModel(name, url string) {
	registry.Lock()
	defer registry.Unlock()
	registry.names[name] = url
}

// Lookup returns the architecture registered under name.
func Lookup(name string) (Architecture, error) {
	registry.RLock()
	defer registry.RUnlock()
	if a, ok := registry.archs[name]; ok {
		return a, nil
	}
	known := append([]string(nil), registry.order...)
	sort.Strings(known)
	return nil, fmt.Errorf("%w %q (registered: %s; a program must import the plugin package, e.g. export/arch/all)", ErrUnknownArchitecture, name, strings.Join(known, ", "))
}

// Architectures lists the registered architectures' names, in registration order.
func Architectures() []string {
	registry.RLock()
	defer registry.RUnlock()
	return append([]string(nil), registry.order...)
}

// ModelNames lists the registered model names.
func ModelNames() []string {
	registry.RLock()
	defer registry.RUnlock()
	var names []string
	for n := range registry.names {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func modelURL(name string) (string, bool) {
	registry.RLock()
	defer registry.RUnlock()
	u, ok := registry.names[name]
	return u, ok
}

// OpenSource opens a local checkpoint folder with the first registered
// architecture that recognises it.
func OpenSource(dir string) (Source, error) {
	var why []string
	for _, name := range Architectures() {
		a, _ := Lookup(name)
		src, err := a.Open(dir)
		if err == nil {
			return src, nil
		}
		if !errors.Is(err, ErrNotMine) {
			return nil, err
		}
		why = append(why, err.Error())
	}
	return nil, fmt.Errorf("%w: %s is no checkpoint any registered architecture reads (%s)", ErrUnknownModel, dir, strings.Join(why, "; "))
}

// OpenTokenizer returns the tokenizer an exported model names; nil when
// the model is driven by token ids only.
func OpenTokenizer(dir string, m *Manifest) (tokenizer.Tokenizer, error) {
	if m.Tokenizer == "" {
		return nil, nil
	}
	return tokenizer.Open(m.Tokenizer, dir)
}
