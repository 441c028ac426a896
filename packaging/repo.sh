#!/bin/sh
# repo.sh KEY OUT URL PACKAGE... publishes .deb and .rpm packages into a
# signed APT repository (OUT/apt) and a signed RPM repository (OUT/rpm),
# adding them to what is already there, so that earlier versions stay
# installable. KEY is a key id or fingerprint in the caller's GnuPG home
# ($GNUPGHOME); URL is where OUT will be served, for the .repo file.
# The indexes are made by apt-ftparchive and createrepo_c.
set -eu

key=$1 out=$2 url=$3
shift 3
[ $# -gt 0 ] || { echo "repo.sh: no packages given" >&2; exit 1; }
gpg --batch --list-secret-keys "$key" >/dev/null 2>&1 ||
	{ echo "repo.sh: no secret key $key in ${GNUPGHOME:-~/.gnupg}" >&2; exit 1; }
sign() { gpg --batch --yes --quiet --local-user "$key" "$@"; }

apt=$out/apt rpm=$out/rpm
mkdir -p "$apt/pool/main" "$rpm"
for pkg in "$@"; do
	case $pkg in
	*.deb) cp "$pkg" "$apt/pool/main/" ;;
	*.rpm) cp "$pkg" "$rpm/" ;;
	*) echo "repo.sh: $pkg is neither a .deb nor an .rpm" >&2; exit 1 ;;
	esac
done

# APT: one suite, "stable", one component, "main"; every architecture in
# the pool. Acquire-By-Hash lets apt fetch indexes by their checksum, so a
# client never reads an index that does not match the Release it holds.
(
	cd "$apt"
	archs=$(for deb in pool/main/*.deb; do dpkg-deb --field "$deb" Architecture; done | sort -u | paste -sd' ')
	dist=dists/stable
	for arch in $archs; do
		dir=$dist/main/binary-$arch
		mkdir -p "$dir/by-hash/SHA256"
		apt-ftparchive --arch "$arch" packages pool/main >"$dir/Packages"
		gzip -9nkf "$dir/Packages"
		xz -kf "$dir/Packages"
		# Earlier by-hash files stay, for clients that hold an older Release.
		for index in "$dir"/Packages*; do
			cp "$index" "$dir/by-hash/SHA256/$(sha256sum "$index" | cut -d' ' -f1)"
		done
	done
	apt-ftparchive \
		-o APT::FTPArchive::Release::Origin=Saga -o APT::FTPArchive::Release::Label=Saga \
		-o APT::FTPArchive::Release::Suite=stable -o APT::FTPArchive::Release::Codename=stable \
		-o "APT::FTPArchive::Release::Architectures=$archs" -o APT::FTPArchive::Release::Components=main \
		-o APT::FTPArchive::Release::Description="Saga service registry" \
		-o APT::FTPArchive::Release::Acquire-By-Hash=yes \
		-o APT::FTPArchive::MD5=false -o APT::FTPArchive::SHA1=false -o APT::FTPArchive::SHA512=false \
		release "$dist" >Release
	mv Release "$dist/Release"
	sign --clearsign --output "$dist/InRelease" "$dist/Release"
	sign --armor --detach-sign --output "$dist/Release.gpg" "$dist/Release"
	gpg --batch --yes --export "$key" >saga-archive-keyring.gpg
)

# RPM: the packages signed (rpm --checksig, gpgcheck), the metadata
# indexed by createrepo_c and repomd.xml signed (repo_gpgcheck).
gpg --batch --yes --armor --export "$key" >"$rpm/RPM-GPG-KEY-saga"
for pkg in "$rpm"/*.rpm; do
	# Debian's rpm looks for gpg2; name the gpg that is there.
	rpmsign --addsign --define "__gpg $(command -v gpg)" --define "_gpg_name $key" \
		--define "_gpg_path ${GNUPGHOME:-$HOME/.gnupg}" "$pkg" >/dev/null
done
createrepo_c --quiet --update "$rpm"
sign --armor --detach-sign --output "$rpm/repodata/repomd.xml.asc" "$rpm/repodata/repomd.xml"
cat >"$rpm/saga.repo" <<REPO
[saga]
name=Saga service registry
baseurl=$url/rpm
enabled=1
gpgcheck=1
repo_gpgcheck=1
gpgkey=$url/rpm/RPM-GPG-KEY-saga
REPO

echo "repo.sh: $apt (deb $url/apt stable main) and $rpm"
