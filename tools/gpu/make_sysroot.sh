#!/usr/bin/env bash
# Packs what a cocola build needs besides LibTorch (libsndfile, libsoxr, FFTW, libsox, libfluidsynth, tcmalloc and the libraries they
# load; their headers; CLI11 and nlohmann-json), the General MIDI SoundFont and the openttd-openmsx MIDI songs into
# .dev/ at the repository root, for a GPU machine that has a CUDA PyTorch, a compiler, CMake and ninja but where
# Debian's packages cannot be installed. tools/gpu/train_on_gpu.sh unpacks and uses it there.
#
#   bash tools/gpu/make_sysroot.sh        # on this (Debian 12) machine, after scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
D=$PWD/.dev
grep -qx '/.dev/' .git/info/exclude 2>/dev/null || echo '/.dev/' >> .git/info/exclude
rm -rf "$D" && mkdir -p "$D"/sys/{include,lib/pkgconfig,share/cmake,bin} "$D"/sf2 "$D"/openmsx
cp -a /usr/include/{sndfile.h,sndfile.hh,soxr.h,fftw3.h,sox.h,fluidsynth.h,fluidsynth,CLI,nlohmann} "$D"/sys/include/
cp -a /usr/share/cmake/CLI11 /usr/share/cmake/nlohmann_json "$D"/sys/share/cmake/
# The libraries and everything they load, except the C and C++ runtimes, which the GPU machine has (newer).
libs=(libsndfile.so.1 libsoxr.so.0 libfftw3.so.3 libsox.so.3 libfluidsynth.so.3 libtcmalloc_minimal.so.4)
for l in "${libs[@]}"; do echo /lib/x86_64-linux-gnu/$l; ldd /lib/x86_64-linux-gnu/$l | awk '$3 ~ /^\// {print $3}'; done |
  grep -v -E 'lib(c|m|stdc\+\+|gcc_s|pthread|dl|rt|gomp|resolv)\.so|ld-linux' | sort -u |
  while read -r f; do cp -L "$f" "$D"/sys/lib/"$(basename "$f")"; done
cp -L /lib/x86_64-linux-gnu/libpkgconf.so.3 "$D"/sys/lib/ && cp /usr/bin/pkgconf "$D"/sys/bin/
(cd "$D"/sys/lib && for l in "${libs[@]}"; do ln -s "$l" "${l%.so.*}.so"; done)
for spec in "sndfile 1.2.0 sndfile" "soxr 0.1.3 soxr" "fftw3 3.3.10 fftw3" "sox 14.4.2 sox" "fluidsynth 2.3.1 fluidsynth" \
            "libtcmalloc_minimal 2.10 tcmalloc_minimal"; do
  set -- $spec  # minimal .pc files: no private requirements, whose .pc files would have to travel too
  printf 'prefix=@PREFIX@\nlibdir=${prefix}/lib\nincludedir=${prefix}/include\nName: %s\nDescription: %s\nVersion: %s\nLibs: -L${libdir} -l%s\nCflags: -I${includedir}\n' \
    "$1" "$1" "$2" "$3" > "$D"/sys/lib/pkgconfig/"$1".pc
done
cp /usr/share/sounds/sf2/TimGM6mb.sf2 "$D"/sf2/
cp -a /usr/share/games/openttd/baseset/openmsx/. "$D"/openmsx/
cp tools/gpu/TorchConfig.cmake "$D"/TorchConfig.cmake
(cd "$D" && tar cJf sys.tar.xz sys && rm -rf sys)
du -sh "$D"
