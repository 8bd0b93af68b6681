package mapping_test

import (
	"fmt"
	"time"

	"github.com/lanes-dev/lanes/shared/config"
	"github.com/lanes-dev/lanes/supervisor/mapping"
)

// The supervisor's side: Match classifies with the table kept beside the
// lanes its indices refer to, Observe traces the finished request, by the
// name of the lane it ran in, with its filter+run time.
func Example() {
	set, err := mapping.New(mapping.Config{
		Lanes:  []string{"default", "slow"},
		Static: map[string][]config.Pattern{"default": {{Method: "*", Path: "/*"}}},
		AutoMap: &config.AutoMap{
			Threshold: 3 * time.Second, Lane: "slow", From: []string{"default"},
			ForgetAfter: 10 * time.Minute, MaxEntries: 10000,
		},
	}, nil)
	if err != nil {
		panic(err)
	}
	method, path := []byte("GET"), []byte("/report/2025")

	t := set.Table() // a supervisor keeps it, and each one Publish gives it, with its lanes
	lanes := t.Lanes()
	lane, ref := t.Match(method, path)
	// ... queue in lanes[lane], run, respond ...
	t.Observe(ref, lanes[lane], method, path, 4*time.Second, false)
	set.Flush() // tests only: a learned mapping goes live within milliseconds anyway

	lane, ref = set.Table().Match(method, path)
	fmt.Println(lane, ref.Source(), ref.Pattern())
	// Output: 1 auto_map GET /report/2025
}
