package collect

// SplitMix64 is the splitmix64 finaliser (wrap-around uint64 arithmetic).
func SplitMix64(x uint64) uint64 {
	z := x + 0x9E3779B97F4A7C15
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

// unitSeed is the part of an example's key fixed by the seed, the layer
// and the unit.
func unitSeed(seed, layer, unit uint64) uint64 {
	return SplitMix64(SplitMix64(SplitMix64(seed)^layer) ^ unit)
}

// Key is the sampling key of an example for one unit: the random sample is
// the examples with the smallest keys. layer is the layer directory number
// (0 for once points).
func Key(seed, layer, unit, example uint64) uint64 {
	return SplitMix64(unitSeed(seed, layer, unit) ^ example)
}
