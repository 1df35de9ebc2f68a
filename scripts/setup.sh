#!/usr/bin/env bash
# Everything a fresh Debian/Ubuntu machine needs for ganforge: a C++ compiler and CMake
# for the compiled kernels, the Fashion-MNIST data set, Open MPI for the dist and test
# extras, Chromium for the tests, then ganforge itself (editable) with the extras asked for.
#   scripts/setup.sh test        -> tests (and PyTorch CPU, their reference)
#   scripts/setup.sh viz         -> PNG samples and matplotlib curves
#   scripts/setup.sh dist        -> data-parallel training (Open MPI, mpi4py)
set -euo pipefail
cd "$(dirname "$0")/.."

extras="${1:-test}"
missing=()
command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
# Fashion-MNIST, from Debian's package (GANFORGE_DATA or --data point elsewhere).
[ -d /usr/share/datasets/fashion-mnist ] || [ -n "${GANFORGE_DATA:-}" ] || missing+=(dataset-fashion-mnist)
# Open MPI for data-parallel training (mpi4py, in the dist and test extras, loads its library)
case "$extras" in
  *test*|*dist*) command -v mpirun >/dev/null 2>&1 || missing+=(openmpi-bin libopenmpi-dev) ;;
esac
# A headless Chromium for the test that opens `ganforge report`'s page in a real browser
case "$extras" in
  *test*) command -v chromium >/dev/null 2>&1 || missing+=(chromium) ;;
esac
if ((${#missing[@]})); then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: please install ${missing[*]} with your system's package manager" >&2
    exit 1
  fi
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${missing[*]} (apt-get)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python3 -m pip install -q --disable-pip-version-check -e ".[${extras}]"
# PyTorch CPU is the tests' and benchmarks' reference (parity tests), never a runtime dependency;
# the CPU wheel is named by version so that pip does not pull a CUDA build.
case "$extras" in
  *test*|*bench*) python3 -m pip install -q --disable-pip-version-check torch==2.13.0 ;;
esac
python3 -c "import ganforge, sys; from ganforge.backends.cpu import native; ok, why = native.available(); print('setup: ganforge', ganforge.__version__, '- compiled kernels', 'loaded' if ok else 'MISSING: ' + why); sys.exit(0 if ok else 1)"
