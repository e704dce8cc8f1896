#!/usr/bin/env bash
# Install the Debian tools mirrord's tests, demo and benchmark drive:
#   docker-registry (the reference registry), skopeo, oci-image-tool, prometheus (promtool + server),
#   systemd (systemd-analyze, which checks deploy/systemd/mirrord.service); for the container image
#   (make image, make image-test): buildah, podman, runc, debootstrap (the locally made base when no
#   public one can be pulled) and busybox-static (the runnable image the consumption test mirrors).
# With --python-venv, also the python3-venv package (the Makefile asks for it when `python3 -m venv`
# or ensurepip is missing). With --demo, only what `make demo` runs: docker-registry and skopeo.
#
# Idempotent: only what is missing is installed (one `apt-get update`, then one `apt-get install`);
# with everything present it changes nothing and needs no root. Package installs must not leave
# daemons running, so a temporary policy-rc.d forbids service starts while apt runs.
set -euo pipefail

want_venv=0
demo_only=0
for arg in "$@"; do
    case "$arg" in
        --python-venv) want_venv=1 ;;
        --demo) demo_only=1 ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "install-deps: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

# tool -> Debian package
tools=(docker-registry:docker-registry skopeo:skopeo oci-image-tool:oci-image-tool
       promtool:prometheus prometheus:prometheus systemd-analyze:systemd
       buildah:buildah podman:podman runc:runc conmon:conmon debootstrap:debootstrap
       busybox:busybox-static)
if [[ $demo_only == 1 ]]; then
    tools=(docker-registry:docker-registry skopeo:skopeo)
fi

missing=()
add_missing() {
    local pkg=$1 p
    for p in "${missing[@]:-}"; do [[ "$p" == "$pkg" ]] && return 0; done
    missing+=("$pkg")
}

for pair in "${tools[@]}"; do
    tool=${pair%%:*} pkg=${pair#*:}
    if command -v "$tool" >/dev/null 2>&1; then
        echo "install-deps: $tool present ($(command -v "$tool"))"
    else
        echo "install-deps: $tool missing (package $pkg)"
        add_missing "$pkg"
    fi
done

if [[ $want_venv == 1 ]]; then
    if python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        echo "install-deps: python3 venv + ensurepip present"
    else
        pyver=$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
        echo "install-deps: python3 venv/ensurepip missing (package python${pyver}-venv)"
        add_missing "python${pyver}-venv"
    fi
fi

if [[ ${#missing[@]} == 0 ]]; then
    echo "install-deps: nothing to install"
    exit 0
fi

if [[ $(id -u) != 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        echo "install-deps: not root, re-running with sudo"
        exec sudo -n "$0" "$@"
    fi
    echo "install-deps: need root to install: ${missing[*]} (run: sudo $0 $*)" >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-deps: apt-get not found; install by hand: ${missing[*]}" >&2
    exit 1
fi

# Forbid service starts during the install (Debian's docker-registry and prometheus packages start
# their daemons on 5000/9090 otherwise); only a policy-rc.d we created is removed afterwards.
policy=/usr/sbin/policy-rc.d
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\n# temporary, from mirrord scripts/install-deps.sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
    echo "install-deps: service starts disabled during install ($policy)"
fi

export DEBIAN_FRONTEND=noninteractive
echo "install-deps: apt-get update"
apt-get update -qq
echo "install-deps: apt-get install ${missing[*]}"
apt-get install -y -qq --no-install-recommends "${missing[@]}"

status=0
for pair in "${tools[@]}"; do
    tool=${pair%%:*}
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "install-deps: $tool still missing after install" >&2
        status=1
    fi
done
[[ $status == 0 ]] && echo "install-deps: installed ${missing[*]}"
exit $status
