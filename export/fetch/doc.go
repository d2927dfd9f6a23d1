// Package fetch downloads checkpoint pieces and SAE files from public Azure Blob Storage
// (anonymous access) into a local cache that export/ and sae/ read from.
//
// A blob is named by a Location, parsed from either of the two forms the original code uses:
//
//	az://openaipublic/sparse-autoencoder/gpt2-small/mlp_post_act/autoencoders/0.pt
//	https://openaipublic.blob.core.windows.net/neuron-explainer/subject-models/gpt2/small/config.json
//
// A Cache maps each blob to <root>/blobs/<account>/<container>/<path> and writes it there
// atomically: a download lands in a temporary file next to its final place, is checked against the
// length (and the MD5, when the service sends one) and renamed, so a half-written file is never
// seen under the final name.
package fetch
