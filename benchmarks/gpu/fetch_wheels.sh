#!/usr/bin/env bash
# Run HERE (a machine with PyPI access) before a device check: download the wheels the
# GPU image lacks (it has torch, transformers, h5py, xarray, pandas, click, tqdm, ...) into
# .whl/ for Python 3.12 x86-64. `run` must then name `.whl` in `carry`.
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
mkdir -p .whl
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
for pkg in "zarr==3.1.6" "numcodecs==0.16.6" "donfig==0.8.1.post1" "google-crc32c==1.9.0" \
           "dask==2026.8.0" "distributed==2026.8.0" "partd==1.4.2" "locket==1.0.0" "tblib==3.2.2" \
           "zict==3.0.0" "tornado==6.6.1" "av==18.1.0" "decord==0.6.0" "importlib_metadata==10.2.0"; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${plat[@]}" -d .whl "$pkg" \
    || python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_17_x86_64 --platform any -d .whl "$pkg" \
    || echo "WARNING: no wheel for $pkg (python 3.12, x86-64)"
done
du -sh .whl
