package hooks

import (
	"errors"
	"fmt"
	"sort"
)

// Errors of Check.
var (
	// ErrAbsentSite is returned for a hook at a point the model does not carry.
	ErrAbsentSite = errors.New("model has no such hook point")
	// ErrLayerRange is returned for a layer filter naming a layer the model
	// does not have.
	ErrLayerRange = errors.New("layer out of range")
)

// Check resolves the registrations against a model of nLayers layers whose
// sites has reports: a hook at a point the model carries at no layer, or
// restricted to a layer the model does not have, is an error (the SAE
// points are exempt: they exist wherever an autoencoder is spliced in).
// The error is also kept in the set, so a run planned from it fails with
// it instead of silently never calling the hook.
func (s *Set) Check(nLayers int, has func(Site) bool) error {
	if err := s.checkEntries(nLayers, has); err != nil {
		s.err = err
		return err
	}
	return nil
}

func (s *Set) checkEntries(nLayers int, has func(Site) bool) error {
	for _, e := range s.entries {
		if e.err != nil || e.point.IsSAE() {
			continue
		}
		if !e.point.PerLayer() {
			if !has(Site{Point: e.point, Layer: -1}) {
				return fmt.Errorf("%w: %s", ErrAbsentSite, e.point)
			}
			continue
		}
		var bad []int
		for l := range e.layers {
			if l < 0 || l >= nLayers {
				bad = append(bad, l)
			}
		}
		if len(bad) > 0 {
			sort.Ints(bad)
			return fmt.Errorf("%w: hook at %s restricted to layer %d, the model has layers [0,%d)", ErrLayerRange, e.point, bad[0], nLayers)
		}
		found := false
		for _, site := range e.sites(nLayers) {
			if has(site) {
				found = true
				break
			}
		}
		if !found {
			return fmt.Errorf("%w: %s", ErrAbsentSite, e.point)
		}
	}
	return nil
}

// Fail makes every run planned from the set fail with err.
func (s *Set) Fail(err error) { s.err = err }
