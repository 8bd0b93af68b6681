package mapping

import "hash/maphash"

// Dynamic mappings of an exact path (every learned one, and most runtime
// ones) are kept out of the router: a router.Table is compiled whole, so
// adding them one by one recompiled everything each time, quadratic in the
// number held (issue 15: 0.8 ms per add at the start, 20 ms at 16,000).
// They live instead in an exactIndex of copy-on-write shards: a change
// copies the one shard it touches, a table shares every other shard with
// the tables before it, and publishing copies an array of shard pointers.
//
// Lookup order is the router's for one group: a dynamic exact path with the
// request's method, then with "*", and only then the router (dynamic globs,
// then static mappings), so specificity is unchanged.

// exactShards is the number of shards: at the cap (maxRuntime plus the
// default max_entries, 20,000 mappings) a shard holds about 80 paths,
// copied in a few microseconds.
const exactShards = 256

// exactTarget is one dynamic exact mapping as Match returns it.
type exactTarget struct {
	method string // "*" or an uppercase method
	lane   int    // index into the table's lanes
	e      *entry
}

// exactShard maps a path to its mappings, at most one per method. A
// published shard is never written again; neither is a targets slice.
type exactShard map[string][]exactTarget

// exactIndex is a snapshot of the shards. Copying it copies the pointers;
// the Set marks which shards it has copied since the last publish
// (Set.exOwned) and may write only those.
type exactIndex struct {
	n      int // mappings held
	shards [exactShards]exactShard
}

// exactSeed is one seed for every index: tables built by different Sets
// never mix shards, but one seed keeps shard choice a pure function.
var exactSeed = maphash.MakeSeed()

func shardOf(path string) int { return int(maphash.String(exactSeed, path) % exactShards) }

// match finds the dynamic exact mapping of method and path. No allocation:
// maphash.Bytes and string(b) as a map index do not allocate.
func (x *exactIndex) match(method, path []byte) (exactTarget, bool) {
	sh := x.shards[maphash.Bytes(exactSeed, path)%exactShards]
	if sh == nil {
		return exactTarget{}, false
	}
	ts := sh[string(path)]
	for _, t := range ts {
		if t.method == string(method) {
			return t, true
		}
	}
	for _, t := range ts {
		if t.method == "*" {
			return t, true
		}
	}
	return exactTarget{}, false
}

// writable returns shard i of x for writing: copied first unless owned
// says it was copied since x was last shared.
func (x *exactIndex) writable(i int, owned *[exactShards]bool) exactShard {
	if !owned[i] {
		cp := make(exactShard, len(x.shards[i])+1)
		for p, ts := range x.shards[i] {
			cp[p] = ts
		}
		x.shards[i] = cp
		owned[i] = true
	}
	return x.shards[i]
}

// put adds or replaces the mapping of t.method and path.
func (x *exactIndex) put(path string, t exactTarget, owned *[exactShards]bool) {
	sh := x.writable(shardOf(path), owned)
	old := sh[path]
	ts := make([]exactTarget, 0, len(old)+1)
	for _, o := range old {
		if o.method != t.method {
			ts = append(ts, o)
		}
	}
	if len(ts) == len(old) {
		x.n++
	}
	sh[path] = append(ts, t)
}

// del removes the mapping of method and path, if held.
func (x *exactIndex) del(method, path string, owned *[exactShards]bool) {
	i := shardOf(path)
	old := x.shards[i][path]
	ts := make([]exactTarget, 0, len(old))
	for _, o := range old {
		if o.method != method {
			ts = append(ts, o)
		}
	}
	if len(ts) == len(old) {
		return
	}
	x.n--
	sh := x.writable(i, owned)
	if len(ts) == 0 {
		delete(sh, path)
		return
	}
	sh[path] = ts
}

// isGlob says a dynamic mapping's path is a glob, which the router holds.
func isGlob(path string) bool {
	for i := 0; i < len(path); i++ {
		if path[i] == '*' {
			return true
		}
	}
	return false
}
