#!/usr/bin/env bash
# Builds the CUDA flavour of segzoo and writes DIR, a folder that runs the GPU check on a
# machine that has PyTorch 2.11.0 (CUDA 13) in python3 but no Rust, no Open MPI and no
# network (docs/installation.md, "Checking a GPU machine"):
#   scripts/gpu_bundle.sh DIR
#   # carry DIR to the GPU machine, then there:  DIR/scripts/gpu_check.sh --out RESULTS
# The first run makes .segzoo/cuda-venv (the CUDA torch wheel and the header wheels the NCCL
# shim compiles against, about 5 GB) and builds into target/cuda (about 15 minutes on 2
# cores); the checkout's own CPU build is left alone.
#
# DIR holds bin/ (segzoo and segzoo-launch, stripped, RUNPATH $ORIGIN/../lib), lib/ (every
# library they load that PyTorch's wheels do not ship: Open MPI and what it needs; not glibc
# nor the C++ runtime, which PyTorch needs from the system as well), env.sh (puts python3's
# PyTorch libraries and lib/ on the library path), the check's scripts and configs, and
# MANIFEST.json (commit, checksums, the glibc and libstdc++ versions the binaries need).
# It ends by proving DIR on this machine: in a private mount namespace where Debian's Open
# MPI is hidden, with only the wheels' libraries and DIR on the library path, every library
# resolves and `segzoo env` runs (skipped, saying so, where namespaces cannot be made).
#
#   --from BINDIR --torch TORCHDIR   package binaries built already, against that torch
#                                    package folder (the tests bundle the CPU debug build)
#   --max-mib N                      the size limit (default 60: the GPU tool carries 64 MiB
#                                    with the working tree)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FROM="" TORCH="" MAX_MIB=60 DIR=""
while (($#)); do
  case "$1" in
    --from) FROM="$2"; shift 2 ;;
    --torch) TORCH="$2"; shift 2 ;;
    --max-mib) MAX_MIB="$2"; shift 2 ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    -*) echo "gpu_bundle: unknown option $1" >&2; exit 2 ;;
    *) [[ -z "$DIR" ]] || { echo "gpu_bundle: one DIR only" >&2; exit 2; }; DIR="$1"; shift ;;
  esac
done
[[ -n "$DIR" ]] || { echo "usage: scripts/gpu_bundle.sh [--from BINDIR --torch TORCHDIR] [--max-mib N] DIR" >&2; exit 2; }
[[ -z "$FROM" || -n "$TORCH" ]] || { echo "gpu_bundle: --from needs --torch" >&2; exit 2; }
log() { echo "[gpu_bundle] $*"; }
need_tool() {
  command -v "$1" >/dev/null 2>&1 && return
  log "installing $2"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$2" >/dev/null
}
need_tool patchelf patchelf

if [[ -z "$FROM" ]]; then
  # Debian packages (Open MPI, gloo's headers, libclang) and the CPU venv, as every build.
  "$ROOT/scripts/setup.sh"
  VENV="$ROOT/.segzoo/cuda-venv"
  # The pin of scripts/setup.sh; the header wheels are the ones its CUDA flavour installs.
  if ! "$VENV/bin/python" -c 'import importlib.metadata as m; assert m.version("torch") == "2.11.0"; m.version("nvidia-cuda-crt"); m.version("nvidia-cuda-cccl")' >/dev/null 2>&1; then
    log "making $VENV with torch 2.11.0 (CUDA 13) and the CUDA header wheels (about 5 GB)"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check torch==2.11.0 "nvidia-cuda-crt==13.0.*" "nvidia-cuda-cccl==13.0.*"
  fi
  TORCH="$("$VENV/bin/python" -c 'import importlib.util as u, os; print(os.path.dirname(u.find_spec("torch").origin))')"
  log "building the CUDA flavour into target/cuda"
  (cd "$ROOT" && LIBTORCH="$TORCH" SEGZOO_TORCH_FLAVOUR=cuda CARGO_TARGET_DIR="$ROOT/target/cuda" \
    cargo build --release --workspace)
  FROM="$ROOT/target/cuda/release"
