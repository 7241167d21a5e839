#!/usr/bin/env bash
# Fetches Debian's r-cran-janeaustenr (the embedded default corpus) without installing it, unpacks it under
# build/janeaustenr/ and prints the path of its data folder (Rdata.rdb / Rdata.rdx). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=build/janeaustenr
data="$dest/x/usr/lib/R/site-library/janeaustenr/data"
if [ ! -s "$data/Rdata.rdb" ]; then
  rm -rf "$dest" && mkdir -p "$dest"
  if ! (cd "$dest" && apt-get download r-cran-janeaustenr >/dev/null 2>&1); then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -q >/dev/null
    (cd "$dest" && apt-get download r-cran-janeaustenr >/dev/null)
  fi
  dpkg-deb -x "$dest"/r-cran-janeaustenr_*_all.deb "$dest/x"
fi
echo "$data"
