// Package atomicdir writes a folder all at once: it is filled under a
// temporary name beside its destination and renamed into place when
// complete, so a reader finds the old folder, no folder, or the whole new
// one, and a failure leaves nothing behind.
package atomicdir
