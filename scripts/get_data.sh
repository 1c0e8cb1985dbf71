#!/usr/bin/env bash
# Puts the real datasets where the configs expect them (data/, git-ignored):
#   scripts/get_data.sh [goodreads|movielens|all]      (default: all)
#   data/goodreads        the SPRec Goodreads sample (train.json, id2name.json, name2id.json,
#                         name2genre.json, genre_dict.json)
#   data/movielens-small  MovieLens ml-latest-small (ratings.csv, movies.csv)
# When a copy exists in the shared folder ($SPREC_SHARED_DATA, default ../shared/data
# beside the repository) data/NAME becomes a symlink to it. Otherwise the script says
# where to download the official files and exits 1. The files are never committed
# (MovieLens' licence forbids redistribution). The synthetic source needs nothing.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
shared=${SPREC_SHARED_DATA:-$root/../shared/data}
which=${1:-all}

case "$which" in
    goodreads|movielens|all) ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "get_data.sh: unknown dataset '$which' (goodreads, movielens or all)" >&2; exit 2 ;;
esac

missing=0
# place NAME SRC_DIR FILES... : symlink data/NAME -> the shared copy when it has every file
place() {
    local name=$1 src=$2; shift 2
    local dst="$root/data/$name"
    if [ -d "$shared/$src" ]; then
        for f in "$@"; do
            if [ ! -f "$shared/$src/$f" ]; then
                echo "get_data.sh: $shared/$src has no $f" >&2; missing=1; return
            fi
        done
        mkdir -p "$root/data"
        if [ -e "$dst" ] && [ ! -L "$dst" ]; then
            echo "get_data.sh: $dst exists and is not a symlink; left as it is"
        else
            ln -sfn "$(cd "$shared/$src" && pwd)" "$dst"
            echo "get_data.sh: $dst -> $(readlink "$dst")"
        fi
    elif [ -d "$dst" ]; then
        echo "get_data.sh: $dst already in place"
    else
        missing=1
        case "$name" in
            goodreads)
                echo "get_data.sh: no Goodreads copy in $shared. Download the Goodreads sample of the SPRec" \
                     "reference code (the data/goodreads folder of the SPRec repository linked from arXiv" \
                     "2412.09243: train.json, id2name.json, name2id.json, name2genre.json, genre_dict.json)" \
                     "into $dst" >&2 ;;
            movielens-small)
                echo "get_data.sh: no MovieLens copy in $shared. Download" \
                     "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip (GroupLens," \
                     "https://grouplens.org/datasets/movielens/), unzip it and move the folder to $dst" >&2 ;;
        esac
    fi
}

if [ "$which" = goodreads ] || [ "$which" = all ]; then
    place goodreads goodreads train.json id2name.json name2id.json name2genre.json genre_dict.json
fi
if [ "$which" = movielens ] || [ "$which" = all ]; then
    place movielens-small movielens-small ratings.csv movies.csv
fi
exit $missing
