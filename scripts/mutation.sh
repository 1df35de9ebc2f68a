#!/usr/bin/env bash
# Mutation testing with cosmic-ray (`make mutation`): for each group in mutation/*.toml,
# every mutant of its modules is applied to a scratch copy of the tree (never to yours),
# the group's tests run there with PyTorch hidden, and the report lists the survivors.
#   scripts/mutation.sh                 every group
#   scripts/mutation.sh optim losses    some groups
#   JOBS=2 scripts/mutation.sh nn       two workers, each with its own copy (default: nproc)
#   TORCH=1 scripts/mutation.sh optim   again with PyTorch visible (its parity tests run too)
# Sessions and reports land in build/mutation/; a rerun continues an unfinished session
# (rm -rf build/mutation to start afresh).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --disable-pip-version-check "cosmic-ray==8.7.0"
out="$PWD/build/mutation"
jobs="${JOBS:-$(nproc)}"
native=$(python3 -c "import ganforge._C as c; print(c.__file__)")
shards="$PWD/scripts/mutation_shards.py"
# one scratch copy per worker: the tracked files as they are now, and the compiled module
for ((worker = 0; worker < jobs; worker++)); do
  tree="$out/tree$worker"
  rm -rf "$tree"
  mkdir -p "$tree"
  while IFS= read -r -d '' file; do
    [ -e "$file" ] && cp --parents "$file" "$tree"
  done < <(git ls-files -z --cached --others --exclude-standard)
  cp "$native" "$tree/ganforge/"
done
# With PyTorch visible the suite is the same tests plus the parity ones, so a mutant killed
# without it is killed with it: that session starts as a copy of the other, its survivors
# to be run again.
torch_hidden=1 suffix=""
if [ "${TORCH:-0}" = 1 ]; then torch_hidden=0 suffix="-torch"; fi
groups=("$@")
[ ${#groups[@]} -gt 0 ] || groups=($(ls mutation/*.toml | xargs -n1 basename | sed 's/\.toml$//'))
# one BLAS thread per worker: the workers already fill the cores
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
for group in "${groups[@]}"; do
  config="mutation/$group.toml"
  session="$out/$group$suffix.sqlite"
  python3 "$shards" merge "$session"  # what an interrupted run finished
  if [ -n "$suffix" ] && [ ! -f "$session" ]; then
    [ -f "$out/$group.sqlite" ] || { echo "mutation: run $group without TORCH=1 first" >&2; exit 1; }
    python3 "$shards" survivors-again "$out/$group.sqlite" "$session"
  fi
  if [ ! -f "$session" ]; then
    (cd "$out/tree0" && cosmic-ray init "$config" "$session" && cr-filter-operators "$session" "$config")
  fi
  python3 "$shards" split "$session" "$jobs"
  for ((worker = 0; worker < jobs; worker++)); do
    tree="$out/tree$worker"
    hide="$tree/mutation/no_torch:"
    [ "$torch_hidden" = 1 ] || hide=""
    (cd "$tree" && PYTHONPATH="$tree/mutation/site:$hide$tree" cosmic-ray exec "$config" "$session.$worker") &
  done
  wait
  python3 "$shards" merge "$session"
  cr-report "$session" --show-pending > "$out/$group$suffix.txt"
  echo "mutation: $group$suffix: $(tail -n 3 "$out/$group$suffix.txt" | tr '\n' ' ')"
done
