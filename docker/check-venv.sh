#!/bin/sh
# check-venv SERVICE: the pruned venv of one image loads what that service runs, native extensions
# included (a failed import fails the build, not the first request). Runs in the venv stage only.
set -eu
case "$1" in
  auth) modules="modelberth_auth.app, cryptography.hazmat.primitives.asymmetric.ec, argon2, uvloop, httptools, yaml" ;;
  inference) modules="modelberth_inference.app, numpy, scipy.linalg, scipy.sparse, scipy.special, sklearn.ensemble, sklearn.linear_model, pandas, uvloop, httptools" ;;
  ui) modules="modelberth_ui.app, gradio, pandas, numpy, uvloop, httptools" ;;
  trainer) modules="modelberth_trainer.train, numpy, scipy.linalg, scipy.stats, sklearn.ensemble, sklearn.linear_model, pandas, matplotlib.pyplot" ;;
  *) modules="modelberth_$1" ;;  # a new image: at least its package; list what it needs above
esac
MPLCONFIGDIR=/tmp/mpl exec /opt/venv/bin/python -c "import $modules"
