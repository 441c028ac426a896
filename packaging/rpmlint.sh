#!/bin/sh
# Runs rpmlint on RPM files without letting it touch the real root.
#
#   packaging/rpmlint.sh FILE.rpm...
#
# rpmlint unpacks a package with `rpm2cpio | cpio -id`, and nfpm's payload
# holds absolute paths (/usr/bin/saga…): run directly, it would write the
# package's files into / and then lint an empty directory. Here cpio is
# given --no-absolute-filenames, and the whole run is chrooted into an
# overlay of / whose writes land in a tmpfs that vanishes afterwards.
set -eu

[ "$#" -gt 0 ] || { echo "usage: $0 FILE.rpm..." >&2; exit 2; }
for rpm in "$@"; do
	[ -f "$rpm" ] || { echo "rpmlint.sh: no such file: $rpm" >&2; exit 2; }
done
here=$(cd "$(dirname "$0")" && pwd)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp "$@" "$here/rpmlintrc" "$here/rpmlint.toml" "$stage/"

# shellcheck disable=SC2016 # expanded by the inner shell
unshare --mount --propagation private sh -eu -c '
	stage=$1 top=$(mktemp -d)
	mount -t tmpfs tmpfs "$top"
	mkdir "$top/upper" "$top/work" "$top/root"
	mount -t overlay overlay -o "lowerdir=/,upperdir=$top/upper,workdir=$top/work" "$top/root"
	mount --rbind /proc "$top/root/proc"
	mount --rbind /dev "$top/root/dev"
	mkdir -p "$top/root/lint/bin"
	cp "$stage"/* "$top/root/lint/"
	printf "#!/bin/sh\nexec /usr/bin/cpio --no-absolute-filenames \"\$@\"\n" >"$top/root/lint/bin/cpio"
	chmod +x "$top/root/lint/bin/cpio"
	cd /
	exec chroot "$top/root" sh -c "cd /lint && PATH=/lint/bin:\$PATH rpmlint --config rpmlint.toml --rpmlintrc rpmlintrc *.rpm"
' rpmlint-sandbox "$stage"
