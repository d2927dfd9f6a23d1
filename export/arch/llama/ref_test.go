package llama_test

import (
	"fmt"
	"math"
)

// refRun is an independent float64 forward pass of one row (no pads), as
// Hugging Face's LlamaForCausalLM computes it, written loop by loop. It
// returns hook-point values in TDB's layouts by site name ("attn.q@0",
// "logits", ...).
func refRun(m *model, toks []int) map[string][]float64 {
	f := m.f
	D, H, KV, dh, F, V, T := f.hidden, f.heads, f.kvHeads, f.headDim, f.inter, f.vocab, len(toks)
	g := H / KV
	pts := map[string][]float64{}
	add := func(name string, v ...float64) { pts[name] = append(pts[name], v...) }
	w := func(name string) []float32 {
		v, ok := m.w[name]
		if !ok {
			panic("reference: no tensor " + name)
		}
		return v
	}
	x := make([][]float64, T)
	emb := w("model.embed_tokens.weight")
	for t, id := range toks {
		x[t] = make([]float64, D)
		for i := range x[t] {
			x[t][i] = float64(emb[id*D+i])
		}
		add("resid.post_emb", x[t]...)
	}
	inv := refInvFreq(f)
	s := math.Pow(float64(dh), -0.25)
	for l := 0; l < f.layers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		at := func(name string) string { return fmt.Sprintf("%s@%d", name, l) }
		q := make([][]float64, T)
		k := make([][]float64, T)
		v := make([][]float64, T)
		for t := range x {
			h := refRMS(x[t], w(p+"input_layernorm.weight"), f.eps, pts, "resid.torso.ln_attn", at)
			q[t] = refRope(linear(h, w(p+"self_attn.q_proj.weight"), H*dh), H, dh, t, inv)
			k[t] = refRope(linear(h, w(p+"self_attn.k_proj.weight"), KV*dh), KV, dh, t, inv)
			v[t] = linear(h, w(p+"self_attn.v_proj.weight"), KV*dh)
			for i := range q[t] {
				add(at("attn.q"), q[t][i]*s)
			}
			for i := range k[t] {
				add(at("attn.k"), k[t][i]*s)
			}
			add(at("attn.v"), v[t]...)
		}
		for t := 0; t < T; t++ {
			logits := make([]float64, T*H) // [Tk][H]
			probs := make([]float64, T*H)
			for hd := 0; hd < H; hd++ {
				kv := hd / g
				mx := math.Inf(-1)
				for j := 0; j < T; j++ {
					sc := math.Inf(-1)
					if j <= t {
						sc = 0
						for d := 0; d < dh; d++ {
							sc += q[t][hd*dh+d] * s * k[j][kv*dh+d] * s
						}
					}
					logits[j*H+hd] = sc
					mx = math.Max(mx, sc)
				}
				sum := 0.0
				for j := 0; j < T; j++ {
					probs[j*H+hd] = math.Exp(logits[j*H+hd] - mx)
					sum += probs[j*H+hd]
				}
				for j := 0; j < T; j++ {
					probs[j*H+hd] /= sum
				}
			}
			add(at("attn.qk_logits"), logits...)
			add(at("attn.qk_probs"), probs...)
			vout := make([]float64, H*dh)
			for hd := 0; hd < H; hd++ {
				for j := 0; j <= t; j++ {
					for d := 0; d < dh; d++ {
						vout[hd*dh+d] += probs[j*H+hd] * v[j][(hd/g)*dh+d]
					}
				}
			}
			add(at("attn.v_out"), vout...)
			delta := linear(vout, w(p+"self_attn.o_proj.weight"), D)
			add(at("resid.torso.delta_attn"), delta...)
			for i := range x[t] {
				x[t][i] += delta[i]
			}
			add(at("resid.torso.post_attn"), x[t]...)
		}
		for t := range x {
			h := refRMS(x[t], w(p+"post_attention_layernorm.weight"), f.eps, pts, "resid.torso.ln_mlp", at)
			gate := linear(h, w(p+"mlp.gate_proj.weight"), F)
			up := linear(h, w(p+"mlp.up_proj.weight"), F)
			post := make([]float64, F)
			for i := range post {
				post[i] = gate[i] / (1 + math.Exp(-gate[i])) * up[i]
			}
			add(at("mlp.pre_act"), gate...)
			add(at("mlp.up"), up...)
			add(at("mlp.post_act"), post...)
			delta := linear(post, w(p+"mlp.down_proj.weight"), D)
			add(at("resid.torso.delta_mlp"), delta...)
			for i := range x[t] {
				x[t][i] += delta[i]
			}
			add(at("resid.torso.post_mlp"), x[t]...)
		}
	}
	unembed := "lm_head.weight"
	if f.tied {
		unembed = "model.embed_tokens.weight"
	}
	for t := range x {
		h := refRMS(x[t], w("model.norm.weight"), f.eps, pts, "resid.ln_f", func(n string) string { return n })
		add("logits", linear(h, w(unembed), V)...)
	}
	return pts
}

