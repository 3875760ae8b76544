#!/usr/bin/env bash
# Puts ONNX Runtime 1.31.1 (the version cudainfer is tested with) where the
# cudainfer-run unit and images look for it, DEST/lib/libonnxruntime.so, taken
# from the pinned wheel on PyPI; or the CUDA 13 libraries that its CUDA
# provider and cudainfer's run-time compiled kernels (NVRTC) need.
#
#   fetch-onnxruntime.sh [cpu|gpu] [DEST]   ONNX Runtime into DEST/lib (default /opt/onnxruntime):
#                                           cpu: the `onnxruntime` wheel's library;
#                                           gpu: `onnxruntime-gpu`'s, with its CUDA provider
#   fetch-onnxruntime.sh cuda-libs [DEST]   cuBLAS, cuDNN 9, cuFFT, cuRAND, CUDA runtime, NVRTC,
#                                           nvJitLink (NVIDIA's PyPI wheels) into DEST/lib
#                                           (default /opt/nvidia), for hosts without them
#
# Every wheel is pinned by version and SHA-256. Needs python3 with pip
# (Debian: apt install python3-pip); pip's own settings (index, proxy) apply.
# WHEEL_CACHE=DIR keeps the wheels there for the next run. Files are replaced
# by rename, so a running service keeps the copy it loaded.
set -euo pipefail

ORT_VERSION=1.31.1
# name==version sha256. ORT: the CPython 3.11 manylinux_2_28 wheels (the C
# library inside is the same for every Python version).
ort_cpu="onnxruntime==$ORT_VERSION 5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f"
ort_gpu="onnxruntime-gpu==$ORT_VERSION e26c475fe361b2015f45b4b824bd13f0bb20204e59b62814e6f0acd5f3d491a6"
# onnxruntime-gpu 1.31.1 on PyPI is built for CUDA 13 (its provider links
# libcudart.so.13, libcublas.so.13, libcurand.so.10 and loads cuDNN 9 and
# cuFFT 12). CUDA 13.0 Update 2's libraries: 13.0 is what R580 drivers
# support natively, and NVRTC must not be newer than the driver, which has
# to load the PTX it writes. cuDNN: the newest 9.x before ORT 1.31.1.
cuda_libs=(
  "nvidia-cuda-runtime==13.0.96 7f82250d7782aa23b6cfe765ecc7db554bd3c2870c43f3d1821f1d18aebf0548"
  "nvidia-cuda-nvrtc==13.0.88 ad9b6d2ead2435f11cbb6868809d2adeeee302e9bb94bcf0539c7a40d80e8575"
  "nvidia-nvjitlink==13.0.88 13a74f429e23b921c1109976abefacc69835f2f433ebd323d3946e11d804e47b"
  "nvidia-cublas==13.1.0.3 ee8722c1f0145ab246bccb9e452153b5e0515fd094c3678df50b2a0888b8b171"
  "nvidia-cufft==12.0.0.61 6c44f692dce8fd5ffd3e3df134b6cdb9c2f72d99cf40b62c32dde45eea9ddad3"
  "nvidia-curand==10.4.0.35 1aee33a5da6e1db083fe2b90082def8915f30f3248d5896bcec36a579d941bfc"
  "nvidia-cudnn-cu13==9.27.0.42 9677e76f21862eb5da7ee5ed69d544738b2d8b5c3ce7e5ec125c5592e6cdbdc8"
)

log() { printf '[fetch-onnxruntime] %s\n' "$*" >&2; }
die() {
  printf '[fetch-onnxruntime] error: %s\n' "$*" >&2
  exit 1
}
usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; }

mode=${1:-cpu}
case $mode in
  cpu | gpu) dest=${2:-/opt/onnxruntime} ;;
  cuda-libs) dest=${2:-/opt/nvidia} ;;
  -h | --help)
    usage
    exit 0
    ;;
  *)
    usage >&2
    exit 2
    ;;
esac
python3 -m pip --version >/dev/null 2>&1 ||
  die "needs python3 with pip (Debian: apt install python3-pip)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
wheels=${WHEEL_CACHE:-$tmp/wheels}
mkdir -p "$wheels" "$dest/lib"

# download PIN...: the pinned wheels into $wheels (kept ones are reused when
# their hash matches).
download() {
  local pin
  : >"$tmp/requirements.txt"
  for pin in "$@"; do
    printf '%s --hash=sha256:%s\n' "${pin% *}" "${pin#* }" >>"$tmp/requirements.txt"
  done
  python3 -m pip download -q --no-deps --require-hashes --only-binary=:all: \
    --python-version 3.11 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux_2_12_x86_64 --platform manylinux2010_x86_64 \
    --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 \
    -r "$tmp/requirements.txt" -d "$wheels"
}

