// Package viz draws what onnx-tdb computes as pictures people look at:
// attention patterns (query × key heatmaps of attn.qk_probs per layer and
// head) as a self-contained HTML file or a PNG, and neuron records (top
// examples with each token shaded by its activation, as TDB's neuron viewer
// shows them) as HTML.
//
// It sits after the forward pass: the CLI (forward --attention-html,
// --attention-png) and the record commands hand it tensors and token
// strings; it reads no model and writes only to the io.Writer it is given.
// The HTML files hold their data and script inline and fetch nothing, so
// they open offline.
package viz
