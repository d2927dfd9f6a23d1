"""Writes the .npy fixtures in this folder with real NumPy (Debian's python3-numpy 1.24.2:
/usr/bin/python3.11 gen_numpy.py). The Go tests only read the files; NumPy is not needed to run them."""
import io

import numpy as np
from numpy.lib import format as npf

f4 = np.float32
np.save("f4_2x3.npy", np.arange(6, dtype=f4).reshape(2, 3))
np.save("f4_scalar.npy", np.array(1.5, dtype=f4))
np.save("f4_1d.npy", np.array([1, -2, 3.25], dtype=f4))
np.save("f4_special.npy", np.array([np.nan, np.inf, -np.inf, -0.0, 1e-45, 3.4028235e38], dtype=f4))
np.save("f4_0x3.npy", np.zeros((0, 3), dtype=f4))
np.save("f4_100000x0.npy", np.zeros((100000, 0), dtype=f4))
np.save("f4_2x1x3x1.npy", np.arange(6, dtype=f4).reshape(2, 1, 3, 1) / 4)
np.save("f4_be.npy", np.array([1.5, -2.0], dtype=">f4"))
np.save("f8_2x2.npy", np.array([[0.1, -1e300], [1e300, 2.5]], dtype="<f8"))
np.save("i8_3.npy", np.array([0, -7, 2**40 + 1], dtype="<i8"))
np.save("b1_4.npy", np.array([True, False, True, True]))
np.save("fortran_2x3.npy", np.asfortranarray(np.arange(6, dtype=f4).reshape(2, 3)))
np.save("c8_2.npy", np.array([1 + 2j, 3], dtype=np.complex64))
a = np.arange(6, dtype=f4).reshape(3, 2)
for v in [(2, 0), (3, 0)]:
    with open("f4_3x2_v%d.npy" % v[0], "wb") as f:
        npf.write_array(f, a, version=v)
