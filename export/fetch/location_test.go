package fetch

import (
	"errors"
	"path/filepath"
	"testing"
)

func TestParseAcceptsBothForms(t *testing.T) {
	tests := []struct {
		in   string
		want Location
	}{
		{"az://openaipublic/sparse-autoencoder/gpt2-small/mlp_post_act/autoencoders/0.pt",
			Location{"openaipublic", "sparse-autoencoder", "gpt2-small/mlp_post_act/autoencoders/0.pt"}},
		{"https://openaipublic.blob.core.windows.net/neuron-explainer/subject-models/gpt2/small/config.json",
			Location{"openaipublic", "neuron-explainer", "subject-models/gpt2/small/config.json"}},
		{"HTTPS://OpenAIPublic.Blob.Core.Windows.Net/neuron-explainer/a.pt",
			Location{"openaipublic", "neuron-explainer", "a.pt"}},
		{"AZ://openaipublic/neuron-explainer/a.pt", Location{"openaipublic", "neuron-explainer", "a.pt"}},
		// a folder-like prefix, and a container alone, parse (for Join); Fetch needs a blob path
		{"https://openaipublic.blob.core.windows.net/neuron-explainer/subject-models/gpt2/small/",
			Location{"openaipublic", "neuron-explainer", "subject-models/gpt2/small"}},
		{"az://openaipublic/neuron-explainer", Location{"openaipublic", "neuron-explainer", ""}},
		// https paths are URL-decoded; az paths are literal
		{"https://acct1.blob.core.windows.net/c-1/dir%20with%20space/%C3%BC%2B.pt",
			Location{"acct1", "c-1", "dir with space/ü+.pt"}},
		{"az://acct1/c-1/dir with space/ü%20.pt", Location{"acct1", "c-1", "dir with space/ü%20.pt"}},
		{"https://acct1.blob.core.windows.net/c-1/模型/层 0.pt", Location{"acct1", "c-1", "模型/层 0.pt"}},
		{"az://acct1/$root/a", Location{"acct1", "$root", "a"}},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("Parse(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestParseRejectsOtherForms(t *testing.T) {
	for _, in := range []string{
		"",
		"openaipublic/neuron-explainer/a.pt",
		"/tmp/model",
		"http://openaipublic.blob.core.windows.net/neuron-explainer/a.pt", // not https
		"https://example.com/neuron-explainer/a.pt",
		"https://openaipublic.blob.core.windows.net.evil.com/c/a.pt",
		"https://openaipublic.blob.core.windows.net:444/neuron-explainer/a.pt",
		"https://openaipublic.blob.core.windows.net/neuron-explainer/a.pt?sv=2020&sig=x",
		"https://openaipublic.blob.core.windows.net/neuron-explainer/a.pt#frag",
		"https://user@openaipublic.blob.core.windows.net/neuron-explainer/a.pt",
		"https://openaipublic.blob.core.windows.net/",
		"gs://openaipublic/neuron-explainer/a.pt",
		"az://",
		"az://openaipublic",
		"az://OpenAIPublic/neuron-explainer/a.pt", // account names are lower case
		"az://ab/neuron-explainer/a.pt",           // account too short
		"az://openaipublic/Neuron-Explainer/a.pt", // container names are lower case
		"az://openaipublic/-bad/a.pt",
		"az://openaipublic/bad--name/a.pt",
		"az://openaipublic/neuron-explainer/a//b.pt",
		"az://openaipublic/neuron-explainer/../sparse-autoencoder/x.pt",
		"az://openaipublic/neuron-explainer/a/./b.pt",
		"https://openaipublic.blob.core.windows.net/neuron-explainer/a/%2E%2E/b.pt",
		"az://openaipublic/neuron-explainer/a\x00b",
		"az://openaipublic/neuron-explainer/a\nb",
	} {
		if loc, err := Parse(in); !errors.Is(err, ErrBadLocation) {
			t.Errorf("Parse(%q) = %+v, %v; want ErrBadLocation", in, loc, err)
		}
	}
}

func TestURLRoundTrips(t *testing.T) {
	for _, in := range []string{
		"az://openaipublic/neuron-explainer/subject-models/gpt2/small/model_pieces/xf_layers.0.attn.q_proj.weight.pt",
		"az://acct1/c-1/dir with space/ü?#%.pt",
		"az://acct1/c-1/模型/层 0.pt",
		"az://acct1/c-1",
	} {
		loc, err := Parse(in)
		if err != nil {
			t.Fatalf("Parse(%q): %v", in, err)
		}
		back, err := Parse(loc.URL())
		if err != nil || back != loc {
			t.Errorf("Parse(%q.URL() = %q) = %+v, %v; want %+v", in, loc.URL(), back, err, loc)
		}
	}
	loc := Location{"acct1", "c-1", "dir with space/ü.pt"}
	if got, want := loc.URL(), "https://acct1.blob.core.windows.net/c-1/dir%20with%20space/%C3%BC.pt"; got != want {
		t.Errorf("URL() = %q, want %q", got, want)
	}
}

func TestJoin(t *testing.T) {
	base, _ := Parse("https://openaipublic.blob.core.windows.net/neuron-explainer/subject-models/gpt2/small")
	tests := []struct {
		elem []string
		want string
	}{
		{[]string{"config.json"}, "subject-models/gpt2/small/config.json"},
		{[]string{"model_pieces", "unembed.weight.pt"}, "subject-models/gpt2/small/model_pieces/unembed.weight.pt"},
		{[]string{"model_pieces/unembed.weight.pt"}, "subject-models/gpt2/small/model_pieces/unembed.weight.pt"},
		{[]string{"/x/", "y"}, "subject-models/gpt2/small/x/y"},
		{nil, "subject-models/gpt2/small"},
	}
	for _, tt := range tests {
		if got := base.Join(tt.elem...); got.Path != tt.want || got.Account != base.Account || got.Container != base.Container {
			t.Errorf("Join(%q) = %+v, want path %q", tt.elem, got, tt.want)
		}
	}
	if got := (Location{"acct1", "c-1", ""}).Join("a.pt").URL(); got != "https://acct1.blob.core.windows.net/c-1/a.pt" {
		t.Errorf("Join on a container = %q", got)
	}
}

func TestCachePathMapping(t *testing.T) {
	dir := t.TempDir()
	c, err := New(Options{Dir: dir, Progress: nil})
	if err != nil {
		t.Fatal(err)
	}
	loc, _ := Parse("az://openaipublic/sparse-autoencoder/gpt2-small/mlp_post_act/autoencoders/0.pt")
	want := filepath.Join(dir, "blobs", "openaipublic", "sparse-autoencoder", "gpt2-small", "mlp_post_act", "autoencoders", "0.pt")
	if got := c.Path(loc); got != want {
		t.Errorf("Path = %q, want %q", got, want)
	}
	https, _ := Parse("https://openaipublic.blob.core.windows.net/sparse-autoencoder/gpt2-small/mlp_post_act/autoencoders/0.pt")
	if c.Path(https) != want {
		t.Errorf("az:// and https forms map to %q and %q", want, c.Path(https))
	}
	for _, bad := range []Location{
		{"openaipublic", "neuron-explainer", ""},
		{"openaipublic", "neuron-explainer", "a/../../../../etc/passwd"},
		{"openaipublic", "neuron-explainer", "../x"},
		{"openaipublic", "..", "x"},
		{"..", "neuron-explainer", "x"},
	} {
		if got := c.Path(bad); got != "" {
			t.Errorf("Path(%+v) = %q, want \"\"", bad, got)
		}
	}
	// Join can climb out of a folder; the result is refused when used.
	up := Location{"openaipublic", "neuron-explainer", "a"}.Join("..", "..", "x")
	if got := c.Path(up); got != "" {
		t.Errorf("Path(%+v) = %q, want \"\"", up, got)
	}
}

func TestCacheDirDefaults(t *testing.T) {
	t.Setenv(CacheEnv, "")
	t.Setenv("XDG_CACHE_HOME", "/x/cache")
	c, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Dir(); got != "/x/cache/onnx-tdb" {
		t.Errorf("with XDG_CACHE_HOME: Dir = %q", got)
	}
	t.Setenv("XDG_CACHE_HOME", "")
	t.Setenv("HOME", "/home/u")
	if c, _ = New(Options{}); c.Dir() != "/home/u/.cache/onnx-tdb" {
		t.Errorf("with HOME only: Dir = %q", c.Dir())
	}
	t.Setenv(CacheEnv, "/y")
	if c, _ = New(Options{}); c.Dir() != "/y" {
		t.Errorf("with %s: Dir = %q", CacheEnv, c.Dir())
	}
	if c, _ = New(Options{Dir: "/z"}); c.Dir() != "/z" {
		t.Errorf("with Options.Dir: Dir = %q", c.Dir())
	}
}

func TestEndpoint(t *testing.T) {
	t.Setenv(EndpointEnv, "")
	loc := Location{"openaipublic", "neuron-explainer", "dir x/ü.pt"}
	c, err := New(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.BlobURL(loc); got != loc.URL() {
		t.Errorf("default BlobURL = %q, want %q", got, loc.URL())
	}
	t.Setenv(EndpointEnv, "http://127.0.0.1:10000/{account}/")
	c, _ = New(Options{Dir: t.TempDir()})
	if got, want := c.BlobURL(loc), "http://127.0.0.1:10000/openaipublic/neuron-explainer/dir%20x/%C3%BC.pt"; got != want {
		t.Errorf("BlobURL from %s = %q, want %q", EndpointEnv, got, want)
	}
	c, _ = New(Options{Dir: t.TempDir(), Endpoint: "https://mirror.example/{account}"})
	if got := c.BlobURL(loc); got != "https://mirror.example/openaipublic/neuron-explainer/dir%20x/%C3%BC.pt" {
		t.Errorf("Options.Endpoint over the variable: BlobURL = %q", got)
	}
	for _, bad := range []string{"ftp://x/{account}", "127.0.0.1:10000", "http:///{account}", "http://x/?a=b"} {
		if _, err := New(Options{Dir: t.TempDir(), Endpoint: bad}); err == nil {
			t.Errorf("New(Endpoint: %q) accepted", bad)
		}
	}
}

func TestFetchRefusesBadLocationWithoutRequest(t *testing.T) {
	c, err := New(Options{Dir: t.TempDir(), Endpoint: "http://127.0.0.1:1/{account}"})
	if err != nil {
		t.Fatal(err)
	}
	for _, loc := range []Location{
		{"openaipublic", "neuron-explainer", ""},
		{"openaipublic", "neuron-explainer", "a/../../x"},
		{"Bad", "neuron-explainer", "x"},
	} {
		if _, err := c.Fetch(t.Context(), loc); !errors.Is(err, ErrBadLocation) {
			t.Errorf("Fetch(%+v) = %v, want ErrBadLocation", loc, err)
		}
		if _, err := c.FetchAll(t.Context(), []Location{loc}); !errors.Is(err, ErrBadLocation) {
			t.Errorf("FetchAll(%+v) = %v, want ErrBadLocation", loc, err)
		}
	}
}
