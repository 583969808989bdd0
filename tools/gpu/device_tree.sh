#!/usr/bin/env bash
# The device tool carries the working tree to the GPU machine (tracked files and untracked, not ignored ones),
# at most 64 MiB; the tree is over 100 MB with the model files that no GPU run needs: the COCOLA models (19 MB
# each), the shipped CompoNet (16 MB) and vocoder (7 MB). The VAE stays: CompoNet trains on its latents.
#
#   bash tools/gpu/device_tree.sh strip     # before the device calls: the model files leave the index, ignored
#   bash tools/gpu/device_tree.sh restore   # after them: back in the index, no longer ignored
#
# The device call then names the sysroot (ignored) to carry: run(command=..., carry=[".dev"]).
# Between the two, never commit: the commit would delete the models from the repository. `status` says which
# state the tree is in.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
FILES=(models/cocola_default.safetensors tests/data/golden/models/cocola_hpss_seed0.safetensors
       tests/data/golden/models/cocola_mel_seed0.safetensors models/componet_default.safetensors
       models/vocoder_default.safetensors models/msdm_default.safetensors)
EX=.git/info/exclude
BEGIN="# device_tree.sh strip: begin"; END="# device_tree.sh strip: end"
case "${1:-}" in
  strip)
    grep -qF "$BEGIN" "$EX" 2>/dev/null && { echo "already stripped (run restore first)"; exit 1; }
    git rm -q --cached -- "${FILES[@]}"
    { echo "$BEGIN"; printf '/%s\n' "${FILES[@]}"; echo "$END"; } >> "$EX"
    size=$( (git ls-files; git ls-files --others --exclude-standard) | sort -u | while read -r f; do [ -f "$f" ] && stat -c %s "$f"; done | awk '{s+=$1} END {print s}')
    dev=$( [ -d .dev ] && du -sb .dev | cut -f1 || echo 0)  # carried beside the tree, within the same limit
    echo "stripped: tree $((size / 1048576)) MiB + .dev $((dev / 1048576)) MiB (limit 64 in all). Do not commit until 'restore'." ;;
  restore)
    git reset -q -- "${FILES[@]}"
    sed -i "/^$BEGIN\$/,/^$END\$/d" "$EX"
    git diff --cached --quiet -- "${FILES[@]}" && echo "restored: the model files are tracked again" ;;
  status)
    if grep -qF "$BEGIN" "$EX" 2>/dev/null; then echo "stripped (do not commit; run restore)"; else echo "normal"; fi ;;
  *) echo "usage: $0 strip|restore|status"; exit 2 ;;
esac
