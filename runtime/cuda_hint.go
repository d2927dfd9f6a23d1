package runtime

import (
	"fmt"
	"regexp"
	"strings"
)

// cudaFixHint is what a user whose CUDA provider cannot start is told to do.
const cudaFixHint = "see the README's CUDA section: `make ort-gpu` installs the GPU-capable ONNX Runtime core and its CUDA provider into the per-user cache"

// missingLibRE finds the libraries the dynamic loader could not open in an
// error message ("libcudnn.so.9: cannot open shared object file").
var missingLibRE = regexp.MustCompile(`(lib[A-Za-z0-9_+.-]*?\.so(?:\.[0-9]+)*): cannot open shared object file`)

// missingLibraries lists, once each and in order, the shared libraries an
// error message says could not be opened.
func missingLibraries(msg string) []string {
	var out []string
	seen := map[string]bool{}
	for _, m := range missingLibRE.FindAllStringSubmatch(msg, -1) {
		if !seen[m[1]] {
			seen[m[1]] = true
			out = append(out, m[1])
		}
	}
	return out
}

// libraryRole says what a missing library belongs to, for the error.
func libraryRole(lib string) string {
	switch {
	case strings.HasPrefix(lib, "libcudnn"):
		return "cuDNN"
	case strings.HasPrefix(lib, "libcublas"):
		return "cuBLAS, CUDA toolkit"
	case strings.HasPrefix(lib, "libcudart"), strings.HasPrefix(lib, "libcufft"), strings.HasPrefix(lib, "libcurand"), strings.HasPrefix(lib, "libnvrtc"):
		return "CUDA runtime"
	case strings.HasPrefix(lib, "libcuda.so"), strings.HasPrefix(lib, "libnvidia"):
		return "NVIDIA driver"
	case strings.HasPrefix(lib, "libonnxruntime"):
		return "ONNX Runtime's provider libraries, which make ort-gpu installs"
	}
	return ""
}

// withCUDAHint adds to a CUDA start-up error the libraries the loader could
// not find (with what they belong to) and how to install the provider.
func withCUDAHint(err error) error {
	if err == nil || strings.Contains(err.Error(), cudaFixHint) {
		return err
	}
	var parts []string
	system := false
	for _, lib := range missingLibraries(err.Error()) {
		system = system || !strings.HasPrefix(lib, "libonnxruntime")
		if r := libraryRole(lib); r != "" {
			lib += " (" + r + ")"
		}
		parts = append(parts, lib)
	}
	if len(parts) > 0 {
		advice := ""
		if system {
			advice = " (install the NVIDIA libraries named, or add their folder to LD_LIBRARY_PATH)"
		}
		return fmt.Errorf("%w; missing libraries: %s%s; %s", err, strings.Join(parts, ", "), advice, cudaFixHint)
	}
	return fmt.Errorf("%w; %s", err, cudaFixHint)
}
