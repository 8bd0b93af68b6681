package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// sizeUnits are the accepted size suffixes, lower-cased. Units are 1024-based
// whichever spelling is used: "KB" and "KiB" both mean 1024 bytes, which is
// what people mean when they write a memory limit.
var sizeUnits = map[string]int64{
	"":    1,
	"b":   1,
	"kb":  1 << 10,
	"kib": 1 << 10,
	"mb":  1 << 20,
	"mib": 1 << 20,
	"gb":  1 << 30,
	"gib": 1 << 30,
	"tb":  1 << 40,
	"tib": 1 << 40,
}

// ParseSize parses a byte size such as "512B", "8KB", "256MB", "1GiB" or
// "1048576". Units are case-insensitive and 1024-based (KB = KiB = 1024
// bytes); a space between number and unit is allowed. The number must be a
// whole number of units, not negative.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	unit, ok := sizeUnits[strings.ToLower(strings.TrimSpace(t[i:]))]
	if i == 0 || !ok {
		return 0, fmt.Errorf("%q is not a size: write a whole number of bytes with an optional unit, such as \"512KB\", \"256MB\" or \"1GiB\"", s)
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil || n > math.MaxInt64/unit {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n * unit, nil
}
