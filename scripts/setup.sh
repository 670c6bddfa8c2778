#!/usr/bin/env bash
# Installs everything nextn needs from Debian 12's packages. Idempotent, and silent when all is
# already there. Run as root or with sudo available.
#   --fuzz   also clang-14 and libFuzzer, for the fuzz targets (scripts/fuzz.sh)
set -euo pipefail
fuzz=false
for arg in "$@"; do
  case "$arg" in
    --fuzz) fuzz=true ;;
    *) echo "setup: unknown option '$arg' (--fuzz)" >&2; exit 2 ;;
  esac
done

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libtorch-dev                # libtorch 1.13 (CPU), the backbone
  libopenblas0-pthread        # the BLAS libtorch must call at run time (reference BLAS is 20x slower)
  libdnnl-dev                 # oneDNN's sgemm: training's fp32 products (libtorch's bf16 ones use it too)
  libjemalloc-dev             # malloc that keeps freed pages: 3x faster CPU training here
  nlohmann-json3-dev          # config.json, safetensors headers, tokenizer.json
  libcli11-dev                # the nextn command line
  libgtest-dev                # tests
  libpcre2-dev                # DeepSeek-V3 pre-tokenizer regexes
  libutf8proc-dev             # Unicode normalization and character classes (tokenizer.json normalizers)
  libcpp-httplib-dev          # HTTP for `nextn serve` (the library llama.cpp's server uses)
  libgloo-dev                 # headers of the Gloo library behind libtorch's c10d (distributed training)
  python3-torch               # the plain-PyTorch reference model (bench/reference), and torchrun
  iproute2                    # tests: two "machines" as network namespaces for distributed training
  chromium                    # tests: `nextn dashboard` and `nextn report` in a real browser
)

if $fuzz; then
  PACKAGES+=(clang-14 libfuzzer-14-dev)  # libFuzzer with AddressSanitizer and UBSan (fuzz/)
fi

if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi

missing=()
for package in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$package")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  "${SUDO[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

# libtorch links libblas.so.3 and liblapack.so.3, which Debian resolves through alternatives.
# Point both at OpenBLAS (pthread flavour) if something else is selected.
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
for lib in libblas.so.3 liblapack.so.3; do
  name="$lib-$multiarch"
  want="/usr/lib/$multiarch/openblas-pthread/$lib"
  current=$(update-alternatives --query "$name" 2>/dev/null | sed -n 's/^Value: //p')
  if [ -e "$want" ] && [ "$current" != "$want" ]; then
    echo "setup: selecting OpenBLAS for $lib"
    "${SUDO[@]}" update-alternatives --quiet --set "$name" "$want"
  fi
done

# Node.js and the npm packages the tests drive nextn with (the official OpenAI client against
# `nextn serve`, playwright-core driving chromium against `nextn dashboard`; echarts, the chart
# library vendored in third_party/echarts, to check that copy), pinned by package-lock.json. Node comes from Debian when the machine has none.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "setup: installing nodejs npm"
  "${SUDO[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
root="$(cd "$(dirname "$0")/.." && pwd)"
if [ ! -f "$root/node_modules/.package-lock.json" ] || [ "$root/package-lock.json" -nt "$root/node_modules/.package-lock.json" ]; then
  echo "setup: installing the tests' npm packages (package-lock.json)"
  (cd "$root" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
