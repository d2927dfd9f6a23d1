// Package hooks is the hook tree of the original Transformer Debugger in Go
// terms: functions attached to hook points (writers that may edit a tensor,
// observers that only read it), with layer filters, bound context values,
// fwd / fwd2 / bwd stages and removal handles, plus the CLI's edit specs
// (--ablate, --set, --add). The points themselves, their shapes and call
// order are the shared vocabulary of package vocab, re-exported here so
// hooks are registered as hooks.MLP.PostAct.
//
// The package knows nothing of ONNX Runtime or of any architecture: the
// runtime asks a Set which sites are written and which only read, plans its
// graphs accordingly, and calls back into it between graph segments.
package hooks
