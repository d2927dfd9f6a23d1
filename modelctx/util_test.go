package modelctx

import "os"

func osMkdirTemp() (string, error) { return os.MkdirTemp("", "onnx-tdb-test-") }
