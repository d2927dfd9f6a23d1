// Package atomicdir writes a folder all at once: it is filled under a
// temporary name beside its destination and renamed into place when
// complete, so a reader finds the old folder, no folder, or the whole new
// one, and a failure leaves nothing behind. The files and the folder are
// synced before the rename, so a crash after it cannot leave a folder of
// empty files under the final name.
//
// A writer that is killed cannot clean up; it holds a lock on its temporary
// folder for as long as it lives, so the next writer beside it (or Sweep,
// over a whole cache) can tell a leftover from a folder still being filled
// and remove it.
//
// Exports (export/) and converted SAEs (sae/) are written through it.
package atomicdir