// refRMS is weight * x / sqrt(mean(x^2)+eps), recording the scale and
// post_scale points under prefix and the output under the post_ln name.
func refRMS(x []float64, w []float32, eps float64, pts map[string][]float64, prefix string, at func(string) string) []float64 {
	ms := 0.0
	for _, v := range x {
		ms += v * v
	}
	scale := math.Sqrt(ms/float64(len(x)) + eps)
	post := make([]float64, len(x))
	y := make([]float64, len(x))
	for i, v := range x {
		post[i] = v / scale
		y[i] = post[i] * float64(w[i])
	}
	out := map[string]string{"resid.torso.ln_attn": "resid.torso.post_ln_attn", "resid.torso.ln_mlp": "resid.torso.post_ln_mlp", "resid.ln_f": "resid.post_ln_f"}[prefix]
	pts[at(prefix+".scale")] = append(pts[at(prefix+".scale")], scale)
	pts[at(prefix+".post_scale")] = append(pts[at(prefix+".post_scale")], post...)
	pts[at(out)] = append(pts[at(out)], y...)
	return y
}

// linear is W x for an nn.Linear weight [out, in].
func linear(x []float64, w []float32, out int) []float64 {
	in := len(x)
	y := make([]float64, out)
	for o := range y {
		for i, v := range x {
			y[o] += float64(w[o*in+i]) * v
		}
	}
	return y
}

// refRope rotates each head's pairs (i, i+dh/2) by pos*inv[i].
func refRope(x []float64, heads, dh, pos int, inv []float64) []float64 {
	out := make([]float64, len(x))
	half := dh / 2
	for h := 0; h < heads; h++ {
		for i := 0; i < half; i++ {
			a, b := x[h*dh+i], x[h*dh+i+half]
			c, s := math.Cos(float64(pos)*inv[i]), math.Sin(float64(pos)*inv[i])
			out[h*dh+i] = a*c - b*s
			out[h*dh+i+half] = b*c + a*s
		}
	}
	return out
}

// refInvFreq follows Hugging Face's rope initialisation for the default,
// linear and llama3 types, in float64.
func refInvFreq(f fixture) []float64 {
	dh := f.headDim
	inv := make([]float64, dh/2)
	for i := range inv {
		inv[i] = 1 / math.Pow(f.theta, float64(2*i)/float64(dh))
	}
	if f.rope == nil {
		return inv
	}
	typ, _ := f.rope["rope_type"].(string)
	if typ == "" {
		typ, _ = f.rope["type"].(string)
	}
	factor := f.rope["factor"].(float64)
	switch typ {
	case "linear":
		for i := range inv {
			inv[i] /= factor
		}
	case "llama3":
		lo, hi := f.rope["low_freq_factor"].(float64), f.rope["high_freq_factor"].(float64)
		old := float64(f.rope["original_max_position_embeddings"].(int))
		for i, v := range inv {
			wave := 2 * math.Pi / v
			switch {
			case wave < old/hi:
			case wave > old/lo:
				inv[i] = v / factor
			default:
				sm := (old/wave - lo) / (hi - lo)
				inv[i] = (1-sm)*v/factor + sm*v
			}
		}
	}
	return inv
}
