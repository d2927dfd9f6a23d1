package export

import (
	"sort"
)

// sortPoints orders manifest points in call order.
func sortPoints(ps []Point, nLayers int) {
	order := func(p Point) int {
		s, err := p.Site()
		if err != nil {
			return 1 << 30
		}
		return s.Order(nLayers)
	}
	sort.SliceStable(ps, func(i, j int) bool { return order(ps[i]) < order(ps[j]) })
}
