# Shared by scripts/test, scripts/demo and scripts/bench: bring a fresh machine to the point where mmfs runs.
# Installs Debian packages only when missing, and the project into .venv (created on first use).

MMFS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
MMFS_VENV="${MMFS_VENV:-$MMFS_ROOT/.venv}"

_as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# ensure_debs PKG...: apt-get install the packages that dpkg does not already report installed.
ensure_debs() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "mmfs: installing Debian packages: ${missing[*]}" >&2
    _as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    _as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# fuse3: fusermount3 (with the fusermount link) and libfuse3, which mmfs loads through mfusepy.
ensure_fuse() {
    ensure_debs fuse3 libfuse3-3 curl attr  # attr: getfattr, to read the user.minimax.* attributes
}

# The programs tests/test_everyday.py runs on files through a mount, as a desktop user would.
ensure_desktop_tools() {
    ensure_debs ffmpeg sox poppler-utils
}

# What the rest of the suite runs beside the mount: rsync and gawk (the write tests edit and copy with them, as
# users do), a real Redis on loopback for the shared tier's tests (one node, a three-master Cluster made with
# redis-cli from redis-tools, and a Sentinel: redis-server --sentinel), strace (which calls `ls -l` makes),
# and davfs2, a real client of the WebDAV door.
ensure_test_tools() {
    ensure_debs rsync gawk redis-server redis-tools strace davfs2
}

# ensure_venv EXTRAS: the project, editable, with the given extras ("test", "test,bench", or "").
# Installs again only when pyproject.toml changed or an extra is asked for that is not there yet.
ensure_venv() {
    local extras="$1" spec="$MMFS_ROOT"
    [ -n "$extras" ] && spec="$MMFS_ROOT[$extras]"
    if [ ! -x "$MMFS_VENV/bin/python" ]; then
        python3 -m venv "$MMFS_VENV" 2>/dev/null || { ensure_debs python3-venv; python3 -m venv "$MMFS_VENV"; }
    fi
    local stamp="$MMFS_VENV/.mmfs-installed" have="" need=0 extra
    [ -f "$stamp" ] && have="$(cat "$stamp")"
    if [ ! -f "$stamp" ] || [ "$MMFS_ROOT/pyproject.toml" -nt "$stamp" ] || ! grep -qx "root=$MMFS_ROOT" "$stamp"; then
        need=1 have=""
    fi
    for extra in ${extras//,/ }; do
        grep -qx "extra=$extra" <<<"$have" || need=1
    done
    if [ "$need" -eq 1 ]; then
        local all="$extras"
        for extra in $(sed -n 's/^extra=//p' <<<"$have"); do
            case ",$all," in *",$extra,"*) ;; *) all="${all:+$all,}$extra" ;; esac
        done
        [ -n "$all" ] && spec="$MMFS_ROOT[$all]"
        "$MMFS_VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$spec" >&2
        { echo "root=$MMFS_ROOT"; for extra in ${all//,/ }; do echo "extra=$extra"; done; } >"$stamp"
    fi
}
