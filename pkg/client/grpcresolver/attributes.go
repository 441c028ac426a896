package grpcresolver

import (
	"fmt"
	"maps"
	"slices"

	"google.golang.org/grpc/attributes"
	"google.golang.org/grpc/resolver"

	"github.com/sagaproject/saga/pkg/registry"
)

// attrKey is the key of an attribute this package sets; a type of its own
// keeps other packages' keys apart.
type attrKey string

func (k attrKey) String() string { return "saga." + string(k) }

const (
	idKey   attrKey = "id"
	tagsKey attrKey = "tags"
	metaKey attrKey = "metadata"
)

// tagList and metadata are the attribute values: grpc compares attributes
// to tell addresses apart, and slices and maps need an Equal for that.
type (
	tagList  []string
	metadata map[string]string
)

func (t tagList) Equal(o any) bool {
	ot, ok := o.(tagList)
	return ok && slices.Equal(t, ot)
}

func (t tagList) String() string { return fmt.Sprint([]string(t)) }

func (m metadata) Equal(o any) bool {
	om, ok := o.(metadata)
	return ok && maps.Equal(m, om)
}

func (m metadata) String() string { return fmt.Sprint(map[string]string(m)) }

// attributesOf are the attributes of an instance's address. Attributes
// take part in an address's identity in grpc: an instance whose tags or
// metadata change gets a new connection; one whose status changes does
// not, as status is left out.
func attributesOf(in registry.Instance) *attributes.Attributes {
	return attributes.New(idKey, in.ID).
		WithValue(tagsKey, tagList(slices.Clone(in.Tags))).
		WithValue(metaKey, metadata(maps.Clone(in.Metadata)))
}

// InstanceID is the Saga instance id of an address from this resolver, or
// "" for another address.
func InstanceID(addr resolver.Address) string {
	id, _ := addr.Attributes.Value(idKey).(string)
	return id
}

// Tags are the tags of the instance behind an address from this resolver.
// The caller must not change them.
func Tags(addr resolver.Address) []string {
	tags, _ := addr.Attributes.Value(tagsKey).(tagList)
	return tags
}

// Metadata is the metadata of the instance behind an address from this
// resolver. The caller must not change it.
func Metadata(addr resolver.Address) map[string]string {
	m, _ := addr.Attributes.Value(metaKey).(metadata)
	return m
}
