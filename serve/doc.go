// Package serve keeps models, sparse autoencoders and record sets warm
// behind a JSON API under /v1/ and a web page at /.
//
// It sits at the end of the data path: a request names token rows (or
// prompts), points to read, hook edits in the CLI's syntax and autoencoder
// splices; the server turns them into modelctx forward options, runs the
// already-open Transformer, and answers with top tokens, activations and
// the last position's logits as JSON numbers, or as .npy bytes when the
// client sends Accept: application/x-npy to a single-tensor endpoint.
//
// The server bounds how many runs go at once (a queue with a timeout
// beyond that), cancels a run when its client goes away, limits request
// sizes, maps errors to status codes (400 bad input, 413 over a limit, 422
// a hook edit that failed at run time, 503 busy or shutting down), recovers
// panics, can require a bearer token, logs each request with its latency,
// and drains in-flight requests on shutdown. It owns nothing it is given:
// the caller opens the models and autoencoders and closes them after
// Drain.
//
// Record sets and workflows (activation patching, logit lens, ...) come
// from other packages through RecordLoader and Workflows, so the page shows
// those views only where a source was plugged in.
package serve
