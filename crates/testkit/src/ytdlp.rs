//! A stand-in for yt-dlp (YouTube is unreachable from tests): a shell script replaying recorded
//! output from a folder, so playlist and video handling run offline against the real parsers.

use std::path::{Path, PathBuf};

/// Writes a fake yt-dlp that answers from `responses/`: `--flat-playlist` → `playlist.json`;
/// `-J URL` → `<id>.json` (or `<id>.stderr` + exit 1); `--write-subs` → copies `<id>.<lang>.<ext>`
/// to the `-o` template. Every call is appended to `calls.log`.
pub fn fake(dir: &Path) -> PathBuf {
    let script = format!(
        r#"#!/bin/sh
R="{r}"
echo "$*" >> "$R/calls.log"
out=""; lang=""; fmt=""; prev=""; mode=""; info=""; url=""
for a in "$@"; do
  case "$prev" in -o) out="$a";; --sub-langs) lang="$a";; --sub-format) fmt="$a";; --load-info-json) info="$a";; esac
  case "$a" in -J) mode="json";; --flat-playlist) flat=1;; --write-subs|--write-auto-subs) mode="subs";; esac
  prev="$a"; url="$a"
done
id=$(printf '%s' "$url" | sed -n 's/.*v=\([A-Za-z0-9_-]\{{11\}}\).*/\1/p')
if [ "$mode" = subs ]; then
  id=$(sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' "$info" | head -n1)
  dest=$(printf '%s' "$out" | sed "s/%(ext)s/$lang.$fmt/")
  cp "$R/$id.$lang.$fmt" "$dest" && exit 0
  echo "ERROR: Unable to download video subtitles for '$lang': HTTP Error 429: Too Many Requests" >&2; exit 1
fi
if [ -n "$flat" ]; then cat "$R/playlist.json"; exit 0; fi
if [ -f "$R/$id.stderr" ]; then cat "$R/$id.stderr" >&2; exit 1; fi
if [ -f "$R/$id.json" ]; then cat "$R/$id.json"; exit 0; fi
echo "ERROR: [youtube] $id: Video unavailable" >&2; exit 1
"#,
        r = dir.display()
    );
    let path = dir.join("yt-dlp");
    std::fs::write(&path, script).unwrap();
    let mut perm = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&path, perm).unwrap();
    path
}
