#!/usr/bin/env bash
# The arm64 (aarch64) check: the installed jina-onnx wheel on an emulated arm64 CPU (QEMU user mode), against
# vectors made on x86 by the same code.
#   bash scripts/arm64_check.sh           # everything, ~7-8 min: t and all-MiniLM-L6-v2 (fp32, int8, auto, the
#                                         #   CLI, one int8 server for both), and t's parity on an SVE CPU
#   bash scripts/arm64_check.sh --smoke   # what CI runs, ~75 s from empty caches, ~30 s warm: import, t's fp32/int8
#                                         #   parity and batch invariance, precision="auto", `jina-onnx encode`
# Both also run the x86 exports' int8 on an older x86 class under qemu-x86_64 (X86_CPUS, default Haswell: AVX2
# only, where u8 x s8 products saturate in 16 bits unless the weights are 7-bit): t in the smoke check, t and
# MiniLM in the full one.
# Each step prints its seconds; the last line is `arm64: N checks passed in S s`, or the failed checks with
# their numbers (exit 1). scripts/arm64_check.py has the checks and their limits.
#
# The arm64 environment, built once and cached under $XDG_CACHE_HOME/jina-onnx/arm64/env-KEY (KEY: this
# script and the wheel pins it reads from requirements/ci.txt), in a temporary folder renamed when complete:
#   root/          Debian 12 arm64 (python3.11 and the C/C++ runtime), by mmdebstrap --variant=extract: nothing
#                  of it is executed on x86; its standard library is compiled to .pyc here (x86's python 3.11
#                  writes the same files), as the emulated python would otherwise compile it on every start;
#   qemu-aarch64   (and qemu-x86_64) the static binaries from Debian 13's qemu-user (pinned .deb, sha256 checked): Debian 12's
#                  QEMU 7.2 dies with SIGSEGV importing onnxruntime 1.31.1;
#   site/          the aarch64 wheels of the runtime's dependencies (the `cpu` and `serve` extras) at the
#                  versions of requirements/ci.txt, unpacked and compiled, for PYTHONPATH.
# The x86 exports of t and MiniLM are cached next to it (exports-KEY, KEY: export/'s files and the export
# stack's pins). The jina-onnx wheel is built from the working tree on every run: it is the code under test.
#
# Emulated CPU: neoverse-n1 (NEON and dotprod, as AWS Graviton2 / Ampere Altra). QEMU's default CPU has SVE and
# SME, whose ONNX Runtime fp32 kernels run ~20x slower under emulation (50 s for 3 sentences on t); the full
# check runs t's parity once on neoverse-v1 (SVE, as Graviton3) for those kernels.
#
# Needs: Debian/Ubuntu x86_64 with mmdebstrap (installed here when run as root), dpkg-deb, curl, .venv (torch, for
# the exports: bash scripts/setup.sh), and network access to deb.debian.org and PyPI on the first run.
# Environment: ARM64_KEEP=1 keeps the run's folder (logs, vectors); ARM64_CPU / ARM64_SVE_CPU ('' skips) pick
# QEMU's CPUs; ARM64_DEBIAN_MIRROR replaces deb.debian.org; ARM64_SERVE_TIMEOUT (600 s) bounds the server start.
set -euo pipefail
cd "$(dirname "$0")/.."
self=scripts/arm64_check.sh

mode=full
case "${1:-}" in
  "") ;;
  --smoke) mode=smoke ;;
  -h | --help) sed -n '2,9p' "$self" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "arm64: unknown argument $1 (use --smoke, or nothing for the full check)" >&2; exit 2 ;;
