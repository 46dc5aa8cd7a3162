#!/usr/bin/env bash
# Sets up everything segzoo needs to build and run, idempotently:
#   Debian packages (OpenMPI, libclang for mpi-sys, gloo's headers for the c10d shim), a
#   project-local .venv with
#   the pinned torch 2.11.0 (libtorch for tch 0.24), ONNX Runtime and Pillow for the
#   offline deployment scripts (scripts/onnx_infer.py), and .segzoo/ with stable links
#   that .cargo/config.toml and build.rs point at.
# SEGZOO_TORCH=cpu|cuda overrides the automatic choice (cuda when nvidia-smi sees a GPU).
# SEGZOO_TORCH_INDEX=URL installs the CUDA flavour's torch from that index instead of PyPI
# (https://download.pytorch.org/whl/cu128 for hosts whose driver is CUDA 12.x; PyPI's is
# CUDA 13, which needs driver 580 or newer).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TORCH_VERSION="2.11.0"
ORT_VERSION="1.32.0"
TB_VERSION="2.21.0"
CPU_EXTRAS=("nvidia-cuda-runtime==13.0.96" "nvidia-cuda-cupti==13.0.85")
# The CUDA flavour's shim compiles ProcessGroupNCCL.hpp, which needs crt/host_config.h and
# nv/target: headers the torch wheel's own CUDA dependencies do not ship. Chosen below by
# the CUDA version of the torch installed (13.0 from PyPI; 12.x from PyTorch's own index).
cuda_header_wheels() {
  case "$1" in
    13.*) echo "nvidia-cuda-crt==13.0.* nvidia-cuda-cccl==13.0.*" ;;
    12.*) echo "nvidia-cuda-nvcc-cu12==$1.* nvidia-cuda-cccl-cu12==$1.*" ;;
    *) echo "setup: torch was built for CUDA '$1', which setup has no header wheels for" >&2; return 1 ;;
  esac
}
log() { echo "[setup] $*"; }

# --- Debian packages -------------------------------------------------------
# libgloo-dev: headers only (ProcessGroupGloo.hpp includes them); the symbols are libtorch_cpu's.
# patchelf: scripts/gpu_bundle.sh points the bundled binaries at their own lib/.
# iproute2 (ip, tc), util-linux (taskset): the tests' namespaced links and pinned ranks.
APT_PKGS=(libopenmpi-dev openmpi-bin libclang1-14 libclang-common-14-dev pkg-config fonts-dejavu-core libgloo-dev patchelf iproute2 util-linux)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- torch flavour -----------------------------------------------------------
FLAVOUR="${SEGZOO_TORCH:-}"
if [[ -z "$FLAVOUR" ]]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then FLAVOUR=cuda; else FLAVOUR=cpu; fi
fi
case "$FLAVOUR" in cpu|cuda) ;; *) echo "SEGZOO_TORCH must be cpu or cuda, got '$FLAVOUR'" >&2; exit 2;; esac

# --- venv with pinned torch ------------------------------------------------
PY="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
  log "creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
have_version="$($VPY -c 'import importlib.metadata as m; print(m.version("torch"))' 2>/dev/null || true)"
have_flavour="$(cat .segzoo/torch_flavour 2>/dev/null || true)"
INDEX="${SEGZOO_TORCH_INDEX:-}"
have_index="$(cat .segzoo/torch_index 2>/dev/null || true)"
# PyTorch's own index versions its wheels 2.11.0+cu128: the pin is the part before '+'.
if [[ "${have_version%%+*}" != "$TORCH_VERSION" || "$have_flavour" != "$FLAVOUR" || "$have_index" != "$INDEX" ]]; then
  log "installing torch==$TORCH_VERSION ($FLAVOUR${INDEX:+, from $INDEX}) into .venv"
  if [[ "$FLAVOUR" == cpu ]]; then
    # Slim set: libtorch_cpu links libcudart/libcupti but needs nothing else of CUDA.
    $VPY -m pip install -q --disable-pip-version-check --no-deps "torch==$TORCH_VERSION" "${CPU_EXTRAS[@]}"
  elif [[ -n "$INDEX" ]]; then
    $VPY -m pip install -q --disable-pip-version-check --index-url "$INDEX" "torch==$TORCH_VERSION"
  else
    $VPY -m pip install -q --disable-pip-version-check "torch==$TORCH_VERSION"
  fi
  mkdir -p .segzoo && echo "$INDEX" > .segzoo/torch_index
fi
if [[ "$FLAVOUR" == cuda ]]; then
  # torch/version.py says `cuda: Optional[str] = '13.0'`; read without importing torch.
  CUDA_VERSION="$($VPY -c 'import importlib.util as u, os, re; t = open(os.path.join(os.path.dirname(u.find_spec("torch").origin), "version.py")).read(); m = re.search(r"^cuda\b.*?([0-9]+\.[0-9]+)", t, re.M); print(m.group(1) if m else "")')"
  headers="$(cuda_header_wheels "$CUDA_VERSION")" || exit 1
  read -r -a CUDA_HEADER_WHEELS <<<"$headers"
  names="$(printf '"%s",' "${CUDA_HEADER_WHEELS[@]%%==*}")"
  if ! $VPY -c "import importlib.metadata as m; [m.version(n) for n in [$names]]" >/dev/null 2>&1; then
    log "installing the CUDA $CUDA_VERSION headers the NCCL shim needs: ${CUDA_HEADER_WHEELS[*]}"
    $VPY -m pip install -q --disable-pip-version-check --no-warn-conflicts "${CUDA_HEADER_WHEELS[@]}"
  fi
fi

# --- ONNX Runtime for the deployment scripts (no torch import there) ---------
# Python-side only: the slim CPU torch above cannot be imported, so onnx_infer.py runs
# on onnxruntime + numpy + Pillow. Checked by version/import, installed only when missing.
have_ort="$($VPY -c 'import importlib.metadata as m; print(m.version("onnxruntime"))' 2>/dev/null || true)"
if [[ "$have_ort" != "$ORT_VERSION" ]] || ! $VPY -c 'import numpy, PIL' >/dev/null 2>&1; then
  log "installing onnxruntime==$ORT_VERSION, numpy and pillow into .venv"
  $VPY -m pip install -q --disable-pip-version-check --no-warn-conflicts "onnxruntime==$ORT_VERSION" numpy pillow
fi

# --- TensorBoard: to view <output_dir>/tb/ (and read it back in the tests) ---------
# --no-warn-conflicts: the slim torch above is installed without its CUDA dependencies on
# purpose; pip would otherwise list them as conflicts on every install.
have_tb="$($VPY -c 'import importlib.metadata as m; print(m.version("tensorboard"))' 2>/dev/null || true)"
if [[ "$have_tb" != "$TB_VERSION" ]]; then
  log "installing tensorboard==$TB_VERSION into .venv"
  $VPY -m pip install -q --disable-pip-version-check --no-warn-conflicts "tensorboard==$TB_VERSION"
fi

# --- stable links for cargo --------------------------------------------------
SITE="$($VPY -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
mkdir -p .segzoo
ln -sfn "$SITE/torch" .segzoo/libtorch
# Rewritten only on change: build.rs reruns (and segzoo rebuilds) when its mtime moves.
[[ "$(cat .segzoo/torch_flavour 2>/dev/null)" == "$FLAVOUR" ]] || echo "$FLAVOUR" > .segzoo/torch_flavour
log "ready: torch $TORCH_VERSION ($FLAVOUR), onnxruntime $ORT_VERSION, tensorboard $TB_VERSION, LIBTORCH=.segzoo/libtorch"
