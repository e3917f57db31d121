# Sourced by test.sh and demo.sh: create .venv once and install aamflow into it.
# The CPU build of torch goes in first, so pip never pulls a multi-GB CUDA build.
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
source .venv/bin/activate
if ! python -c "import torch" 2>/dev/null; then
  python -m pip install -q "torch==2.13.0" || python -m pip install -q "torch>=2.4,<3" --index-url https://download.pytorch.org/whl/cpu
fi
python -m pip install -q -e ".[test,hf,opennsfw]"