# wheel_of PIN: the downloaded wheel file of a pin.
wheel_of() {
  local name=${1%%==*} version=${1%% *}
  version=${version#*==}
  compgen -G "$wheels/${name//-/_}-$version-*.whl" | head -n 1
}

# extract WHEEL GLOB... [!GLOB...]: the members matching a glob and no !glob,
# flat into $dest/lib, each written beside its target and renamed over it.
extract() {
  python3 - "$dest/lib" "$@" <<'EOF'
import fnmatch, os, shutil, sys, zipfile
dest, wheel = sys.argv[1], sys.argv[2]
take = [g for g in sys.argv[3:] if not g.startswith("!")]
skip = [g[1:] for g in sys.argv[3:] if g.startswith("!")]
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        name = info.filename
        if info.is_dir() or not any(fnmatch.fnmatch(name, g) for g in take) \
                or any(fnmatch.fnmatch(name, g) for g in skip):
            continue
        target = os.path.join(dest, os.path.basename(info.filename))
        with z.open(info) as src, open(target + ".new", "wb") as out:
            shutil.copyfileobj(src, out)
        os.chmod(target + ".new", 0o644)
        os.replace(target + ".new", target)
        print(os.path.basename(target))
EOF
}

case $mode in
  cpu | gpu)
    if [ "$mode" = cpu ]; then pin=$ort_cpu; else pin=$ort_gpu; fi
    log "downloading ${pin% *}"
    download "$pin"
    whl=$(wheel_of "$pin")
    [ -n "$whl" ] || die "pip reported no wheel for ${pin% *}"
    # The provider libraries of the other variant would not match this core.
    rm -f "$dest/lib"/libonnxruntime_providers_*.so
    members=("onnxruntime/capi/libonnxruntime.so.$ORT_VERSION")
    # TensorRT's provider is left out: TensorRT itself is not installed.
    [ "$mode" = gpu ] && members+=(onnxruntime/capi/libonnxruntime_providers_shared.so
      onnxruntime/capi/libonnxruntime_providers_cuda.so)
    extract "$whl" "${members[@]}" >/dev/null
    ln -sfn "libonnxruntime.so.$ORT_VERSION" "$dest/lib/libonnxruntime.so.1"
    ln -sfn "libonnxruntime.so.$ORT_VERSION" "$dest/lib/libonnxruntime.so"
    printf '%s\n' "${pin% *} sha256:${pin#* }" >"$dest/PINNED.txt"
    log "installed ${pin% *} into $dest/lib: $(cd "$dest/lib" && echo libonnxruntime*)"
    if [ "$mode" = gpu ]; then
      log "its CUDA provider needs CUDA 13 (cuBLAS, cuDNN 9, cuFFT, cuRAND, runtime) on the"
      log "linker's path and an NVIDIA driver >= 580: '$0 cuda-libs' fetches the libraries"
    fi
    ;;
  cuda-libs)
    log "downloading ${#cuda_libs[@]} NVIDIA wheels (about 1.4 GB)"
    download "${cuda_libs[@]}"
    : >"$dest/PINNED.txt"
    for pin in "${cuda_libs[@]}"; do
      whl=$(wheel_of "$pin")
      [ -n "$whl" ] || die "pip reported no wheel for ${pin% *}"
      # Not used by ONNX Runtime, cuDNN or cudainfer: the BLAS and FFTW
      # drop-in interfaces and NVRTC's alternative build (110 MB).
      extract "$whl" 'nvidia/*/lib/*.so*' '!*/libnvblas.so*' '!*/libcufftw.so*' '!*/libnvrtc*.alt.so*' >/dev/null
      printf '%s\n' "${pin% *} sha256:${pin#* }" >>"$dest/PINNED.txt"
    done
    # GStreamer's nvcodec and the cudainfer plugin first ask for the
    # unversioned name.
    ln -sfn libnvrtc.so.13 "$dest/lib/libnvrtc.so"
    log "installed into $dest/lib ($(du -sh "$dest/lib" | cut -f1)); put it on the linker's path:"
    log "  echo $dest/lib > /etc/ld.so.conf.d/cudainfer-cuda.conf && ldconfig"
    ;;
esac
