package checks

import "hash/fnv"

// Owner returns the member that runs the checks of key (service/id): the
// one with the highest rendezvous score. Every member computes the same
// owner from the same set, and a member joining or leaving moves only the
// keys it wins or held. All checks of one instance run on one member, so
// it alone computes the instance's status from all of them.
func Owner(members []string, key string) string {
	var best string
	var bestScore uint64
	for _, m := range members {
		if s := score(m, key); best == "" || s > bestScore || (s == bestScore && m < best) {
			best, bestScore = m, s
		}
	}
	return best
}

// score hashes member and key with FNV-1a, then mixes the bits
// (splitmix64's finaliser): FNV alone spreads similar strings poorly.
func score(member, key string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(member))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(key))
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
