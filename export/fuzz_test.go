package export

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/onnx-tdb/onnx-tdb/internal/hostile"
)

// FuzzParseTDBConfig: config.json comes from any URL. Parsing and bounding
// never panic, and what passes is within the limits.
func FuzzParseTDBConfig(f *testing.F) {
	f.Add([]byte(`{"enc":"gpt2","ctx_window":64,"d_model":64,"n_layers":2,"m_attn":1,"n_heads":4,"m_mlp":4}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"m_attn":0.5,"m_mlp":1e300}`))
	for _, c := range hostile.Configs() {
		f.Add(c.Bytes)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := parseUntrustedConfig(b); err != nil {
			return
		}
		_, g, _ := ParseTDBConfig(b)
		if g.NLayers > MaxLayers || g.DModel > MaxDModel || g.DFF > MaxDFF || g.NCtx > MaxCtx || g.NLayers <= 0 {
			t.Fatalf("accepted %+v", g)
		}
	})
}

// FuzzReadManifest: a manifest that is read never names a file outside its
// folder, and reading never panics.
func FuzzReadManifest(f *testing.F) {
	f.Add([]byte(`{"format":"onnx-tdb/1","stages":[{"name":"s","file":"s.onnx"}],"weights":{"file":"weights.bin","bytes":8,"tensors":[{"name":"w","offset":0,"length":8}]}}`))
	f.Add([]byte(`{"format":"onnx-tdb/1","stages":[{"name":"s","file":"../../x.onnx"}]}`))
	f.Add([]byte(`{"format":"onnx-tdb/1","whole":"/etc/passwd","points":[{"point":"mlp.post_act","layer":-5,"tensor":""}]}`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, ManifestFile), b, 0o644); err != nil {
			t.Fatal(err)
		}
		m, err := ReadManifest(dir)
		if err != nil {
			return
		}
		for _, s := range m.Stages {
			if !localName(s.File) {
				t.Fatalf("stage file %q accepted", s.File)
			}
		}
		for _, p := range m.Points {
			p.Site()
		}
		VerifyFiles(dir, m)
	})
}

// FuzzReadHookMap: hook maps come with models from anywhere.
func FuzzReadHookMap(f *testing.F) {
	f.Add([]byte(`{"points":[{"hook":"mlp_hidden","layer":0,"tensor":"t","layout":{"perm_onnx_to_reference":[0,2,1]}}],"weights":[{"initializer":"w","state_dict_key":"k","transform":"transpose"}]}`))
	f.Add([]byte(`{"points":[{"point":"logits","layer":null,"tensor":"logits"}],"n_layers":2}`))
	f.Add([]byte(`{"points":[{"point":"x","layer":-1,"tensor":"t","layout":{"perm_onnx_to_reference":[5,5]}}]}`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(dir, "hookmap.json")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		hm, err := ReadHookMap(path)
		if err != nil {
			return
		}
		for _, p := range hm.Points {
			if err := checkPerm(p.Layout.Perm); err != nil {
				t.Fatalf("bad perm accepted: %v", err)
			}
			resolvePoint(p, nil)
		}
	})
}
