package modelctx

import "os"

// tempDirs are the folders made for once-per-binary fixtures; TestMain
// removes them.
var tempDirs []string

func osMkdirTemp() (string, error) {
	d, err := os.MkdirTemp("", "onnx-tdb-test-")
	if err == nil {
		tempDirs = append(tempDirs, d)
	}
	return d, err
}

func removeTempDirs() {
	for _, d := range tempDirs {
		os.RemoveAll(d)
	}
}
