package runtime

import (
	"errors"
	"sync"
)

// buildCache holds values that are costly to build (plans, their sessions)
// by key. Each key is built once, under its own sync.Once, so a slow build
// does not block lookups of other keys; a failed build is evicted, so the
// next lookup tries again; closing releases every value built and refuses
// later lookups with ErrClosed.
type buildCache[K comparable, V any] struct {
	mu     sync.Mutex
	slots  map[K]*buildSlot[V]
	closed bool
}

type buildSlot[V any] struct {
	once sync.Once
	v    V
	err  error
	done bool
}

// get returns the value of key, building it with build on first use.
func (c *buildCache[K, V]) get(key K, build func() (V, error)) (V, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		var zero V
		return zero, ErrClosed
	}
	if c.slots == nil {
		c.slots = map[K]*buildSlot[V]{}
	}
	slot, ok := c.slots[key]
	if !ok {
		slot = &buildSlot[V]{}
		c.slots[key] = slot
	}
	c.mu.Unlock()
	slot.once.Do(func() {
		slot.v, slot.err = build()
		c.mu.Lock()
		slot.done = true
		c.mu.Unlock()
	})
	if slot.err != nil {
		c.mu.Lock()
		if c.slots[key] == slot {
			delete(c.slots, key)
		}
		c.mu.Unlock()
	}
	return slot.v, slot.err
}

// len is the number of keys built or being built.
func (c *buildCache[K, V]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.slots)
}

// close releases every value built without error with release and makes
// later lookups fail with ErrClosed. The caller makes sure no build is under
// way (the engine waits for its runs first).
func (c *buildCache[K, V]) close(release func(V) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	var errs []error
	for _, s := range c.slots {
		if s.done && s.err == nil {
			errs = append(errs, release(s.v))
		}
	}
	c.slots = nil
	return errors.Join(errs...)
}

// lifetime counts an engine's runs in flight, so that Close can wait for
// them before it releases the sessions they use.
type lifetime struct {
	mu      sync.Mutex
	idle    sync.Cond
	running int
	closed  bool
}

// enter registers a run; it fails with ErrClosed once close has begun.
func (l *lifetime) enter() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	l.running++
	return nil
}

// leave ends a run registered by enter.
func (l *lifetime) leave() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.running--
	if l.running == 0 && l.idle.L != nil {
		l.idle.Broadcast()
	}
}

// close refuses new runs and waits for those in flight. It reports whether
// this call closed (false when an earlier one had).
func (l *lifetime) close() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.closed = true
	if l.idle.L == nil {
		l.idle.L = &l.mu
	}
	for l.running > 0 {
		l.idle.Wait()
	}
	return true
}
