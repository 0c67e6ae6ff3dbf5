#!/usr/bin/env bash
# The package as a user gets it: build a wheel from a copy of the checkout, install it into a fresh
# virtual environment, and run the console commands from an empty temporary folder. Checks that the
# wheel holds the configs, presets and page files, that a run finds them, that its data, run folder,
# checkpoint and index land under the current folder, and that the checkout is left as it was.
#   bash scripts/check_package.sh        (2 to 5 minutes on the 2 shared CPU cores; .ci/run calls it)
# Then `pip install -e` of the copy into a second venv. No download: the venvs see this Python's
# packages, pip and setuptools (--system-site-packages --without-pip), the package is installed with
# --no-deps and built without build isolation.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(cd "$(mktemp -d)" && pwd -P)"   # resolved: the editable check compares paths
trap 'rm -rf "$WORK"' EXIT
fail() { echo "check_package: $*" >&2; exit 1; }
before="$(git -C "$ROOT" status --porcelain --ignored)"

# build from a copy (tracked and untracked, not ignored files), so build/ and *.egg-info stay out of the checkout
mkdir "$WORK/src" "$WORK/dist" "$WORK/run"
(cd "$ROOT" && git ls-files -co --exclude-standard -z | tar --null -cf - -T -) | tar -xf - -C "$WORK/src"
python -m pip wheel -q --no-deps --no-build-isolation -w "$WORK/dist" "$WORK/src"
wheel="$(ls "$WORK"/dist/ucmfh_ph-*.whl)"
echo "built $(basename "$wheel")"

python -m venv --system-site-packages --without-pip "$WORK/venv"
"$WORK/venv/bin/python" -m pip install -q --no-deps --no-build-isolation "$wheel"
export PATH="$WORK/venv/bin:$PATH"
cd "$WORK/run"

# the distribution as another module would look it up, and the files read at run time
python - <<'PY'
import importlib.metadata
import sys
dist = importlib.metadata.distribution("ucmfh-ph")
files = {str(f) for f in dist.files}
for needed in ("ucmfh_ph/configs/demo.yaml", "ucmfh_ph/configs/presets/ucmfh.yaml",
               "ucmfh_ph/webui/static/index.html", "ucmfh_ph/scripts/search.py", "ucmfh_ph/train.py"):
    if needed not in files:
        sys.exit(f"check_package: the wheel lacks {needed}")
leaked = sorted(f for f in files if f.startswith(("ucmfh_ph/tests/", "ucmfh_ph/data/demo/", "ucmfh_ph/docs/")))
if leaked:
    sys.exit(f"check_package: the wheel holds {leaked[0]} and {len(leaked) - 1} more files it should not")
print(f"installed {dist.metadata['Name']} {dist.version}: {len(files)} files")
PY

for command in ucmfh-train ucmfh-eval ucmfh-extract ucmfh-index ucmfh-search; do
    [[ "$(command -v $command)" == "$WORK/venv/bin/$command" ]] || fail "$command is not the venv's"
    "$command" --help >/dev/null || fail "$command --help failed"
done
ucmfh-search --help | grep -q -- "--serve" || fail "ucmfh-search --help does not offer --serve"

ucmfh-train --dataset demo --epoch 1 --unimodal_epochs 0 --modality_dropout 0 --hash_lens 16 > train.log \
    || { tail -20 train.log; fail "ucmfh-train failed"; }
tail -4 train.log; echo
# the run took the installed configs/demo.yaml (its eval_every 5: the default is 10); a preset resolves
grep -q "^eval_every: 5$" runs/demo_16bit_*/config.yaml || fail "configs/demo.yaml was not applied"
python -c "
from ucmfh_ph.cli import load_command
load_command('ucmfh-train')   # puts the package's folder on sys.path, as the commands do
from config import build_config
assert build_config(['--dataset', 'demo', '--preset', 'ucmfh']).eval_sequence == 'batch', 'the preset was not applied'
" || fail "configs/presets/ucmfh.yaml was not found or applied"
ucmfh-index --checkpoint checkpoints/hash/demo_hash_16.pth > index.log || { cat index.log; fail "ucmfh-index failed"; }
ucmfh-search --index index/demo_retrieval_16bit.npz --query_id 0 --top_k 3 > search.log \
    || { cat search.log; fail "ucmfh-search failed"; }
ucmfh-eval --checkpoint checkpoints/hash/demo_hash_16.pth --output_dir eval > eval.log || fail "ucmfh-eval failed"
for path in data/demo runs/demo_16bit_*/results.json checkpoints/hash/demo_hash_16.pth \
            index/demo_retrieval_16bit.npz eval/results.json; do
    [[ -e $path ]] || fail "$path was not written under the current folder"
done

python -m venv --system-site-packages --without-pip "$WORK/editable"
"$WORK/editable/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$WORK/src"
"$WORK/editable/bin/ucmfh-search" --help > /dev/null || fail "ucmfh-search of the editable install failed"
[[ "$("$WORK/editable/bin/python" -c 'import ucmfh_ph.cli as c; print(c.PACKAGE_DIR)')" == "$WORK/src" ]] \
    || fail "the editable install does not run the source tree"
echo "pip install -e: the commands run $WORK/src"
echo "written under the current folder: $(cd "$WORK/run" && ls -d data/demo runs/* checkpoints/hash/* index/* eval | tr '\n' ' ')"
[[ "$(git -C "$ROOT" status --porcelain --ignored)" == "$before" ]] || fail "the checkout changed"
echo "check_package: ok"
