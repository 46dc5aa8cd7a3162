# Sourced by the run_*.sh entry points: sets up (idempotent), builds the release
# binaries, and turns the recipes' positional arguments into segzoo flags.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
# From the root: cargo reads .cargo/config.toml (the libtorch location) from the working directory.
(cd "$ROOT" && cargo build --release --workspace)
SEGZOO="$ROOT/target/release/segzoo"
LAUNCH="$ROOT/target/release/segzoo-launch"

# train_flags DATASET_PATH OUTPUT_PATH CHECKPOINT_PATH BEGIN_EPOCH: fills TRAIN_FLAGS.
# "-" or an empty value skips a position. With BEGIN_EPOCH the checkpoint is resumed
# from (the recipes' continuation); without, it is the pretrained model; with neither,
# training resumes from the output folder's newest checkpoint if there is one.
train_flags() {
  TRAIN_FLAGS=()
  local data="${1:--}" out="${2:--}" ckpt="${3:--}" begin="${4:--}"
  [[ "$data" != "-" ]] && TRAIN_FLAGS+=(--set "data.root=$data")
  [[ "$out" != "-" ]] && TRAIN_FLAGS+=(--set "train.output_dir=$out")
  if [[ "$begin" != "-" ]]; then
    [[ "$ckpt" == "-" ]] && { echo "BEGIN_EPOCH needs CHECKPOINT_PATH" >&2; exit 2; }
    TRAIN_FLAGS+=(--resume "$ckpt" --begin-epoch "$begin")
  else
    [[ "$ckpt" != "-" ]] && TRAIN_FLAGS+=(--set "model.pretrained=$ckpt")
    TRAIN_FLAGS+=(--resume auto)
  fi
  return 0
}

# The output folder CONFIG trains into.
output_dir() {
  "$SEGZOO" config show "$1" | sed -n 's/^output_dir = "\(.*\)"$/\1/p'
}
