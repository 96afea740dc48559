#!/bin/sh
# Installs the Debian packages agentbox needs to build, run and test.
# As root: installs what is missing. Otherwise: prints the exact command.
set -eu
PKGS="build-essential pkg-config python3-dev libseccomp-dev libjansson-dev libsqlite3-dev libssl-dev \
libhttp-parser-dev libyaml-dev zlib1g-dev libhyperscan-dev python3-requests curl python3-pip openssl ca-certificates \
python3-numpy python3-pandas python3-matplotlib python3-pytest python3-pytest-xdist util-linux clang"
missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
# The fuzzers (make fuzz) link clang's libFuzzer runtime, which Debian ships
# in libclang-rt-dev, only a recommendation of clang.
if command -v clang >/dev/null 2>&1 &&
	[ ! -f "$(clang -print-file-name=libclang_rt.fuzzer-x86_64.a)" ]; then
	missing="$missing libclang-rt-dev"
fi
if [ -z "$missing" ]; then
	exit 0
fi
if [ "$(id -u)" = 0 ]; then
	echo "deps: installing:$missing"
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing
else
	echo "deps: missing Debian packages:$missing" >&2
	echo "deps: run:  sudo apt-get install -y$missing" >&2
	exit 1
fi
