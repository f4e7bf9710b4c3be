package moqt_test

import (
	"bytes"
	"fmt"
	"io"

	"github.com/sluicegw/sluice/sdk/moqt"
	"github.com/sluicegw/sluice/sdk/moqt/hang"
)

// The control stream of a draft 16 session in which a moq-dev publisher
// announces "cam1.hang" and the server subscribes to its catalog, then the
// catalog's first group on a data stream, as @moq/net 0.1.9 lays them out.
func Example_draft16Announce() {
	v := moqt.Draft16
	var client, server []byte // what each side writes on the control stream
	client = (&moqt.ClientSetup{Params: moqt.Params{
		{Type: moqt.SetupMaxRequestID, Value: 42069},
		{Type: moqt.SetupImplementation, Bytes: []byte("moq-lite-js")},
	}}).Append(client, v)
	// Without MAX_REQUEST_ID above 0 the client may send no request at all.
	server = (&moqt.ServerSetup{Params: moqt.Params{{Type: moqt.SetupMaxRequestID, Value: 128}}}).Append(server, v)
	client = (&moqt.PublishNamespace{RequestID: 0, Namespace: moqt.NamespaceFromPath("cam1.hang")}).Append(client, v)
	server = (&moqt.RequestOK{RequestID: 0}).Append(server, v)
	server = (&moqt.Subscribe{RequestID: 1, Namespace: moqt.Namespace{"cam1.hang"}, TrackName: hang.CatalogTrack,
		Params: moqt.Params{{Type: moqt.ParamSubscriberPriority, Value: 0}}}).Append(server, v)
	client = (&moqt.SubscribeOK{RequestID: 1, TrackAlias: 1, Params: moqt.Params{{Type: moqt.ParamGroupOrder, Value: 2}}}).Append(client, v)

	for _, side := range []struct {
		name string
		b    []byte
	}{{"client", client}, {"server", server}} {
		r := bytes.NewReader(side.b)
		for {
			m, err := moqt.ReadMessage(r, v, 4096)
			if err == io.EOF {
				break
			}
			if err != nil {
				fmt.Println(err)
				return
			}
			fmt.Printf("%s: %T\n", side.name, m)
		}
	}

	// The catalog group: a unidirectional stream, type 0x18, alias = the
	// SUBSCRIBE's request id, one object holding the JSON, then FIN.
	w := moqt.SubgroupWriter{V: v, Header: moqt.SubgroupHeader{TrackAlias: 1, HasPriority: true, EndOfGroup: true}}
	stream := w.AppendHeader(nil)
	stream, _ = w.AppendObject(stream, moqt.Object{ID: 0,
		Payload: []byte(`{"video":{"renditions":{"video/hd":{"codec":"vp8","codedWidth":640,"codedHeight":360}}}}`)})
	r := bytes.NewReader(stream)
	t, _ := moqt.ReadVarint(r, v)
	sg, err := moqt.NewSubgroupReader(r, v, t, 1<<16)
	if err != nil {
		fmt.Println(err)
		return
	}
	obj, _ := sg.ReadObject()
	cat, err := hang.ParseCatalog(obj.Payload)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("stream type 0x%x, alias %d: video/hd is %s\n", t, sg.Header.TrackAlias, cat.Video.Renditions["video/hd"].Codec)
	// Output:
	// client: *moqt.ClientSetup
	// client: *moqt.PublishNamespace
	// client: *moqt.SubscribeOK
	// server: *moqt.ServerSetup
	// server: *moqt.RequestOK
	// server: *moqt.Subscribe
	// stream type 0x18, alias 1: video/hd is vp8
}
