package hostile

import (
	"bytes"
	"fmt"
)

// Folder is a hostile converted-SAE folder: file names and their bytes.
type Folder struct {
	Name  string
	Why   string
	Files map[string][]byte
}

// saeManifest is a converted folder's sae.json with the given sizes and
// tensor table (a JSON object body).
func saeManifest(nInputs, nLatents int64, graph, weights, tensors string) []byte {
	return fmt.Appendf(nil, `{"format":"onnx-tdb-sae/1","n_inputs":%d,"n_latents":%d,"activation":{"name":"ReLU"},"graph":%q,"weights":%q,"tensors":{%s}}`,
		nInputs, nLatents, graph, weights, tensors)
}

// saeTensors is a tensor table laid out back to back for n inputs and N
// latents, as a converted folder would have it.
func saeTensors(n, N int64) string {
	var b bytes.Buffer
	off := int64(0)
	for i, t := range []struct {
		key  string
		dims []int64
	}{{"pre_bias", []int64{n}}, {"encoder.weight", []int64{N, n}}, {"latent_bias", []int64{N}}, {"decoder.weight", []int64{n, N}}} {
		length := int64(4)
		for _, d := range t.dims {
			length *= d
		}
		if i > 0 {
			b.WriteByte(',')
		}
		dims := fmt.Sprint(t.dims)
		dims = "[" + dims[1:len(dims)-1] + "]"
		dims = string(bytes.ReplaceAll([]byte(dims), []byte(" "), []byte(",")))
		fmt.Fprintf(&b, `%q:{"dims":%s,"dtype":"float32","offset":%d,"length":%d}`, t.key, dims, off, length)
		off += length
	}
	return b.String()
}

// SAEFolders lists hostile converted-SAE folders, each a few hundred bytes
// (one a few megabytes of blank manifest).
func SAEFolders() []Folder {
	w := func(m []byte, weights int) map[string][]byte {
		return map[string][]byte{"sae.json": m, "weights.bin": make([]byte, weights), "sae.onnx": {}}
	}
	return []Folder{
		{"huge_latents", "2^30 latents of 768 inputs (3 TiB of weights) over an empty weights.bin",
			w(saeManifest(768, 1<<30, "sae.onnx", "weights.bin", saeTensors(768, 1<<30)), 0)},
		{"weights_outside", "weights named outside the folder",
			w(saeManifest(2, 2, "sae.onnx", "../../../../etc/passwd", saeTensors(2, 2)), 64)},
		{"graph_outside", "graph named outside the folder",
			w(saeManifest(2, 2, "/etc/passwd", "weights.bin", saeTensors(2, 2)), 64)},
		{"past_end", "tensors past the end of a 16-byte weights.bin",
			w(saeManifest(4, 4, "sae.onnx", "weights.bin", saeTensors(4, 4)), 16)},
		{"negative_width", "a negative input width",
			w(saeManifest(-1, 4, "sae.onnx", "weights.bin", saeTensors(1, 4)), 1024)},
		{"overflow_offset", "an offset that overflows with its length",
			w(saeManifest(2, 2, "sae.onnx", "weights.bin",
				`"pre_bias":{"dims":[2],"dtype":"float32","offset":9223372036854775800,"length":8},`+
					saeTensors(2, 2)[len(`"pre_bias":{"dims":[2],"dtype":"float32","offset":0,"length":8},`):]), 64)},
		{"wrong_dims", "an encoder of dims the sizes do not fix",
			w(saeManifest(2, 2, "sae.onnx", "weights.bin", saeTensors(2, 2)[:0]+
				`"pre_bias":{"dims":[2],"dtype":"float32","offset":0,"length":8},"encoder.weight":{"dims":[1000000,1000000],"dtype":"float32","offset":0,"length":16},"latent_bias":{"dims":[2],"dtype":"float32","offset":0,"length":8},"decoder.weight":{"dims":[2,2],"dtype":"float32","offset":0,"length":16}`), 64)},
		{"big_manifest", "a manifest of 8 MiB of blanks",
			w(append(bytes.Repeat([]byte(" "), 8<<20), saeManifest(2, 2, "sae.onnx", "weights.bin", saeTensors(2, 2))...), 64)},
	}
}
