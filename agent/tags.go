package agent

import (
	"fmt"
	"maps"
	"regexp"
	"slices"

	"github.com/sluicegw/sluice/internal/wire"
)

// MaxTagBytes bounds an agent's own tags (agent.tags), counted as the cluster
// counts serf's encoding: each tag's key and value plus 6 bytes. The built-in
// tags of an agent with a long id, an IPv6 API address and every purpose
// failed take about 320 of serf's 512 bytes; the rest is the operator's, so a
// load update can never be refused for size.
const MaxTagBytes = 192

var (
	tagKeyRE   = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)
	tagValueRE = regexp.MustCompile(`^[A-Za-z0-9._:/+-]{1,64}$`)
)

// builtinTags are the tag keys an agent or gateway publishes itself; an
// operator's tag may not take one, or it would lie to every gateway's
// placement.
var builtinTags = []string{
	wire.TagRole, wire.TagID, wire.TagAPI, wire.TagHTTP, wire.TagPurposes, wire.TagCapacity, wire.TagLoad,
	wire.TagQueue, wire.TagConcurrent, wire.TagCPU, wire.TagMem, wire.TagState, wire.TagFailed, wire.TagVersion,
}

// checkTags validates the operator's tags. Errors name the field
// (agent.tags.KEY) and say what it takes.
func checkTags(tags map[string]string) error {
	n := 0
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		v := tags[k]
		switch {
		case slices.Contains(builtinTags, k):
			return fmt.Errorf("agent.tags.%s: is a built-in tag the agent sets itself (want another key; built-in: %v)", k, builtinTags)
		case !tagKeyRE.MatchString(k):
			return fmt.Errorf("agent.tags.%s: the key is not 1..32 of [a-z0-9_-] starting with a letter", k)
		case !tagValueRE.MatchString(v):
			return fmt.Errorf("agent.tags.%s: %q is not 1..64 of [A-Za-z0-9._:/+-]", k, v)
		}
		n += len(k) + len(v) + 6
	}
	if n > MaxTagBytes {
		return fmt.Errorf("agent.tags: the tags take %d bytes (each key and value plus 6); at most %d fit beside the built-in ones", n, MaxTagBytes)
	}
	return nil
}

// withOwnTags adds the operator's tags to the built-in ones; checkTags has
// made sure they do not overlap.
func (a *Agent) withOwnTags(tags map[string]string) map[string]string {
	maps.Copy(tags, a.cfg.Tags)
	return tags
}
