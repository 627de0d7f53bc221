"""Baseline for bench/tiff2zarr.sh: tifffile reads slabs of 64 pages, zarr-python writes a
v3 array with 64³ chunks and zstd level 1, using 2 threads (the machine's 2 cores)."""
import sys

import numpy as np
import tifffile
import zarr
from zarr.codecs import ZstdCodec

zarr.config.set({"threading.max_workers": 2, "async.concurrency": 4})
src, dst = sys.argv[1], sys.argv[2]
with tifffile.TiffFile(src) as tf:
    n = len(tf.pages)
    shape = (n,) + tf.pages[0].shape
    dtype = tf.pages[0].dtype
    z = zarr.create_array(dst, shape=shape, chunks=(64, 64, 64), dtype=dtype, compressors=ZstdCodec(level=1))
    for z0 in range(0, n, 64):
        z1 = min(z0 + 64, n)
        slab = np.stack([tf.pages[i].asarray() for i in range(z0, z1)])
        z[z0:z1] = slab
