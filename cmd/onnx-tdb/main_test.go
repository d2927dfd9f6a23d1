package main

import (
	"bytes"
	"context"
	"os"
	"testing"
)

// testCache is one cache root for every CLI test of this binary, so the
// golden checkpoint is exported once.
var testCache string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "onnx-tdb-cli-")
	if err != nil {
		panic(err)
	}
	testCache = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// runCLI runs the app in-process with the shared test cache and returns what
// it printed.
func runCLI(t testing.TB, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	app := newApp()
	app.Writer = &out
	app.ErrWriter = &out
	full := append([]string{"onnx-tdb", "--cache", testCache}, args...)
	err := app.RunContext(context.Background(), full)
	return out.String(), err
}
