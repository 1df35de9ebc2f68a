#!/usr/bin/env bash
# Mutation testing with cosmic-ray (`make mutation`): for each group in mutation/*.toml,
# every mutant of its modules is applied to a scratch copy of the tree (never to yours),
# the group's tests run there with PyTorch hidden, and the report lists the survivors.
#   scripts/mutation.sh                 every group
#   scripts/mutation.sh optim losses    some groups
# Sessions and reports land in build/mutation/; a rerun continues an unfinished session
# (rm -rf build/mutation to start afresh).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --disable-pip-version-check "cosmic-ray==8.7.0"
out="$PWD/build/mutation"
tree="$out/tree"
mkdir -p "$tree"
# the scratch copy: the tracked files as they are now, and the compiled module
while IFS= read -r -d '' file; do
  [ -e "$file" ] && cp --parents "$file" "$tree"
done < <(git ls-files -z --cached --others --exclude-standard)
native=$(python3 -c "import ganforge._C as c; print(c.__file__)")
cp "$native" "$tree/ganforge/"
export PYTHONPATH="$tree/mutation/site:$tree/mutation/no_torch:$tree"
groups=("$@")
[ ${#groups[@]} -gt 0 ] || groups=($(ls mutation/*.toml | xargs -n1 basename | sed 's/\.toml$//'))
cd "$tree"
for group in "${groups[@]}"; do
  config="mutation/$group.toml"
  session="$out/$group.sqlite"
  [ -f "$session" ] || { cosmic-ray init "$config" "$session"; cr-filter-operators "$session" "$config"; }
  cosmic-ray exec "$config" "$session"
  cr-report "$session" --show-pending > "$out/$group.txt"
  echo "mutation: $group: $(tail -n 3 "$out/$group.txt" | tr '\n' ' ')"
done
