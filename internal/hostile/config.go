package hostile

// Configs lists hostile config.json files of a TDB checkpoint: each names a
// model far larger than any real one (or a nonsensical one), in a few bytes.
// A parser must refuse each before it allocates anything from those fields.
func Configs() []File {
	c := func(name, why, body string) File {
		return File{Name: name, Kind: "config", Why: why, Bytes: []byte(body)}
	}
	return []File{
		c("n_layers_1e8.json", "100 million layers (112 bytes)",
			`{"enc": "gpt2", "ctx_window": 1024, "d_model": 768, "n_layers": 100000000, "m_attn": 1, "n_heads":12, "m_mlp":4}`),
		c("d_model_1e9.json", "a residual stream of a billion floats per token",
			`{"enc":"gpt2","ctx_window":1024,"d_model":1000000000,"n_layers":2,"m_attn":1,"n_heads":1,"m_mlp":4}`),
		c("ctx_window_1e12.json", "a trillion positions",
			`{"enc":"gpt2","ctx_window":1000000000000,"d_model":64,"n_layers":2,"m_attn":1,"n_heads":4,"m_mlp":4}`),
		c("m_mlp_1e6.json", "an MLP a million times d_model wide",
			`{"enc":"gpt2","ctx_window":64,"d_model":64,"n_layers":2,"m_attn":1,"n_heads":4,"m_mlp":1000000}`),
		c("n_heads_huge.json", "as many heads as d_model is wide, d_model huge",
			`{"enc":"gpt2","ctx_window":64,"d_model":16777216,"n_layers":2,"m_attn":1,"n_heads":16777216,"m_mlp":4}`),
		c("n_layers_negative.json", "a negative layer count",
			`{"enc":"gpt2","ctx_window":64,"d_model":64,"n_layers":-1,"m_attn":1,"n_heads":4,"m_mlp":4}`),
		c("n_layers_zero.json", "no layers",
			`{"enc":"gpt2","ctx_window":64,"d_model":64,"n_layers":0,"m_attn":1,"n_heads":4,"m_mlp":4}`),
		c("d_model_zero.json", "a residual stream of width 0",
			`{"enc":"gpt2","ctx_window":64,"d_model":0,"n_layers":2,"m_attn":1,"n_heads":4,"m_mlp":4}`),
		c("n_heads_zero.json", "no heads (d_model / 0)",
			`{"enc":"gpt2","ctx_window":64,"d_model":64,"n_layers":2,"m_attn":1,"n_heads":0,"m_mlp":4}`),
		c("ctx_window_negative.json", "a negative context",
			`{"enc":"gpt2","ctx_window":-5,"d_model":64,"n_layers":2,"m_attn":1,"n_heads":4,"m_mlp":4}`),
		c("m_mlp_negative.json", "a negative MLP width",
			`{"enc":"gpt2","ctx_window":64,"d_model":64,"n_layers":2,"m_attn":1,"n_heads":4,"m_mlp":-4}`),
		c("params_product.json", "each field sane, together 10^14 parameters",
			`{"enc":"gpt2","ctx_window":4096,"d_model":65536,"n_layers":1024,"m_attn":1,"n_heads":64,"m_mlp":8}`),
	}
}
