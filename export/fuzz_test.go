package export

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzReadManifest: a manifest that is read never names a file outside its
// folder, and reading never panics.
func FuzzReadManifest(f *testing.F) {
	f.Add([]byte(`{"format":"onnx-tdb/2","stages":[{"name":"s","file":"s.onnx"}],"weights":{"file":"weights.bin","bytes":8,"tensors":[{"name":"w","offset":0,"length":8}]}}`))
	f.Add([]byte(`{"format":"onnx-tdb/2","stages":[{"name":"s","file":"../../x.onnx"}]}`))
	f.Add([]byte(`{"format":"onnx-tdb/2","whole":"/etc/passwd","points":[{"point":"mlp.post_act","layer":-5,"tensor":""}]}`))
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
