package runtime

// BindOnCPU switches CPU engines to the CUDA engine's IO-binding path (the
// outputs it would keep on the GPU bound to CPU memory) and returns a
// function that switches back.
func BindOnCPU() (restore func()) {
	old := bindOnCPU
	bindOnCPU = true
	return func() { bindOnCPU = old }
}

// OutputsOnDevice is how many session outputs have been placed on a device.
func OutputsOnDevice() int64 { return outputsOnDevice.Load() }
