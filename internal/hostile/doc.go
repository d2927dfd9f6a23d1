// Package hostile makes small input files that ask for far more than they
// hold: torch.save files whose tensors, pickles or deflated entries would
// expand to gigabytes, and config.json files naming absurd model sizes.
//
// It sits beside the data path, not on it: tests of the readers of untrusted
// bytes (export/torchpt, sae, the checkpoint config parser) feed these files
// and check that each is refused quickly and with bounded memory. The
// program in testdata/hostile writes them to disk for manual trials:
//
//	go generate ./internal/hostile
//
//go:generate go run ../../testdata/hostile -out ../../testdata/hostile/out
package hostile
