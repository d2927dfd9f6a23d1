package runtime

// valueF32 views a float32 value's shape and data (no copy).
func valueF32(v *value) ([]int64, []float32, bool) {
	if v.elem != elemFloat {
		return nil, nil, false
	}
	return v.shape, v.f32(), true
}
