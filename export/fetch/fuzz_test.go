package fetch

import (
	"strings"
	"testing"
)

// FuzzParse: blob locations come from the command line and from config;
// an accepted one has no path segment that could leave the cache folder,
// and its URL parses back to itself.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"az://openaipublic/neuron-explainer/subject-models/gpt2/small",
		"https://openaipublic.blob.core.windows.net/neuron-explainer/a%20b/c",
		"az://a/b/../c", "https://x.blob.core.windows.net:443/c/p", "az://", "https://evil.com/c/p",
		"AZ://A/B/C/", "az://a/b/c/./d",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		loc, err := Parse(s)
		if err != nil {
			return
		}
		for _, seg := range strings.Split(loc.Path, "/") {
			if seg == ".." || seg == "." {
				t.Fatalf("%q: path %q accepted", s, loc.Path)
			}
		}
		back, err := Parse(loc.URL())
		if err != nil || back != loc {
			t.Fatalf("%q: URL %q parses to %+v, %v", s, loc.URL(), back, err)
		}
		loc.Join("config.json")
	})
}