fi
TORCH="$(cd "$TORCH" && pwd -P)"
SITE="$(dirname "$TORCH")"
[[ -d "$TORCH/lib" ]] || { echo "gpu_bundle: $TORCH has no lib/: not a torch package folder" >&2; exit 2; }

# The wheels' library folders: torch's own, and the nvidia-* wheels' where there are any.
wheel_path() {
  local p="$TORCH/lib" d
  for d in "$SITE"/nvidia/*/lib; do [[ -d "$d" ]] && p="$p:$d"; done
  echo "$p"
}

rm -rf "$DIR"
mkdir -p "$DIR/bin" "$DIR/lib" "$DIR/scripts" "$DIR/configs"
DIR="$(cd "$DIR" && pwd)"
for b in segzoo segzoo-launch; do
  [[ -x "$FROM/$b" ]] || { echo "gpu_bundle: no $FROM/$b" >&2; exit 1; }
  strip --strip-unneeded -o "$DIR/bin/$b" "$FROM/$b"
  # Not the build machine's venv: the bundle's lib/ (torch comes from env.sh's path).
  patchelf --set-rpath '$ORIGIN/../lib' "$DIR/bin/$b"
done

# Every library the binaries load, except PyTorch's wheels' (found under SITE) and glibc's
# and the C++ runtime's, which every system that runs PyTorch has.
SYSTEM_LIBS='^(ld-linux.*|linux-vdso.*|libc|libm|libdl|libpthread|librt|libutil|libresolv|libnsl|libanl|libstdc\+\+|libgcc_s)\.so'
for b in segzoo segzoo-launch; do
  LD_LIBRARY_PATH="$(wheel_path)" ldd "$DIR/bin/$b" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}'
done | sort -u | while read -r name path; do
  [[ "$name" =~ $SYSTEM_LIBS ]] && continue
  [[ "$(readlink -f "$path")" == "$(readlink -f "$SITE")"/* ]] && continue
  cp -L "$path" "$DIR/lib/$name"
done
for missing in $(LD_LIBRARY_PATH="$(wheel_path)" ldd "$DIR/bin/segzoo" | awk '/not found/ {print $1}'); do
  echo "gpu_bundle: $missing does not resolve on this machine" >&2; exit 1
done

cp "$ROOT/scripts/gpu_check.sh" "$ROOT/scripts/gpu_check.py" "$ROOT/scripts/torch_peer.py" "$DIR/scripts/"
cp "$ROOT/configs/hrnetv2_w48_cityscapes.toml" "$ROOT/configs/quickstart.toml" "$DIR/configs/"
cat > "$DIR/env.sh" <<'EOF'
# Sourced (scripts/gpu_check.sh does): puts this bundle's bin/ on PATH, and its lib/ and the
# libraries of python3's PyTorch (torch/lib and the nvidia-* wheels') on the library path.
# SEGZOO_TORCH_DIR=…/site-packages/torch names the torch package instead of python3's;
# SEGZOO_PYTHON names another python.
_bundle="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd)"
_torch="${SEGZOO_TORCH_DIR:-$("${SEGZOO_PYTHON:-python3}" -c 'import importlib.util as u, os; s = u.find_spec("torch"); print(os.path.dirname(s.origin) if s else "")' 2>/dev/null)}"
if [ -z "$_torch" ] || [ ! -d "$_torch/lib" ]; then
  echo "env.sh: no PyTorch found (${SEGZOO_PYTHON:-python3} has no torch; set SEGZOO_TORCH_DIR)" >&2
  return 1 2>/dev/null || exit 1
fi
_libs="$_bundle/lib:$_torch/lib"
for _d in "$(dirname "$_torch")"/nvidia/*/lib; do [ -d "$_d" ] && _libs="$_libs:$_d"; done
export LD_LIBRARY_PATH="$_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$_bundle/bin:$PATH"
unset _bundle _torch _libs _d
EOF

# What the binaries need of the system, and what is in the bundle.
python3 - "$DIR" "$ROOT" "$TORCH" <<'EOF'
import hashlib, json, os, re, subprocess, sys, time
dir_, root, torch = sys.argv[1:]
def sha(p):
    return hashlib.sha256(open(p, "rb").read()).hexdigest()
def newest(binary, prefix):
    syms = subprocess.run(["objdump", "-T", binary], capture_output=True, text=True).stdout
    versions = {tuple(int(x) for x in v.split(".")) for v in re.findall(prefix + r"_([0-9.]+)\)?\s", syms)}
    return prefix + "_" + ".".join(map(str, max(versions))) if versions else None
git = lambda *a: subprocess.run(["git", "-C", root] + list(a), capture_output=True, text=True).stdout.strip()
files = {}
for sub in ("bin", "lib"):
    for f in sorted(os.listdir(os.path.join(dir_, sub))):
        p = os.path.join(dir_, sub, f)
        files[f"{sub}/{f}"] = {"bytes": os.path.getsize(p), "sha256": sha(p)}
segzoo = os.path.join(dir_, "bin", "segzoo")
manifest = {
    "commit": git("rev-parse", "HEAD"),
    "uncommitted_changes": bool(git("status", "--porcelain", "--untracked-files=no")),
    "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "torch": open(os.path.join(torch, "version.py")).read().split("__version__ = ")[1].split("\n")[0].strip("'\""),
    "needs": {"glibc": newest(segzoo, "GLIBC"), "libstdc++": newest(segzoo, "GLIBCXX"),
              "python3 with torch": "2.11.0 (the libraries segzoo was linked against)"},
    "files": files,
}
json.dump(manifest, open(os.path.join(dir_, "MANIFEST.json"), "w"), indent=2)
EOF

SIZE=$(du -sb "$DIR" | cut -f1)
MIB=$((SIZE / 1048576))
((SIZE <= MAX_MIB * 1048576)) || { echo "gpu_bundle: $DIR is $MIB MiB, over the $MAX_MIB MiB limit" >&2; exit 1; }
log "wrote $DIR ($MIB MiB): $(ls "$DIR/lib" | wc -l) libraries in lib/"

# The proof: Debian's Open MPI (and every system copy of what lib/ carries) hidden in a
# private mount namespace; the wheels' libraries and DIR alone on the library path.
if [[ $(id -u) -ne 0 ]] || ! unshare -m true 2>/dev/null; then
  log "proof skipped: hiding Open MPI needs root and a private mount namespace (unshare -m)"
  exit 0
fi
HIDE=()
for f in "$DIR"/lib/*; do
  for p in /lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu /usr/lib /lib; do
    [[ -e "$p/$(basename "$f")" ]] && HIDE+=("$(readlink -f "$p/$(basename "$f")")")
  done
done
ALONE="$(mktemp -d)"
cp "$DIR/bin/segzoo" "$ALONE/segzoo"
trap 'rm -rf "$ALONE"' EXIT
unshare -m bash -s "$DIR" "$TORCH" "$ALONE" "${HIDE[@]}" <<'EOF'
set -euo pipefail
DIR="$1" TORCH="$2" ALONE="$3"; shift 3
mount --make-rprivate /
for f in $(printf '%s\n' "$@" | sort -u); do mount --bind /dev/null "$f"; done
for d in /usr/lib/x86_64-linux-gnu/openmpi /usr/lib/x86_64-linux-gnu/pmix2; do
  [[ -d "$d" ]] && mount -t tmpfs none "$d"
done
unset LD_LIBRARY_PATH
# shellcheck source=/dev/null
SEGZOO_TORCH_DIR="$TORCH" source "$DIR/env.sh"
# Without the bundle's lib/, the binary must not load: the system's copies are hidden.
if LD_LIBRARY_PATH="${LD_LIBRARY_PATH#"$DIR/lib:"}" "$ALONE/segzoo" env >/dev/null 2>&1; then
  echo "gpu_bundle: proof failed: segzoo ran without the bundle's lib/ (Open MPI is not hidden)" >&2; exit 1
fi
if ldd "$DIR/bin/segzoo" "$DIR/bin/segzoo-launch" | grep "not found"; then
  echo "gpu_bundle: proof failed: libraries above do not resolve" >&2; exit 1
fi
"$DIR/bin/segzoo" env >/dev/null
"$DIR/bin/segzoo" env | sed 's/^/[gpu_bundle]   /'
echo "[gpu_bundle] proof: with Open MPI hidden and only the wheels' libraries and $DIR on the library path, every library resolves and segzoo env runs"
EOF
