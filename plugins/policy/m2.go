package policy

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/sluicegw/sluice/sdk/abi"
)

// ThrottleBody is the M2 contract's body for a throttled request mapped to error.
const ThrottleBody = `{"enable":false,"error":"throttle"}`

// M2 is M2's throttling (reference/m2-process-and-throttling-settings):
// per purpose, when enabled, a purpose enters the throttled state when its wait
// queue reaches concurrent × wait.deactive and leaves it when the queue drops
// below concurrent × wait.reactive. While throttled, a request whose path matches
// a matchingList pattern gets that entry's action: origin, redirect (to the
// configured origin URL) or error (510 with ThrottleBody). Other requests pass.
//
// Config values (the slot's config): "<purpose>.enable" (true/false),
// "<purpose>.wait.deactive", "<purpose>.wait.reactive" (numbers),
// "<purpose>.matchingList" (JSON: [{"pattern": "regexp", "action": "error"}]),
// "<purpose>.origin" (redirect URL base), and "purpose" (the purpose of WHIP/WHEP
// requests, default relay). The throttled state lives in the shared store, so
// every instance of the policy agrees.
type M2 struct {
	purpose  string
	purposes map[string]*m2Purpose
}

type m2Purpose struct {
	key                string // of the throttled state in the shared store
	enable             bool
	deactive, reactive float64
	matching           []m2Rule
	origin             string
}

type m2Rule struct {
	re     *regexp.Regexp
	action string
}

// NewM2 reads the M2 settings from env's config. Errors name the key.
func NewM2(env Env, purposes ...string) (*M2, error) {
	m := &M2{purpose: "relay", purposes: map[string]*m2Purpose{}}
	if v, ok := env.Config("purpose"); ok && v != "" {
		m.purpose = v
	}
	if len(purposes) == 0 {
		purposes = []string{m.purpose}
	}
	for _, p := range purposes {
		// A guest's purposes point into its input buffer, which the next call
		// overwrites (abi.DecodeThrottleInputView): the map keeps copies, or its
		// keys change under it and every purpose is lost.
		p = strings.Clone(p)
		mp := &m2Purpose{key: "throttled." + p, deactive: 4, reactive: 2}
		if v, ok := env.Config(p + ".enable"); ok {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, fmt.Errorf("%s.enable: %q is not true or false", p, v)
			}
			mp.enable = b
		}
		for key, dst := range map[string]*float64{p + ".wait.deactive": &mp.deactive, p + ".wait.reactive": &mp.reactive} {
			if v, ok := env.Config(key); ok {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil || f < 0 {
					return nil, fmt.Errorf("%s: %q is not a non-negative number", key, v)
				}
				*dst = f
			}
		}
		if mp.reactive > mp.deactive {
			return nil, fmt.Errorf("%s.wait.reactive (%g) is above wait.deactive (%g)", p, mp.reactive, mp.deactive)
		}
		if v, ok := env.Config(p + ".matchingList"); ok && v != "" && v != "null" {
			var list []struct{ Pattern, Action string }
			if err := json.Unmarshal([]byte(v), &list); err != nil {
				return nil, fmt.Errorf("%s.matchingList: %v", p, err)
			}
			for i, r := range list {
				re, err := regexp.Compile(r.Pattern)
				if err != nil {
					return nil, fmt.Errorf("%s.matchingList[%d].pattern: %v", p, i, err)
				}
				switch r.Action {
				case "origin", "redirect", "error":
				default:
					return nil, fmt.Errorf("%s.matchingList[%d].action: %q is not origin, redirect or error", p, i, r.Action)
				}
				mp.matching = append(mp.matching, m2Rule{re, r.Action})
			}
		}
		mp.origin, _ = env.Config(p + ".origin")
		m.purposes[p] = mp
	}
	return m, nil
}

// Decide is the throttle decision for one request.
func (m *M2) Decide(env Env, in *abi.ThrottleInput) abi.ThrottleOutput {
	for _, pool := range in.Pools {
		mp := m.purposes[pool.Purpose]
		if mp == nil || !mp.enable {
			continue
		}
		key := mp.key
		throttled := env.KVGet(key) == 1
		switch {
		case !throttled && float64(pool.Queued) >= float64(pool.Concurrent)*mp.deactive:
			throttled = true
			env.KVSet(key, 1)
		case throttled && float64(pool.Queued) < float64(pool.Concurrent)*mp.reactive:
			throttled = false
			env.KVSet(key, 0)
		}
		if !throttled || pool.Purpose != m.purpose {
			continue
		}
		for _, r := range mp.matching {
			if !r.re.MatchString(in.Path) {
				continue
			}
			switch r.action {
			case "origin":
				return abi.ThrottleOutput{Action: abi.Origin}
			case "redirect":
				if mp.origin != "" {
					return abi.ThrottleOutput{Action: abi.Redirect, URL: mp.origin + in.Path}
				}
				return abi.ThrottleOutput{Action: abi.Origin}
			default:
				return abi.ThrottleOutput{Action: abi.Reject, Status: 510, Body: []byte(ThrottleBody), ContentType: "application/json"}
			}
		}
	}
	return abi.ThrottleOutput{Action: abi.Admit}
}