esac
t0=$EPOCHREALTIME
py=${ARM64_HOST_PYTHON:-$PWD/.venv/bin/python}
pip_py=${ARM64_PIP_PYTHON:-python3}  # .venv, built by uv, has no pip: the download uses the system's pip
cache=${XDG_CACHE_HOME:-$HOME/.cache}/jina-onnx/arm64
mirror=${ARM64_DEBIAN_MIRROR:-http://deb.debian.org/debian}

# --- pins (any change here changes KEY: a new environment is built) ---
suite=bookworm
rootfs_packages=python3,libpython3.11,libstdc++6,libgomp1,libgcc-s1,ca-certificates
qemu_version=1:10.0.13+ds-0+deb13u1  # Debian 13 (trixie); its Packages index gave the sha256
qemu_deb=pool/main/q/qemu/qemu-user_10.0.13+ds-0+deb13u1_amd64.deb
qemu_sha256=ca6ede739327a20ae5a3498230c8a3a9a072c586e131bc6bcc1201eb1725e336
# The runtime's dependencies with the `cpu` and `serve` extras, and theirs, on linux aarch64 / CPython 3.11.
# Versions come from requirements/ci.txt; a dependency missing here fails the download step, naming it.
wheels=(
  numpy tokenizers tqdm onnxruntime huggingface_hub                        # core + `cpu`
  flatbuffers packaging protobuf                                           # onnxruntime's
  filelock fsspec hf-xet pyyaml requests typing_extensions                 # huggingface_hub's
  charset-normalizer idna urllib3 certifi                                  # requests'
  starlette uvicorn uvloop httptools prometheus_client orjson anyio click h11  # `serve` and theirs
)
platforms=(--platform manylinux_2_28_aarch64 --platform manylinux_2_17_aarch64 --platform manylinux2014_aarch64)

seconds() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
say() { echo "arm64: $*"; }
fail() { echo "arm64: FAILED: $*" >&2; echo "arm64: check failed after $(seconds "$t0") s"; exit 1; }

[ -x "$py" ] || fail "$py not found: run bash scripts/setup.sh first (the exports need torch)"
# .pyc files are compiled here with $py: only a python 3.11 writes the ones the emulated python 3.11 reads.
precompile=true
if ! "$py" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2> /dev/null; then
  say "note: $py is not python 3.11, so nothing is precompiled: each emulated start compiles what it imports"
  precompile=false
fi

pins=()
for name in "${wheels[@]}"; do
  line=$(grep -iE "^${name//[-_.]/[-_.]}==" requirements/ci.txt) || fail "requirements/ci.txt pins no $name"
  pins+=("$line")
done
key=$({ cat "$self"; printf '%s\n' "${pins[@]}"; } | sha256sum | cut -c1-16)
env=$cache/env-$key

build_env() {
  local partial step
  mkdir -p "$cache"
  partial=$(mktemp -d "$cache/env-$key.partial-XXXXXX")
  trap 'rm -rf "$partial"' EXIT
  say "building the arm64 environment in $env (once per pin set)"

  step=$EPOCHREALTIME
  if ! command -v mmdebstrap > /dev/null; then
    [ "$(id -u)" = 0 ] || fail "mmdebstrap is missing: sudo apt-get install -y mmdebstrap (Debian 12+ / Ubuntu 22.04+)"
    say "installing mmdebstrap (apt)"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap; } \
      > "$partial/apt.log" 2>&1; then
      tail -20 "$partial/apt.log" >&2
      fail "apt-get install mmdebstrap"
    fi
  fi
  # extract: the packages (and their dependencies) are unpacked, no maintainer script runs, so no arm64
  # binary has to run on x86 and no binfmt_misc set-up is needed.
  mmdebstrap --quiet --arch=arm64 --variant=extract --include="$rootfs_packages" "$suite" "$partial/root" "$mirror" \
    > "$partial/mmdebstrap.log" 2>&1 || { tail -20 "$partial/mmdebstrap.log" >&2; fail "mmdebstrap"; }
  [ -x "$partial/root/usr/bin/python3.11" ] || fail "the rootfs has no usr/bin/python3.11"
  if "$precompile"; then  # best effort: a file left out is compiled on use
    "$py" -m compileall -q -j 2 -x '/(test|idlelib|lib2to3|tkinter|turtledemo)/' -s "$partial/root" -p / \
      "$partial/root/usr/lib/python3.11" > /dev/null || true
  fi
  say "step rootfs (Debian $suite arm64, mmdebstrap): $(seconds "$step") s, $(du -sm "$partial/root" | cut -f1) MB"

  step=$EPOCHREALTIME
  curl -fsSL --retry 3 -o "$partial/qemu-user.deb" "$mirror/$qemu_deb" \
    || fail "download $mirror/$qemu_deb: if trixie replaced qemu-user $qemu_version, pin the new one (apt-cache show qemu-user with a trixie source list gives Filename and SHA256)"
  echo "$qemu_sha256  $partial/qemu-user.deb" | sha256sum --check --quiet \
    || fail "qemu-user.deb: sha256 differs from the pinned $qemu_sha256"
  dpkg-deb --fsys-tarfile "$partial/qemu-user.deb" | tar -x -O ./usr/bin/qemu-aarch64 > "$partial/qemu-aarch64"
  # The same package's x86_64 emulator runs this machine's python on older x86 CPU classes (-cpu Haswell: AVX2
  # only; CPUID is the named model's, so numpy and ONNX Runtime pick that class's kernels).
  dpkg-deb --fsys-tarfile "$partial/qemu-user.deb" | tar -x -O ./usr/bin/qemu-x86_64 > "$partial/qemu-x86_64"
  chmod +x "$partial/qemu-aarch64" "$partial/qemu-x86_64"
  rm "$partial/qemu-user.deb"
  say "step qemu ($("$partial/qemu-aarch64" --version | head -1)): $(seconds "$step") s"

  step=$EPOCHREALTIME
  # No --no-deps: pip resolves the pins' dependencies, and anything it fetches beyond them is a missing pin.
  "$pip_py" -m pip download --quiet --disable-pip-version-check --only-binary=:all: "${platforms[@]}" \
    --python-version 3.11 --implementation cp --dest "$partial/wheels" "${pins[@]}" > "$partial/pip.log" 2>&1 \
    || { grep -v 'file:///opt' "$partial/pip.log" | tail -20 >&2; fail "pip download of the aarch64 wheels"; }
  local got want extra
  got=$(for wheel in "$partial"/wheels/*.whl; do basename "$wheel"; done | sed 's/-.*//' | tr 'A-Z.-' 'a-z__' | sort)
  want=$(printf '%s\n' "${pins[@]}" | sed 's/==.*//' | tr 'A-Z.-' 'a-z__' | sort)
  extra=$(comm -23 <(echo "$got") <(echo "$want"))
  [ -z "$extra" ] || fail "the wheels need $(echo "$extra" | tr '\n' ' ')beyond the pinned list: add them to wheels=()"
  [ "$(echo "$got" | wc -l)" = "${#pins[@]}" ] || fail "pip downloaded $(echo "$got" | wc -l) wheels for ${#pins[@]} pins"
  for wheel in "$partial"/wheels/*.whl; do "$py" -m zipfile -e "$wheel" "$partial/site"; done
  for data in "$partial"/site/*.data; do  # a wheel's purelib/platlib payload belongs in site/ itself
    [ -d "$data" ] || continue
    for lib in purelib platlib; do
      if [ -d "$data/$lib" ]; then cp -a "$data/$lib/." "$partial/site/"; fi
    done
    rm -rf "$data"
  done
  if "$precompile"; then "$py" -m compileall -q -j 2 -s "$partial/site" -p "$env/site" "$partial/site" > /dev/null || true; fi
  (cd "$partial/wheels" && sha256sum ./*.whl) > "$partial/wheels.sha256"
  rm -rf "$partial/wheels"
  say "step wheels (${#pins[@]} aarch64 wheels from PyPI, unpacked): $(seconds "$step") s, $(du -sm "$partial/site" | cut -f1) MB"

  # One emulated start before the environment counts as built, and the .pyc files must be the guest's.
  local magic
  magic=$("$partial/qemu-aarch64" -cpu neoverse-n1 -L "$partial/root" "$partial/root/usr/bin/python3.11" -c \
    'import importlib.util, platform; print(platform.machine(), platform.python_version(), importlib.util.MAGIC_NUMBER.hex())') \
    || fail "the emulated python does not start"
  if "$precompile"; then
    [ "$(echo "$magic" | cut -d' ' -f3)" = "$("$py" -c 'import importlib.util; print(importlib.util.MAGIC_NUMBER.hex())')" ] \
      || fail "the .pyc magic of $py differs from the emulated python's ($magic)"
  fi
  { echo "suite $suite ($rootfs_packages), emulated: $magic"; echo "qemu-user $qemu_version $qemu_sha256"
    printf '%s\n' "${pins[@]}"; cat "$partial/wheels.sha256"; } > "$partial/env.txt"
  rm -rf "$env"
  mv "$partial" "$env"  # whole or not at all
  trap - EXIT
  for stale in "$cache"/env-*; do  # earlier pin sets, and partial builds of killed runs
    [ "$stale" = "$env" ] || rm -rf "$stale"
  done
}

if [ -d "$env" ]; then
  say "arm64 environment: cached ($env)"
else
  build_env
fi

run=$(mktemp -d "${TMPDIR:-/tmp}/arm64-check.XXXXXX")
if [ "${ARM64_KEEP:-0}" = 1 ]; then trap 'echo "arm64: kept $run"' EXIT; else trap 'rm -rf "$run"' EXIT; fi

step=$EPOCHREALTIME
# The package as pip installs it, from a copy of the working tree's files (a build in place would leave
# build/ and egg-info behind in the checkout).
mkdir "$run/src"
if git rev-parse --is-inside-work-tree > /dev/null 2>&1; then
  git ls-files -co --exclude-standard -z -- pyproject.toml README.md runtime export |
    while IFS= read -r -d '' file; do
      if [ -e "$file" ]; then cp --parents "$file" "$run/src"; fi  # not a tracked file deleted in the tree
    done
else
  cp -r pyproject.toml README.md runtime export "$run/src"
fi
# PEP 517's build_wheel with .venv's pinned setuptools (the build backend pyproject.toml names).
(cd "$run/src" && "$py" -c 'import sys; from setuptools import build_meta; build_meta.build_wheel(sys.argv[1])' \
  "$run/dist") > "$run/wheel.log" 2>&1 || { tail -20 "$run/wheel.log" >&2; fail "building the jina-onnx wheel"; }
"$py" -m zipfile -e "$run"/dist/jina_onnx-*.whl "$run/wheel"
if "$precompile"; then "$py" -m compileall -q "$run/wheel" > /dev/null; fi
say "step jina-onnx wheel ($(basename "$run"/dist/*.whl), from the working tree): $(seconds "$step") s"

"$py" scripts/arm64_check.py host --mode "$mode" --qemu "$env/qemu-aarch64" --root "$env/root" --site "$env/site" \
  --wheel-dir "$run/wheel" --exports "$cache" --run "$run" --cpu "${ARM64_CPU:-neoverse-n1}" \
  --sve-cpu "${ARM64_SVE_CPU-neoverse-v1}" --x86-qemu "$env/qemu-x86_64" --x86-cpus "${X86_CPUS-Haswell}" \
  --t0 "$t0"
