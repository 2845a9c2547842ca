"""The numpy array types the twin's columnar code annotates with (float64 times, int64 ids)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
