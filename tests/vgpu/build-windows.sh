#!/usr/bin/env bash
# Cross-compiles the Windows vgpu-stream.exe with mingw-w64. ctest runs it as
# the test vgpu_stream_windows_build (so the Windows port cannot rot) and the
# Wine test uses its output; CI keeps OUT_DIR/vgpu-stream.exe as the artifact.
# Usage: build-windows.sh SOURCE_DIR OUT_DIR
set -euo pipefail
SRC=$1
OUT=$2
CC=${MINGW_CC:-x86_64-w64-mingw32-gcc}
if ! command -v "$CC" >/dev/null; then
        echo "skipped: $CC not found (Debian package gcc-mingw-w64-x86-64)"
        exit 77
fi
S=$SRC/src/vgpu/stream
mkdir -p "$OUT"
# The project's warning set, as errors. -static: no libgcc/winpthread DLLs
# to ship next to the .exe.
"$CC" -std=gnu11 -O2 -g0 -Wall -Wextra -Wshadow -Wformat=2 -Wno-unused-parameter -Wstrict-prototypes \
        -Wmissing-prototypes -Werror -D__USE_MINGW_ANSI_STDIO=1 -D_WIN32_WINNT=0x0602 \
        -I"$S" -I"$SRC/include" \
        "$S/region.c" "$S/control.c" "$S/pattern.c" "$S/producer.c" "$S/source_pattern.c" \
        "$S/os_windows.c" "$S/source_dxgi.c" "$S/source_gdi.c" "$S/source_screen_win.c" "$S/main_windows.c" \
        -o "$OUT/vgpu-stream.exe.tmp" -static \
        -ld3d11 -ldxgi -ldxguid -lbcrypt -lwinmm -lgdi32 -luser32
mv "$OUT/vgpu-stream.exe.tmp" "$OUT/vgpu-stream.exe"

# It must be a PE32+ console program importing only system DLLs.
OBJDUMP=${CC%gcc}objdump
if command -v "$OBJDUMP" >/dev/null; then
        dlls=$("$OBJDUMP" -p "$OUT/vgpu-stream.exe" | sed -n 's/^\tDLL Name: //p' | tr 'A-Z' 'a-z' | sort -u | tr '\n' ' ')
        for dll in $dlls; do
                case $dll in
                kernel32.dll | user32.dll | gdi32.dll | d3d11.dll | dxgi.dll | bcrypt.dll | winmm.dll | msvcrt.dll | \
                        api-ms-win-*) ;;
                *)
                        echo "vgpu-stream.exe imports $dll, which a stock Windows does not have" >&2
                        exit 1
                        ;;
                esac
        done
        echo "imports: $dlls"
fi
echo "built $OUT/vgpu-stream.exe ($(stat -c %s "$OUT/vgpu-stream.exe") bytes)"
