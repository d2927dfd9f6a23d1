package hooks

import "testing"

// FuzzParseEditTarget: --ablate/--set/--add targets come from the command
// line; any string gives an error or a site with sane indices.
func FuzzParseEditTarget(f *testing.F) {
	for _, s := range []string{"mlp.post_act@1:7", "logits", "attn.v_out@0:3:15", "mlp.post_act@-1", "x@1:", "resid.post_emb:1:2:3", "@:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		site, idx, err := ParseEditTarget(s)
		if err != nil {
			return
		}
		if len(idx) > len(site.Point.Shape())-2 {
			t.Fatalf("%q: %d indices for %v", s, len(idx), site.Point.Shape())
		}
		for _, i := range idx {
			if i < 0 {
				t.Fatalf("%q: negative index", s)
			}
		}
		if site.Point.PerLayer() != (site.Layer >= 0) {
			t.Fatalf("%q: layer %d for %s", s, site.Layer, site.Point)
		}
	})
}
